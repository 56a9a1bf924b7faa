package view

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// Changes says what a View changed from the one it was updated from, so that the
// steps after it redo only those owners.
type Changes struct {
	// All: computed from scratch; compare everything.
	All bool
	// Remote are the IDs of the remote ports that came, changed or left (v.Remote).
	Remote map[string]bool
	// Members are the IDs of the groups whose Members changed.
	Members map[string]bool
	// Tunnels: Tunnels may differ (a peer gained its first port of a tunnel type,
	// or lost its last). When false they are those of the view updated from.
	Tunnels bool
}

// Update derives the view of st from prev, the view of an earlier state of the same
// mirror, and d, what differs between prev.State and st. It equals Compute(self, st)
// in all but Changes, which say what differs from prev (All after a full compute).
//
// Ports of other hosts are applied to prev: what they touch (their Remote entry, the
// counts behind Peers, Tunnels, Mismatches and CrossFamily, their groups' Members) is
// edited on copies, and everything else is shared with prev, which stays as it was
// (the local API reads it on other goroutines). A port of this host, or of a host
// whose tunnel IP another host names too, takes the full compute: local changes cost
// wiring anyway, and are rare.
func Update(prev *View, self string, st store.State, d store.Delta) *View {
	if d.All || prev == nil || prev.Host != self || prev.hosts == nil {
		return Compute(self, st)
	}
	ids := slices.Sorted(maps.Keys(d.Ports))
	for _, id := range ids {
		if prev.needsCompute(prev.State.Ports, id) || prev.needsCompute(st.Ports, id) {
			return Compute(self, st)
		}
	}
	v := *prev
	v.State, v.Revision, v.Changes = st, st.Revision, Changes{}
	e := &edit{v: &v}
	var edits []remoteEdit
	for _, id := range ids {
		old, had := prev.State.Ports[id]
		now, has := st.Ports[id]
		if had == has && reflect.DeepEqual(old, now) {
			continue
		}
		var was, is placement
		if had {
			was = v.place(old)
		}
		if has {
			is = v.place(now)
		}
		if was.kind != is.kind || was.net != is.net || was.host.Name != is.host.Name {
			e.count(was, -1)
			e.count(is, +1)
		}
		if had != has || old.NetworkID != now.NetworkID || !slices.Equal(old.SecurityGroups, now.SecurityGroups) || !slices.Equal(old.FixedIPs, now.FixedIPs) {
			if had {
				e.members(old, -1)
			}
			if has {
				e.members(now, +1)
			}
		}
		before := findRemote(prev.Remote, id)
		var after *RemotePort
		if is.kind == placeRemote {
			after = &is.rp
		}
		if before == nil && after == nil || before != nil && after != nil && reflect.DeepEqual(*before, *after) {
			continue
		}
		edits = append(edits, remoteEdit{id: id, rp: after})
		if v.Changes.Remote == nil {
			v.Changes.Remote = map[string]bool{}
		}
		v.Changes.Remote[id] = true
	}
	if len(edits) > 0 {
		v.Remote = mergeRemote(prev.Remote, edits)
	}
	if e.mismatches {
		v.Mismatches = v.mismatchList(v.mismatchedOn)
	}
	if e.cross {
		v.CrossFamily = v.mismatchList(v.crossFamilyOn)
	}
	v.Changes.Members = e.applyMembers()
	v.Changes.Tunnels = e.owned&ownTunnels != 0
	if !sameProblems(prev.State.Problems, st.Problems) {
		v.StoreProblems, v.Problems = problems(self, st, v.unparsed)
	}
	return &v
}

// needsCompute reports whether port id of ports is one only a full compute places:
// this host's, or one of a host whose tunnel IP is not its own alone.
func (v *View) needsCompute(ports map[string]*api.Port, id string) bool {
	p, ok := ports[id]
	return ok && (p.Host == v.Host || v.hosts.known[p.Host].shared)
}

// sameProblems reports whether a and b are the same slice, as a mirror may hand on
// while no problem changed; otherwise they are filtered again whole (they are few).
func sameProblems(a, b []store.Problem) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// owned says which of the view's maps an edit may write: a fresh view owns all of
// them, an updated one shares them with the view it came from until it copies one.
type owned uint

const (
	ownPeers owned = 1 << iota
	ownTunnels
	ownPeerPorts
	ownTunnelPorts
	ownMismatched
	ownCross
	ownMembers
	ownAll = ^owned(0)
)

// edit writes a view's derived maps, copying each (and each inner map) once before
// its first write unless the view owns it.
type edit struct {
	v     *View
	owned owned
	// inner are the inner maps of mismatchedOn, crossFamilyOn and Members copied
	// already, by outer map and key.
	inner map[innerKey]bool
	// mismatches, cross: the set of peers behind Mismatches, CrossFamily changed.
	mismatches, cross bool
	// addrs are the addresses that come and go per group and network (an update).
	addrs map[memberKey]*addrEdit
}

type innerKey struct {
	of  owned
	key string
}

type memberKey struct{ group, net string }

type addrEdit struct{ add, del []netip.Addr }

// writable returns *m, copied first unless e owns it.
func writable[K comparable, V any](e *edit, bit owned, m *map[K]V) map[K]V {
	if e.owned&bit == 0 {
		*m = maps.Clone(*m)
		e.owned |= bit
	}
	if *m == nil {
		*m = map[K]V{}
	}
	return *m
}

// writableInner returns outer[key], copied first unless e owns it.
func writableInner[V any](e *edit, bit owned, outer map[string]map[string]V, key string) map[string]V {
	in := outer[key]
	if e.owned != ownAll && !e.inner[innerKey{bit, key}] {
		if e.inner == nil {
			e.inner = map[innerKey]bool{}
		}
		e.inner[innerKey{bit, key}] = true
		in = maps.Clone(in)
	}
	if in == nil {
		in = map[string]V{}
	}
	outer[key] = in
	return in
}

// add adds d to m[k], dropping it at zero, and reports whether k came or left.
func add[K comparable](m map[K]int, k K, d int) bool {
	n := m[k] + d
	if n <= 0 {
		delete(m, k)
		return true
	}
	m[k] = n
	return n == d
}

// addAt adds d to c[i] and reports whether i got its first or lost its last.
func addAt(c []int32, i, d int) bool {
	n := c[i] + int32(d)
	c[i] = n
	return d > 0 && n == 1 || d < 0 && n == 0
}

// count adds (d = 1) or removes (d = -1) a placed port to the counts behind Peers,
// Tunnels, Mismatches and CrossFamily, and changes those when an entry gains its
// first port or loses its last.
func (e *edit) count(pl placement, d int) {
	v := e.v
	switch pl.kind {
	case placeRemote:
		ip := pl.host.TunnelIP
		if e.owned&ownPeerPorts == 0 {
			v.peerPorts = slices.Clone(v.peerPorts)
			e.owned |= ownPeerPorts
		}
		if addAt(v.peerPorts, pl.host.n, d) {
			if peers := writable(e, ownPeers, &v.Peers); d > 0 {
				peers[ip] = pl.host.Host
			} else {
				delete(peers, ip)
			}
		}
		key := TunnelKey{IP: ip, Type: v.Networks[pl.net].Type()}
		byType := writable(e, ownTunnelPorts, &v.tunnelPorts)
		if e.owned != ownAll && !e.inner[innerKey{ownTunnelPorts, key.Type}] {
			if e.inner == nil {
				e.inner = map[innerKey]bool{}
			}
			e.inner[innerKey{ownTunnelPorts, key.Type}] = true
			byType[key.Type] = slices.Clone(byType[key.Type])
		}
		if addAt(byType[key.Type], pl.host.n, d) {
			if tunnels := writable(e, ownTunnels, &v.Tunnels); d > 0 {
				tunnels[key] = pl.host.Host
			} else {
				delete(tunnels, key)
			}
		}
	case placeMismatch:
		e.mismatches = e.countOn(ownMismatched, &v.mismatchedOn, pl, d) || e.mismatches
	case placeCross:
		e.cross = e.countOn(ownCross, &v.crossFamilyOn, pl, d) || e.cross
	}
}

func (e *edit) countOn(bit owned, on *map[string]map[string]int, pl placement, d int) bool {
	outer := writable(e, bit, on)
	hs := writableInner(e, bit, outer, pl.net)
	changed := add(hs, pl.host.Name, d)
	if len(hs) == 0 {
		delete(outer, pl.net)
	}
	return changed
}

// members adds (d = 1) or removes (d = -1) p's fixed IPs to the members of its
// groups on its network: straight into a fresh view (sorted at its end), as edits
// for an update (applyMembers).
func (e *edit) members(p *api.Port, d int) {
	for _, g := range p.SecurityGroups {
		for _, ip := range p.FixedIPs {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				continue
			}
			if e.owned == ownAll {
				byNet := e.v.Members[g]
				if byNet == nil {
					byNet = map[string][]netip.Addr{}
					e.v.Members[g] = byNet
				}
				byNet[p.NetworkID] = append(byNet[p.NetworkID], a)
				continue
			}
			k := memberKey{group: g, net: p.NetworkID}
			if e.addrs == nil {
				e.addrs = map[memberKey]*addrEdit{}
			}
			ed := e.addrs[k]
			if ed == nil {
				ed = &addrEdit{}
				e.addrs[k] = ed
			}
			if d > 0 {
				ed.add = append(ed.add, a)
			} else {
				ed.del = append(ed.del, a)
			}
		}
	}
}

// applyMembers applies the address edits to copies of the sorted lists they touch,
// and returns the groups whose members changed.
func (e *edit) applyMembers() map[string]bool {
	var changed map[string]bool
	for k, ed := range e.addrs {
		cur := e.v.Members[k.group][k.net]
		out := make([]netip.Addr, len(cur), len(cur)+len(ed.add))
		copy(out, cur)
		for _, a := range ed.del {
			if i, ok := slices.BinarySearchFunc(out, a, netip.Addr.Compare); ok {
				out = slices.Delete(out, i, i+1)
			}
		}
		for _, a := range ed.add {
			i, _ := slices.BinarySearchFunc(out, a, netip.Addr.Compare)
			out = slices.Insert(out, i, a)
		}
		if slices.Equal(out, cur) {
			continue
		}
		members := writable(e, ownMembers, &e.v.Members)
		byNet := writableInner(e, ownMembers, members, k.group)
		if len(out) == 0 {
			delete(byNet, k.net)
		} else {
			byNet[k.net] = out
		}
		if len(byNet) == 0 {
			delete(members, k.group)
		}
		if changed == nil {
			changed = map[string]bool{}
		}
		changed[k.group] = true
	}
	return changed
}

type remoteEdit struct {
	id string
	rp *RemotePort // nil: the port left Remote
}

// findRemote finds port id in rs, sorted by ID.
func findRemote(rs []*RemotePort, id string) *RemotePort {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].ID >= id })
	if i < len(rs) && rs[i].ID == id {
		return rs[i]
	}
	return nil
}

// mergeRemote returns a copy of old, sorted by ID, with edits (sorted by ID) applied:
// pointer copies of the unchanged entries.
func mergeRemote(old []*RemotePort, edits []remoteEdit) []*RemotePort {
	out := make([]*RemotePort, 0, len(old)+len(edits))
	i := 0
	for _, ed := range edits {
		j := i + sort.Search(len(old)-i, func(k int) bool { return old[i+k].ID >= ed.id })
		out = append(out, old[i:j]...)
		i = j
		if i < len(old) && old[i].ID == ed.id {
			i++
		}
		if ed.rp != nil {
			out = append(out, ed.rp)
		}
	}
	out = append(out, old[i:]...)
	if len(out) == 0 {
		return nil
	}
	return out
}

// Differences names what differs between a and b but their State and Changes: for
// checking an updated view against a full compute of the same state. Exported fields
// by name; the derived counts behind them as "internal". Empty when they are equal.
func Differences(a, b *View) []string {
	sa, sb := *a, *b
	sa.State, sa.Changes, sb.State, sb.Changes = store.State{}, Changes{}, store.State{}, Changes{}
	if reflect.DeepEqual(sa, sb) {
		return nil
	}
	var out []string
	va, vb := reflect.ValueOf(sa), reflect.ValueOf(sb)
	for i := range va.NumField() {
		if f := va.Type().Field(i); f.IsExported() && !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, f.Name)
		}
	}
	if len(out) == 0 {
		out = append(out, "internal")
	}
	return out
}
