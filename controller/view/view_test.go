package view

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

func state() store.State {
	st := store.State{
		Networks: map[string]api.Network{
			"na": {ID: "na", Name: "a", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450},
			"nb": {ID: "nb", Name: "b", VNI: 200, CIDR: "10.0.0.0/24", MTU: 1450},
			"nc": {ID: "nc", Name: "c", VNI: 300, CIDR: "10.1.0.0/24", MTU: 1450},
		},
		Hosts: map[string]api.Host{
			"h1": {Name: "h1", TunnelIP: "172.31.0.1", Alive: true},
			"h2": {Name: "h2", TunnelIP: "172.31.0.2", Alive: true},
			"h3": {Name: "h3", TunnelIP: "172.31.0.3", Alive: true},
			"h5": {Name: "h5", TunnelIP: "172.31.0.5"}, // agent down
		},
		Groups: map[string]api.SecurityGroup{"g": {ID: "g", Name: "g"}},
		Ports:  map[string]*api.Port{},
	}
	for _, p := range []api.Port{
		{ID: "p1", NetworkID: "na", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}, SecurityGroups: []string{"g"}},
		{ID: "p2", NetworkID: "na", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2"}},
		{ID: "p3", NetworkID: "nb", Host: "h1", MAC: "fa:16:3e:00:00:03", FixedIPs: []string{"10.0.0.1"}, SecurityGroups: []string{"g"},
			AllowedAddressPairs: []api.AddressPair{{IP: "10.0.0.128/25", MAC: "fa:16:3e:00:00:33"}}},
		{ID: "p4", NetworkID: "nc", Host: "h3", MAC: "fa:16:3e:00:00:04", FixedIPs: []string{"10.1.0.4"}},   // no network shared with h1
		{ID: "p5", NetworkID: "nb", Host: "h4", MAC: "fa:16:3e:00:00:05", FixedIPs: []string{"10.0.0.5"}},   // unknown host
		{ID: "p7", NetworkID: "nb", Host: "h5", MAC: "fa:16:3e:00:00:07", FixedIPs: []string{"10.0.0.7"}},   // host down
		{ID: "p6", NetworkID: "gone", Host: "h1", MAC: "fa:16:3e:00:00:06", FixedIPs: []string{"10.9.0.6"}}, // unknown network
	} {
		st.Ports[p.ID] = &p
	}
	return st
}

func ids[T any](ps []T, id func(T) string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, id(p))
	}
	sort.Strings(out)
	return out
}

// TestCompute checks the l2pop decisions: tunnels only to live hosts that share a
// network with a local port, remote ports only of those networks and hosts.
func TestCompute(t *testing.T) {
	v := Compute("h1", state())
	if got := ids(v.Local, func(p Port) string { return p.ID }); !slices.Equal(got, []string{"p1", "p3"}) {
		t.Errorf("local ports %v", got)
	}
	if got := ids(v.Remote, func(p *RemotePort) string { return p.ID + "@" + p.HostIP.String() }); !slices.Equal(got, []string{"p2@172.31.0.2", "p7@172.31.0.5"}) {
		t.Errorf("remote ports %v", got)
	}
	var peers []string
	for ip := range v.Peers {
		peers = append(peers, ip)
	}
	sort.Strings(peers)
	if !slices.Equal(peers, []string{"172.31.0.2", "172.31.0.5"}) {
		t.Errorf("peers %v: want h2 and h5 (h3 shares no network, h4 is unknown; h5's agent being down changes nothing)", peers)
	}
	if len(v.Networks) != 2 || v.Networks["na"].VNI != 100 || v.Networks["nb"].VNI != 200 {
		t.Errorf("local networks %v", v.Networks)
	}
	if got := v.Members["g"]; len(got) != 2 || len(got["na"]) != 1 || len(got["nb"]) != 1 {
		t.Errorf("members of g: %v (p1 on a and p3 on b, both 10.0.0.1, each on its own network)", got)
	}
	p3, _ := v.LocalPort("p3")
	if p3.HW.String() != "fa:16:3e:00:00:03" || len(p3.Addrs) != 1 || p3.Addrs[0].String() != "10.0.0.1" ||
		len(p3.Pairs) != 1 || p3.Pairs[0].Prefix.String() != "10.0.0.128/25" || p3.Pairs[0].HW.String() != "fa:16:3e:00:00:33" {
		t.Errorf("p3 parsed as %+v", p3)
	}
	if got := v.FloodTo(); !slices.Equal(got["na"], []string{"h2"}) || !slices.Equal(got["nb"], []string{"h5"}) {
		t.Errorf("flood lists %v", got)
	}

	// h3 has only network c, which nobody else has: no peers at all.
	if v3 := Compute("h3", state()); len(v3.Peers) != 0 || len(v3.Remote) != 0 {
		t.Errorf("h3: peers %v remote %v", v3.Peers, v3.Remote)
	}
	// When h2's last port on a goes, h1 keeps no tunnel.
	st := state()
	delete(st.Ports, "p2")
	if v := Compute("h1", st); len(v.Peers) != 1 || v.Peers["172.31.0.2"].Name != "" {
		t.Errorf("peers after p2 deleted: %v (want only h5)", v.Peers)
	}
	// A port moving from h2 to h3 moves the tunnel.
	st = state()
	p := *st.Ports["p2"]
	p.Host = "h3"
	st.Ports["p2"] = &p
	if v := Compute("h1", st); len(v.Peers) != 2 || v.Peers["172.31.0.3"].Name != "h3" || v.Peers["172.31.0.2"].Name != "" {
		t.Errorf("peers after p2 moved to h3: %v", v.Peers)
	}
}

// TestComputeProblems: a port whose addresses do not parse is left out and named,
// and the others are unaffected.
func TestComputeProblems(t *testing.T) {
	st := state()
	bad := *st.Ports["p1"]
	bad.MAC = "not-a-mac"
	st.Ports["p1"] = &bad
	remote := *st.Ports["p2"]
	remote.FixedIPs = []string{"10.0.0.300"}
	st.Ports["p2"] = &remote
	v := Compute("h1", st)
	if got := ids(v.Local, func(p Port) string { return p.ID }); !slices.Equal(got, []string{"p3"}) {
		t.Errorf("local ports %v: p1 has a bad MAC", got)
	}
	if got := ids(v.Remote, func(p *RemotePort) string { return p.ID }); !slices.Equal(got, []string{"p7"}) {
		t.Errorf("remote ports %v: p2 has a bad IP", got)
	}
	if v.Problems["p1"] == nil || len(v.Problems) != 1 {
		t.Errorf("problems %v: only this host's p1 is its concern", v.Problems)
	}
}

// TestComputeTunnelTypes: networks carry their tunnel type; a host gets one tunnel per
// peer and type in use; a peer that does not accept a network's type gets no tunnel for
// it, and the local ports of that network say why; so do those of a network whose type
// this host does not accept.
func TestComputeTunnelTypes(t *testing.T) {
	st := state()
	for name, h := range st.Hosts {
		h.TunnelType, h.TunnelTypes = "vxlan", []string{"vxlan", "geneve"}
		st.Hosts[name] = h
	}
	h2 := st.Hosts["h2"]
	h2.TunnelTypes = nil // vxlan only
	st.Hosts["h2"] = h2
	na := st.Networks["na"]
	na.NetworkType = "geneve"
	st.Networks["na"] = na
	nb := st.Networks["nb"]
	nb.NetworkType = "gre"
	st.Networks["nb"] = nb
	v := Compute("h1", st)
	if len(v.Tunnels) != 0 || len(v.Mismatches) != 1 || v.Mismatches[0].Host.Name != "h2" {
		t.Errorf("tunnels %v mismatches %v", v.Tunnels, v.Mismatches)
	}
	p1, _ := v.LocalPort("p1")
	p3, _ := v.LocalPort("p3")
	if why := v.MismatchOf(p1); !strings.Contains(why, "geneve tunnels, which host h2 does not accept") {
		t.Errorf("p1 (network a, geneve, shared with h2): %q", why)
	}
	if why := v.MismatchOf(p3); !strings.Contains(why, "gre tunnels, which this host does not accept") {
		t.Errorf("p3 (network b, gre): %q", why)
	}
	// h2 accepting geneve too: one geneve tunnel to it.
	h2.TunnelTypes = []string{"vxlan", "geneve"}
	st.Hosts["h2"] = h2
	v = Compute("h1", st)
	if _, ok := v.Tunnels[TunnelKey{IP: "172.31.0.2", Type: "geneve"}]; !ok || len(v.Tunnels) != 1 || v.MismatchOf(p1) != "" {
		t.Errorf("tunnels %v, p1 %q", v.Tunnels, v.MismatchOf(p1))
	}
}
