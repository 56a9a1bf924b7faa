package store

import (
	"testing"

	"github.com/lanes-net/lanes/api"
)

// A network's default MTU leaves room for the tunnel header the cluster's hosts
// actually use: 50 bytes of VXLAN over IPv4 until a host registers an IPv6 tunnel
// IP, 70 from then on; an explicit underlay IP version wins.
func TestNetworkMTUFollowsUnderlayIPVersion(t *testing.T) {
	s := newStore(t)
	registerHost(t, s, "h1", "192.0.2.1")
	if n := mustNet(t, s, "v4", "10.1.0.0/24"); n.MTU != 1450 {
		t.Errorf("IPv4 underlay: MTU %d, want 1450", n.MTU)
	}
	registerHost(t, s, "h2", "fd00:31::2")
	if n := mustNet(t, s, "v6", "10.2.0.0/24"); n.MTU != 1430 {
		t.Errorf("a host with an IPv6 tunnel IP: MTU %d, want 1430", n.MTU)
	}
	n, err := s.CreateNetwork(tctx(t), NetworkSpec{Name: "forced", CIDR: "10.3.0.0/24", UnderlayIPVersion: api.IPv4Underlay})
	if err != nil || n.MTU != 1450 {
		t.Errorf("explicit IPv4 underlay: MTU %d, %v; want 1450", n.MTU, err)
	}
	if _, err := s.CreateNetwork(tctx(t), NetworkSpec{Name: "big", CIDR: "10.4.0.0/24", MTU: 1450}); err == nil {
		t.Error("MTU 1450 over an IPv6 underlay of 1500 was accepted")
	}
}
