package controller

import (
	"net/netip"
	"slices"
	"sort"
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
		},
		Groups: map[string]api.SecurityGroup{"g": {ID: "g", Name: "g"}},
		Ports:  map[string]api.Port{},
	}
	for _, p := range []api.Port{
		{ID: "p1", NetworkID: "na", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}, SecurityGroups: []string{"g"}},
		{ID: "p2", NetworkID: "na", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2"}},
		{ID: "p3", NetworkID: "nb", Host: "h1", MAC: "fa:16:3e:00:00:03", FixedIPs: []string{"10.0.0.1"}, SecurityGroups: []string{"g"}},
		{ID: "p4", NetworkID: "nc", Host: "h3", MAC: "fa:16:3e:00:00:04", FixedIPs: []string{"10.1.0.4"}},   // no network shared with h1
		{ID: "p5", NetworkID: "nb", Host: "h4", MAC: "fa:16:3e:00:00:05", FixedIPs: []string{"10.0.0.5"}},   // dead host
		{ID: "p6", NetworkID: "gone", Host: "h1", MAC: "fa:16:3e:00:00:06", FixedIPs: []string{"10.9.0.6"}}, // unknown network
	} {
		st.Ports[p.ID] = p
	}
	return st
}

func portIDs[T any](ps []T, id func(T) string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, id(p))
	}
	sort.Strings(out)
	return out
}

// TestComputeView checks the l2pop decisions: tunnels only to live hosts that share a
// network with a local port, remote ports only of those networks and hosts.
func TestComputeView(t *testing.T) {
	v := computeView("h1", state())
	if got := portIDs(v.local, func(p api.Port) string { return p.ID }); !slices.Equal(got, []string{"p1", "p3"}) {
		t.Errorf("local ports %v", got)
	}
	if got := portIDs(v.remote, func(p remotePort) string { return p.ID + "@" + p.HostIP }); !slices.Equal(got, []string{"p2@172.31.0.2"}) {
		t.Errorf("remote ports %v", got)
	}
	var peers []string
	for ip := range v.peers {
		peers = append(peers, ip)
	}
	if !slices.Equal(peers, []string{"172.31.0.2"}) {
		t.Errorf("peers %v: want only h2 (h3 shares no network, h4 is dead)", peers)
	}
	if len(v.nets) != 2 || v.nets["na"].VNI != 100 || v.nets["nb"].VNI != 200 {
		t.Errorf("local networks %v", v.nets)
	}
	if got := v.members["g"]; len(got) != 2 || len(got["na"]) != 1 || len(got["nb"]) != 1 {
		t.Errorf("members of g: %v (p1 on na and p3 on nb, both 10.0.0.1, kept apart)", got)
	}

	// h3 has only network c, which nobody else has: no peers at all.
	if v3 := computeView("h3", state()); len(v3.peers) != 0 || len(v3.remote) != 0 {
		t.Errorf("h3: peers %v remote %v", v3.peers, v3.remote)
	}
	// When h2's last port on a goes, h1 keeps no tunnel.
	st := state()
	delete(st.Ports, "p2")
	if v := computeView("h1", st); len(v.peers) != 0 {
		t.Errorf("peers after p2 deleted: %v", v.peers)
	}
	// A port moving from h2 to h3 moves the tunnel.
	st = state()
	p := st.Ports["p2"]
	p.Host = "h3"
	st.Ports["p2"] = p
	if v := computeView("h1", st); len(v.peers) != 1 || v.peers["172.31.0.3"].Name != "h3" {
		t.Errorf("peers after p2 moved to h3: %v", v.peers)
	}
}

func TestVLANMap(t *testing.T) {
	m := newVLANMap()
	m.restore("x", 7)
	m.restore("y", 7) // conflicting claim: ignored
	m.restore("z", 4095)
	if v, _ := m.get("x"); v != 7 {
		t.Errorf("restored x = %d", v)
	}
	a, _ := m.get("a")
	b, _ := m.get("b")
	if a != 1 || b != 2 {
		t.Errorf("allocated %d %d, want the lowest free", a, b)
	}
	m.retain(map[string]bool{"x": true, "b": true})
	if c, _ := m.get("c"); c != 1 {
		t.Errorf("released VLAN not reused: %d", c)
	}
	if !slices.Equal(m.networks(), []string{"b", "c", "x"}) {
		t.Errorf("networks %v", m.networks())
	}
	full := newVLANMap()
	for i := 0; i < maxVLAN; i++ {
		if _, err := full.get(string(rune('A' + i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := full.get("one-too-many"); err == nil {
		t.Error("allocated beyond 4094 VLANs")
	}
}

func TestParseTrace(t *testing.T) {
	out := `Flow: icmp,in_port=2,vlan_tci=0x0000,dl_src=fa:16:3e:3f:45:29,dl_dst=fa:16:3e:9e:fe:f4

bridge("br-int")
----------------
 0. in_port=2, priority 9, cookie 0x104afc2cb8f26
    goto_table:25
60. priority 3, cookie 0x101cbf29ce484
    NORMAL
     -> no learned MAC for destination, flooding

bridge("br-tun")
----------------
20. dl_vlan=1,dl_dst=fa:16:3e:9e:fe:f4, priority 2, cookie 0x1053868484a93
    pop_vlan
    set_field:0x64->tun_id
    output:16386

Final flow: unchanged
Datapath actions: push_vlan(vid=1,pcp=0),3,pop_vlan,7
`
	steps, dp := parseTrace(out)
	if dp != "push_vlan(vid=1,pcp=0),3,pop_vlan,7" || len(steps) != 3 {
		t.Fatalf("datapath %q, %d steps", dp, len(steps))
	}
	s := steps[2]
	if s.bridge != "br-tun" || s.table != 20 || s.match != "dl_vlan=1,dl_dst=fa:16:3e:9e:fe:f4" || s.cookie != 0x1053868484a93 ||
		!slices.Equal(s.actions, []string{"pop_vlan", "set_field:0x64->tun_id", "output:16386"}) {
		t.Errorf("step %+v", s)
	}
	if steps[1].match != "" || steps[1].table != 60 {
		t.Errorf("step without match: %+v", steps[1])
	}
}

func TestVerdict(t *testing.T) {
	v := computeView("h1", state())
	g := v.groups["g"]
	g.Rules = []api.Rule{
		{ID: "icmp", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
		{ID: "ssh", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22, RemoteCIDR: "10.0.0.0/24"},
		{ID: "peers", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", RemoteGroupID: "g"},
	}
	v.groups["g"] = g
	p1 := state().Ports["p1"]
	for _, c := range []struct {
		from        string
		proto, port int
		want        string
	}{
		{"10.0.0.9", 1, 0, "allowed by group g rule icmp"},
		{"10.0.0.9", 6, 22, "allowed by group g rule ssh"},
		{"10.2.0.9", 6, 22, "dropped (no rule of its groups matches)"},
		{"10.0.0.9", 6, 80, "dropped (no rule of its groups matches)"},
		{"10.0.0.1", 17, 53, "allowed by group g rule peers"},
		{"10.0.0.2", 17, 53, "dropped (no rule of its groups matches)"},
	} {
		if got := verdict(v, p1, api.Ingress, mustAddr(c.from), c.proto, c.port); got != c.want {
			t.Errorf("from %s proto %d port %d: %q, want %q", c.from, c.proto, c.port, got, c.want)
		}
	}
	off := false
	p1.PortSecurity = &off
	if got := verdict(v, p1, api.Ingress, mustAddr("10.2.0.9"), 6, 80); got != "allowed (port security off)" {
		t.Errorf("port security off: %q", got)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
