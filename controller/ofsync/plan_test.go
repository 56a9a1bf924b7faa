package ofsync

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

func testFlow(table uint8, prio uint16, owner string, port uint32) flows.Flow {
	return flows.Flow{
		Bridge: flows.BrTun, Table: table, Priority: prio,
		Cookie:  flows.MakeCookie(0, flows.CatRemotePort, owner),
		Match:   flows.Match{InPort: port},
		Actions: []flows.Action{flows.Output{Port: port + 100}},
	}
}

func keys(fs []flows.Flow) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Key()
	}
	return out
}

func TestDiff(t *testing.T) {
	a := testFlow(flows.LocalSwitching, 1, "a", 1)
	b := testFlow(flows.LocalSwitching, 1, "b", 2)
	c := testFlow(flows.LocalSwitching, 1, "c", 3)
	bActions := b
	bActions.Actions = []flows.Action{flows.Output{Port: 7}}
	bCookie := b
	bCookie.Cookie = flows.MakeCookie(0, flows.CatRemotePort, "other")
	installed := IndexFlows([]flows.Flow{a, b}, 3)

	for _, tc := range []struct {
		name         string
		desired      []flows.Flow
		full         bool
		adds, delete []flows.Flow
	}{
		{name: "same", desired: []flows.Flow{a, b}},
		{name: "add", desired: []flows.Flow{a, b, c}, adds: []flows.Flow{c}},
		{name: "delete", desired: []flows.Flow{a}, delete: []flows.Flow{b}},
		{name: "replace actions", desired: []flows.Flow{a, bActions}, adds: []flows.Flow{bActions}},
		{name: "replace cookie", desired: []flows.Flow{a, bCookie}, adds: []flows.Flow{bCookie}},
		{name: "add and delete", desired: []flows.Flow{c, a}, adds: []flows.Flow{c}, delete: []flows.Flow{b}},
		{name: "full", desired: []flows.Flow{a, b}, full: true, adds: []flows.Flow{a, b}},
		{name: "full with delete", desired: []flows.Flow{c}, full: true, adds: []flows.Flow{c}, delete: []flows.Flow{a, b}},
		{name: "empty desired", desired: nil, delete: []flows.Flow{a, b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Diff(installed, IndexFlows(tc.desired, 3), tc.full)
			if p.Sweep != tc.full {
				t.Errorf("Sweep = %v, want %v", p.Sweep, tc.full)
			}
			// Stamped with the round, in key order.
			want := func(fs []flows.Flow) []string {
				out := make([]string, len(fs))
				for i, f := range fs {
					out[i] = f.WithRound(3).String()
				}
				slices.Sort(out)
				return out
			}
			got := func(fs []flows.Flow) []string {
				out := make([]string, len(fs))
				for i, f := range fs {
					out[i] = f.String()
				}
				slices.Sort(out)
				return out
			}
			if g, w := got(p.Add), want(tc.adds); !slices.Equal(g, w) {
				t.Errorf("Add = %q\nwant %q", g, w)
			}
			if g, w := got(p.Delete), want(tc.delete); !slices.Equal(g, w) {
				t.Errorf("Delete = %q\nwant %q", g, w)
			}
			if p2 := Diff(installed, IndexFlows(tc.desired, 3), tc.full); !slices.Equal(keys(p.Add), keys(p2.Add)) || !slices.Equal(keys(p.Delete), keys(p2.Delete)) {
				t.Errorf("plan not reproducible: %q %q, then %q %q", keys(p.Add), keys(p.Delete), keys(p2.Add), keys(p2.Delete))
			}
			if p.Empty() != (len(tc.adds) == 0 && len(tc.delete) == 0 && !tc.full) {
				t.Errorf("Empty = %v", p.Empty())
			}
		})
	}
}

// TestDiffIdempotent: applying a plan's adds and deletes to the installed set gives
// the desired set, and diffing again gives an empty plan.
func TestDiffIdempotent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func() []flows.Flow {
		var fs []flows.Flow
		for i := range 40 {
			if rng.IntN(2) == 0 {
				continue
			}
			f := testFlow(flows.UcastToTun, 2, "p", uint32(i+1))
			f.Match = flows.Match{VLAN: flows.TagVID(1), EthDst: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, byte(i)}}
			if rng.IntN(3) == 0 {
				f.Actions = []flows.Action{flows.Output{Port: 9}}
			}
			fs = append(fs, f)
		}
		return fs
	}
	for range 50 {
		installed, desired := IndexFlows(mk(), 1), IndexFlows(mk(), 1)
		want := byKey(desired)
		p := Diff(installed, desired, false)
		next := byKey(installed)
		for _, f := range p.Delete {
			if _, ok := want[f.Key()]; ok {
				t.Fatalf("deletes desired flow %s", f.Key())
			}
			delete(next, f.Key())
		}
		for _, f := range p.Add {
			next[f.Key()] = f.String()
		}
		if !maps.Equal(next, want) {
			t.Fatalf("after plan %v, want %v", next, want)
		}
		if p2 := Diff(desired, IndexFlows(desired.All(), 1), false); !p2.Empty() {
			t.Fatalf("second diff not empty: %+v", p2)
		}
	}
}

// byKey renders flows by key, as the switch would hold them.
func byKey(fl Flows) map[string]string {
	m := map[string]string{}
	for _, f := range fl.All() {
		m[f.Key()] = f.String()
	}
	return m
}

// matchedBy reports whether a delete by (cookie, mask) removes a flow with cookie c.
func matchedBy(c flows.Cookie, pairs [][2]flows.Cookie) bool {
	for _, p := range pairs {
		if c&p[1] == p[0] {
			return true
		}
	}
	return false
}

func TestSweepMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rounds := []uint16{0, 1, 0xffff, 0x8000, 0x7fff}
	for range 200 {
		rounds = append(rounds, uint16(rng.Uint32()))
	}
	for _, r := range rounds {
		pairs := SweepMasks(r)
		if len(pairs) != 16 {
			t.Fatalf("round %d: %d pairs, want 16", r, len(pairs))
		}
		for _, p := range pairs {
			if p[0]&^p[1] != 0 || p[1]&^flows.RoundMask != 0 {
				t.Fatalf("round %d: pair %#x/%#x: cookie outside its mask or mask outside the round bits", r, p[0], p[1])
			}
		}
		others := []uint16{r, r ^ 1, r ^ 0x8000, r + 1, r - 1, ^r}
		for range 100 {
			others = append(others, uint16(rng.Uint32()))
		}
		for _, r2 := range others {
			for _, cat := range []flows.Category{flows.CatSetup, flows.CatRemotePort, flows.CatLearned} {
				c := flows.MakeCookie(r2, cat, "owner-"+string(rune('a'+rng.IntN(26))))
				if got, want := matchedBy(c, pairs), r2 != r; got != want {
					t.Fatalf("round %d: cookie %#x (round %d) matched = %v, want %v", r, uint64(c), r2, got, want)
				}
			}
		}
	}
	// Exhaustively for one round: every other round is swept, its own never.
	r := uint16(0xa5c3)
	pairs := SweepMasks(r)
	for r2 := 0; r2 <= 0xffff; r2++ {
		c := flows.MakeCookie(uint16(r2), flows.CatNetwork, "n")
		if matchedBy(c, pairs) != (uint16(r2) != r) {
			t.Fatalf("round %d: cookie of round %d wrongly matched", r, r2)
		}
	}
}

// TestIncrementalEqualsFull: over a random walk of desired states (remote ports
// come, go and move; networks and tunnels come and go), diffing owner by owner and
// applying each plan to a model switch gives exactly the full recompute of every
// state, the same plan as a diff of every flow by key, and never renders an owner
// whose flows have not changed.
func TestIncrementalEqualsFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	nets := []flows.Network{{ID: "n1", VNI: 101, LocalVLAN: 1}, {ID: "n2", VNI: 102, LocalVLAN: 2}, {ID: "n3", VNI: 103, LocalVLAN: 3}}
	hosts := []flows.Tunnel{{RemoteIP: netip.MustParseAddr("10.9.0.2"), Ofport: 2}, {RemoteIP: netip.MustParseAddr("10.9.0.3"), Ofport: 3}, {RemoteIP: netip.MustParseAddr("10.9.0.4"), Ofport: 4}}
	remote := map[string]flows.RemotePort{}
	newPort := func(i int) flows.RemotePort {
		return flows.RemotePort{
			ID: fmt.Sprintf("r%d", i), NetworkID: nets[rng.IntN(len(nets))].ID, HostIP: hosts[rng.IntN(len(hosts))].RemoteIP,
			MAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, byte(rng.IntN(4)), byte(i)},
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(2)), byte(i)})},
		}
	}
	for i := range 30 {
		remote[fmt.Sprintf("r%d", i)] = newPort(i)
	}
	state := func() flows.Desired {
		d := flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}
		for i, n := range nets {
			if i == 0 || rng.IntN(4) != 0 {
				d.Networks = append(d.Networks, n)
			}
		}
		for _, h := range hosts {
			if rng.IntN(5) != 0 {
				d.Tunnels = append(d.Tunnels, h)
			}
		}
		d.LocalPorts = []flows.LocalPort{{ID: "vm1", NetworkID: "n1", Ofport: 5, MAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 1, 0, 1},
			IPs: []netip.Addr{netip.MustParseAddr("10.0.9.1")}, DHCP: rng.IntN(2) == 0}}
		for _, id := range slices.Sorted(maps.Keys(remote)) {
			d.RemotePorts = append(d.RemotePorts, remote[id])
		}
		return d
	}

	for _, br := range []flows.Bridge{flows.BrTun, flows.BrInt} {
		installed := Flows{}
		sw := map[string]string{} // the model switch
		changed := map[flows.Owner]bool{}
		var prev map[flows.Owner][]string
		for step := range 200 {
			// Churn: a few ports come, go, or move.
			for range 1 + rng.IntN(3) {
				i := rng.IntN(40)
				id := fmt.Sprintf("r%d", i)
				if _, ok := remote[id]; ok && rng.IntN(2) == 0 {
					delete(remote, id)
				} else {
					remote[id] = newPort(i)
				}
			}
			d := state()
			set, err := d.Flows()
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			cur := map[flows.Owner][]string{}
			for _, o := range set.Owners(br) {
				for _, f := range set.OwnerFlows(br, o) {
					cur[o] = append(cur[o], f.String())
				}
				if step > 0 && !slices.Equal(cur[o], prev[o]) {
					changed[o] = true
				}
			}
			prev = cur

			desired := Index(set, br, 1)
			p := Diff(installed, desired, false)
			ref := refDiff(byKey(installed), byKey(Index(set, br, 1)))
			if got := planText(p); !slices.Equal(got, ref) {
				t.Fatalf("%s step %d: plan\n%q\nwant (diff by key)\n%q", br, step, got, ref)
			}
			for _, f := range p.Delete {
				delete(sw, f.Key())
			}
			for _, f := range p.Add {
				sw[f.Key()] = f.String()
			}
			if full := byKey(Index(set, br, 1)); !maps.Equal(sw, full) {
				t.Fatalf("%s step %d: switch after incremental plans differs from the full recompute", br, step)
			}
			// The counts a Bridge keeps from its plans are a recount of the desired
			// flows, for a diff and for a full replay alike.
			for _, full := range []bool{false, true} {
				n := installed.perTable()
				pl := p
				if full {
					pl = Diff(installed, desired, true)
				}
				applyCounts(n, pl)
				if want := desired.perTable(); !equalCounts(n, want) {
					t.Fatalf("%s step %d (full %v): flows per table from the plan %v, recounted %v", br, step, full, n, want)
				}
			}
			installed = desired
		}
		for _, of := range installed.entries() {
			if !changed[of.owner] && of.idx != nil {
				t.Errorf("%s: owner %s never changed but was rendered and keyed", br, of.owner)
			}
		}
		if len(changed) == 0 {
			t.Fatalf("%s: the walk changed no owner", br)
		}
	}
}

// refDiff is the plan of a diff of every flow by key, as "+text" and "-text", sorted.
func refDiff(installed, desired map[string]string) []string {
	var out []string
	for k, d := range desired {
		if installed[k] != d {
			out = append(out, "+"+d)
		}
	}
	for k, i := range installed {
		if _, ok := desired[k]; !ok {
			out = append(out, "-"+i)
		}
	}
	slices.Sort(out)
	return out
}

func planText(p Plan) []string {
	var out []string
	for _, f := range p.Add {
		out = append(out, "+"+f.String())
	}
	for _, f := range p.Delete {
		out = append(out, "-"+f.String())
	}
	slices.Sort(out)
	return out
}

// TestIndexFromReuses: an owner whose flows are the very slice of the previous set
// keeps its entry (and its rendering); one that changed, or a new round, gets a new
// one; and the diff against the previous index is what changed, nothing more.
func TestIndexFromReuses(t *testing.T) {
	var fb flows.Builder
	d := flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1,
		Networks: []flows.Network{{ID: "n", VNI: 5, LocalVLAN: 1}},
		Tunnels:  []flows.Tunnel{{RemoteIP: netip.MustParseAddr("192.0.2.2"), Ofport: 9}}}
	for i := range 3 {
		d.RemotePorts = append(d.RemotePorts, flows.RemotePort{ID: fmt.Sprint("r", i), NetworkID: "n",
			MAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, byte(i)}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 2)})}, HostIP: netip.MustParseAddr("192.0.2.2")})
	}
	s1, err := fb.Build(&d)
	if err != nil {
		t.Fatal(err)
	}
	prev := indexFrom(nil, s1, flows.BrTun, 4)
	prev.All() // render caches filled, as a push leaves them
	d.RemotePorts = slices.Clone(d.RemotePorts)
	d.RemotePorts[1].MAC = net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 1, 1}
	s2, err := fb.Build(&d)
	if err != nil {
		t.Fatal(err)
	}
	cur := indexFrom(&prev, s2, flows.BrTun, 4)
	entry := func(fl Flows, key string) *ownerFlows {
		for _, o := range fl.entries() {
			if o.owner.Key == key {
				return o.ownerFlows
			}
		}
		t.Fatalf("no owner %s", key)
		return nil
	}
	for _, key := range []string{"r0", "r2", ""} {
		if entry(cur, key) != entry(prev, key) {
			t.Errorf("owner %q unchanged but indexed anew", key)
		}
	}
	if entry(cur, "r1") == entry(prev, "r1") {
		t.Error("changed owner r1 kept its old entry")
	}
	// The new MAC: a new unicast flow for the old one, the ARP responder replaced,
	// and a new ND responder flow for the old one, since the link-local address
	// comes from the MAC.
	if p := Diff(prev, cur, false); len(p.Add) != 3 || len(p.Delete) != 2 {
		t.Errorf("diff of one changed remote port: %d adds, %d deletes, want 3 and 2", len(p.Add), len(p.Delete))
	}
	if other := indexFrom(&prev, s2, flows.BrTun, 5); entry(other, "r0") == entry(prev, "r0") {
		t.Error("entry of round 4 reused for round 5")
	}
}

// TestStampIsWithRound: the plan's stamping, which shares the actions of a flow
// without learn(), gives every flow of both bridges exactly what WithRound gives,
// learn()'s cookie included, and leaves the set's flows as they were.
func TestStampIsWithRound(t *testing.T) {
	_, set := newRandomRemote(t, 4)
	learns := 0
	for _, br := range []flows.Bridge{flows.BrTun, flows.BrInt} {
		fs := set.Flows(br)
		if len(fs) == 0 {
			t.Fatalf("%s: no flows", br)
		}
		before := rendered(fs)
		for _, r := range []uint16{0, 1, 0x8001, 0xffff} {
			for i := range fs {
				got, want := stamp(&fs[i], r), fs[i].WithRound(r)
				if !got.Equal(want) || got.String() != want.String() {
					t.Fatalf("%s round %d: stamp gives %s, WithRound %s", br, r, got, want)
				}
			}
		}
		for i, f := range fs {
			if f.String() != before[i] {
				t.Fatalf("%s: stamping changed the set's flow %s", br, f)
			}
			if slices.ContainsFunc(f.Actions, func(a flows.Action) bool { _, ok := a.(flows.Learn); return ok }) {
				learns++
			}
		}
	}
	if learns == 0 {
		t.Fatal("no flow with learn(): the copying case is not covered")
	}
}

func rendered(fs []flows.Flow) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.String()
	}
	return out
}
