// Package view derives what one host must realise from the cluster state: its ports,
// their networks, the peers it tunnels to and the remote ports it installs l2pop flows
// for. A View is made once per reconcile (computed from scratch, or updated from the
// last one for the ports that changed), never changed afterwards, and read by every
// reconcile step and by the local API; it is pure data, so l2pop decisions are tested
// without a switch. Addresses are parsed here, once: a port whose MAC or IPs do
// not parse is left out and named in Problems, never half-realised.
package view

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// View is what host Host must realise at store revision Revision.
type View struct {
	Host     string
	Revision int64
	// State is the cluster state the view was computed from (read-only: trace looks up
	// addresses of other networks in it).
	State    store.State
	Networks map[string]api.Network // networks with at least one port on this host
	Local    []Port                 // this host's ports on known networks, by ID
	// Remote are the ports of other hosts on this host's networks, by ID. The entries
	// are shared with the views updated from this one: read them, never write.
	Remote []*RemotePort
	// RouterPorts are the router interfaces this host serves (it is their router's
	// L3 host now): ports of their networks like Local ones, but realised by the L3
	// step in the router's namespace instead of as a VM's tap, qbr and qvo.
	RouterPorts []Port
	// Peers are the hosts that share a network with this host, alive or not: one
	// tunnel each.
	Peers map[string]api.Host // by tunnel IP
	// Tunnels are the tunnels to make: one per peer and tunnel type in use between
	// them (networks carry their own type).
	Tunnels map[TunnelKey]api.Host
	// Mismatches are the peers with ports on this host's networks that do not accept
	// the network's tunnel type: no tunnel can carry the network between them. By
	// network ID, then host name.
	Mismatches []Mismatch
	// CrossFamily are the peers with ports on this host's networks whose tunnel IP is
	// of the other IP version than this host's: no tunnel joins an IPv4 and an IPv6
	// endpoint, so the network is cut between them (Neutron's agent likewise makes no
	// such port). One entry per network and peer, ordered like Mismatches.
	CrossFamily []Mismatch
	// crossFamilyOn counts, per network and peer name, the ports behind CrossFamily.
	crossFamilyOn map[string]map[string]int
	// Unsupported are this host's networks whose tunnel type it does not accept, with
	// why (by network ID): their ports cannot reach other hosts.
	Unsupported map[string]string
	// mismatchedOn counts, per network and peer name, the ports behind Mismatches.
	mismatchedOn map[string]map[string]int
	// peerPorts and tunnelPorts (by tunnel type) count, per peer (its hosts index),
	// the Remote ports behind Peers and Tunnels, so that an update knows when a peer
	// loses its last one. Slices, not maps: an update copies the ones it changes.
	peerPorts   []int32
	tunnelPorts map[string][]int32
	// hosts indexes the host records; unparsed are this host's ports that do not
	// parse (Problems holds them too, unless the store refused a record of theirs).
	hosts    *hosts
	unparsed map[string]error
	// Groups and Members feed the firewall: members are, per group and network, the
	// fixed IPs of every port of the group on that network, for remote-group rules
	// (a rule admits only members on the port's own network: two networks may share
	// a CIDR). The addresses of one group and network are sorted (netip.Addr.Compare),
	// duplicates kept, so that an update inserts and removes single ones.
	Groups  map[string]api.SecurityGroup
	Members map[string]map[string][]netip.Addr
	// Problems are, by port ID, this host's ports left out because a field does not
	// parse, and those whose latest record the store refused (these may still run
	// their last good version).
	Problems map[string]error
	// StoreProblems are the records the store mirror left out, wholly or in part, that
	// may concern this host: all but other hosts' ports and statuses.
	StoreProblems []store.Problem
	// Changes says what differs from the view this one was updated from (Update).
	Changes Changes
}

// TunnelKey names one tunnel: the peer's tunnel IP and the tunnel type.
type TunnelKey struct{ IP, Type string }

// Mismatch is a peer that does not accept a network's tunnel type.
type Mismatch struct {
	Network api.Network
	Host    api.Host
}

// Port is a port with its addresses parsed.
type Port struct {
	api.Port
	HW    net.HardwareAddr // the port's MAC
	Addrs []netip.Addr     // its fixed IPs
	Pairs []Pair           // its allowed address pairs
}

// Pair is an allowed address pair, parsed: an address or CIDR, and an optional MAC.
type Pair struct {
	Prefix netip.Prefix
	HW     net.HardwareAddr // nil: the port's own MAC
}

// RemotePort is a port of another host, with that host's tunnel IP.
type RemotePort struct {
	Port
	HostIP netip.Addr
}

// Compute derives what host self must realise. Every registered host counts, alive or
// not: liveness is not placement, and a host whose agent is down (its VMs may be fine)
// keeps its tunnels and flows until its ports move or it is deleted. A port bound to
// a host that is not registered gets no flows.
func Compute(self string, st store.State) *View {
	v := &View{Host: self, Revision: st.Revision, State: st, Networks: map[string]api.Network{}, Peers: map[string]api.Host{}, Tunnels: map[TunnelKey]api.Host{}, Unsupported: map[string]string{},
		mismatchedOn: map[string]map[string]int{}, crossFamilyOn: map[string]map[string]int{}, tunnelPorts: map[string][]int32{},
		Groups: map[string]api.SecurityGroup{}, Members: map[string]map[string][]netip.Addr{}, unparsed: map[string]error{},
		Changes: Changes{All: true}}
	// The ports in ID order, looked up once: at 10k ports the map lookups, three
	// passes over, were a third of the view's cost. The ports are the State's: read,
	// never written.
	ids := make([]string, 0, len(st.Ports))
	for id := range st.Ports {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	ports := make([]*api.Port, len(ids))
	for i, id := range ids {
		ports[i] = st.Ports[id]
	}
	for _, p := range ports {
		if n, ok := st.Networks[p.NetworkID]; ok && p.Host == self {
			v.Networks[n.ID] = n
		}
	}
	v.hosts = indexHosts(self, st.Hosts)
	v.peerPorts = make([]int32, len(v.hosts.known))
	me, registered := st.Hosts[self]
	for id, n := range v.Networks {
		if registered && !me.Accepts(n.Type()) {
			v.Unsupported[id] = fmt.Sprintf("network %s is carried by %s tunnels, which this host does not accept (lanesd --tunnel-types)", n.Name, n.Type())
		}
		if v.tunnelPorts[n.Type()] == nil {
			v.tunnelPorts[n.Type()] = make([]int32, len(v.hosts.known))
		}
	}
	// A fresh view owns all its maps: the edit writes into them without copying.
	e := &edit{v: v, owned: ownAll}
	// Room for every other host's port on this host's networks, the most that can
	// be remote: growing a slice of ports this size was a quarter of the cost.
	most := 0
	for _, p := range ports {
		if _, shared := v.Networks[p.NetworkID]; shared && p.Host != self {
			most++
		}
	}
	remote := make([]RemotePort, 0, most)
	for _, p := range ports {
		if p.Host != self {
			pl := v.place(p)
			e.count(pl, +1)
			if pl.kind == placeRemote {
				remote = append(remote, pl.rp)
			}
			continue
		}
		if _, shared := v.Networks[p.NetworkID]; !shared {
			continue
		}
		pp, err := parsePort(*p)
		if err != nil {
			v.unparsed[p.ID] = err
			continue
		}
		if p.IsRouterInterface() {
			v.RouterPorts = append(v.RouterPorts, pp)
		} else {
			v.Local = append(v.Local, pp)
		}
	}
	// One allocation for all remote ports: an update replaces single entries by
	// pointer and shares the others with the view it came from.
	if len(remote) > 0 {
		v.Remote = make([]*RemotePort, len(remote))
		for i := range remote {
			v.Remote[i] = &remote[i]
		}
	}
	v.Mismatches = v.mismatchList(v.mismatchedOn)
	v.CrossFamily = v.mismatchList(v.crossFamilyOn)
	for _, g := range st.Groups {
		v.Groups[g.ID] = g
	}
	v.StoreProblems, v.Problems = problems(self, st, v.unparsed)
	for _, p := range ports {
		e.members(p, +1)
	}
	for _, byNet := range v.Members {
		for _, as := range byNet {
			slices.SortFunc(as, netip.Addr.Compare)
		}
	}
	return v
}

// problems are the store's problems that concern host self, and the view's Problems:
// unparsed (this host's ports that do not parse) and this host's refused records.
func problems(self string, st store.State, unparsed map[string]error) ([]store.Problem, map[string]error) {
	var out []store.Problem
	byPort := maps.Clone(unparsed)
	for _, pr := range st.Problems {
		if (pr.Kind == store.KindPorts || pr.Kind == store.KindStatus) && pr.Host != "" && pr.Host != self {
			if kept, ok := st.Ports[pr.ID]; !ok || kept.Host != self {
				continue
			}
		}
		out = append(out, pr)
		if pr.Kind != store.KindPorts || !pr.Whole() {
			continue
		}
		if kept, ok := st.Ports[pr.ID]; pr.Host == self || (ok && kept.Host == self) {
			byPort[pr.ID] = fmt.Errorf("record refused by the store (%s): %s", pr.Class, pr.Err)
		}
	}
	return out, byPort
}

// hosts is what a view derives from the host records, which only a full compute
// changes: read-only, shared by every view updated from the one computed.
type hosts struct {
	// selfIP is invalid while this host is not registered (or its record does not
	// parse): then no peer is told apart by family.
	selfIP netip.Addr
	known  map[string]peer // the registered hosts but this one, by name
}

// peer is a registered host with its tunnel IP parsed.
type peer struct {
	api.Host
	n  int        // its index, in name order
	ip netip.Addr // invalid: the record's tunnel IP does not parse, so no tunnel
	// shared: another registered host names the same tunnel IP; which of them Peers
	// and Tunnels hold depends on the order of all their ports, so only a full
	// compute decides it.
	shared bool
}

func indexHosts(self string, all map[string]api.Host) *hosts {
	hs := &hosts{known: make(map[string]peer, len(all))}
	hs.selfIP, _ = netip.ParseAddr(all[self].TunnelIP)
	byIP := map[string]int{}
	var others []api.Host
	for _, h := range all {
		if h.Name != self {
			byIP[h.TunnelIP]++
			others = append(others, h)
		}
	}
	slices.SortFunc(others, func(a, b api.Host) int { return strings.Compare(a.Name, b.Name) })
	for n, h := range others {
		ip, _ := netip.ParseAddr(h.TunnelIP)
		hs.known[h.Name] = peer{Host: h, n: n, ip: ip, shared: byIP[h.TunnelIP] > 1}
	}
	return hs
}

// Where a port of another host goes in the view.
const (
	placeNone     = iota // nowhere: not on this host's networks, or cannot be realised
	placeRemote          // Remote, with a tunnel to its host
	placeMismatch        // Mismatches: its host does not accept the network's tunnel type
	placeCross           // CrossFamily: its host's tunnel IP is of the other IP version
)

// placement is where place put a port, and what it counts against: the network and
// peer behind a Remote, Mismatches or CrossFamily entry.
type placement struct {
	kind int
	rp   RemotePort // placeRemote
	net  string
	host peer
}

// place decides where p, a port of another host, goes; one pure function for the
// full compute and the update, so the two cannot drift apart.
func (v *View) place(p *api.Port) placement {
	n, shared := v.Networks[p.NetworkID]
	if !shared {
		return placement{}
	}
	h, registered := v.hosts.known[p.Host]
	if !registered {
		return placement{}
	}
	pp, err := parsePort(*p)
	if err != nil {
		return placement{} // a remote port that does not parse gets no flows
	}
	if !h.ip.IsValid() {
		return placement{} // a host record that does not validate has no tunnel
	}
	if _, no := v.Unsupported[n.ID]; no {
		return placement{}
	}
	pl := placement{net: n.ID, host: h}
	switch {
	case v.hosts.selfIP.IsValid() && v.hosts.selfIP.Is4() != h.ip.Is4():
		pl.kind = placeCross
	case !h.Accepts(n.Type()):
		pl.kind = placeMismatch
	default:
		pl.kind, pl.rp = placeRemote, RemotePort{Port: pp, HostIP: h.ip}
	}
	return pl
}

// mismatchList lists the peers of on (network -> host -> ports) by network ID, then
// host name.
func (v *View) mismatchList(on map[string]map[string]int) []Mismatch {
	var out []Mismatch
	for net, hs := range on {
		for name := range hs {
			out = append(out, Mismatch{Network: v.Networks[net], Host: v.hosts.known[name].Host})
		}
	}
	slices.SortFunc(out, func(a, b Mismatch) int {
		return cmp.Or(strings.Compare(a.Network.ID, b.Network.ID), strings.Compare(a.Host.Name, b.Host.Name))
	})
	return out
}

func parsePort(p api.Port) (Port, error) {
	out := Port{Port: p}
	hw, err := net.ParseMAC(p.MAC)
	if err != nil || len(hw) != 6 {
		return Port{}, fmt.Errorf("port %s: mac %q: not an Ethernet address", p.ID, p.MAC)
	}
	out.HW = hw
	for _, s := range p.FixedIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Port{}, fmt.Errorf("port %s: fixed IP %q: %w", p.ID, s, err)
		}
		out.Addrs = append(out.Addrs, a)
	}
	for _, ap := range p.AllowedAddressPairs {
		pfx, err := api.ParseIPOrCIDR(ap.IP)
		if err != nil {
			return Port{}, fmt.Errorf("port %s: allowed address pair: %w", p.ID, err)
		}
		pair := Pair{Prefix: pfx}
		if ap.MAC != "" {
			if pair.HW, err = net.ParseMAC(ap.MAC); err != nil || len(pair.HW) != 6 {
				return Port{}, fmt.Errorf("port %s: allowed address pair mac %q: not an Ethernet address", p.ID, ap.MAC)
			}
		}
		out.Pairs = append(out.Pairs, pair)
	}
	return out, nil
}

// MismatchOf says why a local port's network cannot reach some or all of its ports:
// this host or peers on it do not accept the network's tunnel type, or peers on it
// have a tunnel IP of the other IP version. Empty when none.
func (v *View) MismatchOf(p Port) string {
	if why, ok := v.Unsupported[p.NetworkID]; ok {
		return why
	}
	n := v.Networks[p.NetworkID]
	var why []string
	if hs := hostNames(v.mismatchedOn[p.NetworkID]); hs != "" {
		why = append(why, fmt.Sprintf("network %s is carried by %s tunnels, which host %s does not accept: no traffic with its ports there",
			n.Name, n.Type(), hs))
	}
	if hs := hostNames(v.crossFamilyOn[p.NetworkID]); hs != "" {
		mine, theirs := "IPv4", "IPv6"
		if self, err := netip.ParseAddr(v.State.Hosts[v.Host].TunnelIP); err == nil && !self.Is4() {
			mine, theirs = theirs, mine
		}
		why = append(why, fmt.Sprintf("network %s is cut between this host (%s tunnel IP) and host %s (%s): no tunnel joins IPv4 and IPv6 endpoints, so no traffic with its ports there",
			n.Name, mine, hs, theirs))
	}
	return strings.Join(why, "; ")
}

// hostNames lists the hosts' names, sorted and comma-separated.
func hostNames(hosts map[string]int) string {
	var names []string
	for name := range hosts {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// LocalPort finds a local port by ID or name.
func (v *View) LocalPort(idOrName string) (Port, bool) {
	for _, p := range v.Local {
		if p.ID == idOrName || p.Name == idOrName {
			return p, true
		}
	}
	return Port{}, false
}

// RemoteByID finds a remote port by ID (Remote is sorted by ID).
func (v *View) RemoteByID(id string) (*RemotePort, bool) {
	rp := findRemote(v.Remote, id)
	return rp, rp != nil
}

// FloodTo lists, per network, the peer hosts that have a port on it.
func (v *View) FloodTo() map[string][]string {
	seen := map[string]map[string]bool{}
	out := map[string][]string{}
	for _, rp := range v.Remote {
		if seen[rp.NetworkID] == nil {
			seen[rp.NetworkID] = map[string]bool{}
		}
		if !seen[rp.NetworkID][rp.Host] {
			seen[rp.NetworkID][rp.Host] = true
			out[rp.NetworkID] = append(out[rp.NetworkID], rp.Host)
		}
	}
	for _, hs := range out {
		sort.Strings(hs)
	}
	return out
}
