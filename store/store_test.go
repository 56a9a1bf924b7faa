package store

import (
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lanes-net/lanes/api"
)

func TestUUID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for range 1000 {
		u := NewUUID()
		if !re.MatchString(u) || !IsUUID(u) || seen[u] {
			t.Fatalf("bad or repeated UUID %q", u)
		}
		seen[u] = true
	}
	if IsUUID("not-a-uuid") || IsUUID(strings.ToUpper(NewUUID())) {
		t.Fatal("IsUUID accepted a non-canonical UUID")
	}
}

func TestNetworkAllocation(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	var ids []string
	for i, name := range []string{"a", "b", "c"} {
		n := mustNet(t, s, name, "10.0.0.0/24")
		if n.VNI != uint32(i+1) || n.MTU != 1450 || !IsUUID(n.ID) {
			t.Fatalf("network %s: %+v, want VNI %d MTU 1450", name, n, i+1)
		}
		ids = append(ids, n.ID)
	}
	if err := s.DeleteNetwork(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetNetwork(ctx, ids[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted network: %v", err)
	}
	if n := mustNet(t, s, "d", "10.1.0.0/16"); n.VNI != 2 {
		t.Fatalf("lowest free VNI: got %d, want 2", n.VNI)
	}
	n, err := s.CreateNetwork(ctx, NetworkSpec{Name: "e", CIDR: "10.2.0.0/24", VNI: u32(api.MaxVNI), UnderlayMTU: 9000})
	if err != nil || n.VNI != api.MaxVNI || n.MTU != 8950 {
		t.Fatalf("explicit VNI, jumbo underlay: %+v %v", n, err)
	}
	n, err = s.CreateNetwork(ctx, NetworkSpec{Name: "f", CIDR: "10.3.0.0/24", TunnelType: api.TunnelGRE})
	if err != nil || n.MTU != 1458 || n.VNI != 4 {
		t.Fatalf("GRE network: %+v %v", n, err)
	}
	n, err = s.CreateNetwork(ctx, NetworkSpec{Name: "g", CIDR: "10.4.0.0/24", MTU: 1400})
	if err != nil || n.MTU != 1400 {
		t.Fatalf("explicit MTU: %+v %v", n, err)
	}
	byName, err := s.GetNetwork(ctx, "a")
	if err != nil || byName.ID != ids[0] {
		t.Fatalf("by name: %+v %v", byName, err)
	}
	byID, err := s.GetNetwork(ctx, ids[0])
	if err != nil || byID.Name != "a" {
		t.Fatalf("by id: %+v %v", byID, err)
	}
	if _, err := s.GetNetwork(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown network: %v", err)
	}
	all, err := s.ListNetworks(ctx)
	if err != nil || len(all) != 6 || all[0].Name != "a" || all[5].Name != "g" {
		t.Fatalf("list: %+v %v", all, err)
	}
}

func TestConcurrentVNIAllocation(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	clients := []*Store{openStore(t, e), openStore(t, e)}
	ctx := tctx(t)
	var wg sync.WaitGroup
	vnis := make([]uint32, 20)
	errs := make([]error, 20)
	for i := range vnis {
		wg.Go(func() {
			n, err := clients[i%2].CreateNetwork(ctx, NetworkSpec{Name: "n" + string(rune('a'+i)), CIDR: "10.0.0.0/24"})
			vnis[i], errs[i] = n.VNI, err
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for i, v := range vnis {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if seen[v] || v < 1 || v > 20 {
			t.Fatalf("VNI %d repeated or not among the lowest 20: %v", v, vnis)
		}
		seen[v] = true
	}
}

func TestPortAllocation(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	registerHost(t, s, "h2", "192.168.1.2")
	base := dump(t, s)
	n := mustNet(t, s, "net", "10.0.0.0/24")
	afterNet := dump(t, s)

	def, err := s.GetSecurityGroup(ctx, DefaultGroupName)
	if err != nil {
		t.Fatalf("the first network made no default group: %v", err)
	}
	p1 := mustPort(t, s, api.Port{Name: "p1", NetworkID: "net", Host: "h1"})
	if p1.NetworkID != n.ID || len(p1.FixedIPs) != 1 || p1.FixedIPs[0] != "10.0.0.2" || !slices.Equal(p1.SecurityGroups, []string{def.ID}) {
		t.Fatalf("p1: %+v", p1)
	}
	if !regexp.MustCompile(`^fa:16:3e:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$`).MatchString(p1.MAC) {
		t.Fatalf("allocated MAC %q", p1.MAC)
	}
	// The first usable address is left for a gateway, but may be given explicitly.
	gw := mustPort(t, s, api.Port{Name: "gw", NetworkID: n.ID, Host: "h1", FixedIPs: []string{"10.0.0.1"}, MAC: "FA:16:3E:00:00:01"})
	if gw.MAC != "fa:16:3e:00:00:01" {
		t.Fatalf("MAC not normalised: %q", gw.MAC)
	}
	p3 := mustPort(t, s, api.Port{Name: "p3", NetworkID: "net", Host: "h1", FixedIPs: []string{"10.0.0.3"}})
	p4 := mustPort(t, s, api.Port{Name: "p4", NetworkID: "net", Host: "h1"})
	if p4.FixedIPs[0] != "10.0.0.4" {
		t.Fatalf("p4 got %v, want the lowest free 10.0.0.4", p4.FixedIPs)
	}
	if err := s.DeletePort(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	p5 := mustPort(t, s, api.Port{Name: "p5", NetworkID: "net", Host: "h2"})
	if p5.FixedIPs[0] != "10.0.0.2" {
		t.Fatalf("released address not reused: %v", p5.FixedIPs)
	}
	if got, err := s.GetPort(ctx, "p5"); err != nil || got.ID != p5.ID {
		t.Fatalf("port by name: %+v %v", got, err)
	}

	// Changing IPs re-allocates in the same transaction: the old one is released.
	up, err := s.UpdatePort(ctx, p3.ID, func(p *api.Port) error { p.FixedIPs = []string{"10.0.0.50"}; return nil })
	if err != nil || len(up.FixedIPs) != 1 {
		t.Fatalf("update IPs: %+v %v", up, err)
	}
	p6 := mustPort(t, s, api.Port{Name: "p6", NetworkID: "net", Host: "h2"})
	if p6.FixedIPs[0] != "10.0.0.3" {
		t.Fatalf("address released by update not reused: %v", p6.FixedIPs)
	}
	// Clearing the IPs allocates the lowest free one.
	up, err = s.UpdatePort(ctx, "p3", func(p *api.Port) error { p.FixedIPs = nil; return nil })
	if err != nil || len(up.FixedIPs) != 1 || up.FixedIPs[0] != "10.0.0.5" {
		t.Fatalf("update with cleared IPs: %+v %v", up, err)
	}
	d := dump(t, s)
	for _, k := range []string{"10.0.0.50"} {
		if _, ok := d[pAllocIP+n.ID+"/"+k]; ok {
			t.Fatalf("%s still allocated", k)
		}
	}
	if d[pAllocIP+n.ID+"/10.0.0.5"] != p3.ID {
		t.Fatalf("10.0.0.5 not held by p3")
	}

	// Host move, groups, pairs, port security.
	g, err := s.CreateSecurityGroup(ctx, DefaultSecurityGroup("web"))
	if err != nil {
		t.Fatal(err)
	}
	off := false
	up, err = s.UpdatePort(ctx, "p4", func(p *api.Port) error {
		p.Host = "h2"
		p.SecurityGroups = []string{"web"}
		p.AllowedAddressPairs = []api.AddressPair{{IP: "10.0.0.200/30"}}
		return nil
	})
	if err != nil || up.Host != "h2" || len(up.SecurityGroups) != 1 || up.SecurityGroups[0] != g.ID {
		t.Fatalf("update: %+v %v", up, err)
	}
	if err := s.DeleteSecurityGroup(ctx, "web"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "port "+p4.Name+" ("+p4.ID+")") {
		t.Fatalf("delete group in use: %v", err)
	}
	up, err = s.UpdatePort(ctx, "p4", func(p *api.Port) error { p.SecurityGroups = nil; p.PortSecurity = &off; return nil })
	if err != nil || up.PortSecurityEnabled() {
		t.Fatalf("disable port security: %+v %v", up, err)
	}
	if err := s.DeleteSecurityGroup(ctx, "web"); err != nil {
		t.Fatalf("delete group no longer used: %v", err)
	}

	// Deleting every port and the network leaves exactly what was there before.
	ports, err := s.ListPorts(ctx)
	if err != nil || len(ports) != 5 {
		t.Fatalf("list ports: %d %v", len(ports), err)
	}
	for _, p := range ports {
		if err := s.DeletePort(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	mustEqualDump(t, afterNet, dump(t, s))
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	// The default group outlives the network, as in Neutron.
	if err := s.DeleteSecurityGroup(ctx, DefaultGroupName); err != nil {
		t.Fatal(err)
	}
	mustEqualDump(t, base, dump(t, s))
}

func TestSmallNetworkExhaustion(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	registerHost(t, s, "h1", "192.168.1.1")
	mustNet(t, s, "tiny", "10.9.0.0/30")
	p := mustPort(t, s, api.Port{Name: "a", NetworkID: "tiny", Host: "h1"})
	if p.FixedIPs[0] != "10.9.0.2" {
		t.Fatalf("got %v", p.FixedIPs)
	}
	before := dump(t, s)
	_, err := s.CreatePort(tctx(t), api.Port{Name: "b", NetworkID: "tiny", Host: "h1"})
	if fieldOf(err) != "port.fixed_ips" || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("exhausted network: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))
	mustPort(t, s, api.Port{Name: "c", NetworkID: "tiny", Host: "h1", FixedIPs: []string{"10.9.0.1"}})
}

func TestDeleteNetworkWithPortsRefused(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	n := mustNet(t, s, "net", "10.0.0.0/24")
	p := mustPort(t, s, api.Port{Name: "p", NetworkID: "net", Host: "h1"})
	before := dump(t, s)
	err := s.DeleteNetwork(ctx, "net")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "port p ("+p.ID+")") || !strings.Contains(err.Error(), "1 port(s) still attached") {
		t.Fatalf("delete network with a port: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))
	if err := s.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, n.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestRaceSameIP(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	a, b := openStore(t, e), openStore(t, e)
	registerHost(t, a, "h1", "192.168.1.1")
	n := mustNet(t, a, "net", "10.0.0.0/24")
	ctx := tctx(t)
	for round := range 5 {
		ip := netip.MustParseAddr("10.0.0.100").As4()
		ip[3] += byte(round)
		addr := netip.AddrFrom4(ip).String()
		const racers = 8
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				_, errs[i] = s.CreatePort(ctx, api.Port{Name: "r" + addr + "-" + string(rune('a'+i)), NetworkID: n.ID, Host: "h1", FixedIPs: []string{addr}})
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case fieldOf(err) == "port.fixed_ips" && strings.Contains(err.Error(), "already used by port"):
			default:
				t.Fatalf("unexpected error: %v", err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners for %s, want exactly 1: %v", round, wins, addr, errs)
		}
	}
	// Concurrent automatic allocations all succeed with distinct lowest addresses.
	var wg sync.WaitGroup
	got := make([]string, 16)
	errs := make([]error, 16)
	for i := range got {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			p, err := s.CreatePort(ctx, api.Port{Name: "auto" + string(rune('a'+i)), NetworkID: n.ID, Host: "h1"})
			errs[i] = err
			if err == nil {
				got[i] = p.FixedIPs[0]
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, ip := range got {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		a := netip.MustParseAddr(ip).As4()
		if seen[ip] || a[3] < 2 || a[3] > 17 {
			t.Fatalf("address %s repeated or not among the lowest 16: %v", ip, got)
		}
		seen[ip] = true
	}
}
