package view

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// TestComputeIPv6 checks that IPv6 addresses reach the data path next to the IPv4
// ones: local and remote ports of a dual-stack and an IPv6-only network, their
// address pairs, and the members of remote groups.
func TestComputeIPv6(t *testing.T) {
	st := store.State{
		Networks: map[string]api.Network{
			"nd": {ID: "nd", Name: "d", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450, IPv6: &api.Subnet6{CIDR: "fd00:1::/64"}},
			"n6": {ID: "n6", Name: "v6", VNI: 200, MTU: 1450, IPv6: &api.Subnet6{CIDR: "fd00:2::/120", AddressMode: api.IPv6DHCPStateful}},
		},
		Hosts: map[string]api.Host{
			"h1": {Name: "h1", TunnelIP: "172.31.0.1", Alive: true},
			"h2": {Name: "h2", TunnelIP: "172.31.0.2", Alive: true},
		},
		Groups: map[string]api.SecurityGroup{"g": {ID: "g", Name: "g"}},
		Ports: map[string]*api.Port{
			"p1": {ID: "p1", NetworkID: "nd", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.2", "fd00:1::f816:3eff:fe00:1"},
				SecurityGroups: []string{"g"}, AllowedAddressPairs: []api.AddressPair{{IP: "fd00:1::/80"}, {IP: "fd00:1::99", MAC: "fa:16:3e:00:00:99"}}},
			"p2": {ID: "p2", NetworkID: "nd", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.3", "fd00:1::f816:3eff:fe00:2"},
				SecurityGroups: []string{"g"}},
			"p3": {ID: "p3", NetworkID: "n6", Host: "h1", MAC: "fa:16:3e:00:00:03", FixedIPs: []string{"fd00:2::2"}},
			"p4": {ID: "p4", NetworkID: "n6", Host: "h2", MAC: "fa:16:3e:00:00:04", FixedIPs: []string{"fd00:2::3"}, SecurityGroups: []string{"g"}},
		},
	}
	v := Compute("h1", st)
	if len(v.Problems) != 0 || len(v.Local) != 2 || len(v.Remote) != 2 {
		t.Fatalf("local %d remote %d problems %v", len(v.Local), len(v.Remote), v.Problems)
	}
	addrs := func(as []netip.Addr) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.String())
		}
		return out
	}
	p1, _ := v.LocalPort("p1")
	if got := addrs(p1.Addrs); !slices.Equal(got, []string{"10.0.0.2", "fd00:1::f816:3eff:fe00:1"}) {
		t.Errorf("p1 addresses %v", got)
	}
	if len(p1.Pairs) != 2 || p1.Pairs[0].Prefix.String() != "fd00:1::/80" || p1.Pairs[1].Prefix.String() != "fd00:1::99/128" ||
		p1.Pairs[1].HW.String() != "fa:16:3e:00:00:99" {
		t.Errorf("p1 pairs %+v", p1.Pairs)
	}
	p3, _ := v.LocalPort("p3")
	if got := addrs(p3.Addrs); !slices.Equal(got, []string{"fd00:2::2"}) {
		t.Errorf("p3 (IPv6-only network) addresses %v", got)
	}
	remote := map[string][]string{}
	for _, r := range v.Remote {
		remote[r.ID] = addrs(r.Addrs)
	}
	if !slices.Equal(remote["p2"], []string{"10.0.0.3", "fd00:1::f816:3eff:fe00:2"}) || !slices.Equal(remote["p4"], []string{"fd00:2::3"}) {
		t.Errorf("remote addresses %v", remote)
	}
	if got := addrs(v.Members["g"]["nd"]); len(got) != 4 || !slices.Contains(got, "fd00:1::f816:3eff:fe00:2") || !slices.Contains(got, "10.0.0.2") {
		t.Errorf("members of g on d: %v, want both addresses of p1 and p2", got)
	}
	if got := addrs(v.Members["g"]["n6"]); !slices.Equal(got, []string{"fd00:2::3"}) {
		t.Errorf("members of g on v6: %v", got)
	}
}
