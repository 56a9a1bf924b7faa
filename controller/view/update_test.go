package view

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// cluster is the randomised test's world, seen from h0: peers of every kind a port
// can land on (accepting other tunnel types, of the other IP version, with a tunnel
// IP that does not parse, two sharing one tunnel IP, one down, one unregistered) and
// networks this host has, lacks, does not accept, or that do not exist.
func cluster() store.State {
	st := store.State{Revision: 1, Gen: 1,
		Networks: map[string]api.Network{
			"na": {ID: "na", Name: "a", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450},
			"nb": {ID: "nb", Name: "b", VNI: 200, CIDR: "10.0.1.0/24", MTU: 1450, NetworkType: "geneve"},
			"nc": {ID: "nc", Name: "c", VNI: 300, CIDR: "10.0.2.0/24", MTU: 1450, NetworkType: "gre"},
			"nd": {ID: "nd", Name: "d", VNI: 400, CIDR: "10.0.3.0/24", MTU: 1450},
		},
		Hosts: map[string]api.Host{
			"h0": {Name: "h0", TunnelIP: "172.31.0.1", TunnelType: "vxlan", TunnelTypes: []string{"vxlan", "geneve"}, Alive: true},
			"h1": {Name: "h1", TunnelIP: "172.31.0.2", TunnelType: "vxlan", Alive: true},
			"h2": {Name: "h2", TunnelIP: "172.31.0.3", TunnelType: "vxlan", TunnelTypes: []string{"vxlan", "geneve"}, Alive: true},
			"h3": {Name: "h3", TunnelIP: "172.31.0.4", TunnelType: "geneve", TunnelTypes: []string{"geneve"}},
			"h4": {Name: "h4", TunnelIP: "fd00:31::5", TunnelType: "vxlan", Alive: true},
			"h5": {Name: "h5", TunnelIP: "not-an-ip", Alive: true},
			"h6": {Name: "h6", TunnelIP: "172.31.0.7", Alive: true},
			"h7": {Name: "h7", TunnelIP: "172.31.0.7", Alive: true},
		},
		Groups: map[string]api.SecurityGroup{"g1": {ID: "g1", Name: "g1"}, "g2": {ID: "g2", Name: "g2"}, "g3": {ID: "g3", Name: "g3"}},
		Ports:  map[string]*api.Port{},
	}
	for i, n := range []string{"na", "nb", "nc"} {
		p := api.Port{ID: fmt.Sprintf("l%d", i), NetworkID: n, Host: "h0", MAC: fmt.Sprintf("fa:16:3e:00:01:%02x", i), FixedIPs: []string{fmt.Sprintf("10.0.%d.1", i)}, SecurityGroups: []string{"g1"}}
		st.Ports[p.ID] = &p
	}
	return st
}

var (
	randHosts = []string{"h1", "h1", "h1", "h2", "h2", "h2", "h3", "h3", "h4", "h4", "h5", "h6", "h7", "ghost"}
	randNets  = []string{"na", "na", "nb", "nb", "nc", "nd", "gone"}
	randIPs   = []string{"10.0.0.5", "10.0.0.6", "10.0.0.6", "10.0.1.7", "fd00:1::8", "10.0.0.300", "10.0.2.9", "10.0.3.1"}
	randMACs  = []string{"fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "not-a-mac", "fa:16:3e:00:00:00:01"}
)

// randPort is a port with id, placed and addressed at random, now and then on this
// host or with a field that does not parse.
func randPort(r *rand.Rand, id string) api.Port {
	p := api.Port{ID: id, Name: "n-" + id, NetworkID: randNets[r.IntN(len(randNets))], Host: randHosts[r.IntN(len(randHosts))], MAC: randMACs[r.IntN(len(randMACs))]}
	if r.IntN(40) == 0 {
		p.Host = "h0"
	}
	for range r.IntN(3) {
		p.FixedIPs = append(p.FixedIPs, randIPs[r.IntN(len(randIPs))])
	}
	for range r.IntN(3) {
		p.SecurityGroups = append(p.SecurityGroups, fmt.Sprint("g", 1+r.IntN(4))) // g4: a group that does not exist
	}
	switch r.IntN(10) {
	case 0:
		p.AllowedAddressPairs = []api.AddressPair{{IP: "10.0.0.128/25"}}
	case 1:
		p.AllowedAddressPairs = []api.AddressPair{{IP: "10.0.0.0/33"}}
	case 2:
		p.DeviceOwner, p.DeviceID = api.DeviceOwnerRouterInterface, "r1"
	}
	return p
}

// next changes st at random: mostly a few ports put, moved or deleted (the Delta
// names them, and now and then one that did not change), sometimes the store's
// problems, rarely a host or network (All).
func next(r *rand.Rand, st store.State) (store.State, store.Delta) {
	nx := st
	nx.Gen, nx.Revision = st.Gen+1, st.Revision+1
	nx.Ports = maps.Clone(st.Ports)
	d := store.Delta{Ports: map[string]bool{}}
	switch k := r.IntN(100); {
	case k < 2:
		nx.Hosts = maps.Clone(st.Hosts)
		h := nx.Hosts["h1"]
		if h.TunnelTypes == nil {
			h.TunnelTypes = []string{"vxlan", "geneve"}
		} else {
			h.TunnelTypes = nil
		}
		nx.Hosts["h1"] = h
		return nx, store.Delta{All: true}
	case k < 4:
		nx.Networks = maps.Clone(st.Networks)
		if _, ok := nx.Networks["ne"]; ok {
			delete(nx.Networks, "ne")
		} else {
			nx.Networks["ne"] = api.Network{ID: "ne", Name: "e", VNI: 500}
		}
		return nx, store.Delta{All: true}
	case k < 10:
		var prs []store.Problem
		for range r.IntN(3) {
			id := fmt.Sprintf("p%02d", r.IntN(40))
			pr := store.Problem{Key: "/lanes/v1/ports/" + id, Kind: store.KindPorts, ID: id, Host: []string{"", "h0", "h1"}[r.IntN(3)], Class: "invalid", Err: "bad"}
			if r.IntN(2) == 0 {
				pr.Part = "security_group g9"
			}
			prs = append(prs, pr)
			d.Ports[id] = true
		}
		for _, pr := range st.Problems {
			d.Ports[pr.ID] = true
		}
		nx.Problems = prs
		return nx, d
	}
	for range 1 + r.IntN(3) {
		id := fmt.Sprintf("p%02d", r.IntN(40))
		d.Ports[id] = true
		switch old, ok := nx.Ports[id]; {
		case ok && r.IntN(3) == 0:
			delete(nx.Ports, id)
		case ok && r.IntN(2) == 0:
			moved := *old
			moved.Host = randHosts[r.IntN(len(randHosts))] // a move, nothing else
			nx.Ports[id] = &moved
		case r.IntN(20) == 0:
			// named in the Delta, but unchanged
		default:
			nx.Ports[id] = new(randPort(r, id))
		}
	}
	if r.IntN(30) == 0 {
		// this host's last port of a network leaves (or comes back)
		if _, ok := nx.Ports["l1"]; ok {
			delete(nx.Ports, "l1")
		} else {
			nx.Ports["l1"] = &api.Port{ID: "l1", NetworkID: "nb", Host: "h0", MAC: "fa:16:3e:00:01:01", FixedIPs: []string{"10.0.1.1"}}
		}
		d.Ports["l1"] = true
	}
	return nx, d
}

// diffChanges is what Changes must say between two full views.
func diffChanges(a, b *View) (remote, members []string) {
	byID := func(v *View) map[string]*RemotePort {
		m := map[string]*RemotePort{}
		for _, r := range v.Remote {
			m[r.ID] = r
		}
		return m
	}
	ra, rb := byID(a), byID(b)
	for id := range ra {
		if !reflect.DeepEqual(ra[id], rb[id]) {
			remote = append(remote, id)
		}
	}
	for id := range rb {
		if _, ok := ra[id]; !ok {
			remote = append(remote, id)
		}
	}
	for g := range a.Members {
		if !reflect.DeepEqual(a.Members[g], b.Members[g]) {
			members = append(members, g)
		}
	}
	for g := range b.Members {
		if _, ok := a.Members[g]; !ok {
			members = append(members, g)
		}
	}
	sort.Strings(remote)
	sort.Strings(members)
	return remote, members
}

// keys lists the IDs m says true for, sorted.
func keys(m map[string]bool) []string {
	var out []string
	for id, yes := range m {
		if yes {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// TestUpdateEqualsCompute applies thousands of random changes through Update with
// their exact Delta and compares each result with a full Compute of the same state,
// the Changes with a diff of the two full views, and the view updated from with what
// it was before.
func TestUpdateEqualsCompute(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 14))
			st := cluster()
			for i := range 30 {
				id := fmt.Sprintf("p%02d", i)
				st.Ports[id] = new(randPort(r, id))
			}
			v := Compute("h0", st)
			before := Compute("h0", st)
			incremental, tunnelSteps := 0, 0
			const steps = 3000
			for step := range steps {
				nx, d := next(r, st)
				got := Update(v, "h0", nx, d)
				want := Compute("h0", nx)
				if diff := Differences(got, want); diff != nil {
					t.Fatalf("step %d (delta %v): update differs from compute in %v", step, d, diff)
				}
				if got.State.Gen != nx.Gen || got.Revision != nx.Revision {
					t.Fatalf("step %d: view of gen %d revision %d, want %d %d", step, got.State.Gen, got.Revision, nx.Gen, nx.Revision)
				}
				if diff := Differences(v, before); diff != nil {
					t.Fatalf("step %d: Update changed the view it updated: %v", step, diff)
				}
				local := d.All
				for id := range d.Ports {
					for _, s := range []store.State{st, nx} {
						if p, ok := s.Ports[id]; ok && (p.Host == "h0" || p.Host == "h6" || p.Host == "h7") {
							local = true
						}
					}
				}
				if !local {
					if got.Changes.All {
						t.Fatalf("step %d: remote-only delta %v took the full compute", step, d)
					}
					incremental++
					remote, members := diffChanges(before, want)
					if !slices.Equal(keys(got.Changes.Remote), remote) {
						t.Fatalf("step %d (delta %v): changed remote ports %v, want %v", step, d, keys(got.Changes.Remote), remote)
					}
					if !slices.Equal(keys(got.Changes.Members), members) {
						t.Fatalf("step %d (delta %v): changed groups %v, want %v", step, d, keys(got.Changes.Members), members)
					}
					if !got.Changes.Tunnels && !reflect.DeepEqual(got.Tunnels, before.Tunnels) {
						t.Fatalf("step %d (delta %v): tunnels changed from %v to %v, and Changes.Tunnels is false", step, d, before.Tunnels, got.Tunnels)
					}
					if !reflect.DeepEqual(got.Tunnels, before.Tunnels) {
						tunnelSteps++
					}
				} else if !got.Changes.All {
					t.Fatalf("step %d: delta %v of this host's ports did not recompute", step, d)
				}
				st, v, before = nx, got, want
			}
			t.Logf("%d of %d steps incremental, %d of them changed the tunnels", incremental, steps, tunnelSteps)
			if tunnelSteps == 0 {
				t.Errorf("no incremental step changed the tunnels: Changes.Tunnels went untested")
			}
			if incremental < steps/2 {
				t.Errorf("only %d of %d steps were incremental", incremental, steps)
			}
		})
	}
}

// TestUpdateEmpty: a Delta naming nothing keeps everything and changes nothing.
func TestUpdateEmpty(t *testing.T) {
	st := state()
	v := Compute("h1", st)
	st.Gen, st.Revision = st.Gen+1, st.Revision+1
	u := Update(v, "h1", st, store.Delta{})
	if u.Changes.All || len(u.Changes.Remote) != 0 || len(u.Changes.Members) != 0 || u.Revision != st.Revision {
		t.Errorf("changes %+v revision %d", u.Changes, u.Revision)
	}
	if &u.Remote[0] != &v.Remote[0] {
		t.Errorf("remote ports copied for an empty delta")
	}
}

// TestUpdateScenarios walks through a few cases one by one, for readable failures: a
// peer's last port leaving, a port whose MAC stops and starts parsing, a port joining
// a group, and a port of this host (the full compute).
func TestUpdateScenarios(t *testing.T) {
	st := state() // h1's view: p2 on h2 and p7 on h5 are its remote ports
	v := Compute("h1", st)
	step := func(what string, change func(ports map[string]*api.Port), ids ...string) *View {
		t.Helper()
		nx := st
		nx.Gen++
		nx.Ports = maps.Clone(st.Ports)
		change(nx.Ports)
		d := store.Delta{Ports: map[string]bool{}}
		for _, id := range ids {
			d.Ports[id] = true
		}
		u := Update(v, "h1", nx, d)
		if diff := Differences(u, Compute("h1", nx)); diff != nil {
			t.Fatalf("%s: update differs from compute in %v", what, diff)
		}
		st, v = nx, u
		return u
	}
	u := step("h2's last port leaves", func(ps map[string]*api.Port) { delete(ps, "p2") }, "p2")
	if _, ok := u.Peers["172.31.0.2"]; ok || len(u.Tunnels) != 1 || !slices.Equal(keys(u.Changes.Remote), []string{"p2"}) || u.Changes.All {
		t.Errorf("peers %v tunnels %v changes %+v", u.Peers, u.Tunnels, u.Changes)
	}
	bad := *st.Ports["p7"]
	bad.MAC = "fa:16:3e"
	u = step("p7's MAC stops parsing", func(ps map[string]*api.Port) { ps["p7"] = &bad }, "p7")
	if len(u.Remote) != 0 || len(u.Peers) != 0 || !u.Changes.Remote["p7"] || len(u.Problems) != 0 {
		t.Errorf("remote %v peers %v changes %+v problems %v", u.Remote, u.Peers, u.Changes, u.Problems)
	}
	good := bad
	good.MAC = "fa:16:3e:00:00:77"
	u = step("p7's MAC parses again", func(ps map[string]*api.Port) { ps["p7"] = &good }, "p7")
	if rp, ok := u.RemoteByID("p7"); !ok || rp.HW.String() != good.MAC || u.Peers["172.31.0.5"].Name != "h5" {
		t.Errorf("p7 %v peers %v", rp, u.Peers)
	}
	grouped := good
	grouped.SecurityGroups = []string{"g"}
	u = step("p7 joins g", func(ps map[string]*api.Port) { ps["p7"] = &grouped }, "p7")
	if !u.Changes.Members["g"] || !slices.Contains(u.Members["g"]["nb"], netip.MustParseAddr("10.0.0.7")) {
		t.Errorf("members %v changes %+v", u.Members, u.Changes)
	}
	u = step("a port of this host", func(ps map[string]*api.Port) { delete(ps, "p3") }, "p3")
	if !u.Changes.All || len(u.Networks) != 1 {
		t.Errorf("networks %v changes %+v", u.Networks, u.Changes)
	}
}

// TestDifferences: the check names the field that differs, and the counts behind
// the fields as internal.
func TestDifferences(t *testing.T) {
	a, b := Compute("h1", state()), Compute("h1", state())
	b.Changes, b.State = Changes{Remote: map[string]bool{"p2": true}}, store.State{}
	if diff := Differences(a, b); diff != nil {
		t.Errorf("equal views differ in %v", diff)
	}
	b.Peers = map[string]api.Host{}
	if diff := Differences(a, b); !slices.Equal(diff, []string{"Peers"}) {
		t.Errorf("differences %v, want Peers", diff)
	}
	b = Compute("h1", state())
	b.peerPorts = slices.Clone(b.peerPorts)
	b.peerPorts[0]++
	if diff := Differences(a, b); !slices.Equal(diff, []string{"internal"}) {
		t.Errorf("differences %v, want internal", diff)
	}
}

// TestUpdateConcurrentReaders: the local API reads the last view on other goroutines
// while the next one is updated from it; with -race this fails on any write to what
// the two share.
func TestUpdateConcurrentReaders(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	st := cluster()
	for i := range 30 {
		id := fmt.Sprintf("p%02d", i)
		st.Ports[id] = new(randPort(r, id))
	}
	v := Compute("h0", st)
	for range 200 {
		done := make(chan int)
		go func(v *View) {
			n := 0
			for _, rp := range v.Remote {
				n += len(rp.ID) + len(rp.Addrs)
			}
			for _, byNet := range v.Members {
				for _, as := range byNet {
					for _, a := range as {
						n += a.BitLen()
					}
				}
			}
			for _, on := range []map[string]map[string]int{v.mismatchedOn, v.crossFamilyOn} {
				for _, hs := range on {
					for _, c := range hs {
						n += c
					}
				}
			}
			for _, c := range v.peerPorts {
				n += int(c)
			}
			for _, cs := range v.tunnelPorts {
				for _, c := range cs {
					n += int(c)
				}
			}
			for ip := range v.Peers {
				n += len(ip)
			}
			for k := range v.Tunnels {
				n += len(k.IP)
			}
			n += len(v.Mismatches) + len(v.CrossFamily) + len(v.Problems)
			done <- n
		}(v)
		nx, d := next(r, st)
		u := Update(v, "h0", nx, d)
		<-done
		st, v = nx, u
	}
}
