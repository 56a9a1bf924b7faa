package store

import (
	"slices"
	"testing"

	"github.com/lanes-net/lanes/api"
)

func TestNetworkDHCPSettings(t *testing.T) {
	s := newStore(t)
	registerHost(t, s, "h1", "192.168.1.1")
	ctx := tctx(t)

	// The gateway is given at create time; allocation never hands it to a port.
	n, err := s.CreateNetwork(ctx, NetworkSpec{Name: "a", CIDR: "10.0.0.0/29", Gateway: "10.0.0.2",
		DHCP: api.DHCP{DNSServers: []string{"10.0.0.53"}, Domain: "a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	p := mustPort(t, s, api.Port{Name: "p1", NetworkID: "a", Host: "h1"})
	if slices.Contains(p.FixedIPs, "10.0.0.2") || p.FixedIPs[0] != "10.0.0.3" {
		t.Errorf("allocated %v: want the lowest address after the gateway", p.FixedIPs)
	}
	if _, err := s.CreatePort(ctx, api.Port{Name: "p2", NetworkID: "a", Host: "h1", FixedIPs: []string{"10.0.0.2"}}); fieldOf(err) != "port.fixed_ips" {
		t.Errorf("port on the gateway: %v", err)
	}
	if _, err := s.CreateNetwork(ctx, NetworkSpec{Name: "b", CIDR: "10.0.0.0/24", Gateway: "10.1.0.1"}); fieldOf(err) != "network.gateway" {
		t.Errorf("gateway outside the CIDR: %v", err)
	}

	// Updates: DHCP settings and the gateway change; a gateway a port holds does not,
	// and neither does anything else.
	before := dump(t, s)
	if _, err := s.UpdateNetwork(ctx, "a", func(n *api.Network) error { n.Gateway = "10.0.0.3"; return nil }); fieldOf(err) != "network.gateway" {
		t.Errorf("gateway on p1's address: %v", err)
	}
	if _, err := s.UpdateNetwork(ctx, "a", func(n *api.Network) error { n.MTU = 1400; return nil }); fieldOf(err) != "network" {
		t.Errorf("MTU change: %v", err)
	}
	if _, err := s.UpdateNetwork(ctx, "a", func(n *api.Network) error { n.DHCP.LeaseSeconds = 5; return nil }); fieldOf(err) != "network.dhcp.lease_seconds" {
		t.Errorf("short lease: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))
	got, err := s.UpdateNetwork(ctx, n.ID, func(n *api.Network) error {
		n.Gateway = "10.0.0.1"
		n.DHCP.Disabled = true
		n.DHCP.DNSServers = append(n.DHCP.DNSServers, "10.0.0.54")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.GetNetwork(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if stored.Gateway != "10.0.0.1" || !stored.DHCP.Disabled || !slices.Equal(stored.DHCP.DNSServers, []string{"10.0.0.53", "10.0.0.54"}) ||
		stored.VNI != n.VNI || got.Gateway != stored.Gateway {
		t.Errorf("stored %+v, returned %+v", stored, got)
	}
	if _, err := s.UpdateNetwork(ctx, "nope", func(*api.Network) error { return nil }); err == nil {
		t.Error("update of an unknown network succeeded")
	}
}
