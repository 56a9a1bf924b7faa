package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
)

func registerL3(t *testing.T, s *Store, name, ip string, ttl time.Duration) *HostRegistration {
	t.Helper()
	r, err := s.RegisterHost(tctx(t), api.Host{Name: name, TunnelIP: ip, TunnelType: api.TunnelVXLAN, L3: true}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func mustExt(t *testing.T, s *Store) api.Network {
	t.Helper()
	n, err := s.CreateNetwork(tctx(t), NetworkSpec{Name: "public", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true,
		Provider:        &api.Provider{Type: api.ProviderFlat, Physnet: "physnet1"},
		AllocationPools: []api.IPRange{{Start: "203.0.113.10", End: "203.0.113.12"}}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestExternalNetworkValidation(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	before := dump(t, s)
	bad := []struct {
		field string
		spec  NetworkSpec
	}{
		{"network.provider", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true}},
		{"network.provider.type", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true, Provider: &api.Provider{Type: "gre", Physnet: "p"}}},
		{"network.provider.vlan", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true, Provider: &api.Provider{Type: "vlan", Physnet: "p"}}},
		{"network.gateway", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", External: true, Provider: &api.Provider{Type: "flat", Physnet: "p"}}},
		{"network.allocation_pools", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true, Provider: &api.Provider{Type: "flat", Physnet: "p"},
			AllocationPools: []api.IPRange{{Start: "203.0.113.1", End: "203.0.113.5"}}}},
		{"network.allocation_pools", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true, Provider: &api.Provider{Type: "flat", Physnet: "p"},
			AllocationPools: []api.IPRange{{Start: "198.51.100.2", End: "198.51.100.5"}}}},
		{"network.vni", NetworkSpec{Name: "x", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true, Provider: &api.Provider{Type: "flat", Physnet: "p"}, VNI: u32(5)}},
		{"network.provider", NetworkSpec{Name: "x", CIDR: "10.0.0.0/24", Provider: &api.Provider{Type: "flat", Physnet: "p"}}},
	}
	for _, b := range bad {
		if _, err := s.CreateNetwork(ctx, b.spec); fieldOf(err) != b.field {
			t.Errorf("%+v: got %v, want an error on %s", b.spec, err, b.field)
		}
	}
	mustEqualDump(t, before, dump(t, s))
	ext := mustExt(t, s)
	if ext.VNI != 0 || !ext.External || ext.MTU != DefaultUnderlayMTU {
		t.Fatalf("external network %+v: want no VNI and the underlay MTU", ext)
	}
	registerHost(t, s, "cmp1", "192.0.2.1")
	if _, err := s.CreatePort(ctx, api.Port{Name: "vm", NetworkID: "public", Host: "cmp1"}); fieldOf(err) != "port.network" {
		t.Fatalf("VM port on an external network: %v", err)
	}
}

func TestRouterLifecycle(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "cmp1", "192.0.2.1")
	if _, err := s.CreateRouter(ctx, "r1", ""); !errors.Is(err, ErrNoL3Host) {
		t.Fatalf("router without L3 hosts: %v", err)
	}
	registerL3(t, s, "net1", "192.0.2.10", 10*time.Second)
	registerL3(t, s, "net2", "192.0.2.11", 10*time.Second)
	r1, err := s.CreateRouter(ctx, "r1", "")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.CreateRouter(ctx, "r2", "")
	if err != nil {
		t.Fatal(err)
	}
	if r1.Host == r2.Host || !strings.HasPrefix(r1.Host, "net") || !strings.HasPrefix(r2.Host, "net") {
		t.Fatalf("routers scheduled to %q and %q: want one per L3 host", r1.Host, r2.Host)
	}
	if _, err := s.CreateRouter(ctx, "r3", "cmp1"); fieldOf(err) != "router.host" {
		t.Fatalf("router on a non-L3 host: %v", err)
	}
	blue := mustNet(t, s, "blue", "10.0.0.0/24")
	green, err := s.CreateNetwork(ctx, NetworkSpec{Name: "green", CIDR: "10.1.0.0/24", Gateway: "10.1.0.254"})
	if err != nil {
		t.Fatal(err)
	}
	red := mustNet(t, s, "red", "10.0.0.0/16") // overlaps blue
	if _, err := s.AddRouterInterface(ctx, "r1", "blue"); err != nil {
		t.Fatal(err)
	}
	r, err := s.AddRouterInterface(ctx, "r1", "green")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Interfaces) != 2 || r.Interfaces[0].IP != "10.0.0.1" || r.Interfaces[1].IP != "10.1.0.254" {
		t.Fatalf("interfaces %+v: want blue's first address and green's gateway", r.Interfaces)
	}
	before := dump(t, s)
	if _, err := s.AddRouterInterface(ctx, "r1", "red"); fieldOf(err) != "router.interfaces.network" || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("overlapping CIDR: %v", err)
	}
	if _, err := s.AddRouterInterface(ctx, "r1", "blue"); fieldOf(err) != "router.interfaces.network" {
		t.Fatalf("attached twice: %v", err)
	}
	// The other router cannot take blue's gateway address too.
	if _, err := s.AddRouterInterface(ctx, "r2", "blue"); fieldOf(err) != "router.interfaces.network" {
		t.Fatalf("second router on blue's gateway: %v", err)
	}
	if err := s.DeleteNetwork(ctx, "blue"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "router") {
		t.Fatalf("delete of an attached network: %v", err)
	}
	if err := s.DeleteRouter(ctx, "r1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete of a router with interfaces: %v", err)
	}
	qr, err := s.GetPort(ctx, r.Interfaces[0].PortID)
	if err != nil {
		t.Fatal(err)
	}
	if !qr.IsRouterInterface() || qr.Host != r1.Host || qr.NetworkID != blue.ID || qr.FixedIPs[0] != "10.0.0.1" || qr.PortSecurityEnabled() {
		t.Fatalf("interface port %+v", qr)
	}
	if err := s.DeletePort(ctx, qr.ID); fieldOf(err) != "port" {
		t.Fatalf("deleting a router's port directly: %v", err)
	}
	if _, err := s.UpdatePort(ctx, qr.ID, func(p *api.Port) error { p.Host = "cmp1"; return nil }); fieldOf(err) != "port" {
		t.Fatalf("moving a router's port: %v", err)
	}
	if _, err := s.UpdateNetwork(ctx, "green", func(n *api.Network) error { n.Gateway = "10.1.0.1"; return nil }); fieldOf(err) != "network.gateway" {
		t.Fatalf("changing an attached network's gateway: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))

	// The third network, overlapping, goes on the other router.
	if _, err := s.AddRouterInterface(ctx, "r2", "red"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"blue", "green"} {
		if _, err := s.RemoveRouterInterface(ctx, "r1", n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RemoveRouterInterface(ctx, "r2", "red"); err != nil {
		t.Fatal(err)
	}
	for _, rr := range []string{"r1", "r2"} {
		if err := s.DeleteRouter(ctx, rr); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []api.Network{blue, green, red} {
		if err := s.DeleteNetwork(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
	}
	for k := range dump(t, s) {
		if !strings.Contains(k, "/hosts/") && !strings.Contains(k, "/alive/") && !strings.Contains(k, "secgroups") {
			t.Errorf("left behind: %s", k)
		}
	}
}

func TestFloatingIPs(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "cmp1", "192.0.2.1")
	registerL3(t, s, "net1", "192.0.2.10", 10*time.Second)
	ext := mustExt(t, s)
	mustNet(t, s, "blue", "10.0.0.0/24")
	mustNet(t, s, "lone", "10.9.0.0/24")
	vm := mustPort(t, s, api.Port{Name: "vm1", NetworkID: "blue", Host: "cmp1"})
	lone := mustPort(t, s, api.Port{Name: "vm9", NetworkID: "lone", Host: "cmp1"})
	if _, err := s.CreateRouter(ctx, "r1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRouterGateway(ctx, "r1", "blue", true); fieldOf(err) != "router.external_gateway.network" {
		t.Fatalf("gateway on a tenant network: %v", err)
	}
	r, err := s.SetRouterGateway(ctx, "r1", "public", true)
	if err != nil {
		t.Fatal(err)
	}
	if r.Gateway.IP != "203.0.113.10" || !r.Gateway.SNAT {
		t.Fatalf("gateway %+v: want the pool's first address, SNAT on", r.Gateway)
	}
	// Associating needs the port's network on the router.
	if _, err := s.CreateFloatingIP(ctx, "public", "vm1", ""); fieldOf(err) != "floatingip.port" {
		t.Fatalf("floating IP for a network without router: %v", err)
	}
	if _, err := s.AddRouterInterface(ctx, "r1", "blue"); err != nil {
		t.Fatal(err)
	}
	f1, err := s.CreateFloatingIP(ctx, "public", "vm1", "")
	if err != nil {
		t.Fatal(err)
	}
	if f1.IP != "203.0.113.11" || f1.PortID != vm.ID || f1.FixedIP != vm.FixedIPs[0] || f1.RouterID != r.ID {
		t.Fatalf("floating IP %+v", f1)
	}
	if _, err := s.CreateFloatingIP(ctx, "public", "vm1", ""); fieldOf(err) != "floatingip.port" {
		t.Fatalf("second floating IP for one fixed IP: %v", err)
	}
	if _, err := s.CreateFloatingIP(ctx, "blue", "", ""); fieldOf(err) != "floatingip.network" {
		t.Fatalf("floating IP from a tenant network: %v", err)
	}
	f2, err := s.CreateFloatingIP(ctx, "public", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateFloatingIP(ctx, "public", "", ""); fieldOf(err) != "floatingip.network" {
		t.Fatalf("pool exhausted (.10-.12): %v", err)
	}
	if _, err := s.AssociateFloatingIP(ctx, f2.IP, "vm9", ""); fieldOf(err) != "floatingip.port" {
		t.Fatalf("port %s on a network without router: %v", lone.Name, err)
	}
	if _, err := s.RemoveRouterInterface(ctx, "r1", "blue"); !errors.Is(err, ErrInUse) {
		t.Fatalf("remove interface under a floating IP: %v", err)
	}
	if _, err := s.ClearRouterGateway(ctx, "r1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("clear gateway under a floating IP: %v", err)
	}
	if err := s.DeleteNetwork(ctx, ext.ID); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete of a used external network: %v", err)
	}
	// A deleted port gives up its floating IP, which stays allocated.
	if err := s.DeletePort(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	fs, err := s.ListFloatingIPs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].PortID != "" || fs[0].IP != f1.IP {
		t.Fatalf("floating IPs after the port went: %+v", fs)
	}
	vm2 := mustPort(t, s, api.Port{Name: "vm2", NetworkID: "blue", Host: "cmp1"})
	if f, err := s.AssociateFloatingIP(ctx, f1.ID, "vm2", ""); err != nil || f.PortID != vm2.ID {
		t.Fatalf("associate: %+v, %v", f, err)
	}
	if f, err := s.DisassociateFloatingIP(ctx, f1.IP); err != nil || f.PortID != "" {
		t.Fatalf("disassociate: %+v, %v", f, err)
	}
	for _, f := range []string{f1.ID, f2.IP} {
		if err := s.DeleteFloatingIP(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RemoveRouterInterface(ctx, "r1", "blue"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRouter(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, ext.ID); err != nil {
		t.Fatal(err)
	}
	for k := range dump(t, s) {
		if strings.Contains(k, "/refs/router/") || strings.Contains(k, "/refs/ext/") || strings.Contains(k, "/refs/fip/") || strings.Contains(k, "/refs/rfip/") || strings.Contains(k, "/alloc/ip/"+ext.ID) || strings.Contains(k, "routers") || strings.Contains(k, "floatingips") {
			t.Errorf("left behind: %s", k)
		}
	}
}

// The mirror holds routers and floating IPs, and a router's ports follow it to
// another L3 host once its host's lease is gone.
func TestMirrorRouterFailover(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	a := registerL3(t, s, "net1", "192.0.2.10", 2*time.Second)
	r, err := s.CreateRouter(ctx, "r1", "net1")
	if err != nil {
		t.Fatal(err)
	}
	registerL3(t, s, "net2", "192.0.2.11", 10*time.Second)
	mustNet(t, s, "blue", "10.0.0.0/24")
	if r, err = s.AddRouterInterface(ctx, "r1", "blue"); err != nil {
		t.Fatal(err)
	}
	m := s.NewMirror(MirrorOptions{})
	runMirror(t, m)
	qr := r.Interfaces[0].PortID
	waitState(t, m, "router port on net1", func(st State) bool {
		return st.Routers[r.ID].Host == "net1" && st.Ports[qr].Host == "net1"
	})
	start := time.Now()
	if err := a.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, "router port on net2", func(st State) bool { return st.Ports[qr].Host == "net2" })
	if h := api.RouterHost(ptr(st.Routers[r.ID]), st.Hosts); h != "net2" {
		t.Fatalf("RouterHost = %q, want net2", h)
	}
	t.Logf("router port moved %v after the lease was revoked", time.Since(start))
}

func ptr[T any](v T) *T { return &v }

// A registration stops claiming its lease before etcd could expire it: a host that
// loses etcd stops serving its routers before another host may take them.
func TestRegistrationHeld(t *testing.T) {
	e := startEtcd(t)
	s := openStore(t, e)
	r := registerL3(t, s, "net1", "192.0.2.10", 3*time.Second)
	if !r.SurelyHeld() {
		t.Fatal("fresh registration not held")
	}
	e.Close() // returns once etcd stopped answering
	cut := time.Now()
	// The last time it still said held, not when the poll saw it turn: the poll's
	// own delay is no part of the bound.
	var lastHeld time.Time
	eventually(t, 5*time.Second, "lease no longer held", func() bool {
		at := time.Now()
		if r.SurelyHeld() {
			lastHeld = at
			return false
		}
		return true
	})
	if d := lastHeld.Sub(cut); d >= 2*time.Second {
		t.Fatalf("Held still true %v after etcd stopped, longer than 2/3 of the 3 s TTL", d)
	}
}

// TestRouterRecordsWrittenAroundCLI: a network or router record written straight into
// etcd with a field that does not parse is refused with an error naming it, never
// computed from (a bad CIDR used to panic lanesctl).
func TestRouterRecordsWrittenAroundCLI(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	registerL3(t, s, "net1", "192.0.2.10", 10*time.Second)
	n := mustNet(t, s, "blue", "10.0.0.0/24")
	r, err := s.CreateRouter(ctx, "r1", "")
	if err != nil {
		t.Fatal(err)
	}
	bad := n
	bad.CIDR = "not-a-cidr"
	if _, err := s.Client().Put(ctx, pNetworks+n.ID, mustJSON(t, bad)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRouterInterface(ctx, r.ID, n.ID); err == nil || !strings.Contains(err.Error(), "stored network "+n.ID+" is invalid") {
		t.Fatalf("interface on a network with a bad CIDR: %v", err)
	}
	badR := r
	badR.Interfaces = []api.RouterInterface{{NetworkID: n.ID, CIDR: "garbage", IP: "10.0.0.1"}}
	if _, err := s.Client().Put(ctx, pRouters+r.ID, mustJSON(t, badR)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRouter(ctx, r.ID); err == nil || !strings.Contains(err.Error(), "stored router "+r.ID+" is invalid") {
		t.Fatalf("delete of a router with a bad interface: %v", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
