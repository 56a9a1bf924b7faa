package store

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
)

func eui64(t *testing.T, prefix, mac string) string {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	return api.EUI64(netip.MustParsePrefix(prefix), hw).String()
}

// revision is the store's current revision: one transaction moves it by one.
func revision(t *testing.T, s *Store) int64 {
	t.Helper()
	resp, err := s.Client().Get(tctx(t), "/lanes-none")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// holds checks that the network's address index gives addr to port (or to nobody).
func holds(t *testing.T, s *Store, netID, addr, port string) {
	t.Helper()
	if got := dump(t, s)[pAllocIP+netID+"/"+addr]; got != port {
		t.Errorf("address %s is held by %q, want %q", addr, got, port)
	}
}

func TestIPv6SLAACAllocation(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	dual, err := s.CreateNetwork(ctx, NetworkSpec{Name: "dual", CIDR: "10.0.0.0/24", IPv6: &api.Subnet6{CIDR: "fd00:1::/64", Gateway: "fd00:1::1"}})
	if err != nil {
		t.Fatal(err)
	}
	if dual.IPv6 == nil || dual.IPv6.CIDR != "fd00:1::/64" || dual.IPv6.Mode() != api.IPv6SLAAC {
		t.Fatalf("network %+v", dual)
	}

	// One address per subnet, IPv4 first; the IPv6 one is the MAC's EUI-64.
	const mac = "fa:16:3e:00:00:01"
	p1 := mustPort(t, s, api.Port{Name: "p1", NetworkID: "dual", Host: "h1", MAC: mac})
	want := []string{"10.0.0.2", eui64(t, "fd00:1::/64", mac)}
	if !slices.Equal(p1.FixedIPs, want) {
		t.Fatalf("p1 got %v, want %v", p1.FixedIPs, want)
	}
	holds(t, s, dual.ID, want[1], p1.ID)

	// An allocated MAC gets its EUI-64 too; an IPv4 address given alone keeps the
	// IPv6 one coming, and the order does not matter.
	p2 := mustPort(t, s, api.Port{Name: "p2", NetworkID: "dual", Host: "h1", FixedIPs: []string{"10.0.0.9"}})
	if len(p2.FixedIPs) != 2 || p2.FixedIPs[0] != "10.0.0.9" || p2.FixedIPs[1] != eui64(t, "fd00:1::/64", p2.MAC) {
		t.Fatalf("p2 got %v (MAC %s)", p2.FixedIPs, p2.MAC)
	}
	const mac3 = "fa:16:3e:00:00:03"
	p3 := mustPort(t, s, api.Port{Name: "p3", NetworkID: "dual", Host: "h1", MAC: mac3, FixedIPs: []string{strings.ToUpper(eui64(t, "fd00:1::/64", mac3)), "10.0.0.3"}})
	if !slices.Equal(p3.FixedIPs, []string{"10.0.0.3", eui64(t, "fd00:1::/64", mac3)}) {
		t.Fatalf("p3 got %v: want IPv4 first, IPv6 in lower case", p3.FixedIPs)
	}

	// Another address on a slaac subnet, or one without the MAC it derives from, is
	// refused and writes nothing.
	before := dump(t, s)
	for name, p := range map[string]api.Port{
		"not the EUI-64": {Name: "bad1", NetworkID: "dual", Host: "h1", MAC: "fa:16:3e:00:00:04", FixedIPs: []string{"fd00:1::5"}},
		"no MAC":         {Name: "bad2", NetworkID: "dual", Host: "h1", FixedIPs: []string{eui64(t, "fd00:1::/64", "fa:16:3e:00:00:05")}},
		"the gateway":    {Name: "bad3", NetworkID: "dual", Host: "h1", FixedIPs: []string{"fd00:1::1"}, MAC: "fa:16:3e:00:00:06"},
	} {
		_, err := s.CreatePort(ctx, p)
		if fieldOf(err) != "port.fixed_ips" || !strings.Contains(err.Error(), "slaac") && name != "the gateway" {
			t.Errorf("%s: %v, want a port.fixed_ips error naming slaac", name, err)
		}
	}
	mustEqualDump(t, before, dump(t, s))

	// A new MAC moves the SLAAC address in one transaction: the old one is released.
	const newMAC = "fa:16:3e:00:01:01"
	rev := revision(t, s)
	up, err := s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.MAC = newMAC; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got := revision(t, s); got != rev+1 {
		t.Errorf("MAC change took %d revisions, want one transaction", got-rev)
	}
	if !slices.Equal(up.FixedIPs, []string{"10.0.0.2", eui64(t, "fd00:1::/64", newMAC)}) {
		t.Fatalf("after the MAC change: %v", up.FixedIPs)
	}
	holds(t, s, dual.ID, eui64(t, "fd00:1::/64", newMAC), p1.ID)
	holds(t, s, dual.ID, eui64(t, "fd00:1::/64", mac), "")
	// The old MAC and its address are free again.
	if p4 := mustPort(t, s, api.Port{Name: "p4", NetworkID: "dual", Host: "h1", MAC: mac}); p4.FixedIPs[1] != want[1] {
		t.Fatalf("p4 on the released MAC: %v", p4.FixedIPs)
	}
	// Clearing the MAC draws a new one, and the address follows it as well.
	up, err = s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.MAC = ""; return nil })
	if err != nil || up.MAC == newMAC || up.FixedIPs[1] != eui64(t, "fd00:1::/64", up.MAC) {
		t.Fatalf("after clearing the MAC: %+v %v", up, err)
	}

	// An IPv6-only network: the one address is the EUI-64; an IPv4 address is refused.
	if _, err := s.CreateNetwork(ctx, NetworkSpec{Name: "v6", IPv6: &api.Subnet6{CIDR: "fd00:2::/64", AddressMode: api.IPv6DHCPStateless}}); err != nil {
		t.Fatal(err)
	}
	p5 := mustPort(t, s, api.Port{Name: "p5", NetworkID: "v6", Host: "h1"})
	if len(p5.FixedIPs) != 1 || p5.FixedIPs[0] != eui64(t, "fd00:2::/64", p5.MAC) {
		t.Fatalf("p5 on the IPv6-only network: %v", p5.FixedIPs)
	}
	if _, err := s.CreatePort(ctx, api.Port{Name: "p6", NetworkID: "v6", Host: "h1", FixedIPs: []string{"10.0.0.5"}}); fieldOf(err) != "port.fixed_ips" || !strings.Contains(err.Error(), "no IPv4 subnet") {
		t.Errorf("IPv4 address on an IPv6-only network: %v", err)
	}
	// Deleting the port frees its addresses.
	if err := s.DeletePort(ctx, "p5"); err != nil {
		t.Fatal(err)
	}
	for k := range dump(t, s) {
		if strings.HasPrefix(k, pAllocIP) && strings.HasSuffix(k, p5.FixedIPs[0]) {
			t.Errorf("%s left behind", k)
		}
	}
}

func TestIPv6StatefulAllocation(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	n, err := s.CreateNetwork(ctx, NetworkSpec{Name: "st", CIDR: "10.0.0.0/24",
		IPv6: &api.Subnet6{CIDR: "fd00:3::/120", AddressMode: api.IPv6DHCPStateful, Gateway: "fd00:3::2", DNSServers: []string{"fd00:3::53"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Lowest free from prefix::2, skipping the gateway.
	p1 := mustPort(t, s, api.Port{Name: "p1", NetworkID: "st", Host: "h1"})
	p2 := mustPort(t, s, api.Port{Name: "p2", NetworkID: "st", Host: "h1"})
	if p1.FixedIPs[1] != "fd00:3::3" || p2.FixedIPs[1] != "fd00:3::4" {
		t.Fatalf("allocated %v and %v, want fd00:3::3 and fd00:3::4", p1.FixedIPs, p2.FixedIPs)
	}
	// Explicit addresses: any free one of the subnet, never one another port holds.
	p3 := mustPort(t, s, api.Port{Name: "p3", NetworkID: "st", Host: "h1", FixedIPs: []string{"fd00:3::ff"}})
	if !slices.Equal(p3.FixedIPs, []string{"10.0.0.4", "fd00:3::ff"}) {
		t.Fatalf("p3 %v", p3.FixedIPs)
	}
	before := dump(t, s)
	for name, c := range map[string]struct {
		ip, msg string
	}{
		"taken":    {"fd00:3::4", "already used by port " + p2.ID},
		"gateway":  {"fd00:3::2", "gateway"},
		"anycast":  {"fd00:3::", "subnet-router anycast"},
		"outside":  {"fd00:3::100", "outside the network's IPv6 subnet"},
		"two IPv6": {"fd00:3::10,fd00:3::11", "at most one IPv6 address"},
	} {
		_, err := s.CreatePort(ctx, api.Port{Name: "bad", NetworkID: "st", Host: "h1", FixedIPs: strings.Split(c.ip, ",")})
		if fieldOf(err) != "port.fixed_ips" || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want a port.fixed_ips error saying %q", name, err, c.msg)
		}
	}
	mustEqualDump(t, before, dump(t, s))

	// port update --ip: a new IPv6 address moves the reservation; an IPv4 address
	// given alone keeps the IPv6 one; a MAC change does not touch it.
	up, err := s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.FixedIPs = []string{p.FixedIPs[0], "fd00:3::20"}; return nil })
	if err != nil || up.FixedIPs[1] != "fd00:3::20" {
		t.Fatalf("update --ip: %+v %v", up, err)
	}
	holds(t, s, n.ID, "fd00:3::20", p1.ID)
	holds(t, s, n.ID, "fd00:3::3", "")
	up, err = s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.FixedIPs = []string{"10.0.0.77"}; p.MAC = "fa:16:3e:00:02:02"; return nil })
	if err != nil || !slices.Equal(up.FixedIPs, []string{"10.0.0.77", "fd00:3::20"}) {
		t.Fatalf("update with the IPv4 address alone: %+v %v", up, err)
	}
	if _, err := s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.FixedIPs = []string{"10.0.0.77", "fd00:3::4"}; return nil }); fieldOf(err) != "port.fixed_ips" {
		t.Errorf("update onto p2's address: %v", err)
	}
	// The IPv6 address alone keeps the IPv4 one.
	up, err = s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.FixedIPs = []string{"fd00:3::21"}; return nil })
	if err != nil || !slices.Equal(up.FixedIPs, []string{"10.0.0.77", "fd00:3::21"}) {
		t.Fatalf("update with the IPv6 address alone: %+v %v", up, err)
	}
	// The released address is the lowest free one again.
	if p4 := mustPort(t, s, api.Port{Name: "p4", NetworkID: "st", Host: "h1"}); p4.FixedIPs[1] != "fd00:3::3" {
		t.Fatalf("p4 %v, want the released fd00:3::3", p4.FixedIPs)
	}
	// Clearing all addresses allocates new ones of both families, releasing the old.
	up, err = s.UpdatePort(ctx, "p1", func(p *api.Port) error { p.FixedIPs = nil; return nil })
	if err != nil || !slices.Equal(up.FixedIPs, []string{"10.0.0.5", "fd00:3::5"}) {
		t.Fatalf("update with cleared addresses: %+v %v", up, err)
	}
	holds(t, s, n.ID, "fd00:3::21", "")
	holds(t, s, n.ID, "10.0.0.77", "")

	// A full subnet says so. /120 leaves ::3..::ff but for the gateway: fill it.
	if _, err := s.CreateNetwork(ctx, NetworkSpec{Name: "tiny", IPv6: &api.Subnet6{CIDR: "fd00:4::/120", AddressMode: api.IPv6DHCPStateful}}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 0xff; i++ {
		if i == 0x80 {
			continue // one left free in the middle, found by the next allocation
		}
		mustPort(t, s, api.Port{Name: "t" + netip.AddrFrom16([16]byte{15: byte(i)}).String()[2:], NetworkID: "tiny", Host: "h1",
			FixedIPs: []string{netip.AddrFrom16([16]byte{0: 0xfd, 3: 4, 15: byte(i)}).String()}})
	}
	if p := mustPort(t, s, api.Port{Name: "last", NetworkID: "tiny", Host: "h1"}); p.FixedIPs[0] != "fd00:4::80" {
		t.Fatalf("last free address: %v", p.FixedIPs)
	}
	if _, err := s.CreatePort(ctx, api.Port{Name: "over", NetworkID: "tiny", Host: "h1"}); fieldOf(err) != "port.fixed_ips" || !strings.Contains(err.Error(), "no free address left in fd00:4::/120") {
		t.Fatalf("full subnet: %v", err)
	}
}

func TestAddIPv6Subnet(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	registerL3(t, s, "l3", "192.168.1.9", 10*time.Second)
	n := mustNet(t, s, "net", "10.0.0.0/24")
	p1 := mustPort(t, s, api.Port{Name: "p1", NetworkID: "net", Host: "h1"})
	p2 := mustPort(t, s, api.Port{Name: "p2", NetworkID: "net", Host: "h1"})
	if _, err := s.CreateRouter(ctx, "r1", ""); err != nil {
		t.Fatal(err)
	}
	r, err := s.AddRouterInterface(ctx, "r1", "net")
	if err != nil {
		t.Fatal(err)
	}

	// A bad subnet is refused as any network field is, and writes nothing.
	before := dump(t, s)
	if _, err := s.UpdateNetwork(ctx, "net", func(n *api.Network) error {
		n.IPv6 = &api.Subnet6{CIDR: "fd00:5::/63"}
		return nil
	}); fieldOf(err) != "network.ipv6.cidr" {
		t.Errorf("slaac /63: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))

	// A stateful subnet: the two VM ports get distinct addresses in one transaction,
	// the router's port none (routers are IPv4).
	rev := revision(t, s)
	got, err := s.UpdateNetwork(ctx, "net", func(n *api.Network) error {
		n.IPv6 = &api.Subnet6{CIDR: "fd00:5::/64", AddressMode: api.IPv6DHCPStateful, Gateway: "fd00:5::1"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rv := revision(t, s); rv != rev+1 {
		t.Errorf("adding the subnet took %d revisions, want one transaction", rv-rev)
	}
	if got.IPv6 == nil || got.IPv6.Gateway != "fd00:5::1" {
		t.Fatalf("returned %+v", got)
	}
	q1, _ := s.GetPort(ctx, "p1")
	q2, _ := s.GetPort(ctx, "p2")
	if len(q1.FixedIPs) != 2 || len(q2.FixedIPs) != 2 || q1.FixedIPs[0] != p1.FixedIPs[0] || q2.FixedIPs[0] != p2.FixedIPs[0] ||
		!slices.Equal(slices.Sorted(slices.Values([]string{q1.FixedIPs[1], q2.FixedIPs[1]})), []string{"fd00:5::2", "fd00:5::3"}) {
		t.Fatalf("ports after the subnet was added: %v %v, want fd00:5::2 and ::3 between them", q1.FixedIPs, q2.FixedIPs)
	}
	holds(t, s, n.ID, q1.FixedIPs[1], p1.ID)
	holds(t, s, n.ID, q2.FixedIPs[1], p2.ID)
	if qr, _ := s.GetPort(ctx, r.Interfaces[0].PortID); len(qr.FixedIPs) != 1 {
		t.Errorf("router interface got %v, want its IPv4 gateway only", qr.FixedIPs)
	}

	// With ports: the DNS servers change, nothing else does.
	if _, err := s.UpdateNetwork(ctx, "net", func(n *api.Network) error {
		n.IPv6.DNSServers = []string{"fd00:5::53"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before = dump(t, s)
	for name, mod := range map[string]func(*api.Subnet6){
		"gateway": func(s *api.Subnet6) { s.Gateway = "fd00:5::9" },
		"mode":    func(s *api.Subnet6) { s.AddressMode = api.IPv6SLAAC },
		"prefix":  func(s *api.Subnet6) { s.CIDR, s.Gateway = "fd00:6::/64", "fd00:6::1" },
	} {
		if _, err := s.UpdateNetwork(ctx, "net", func(n *api.Network) error { mod(n.IPv6); return nil }); fieldOf(err) != "network.ipv6" || !strings.Contains(err.Error(), "only dns_servers can change while 3 port(s) are attached") {
			t.Errorf("%s change with ports: %v", name, err)
		}
	}
	if _, err := s.UpdateNetwork(ctx, "net", func(n *api.Network) error { n.IPv6 = nil; return nil }); fieldOf(err) != "network.ipv6" {
		t.Errorf("removal with ports: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))
	if st, _ := s.GetNetwork(ctx, "net"); !slices.Equal(st.IPv6.DNSServers, []string{"fd00:5::53"}) {
		t.Errorf("DNS servers %v", st.IPv6.DNSServers)
	}

	// A slaac subnet added later gives each port its EUI-64; without ports the
	// subnet may change as a whole.
	m := mustNet(t, s, "other", "10.1.0.0/24")
	if _, err := s.UpdateNetwork(ctx, "other", func(n *api.Network) error {
		n.IPv6 = &api.Subnet6{CIDR: "fd00:7::/120", AddressMode: api.IPv6DHCPStateful}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateNetwork(ctx, "other", func(n *api.Network) error { n.IPv6.CIDR, n.IPv6.AddressMode = "fd00:7::/64", api.IPv6SLAAC; return nil }); err != nil {
		t.Fatalf("change without ports: %v", err)
	}
	if _, err := s.UpdateNetwork(ctx, "other", func(n *api.Network) error { n.IPv6 = nil; return nil }); err != nil {
		t.Fatalf("removal without ports: %v", err)
	}
	o1 := mustPort(t, s, api.Port{Name: "o1", NetworkID: "other", Host: "h1"})
	if _, err := s.UpdateNetwork(ctx, "other", func(n *api.Network) error { n.IPv6 = &api.Subnet6{CIDR: "fd00:7::/64"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.GetPort(ctx, "o1"); !slices.Equal(q.FixedIPs, []string{o1.FixedIPs[0], eui64(t, "fd00:7::/64", o1.MAC)}) {
		t.Fatalf("o1 after a slaac subnet was added: %v", q.FixedIPs)
	}
	holds(t, s, m.ID, eui64(t, "fd00:7::/64", o1.MAC), o1.ID)

	// An IPv6-only network cannot join a router.
	if _, err := s.CreateNetwork(ctx, NetworkSpec{Name: "v6only", IPv6: &api.Subnet6{CIDR: "fd00:8::/64"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRouterInterface(ctx, "r1", "v6only"); fieldOf(err) != "router.interfaces.network" || !strings.Contains(err.Error(), "IPv6 routing is not built yet") {
		t.Errorf("router interface on an IPv6-only network: %v", err)
	}

	// External networks and floating IPs stay IPv4: a floating IP of a dual-stack port
	// translates to its IPv4 address.
	ext := NetworkSpec{Name: "public", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", External: true,
		Provider: &api.Provider{Type: api.ProviderFlat, Physnet: "physnet1"}}
	bad := ext
	bad.IPv6 = &api.Subnet6{CIDR: "fd00:e::/64"}
	if _, err := s.CreateNetwork(ctx, bad); fieldOf(err) != "network.ipv6" {
		t.Errorf("external network with an IPv6 subnet: %v", err)
	}
	if _, err := s.CreateNetwork(ctx, ext); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRouterGateway(ctx, "r1", "public", true); err != nil {
		t.Fatal(err)
	}
	fip, err := s.CreateFloatingIP(ctx, "public", "p1", "")
	if err != nil || fip.FixedIP != q1.FixedIPs[0] {
		t.Fatalf("floating IP of p1: %+v %v, want its IPv4 address %s", fip, err, q1.FixedIPs[0])
	}
	if _, err := s.CreateFloatingIP(ctx, "public", "p2", q2.FixedIPs[1]); fieldOf(err) != "floatingip.fixed_ip" || !strings.Contains(err.Error(), "floating IPs are IPv4") {
		t.Errorf("floating IP onto an IPv6 address: %v", err)
	}
}

// A network record written around the CLI with a bad IPv6 subnet is left out (with
// its ports) as a Problem; the rest of the store keeps working.
func TestMirrorRefusesBadIPv6Subnet(t *testing.T) {
	f := newPoisonFixture(t)
	s, ctx := f.s, tctx(t)
	good, err := s.CreateNetwork(ctx, NetworkSpec{Name: "v6", IPv6: &api.Subnet6{CIDR: "fd00:9::/64"}})
	if err != nil {
		t.Fatal(err)
	}
	gp := mustPort(t, s, api.Port{Name: "gp", NetworkID: "v6", Host: "h1"})
	waitState(t, f.m, "the IPv6 port", func(st State) bool { _, ok := st.Ports[gp.ID]; return ok })

	bad := good
	bad.ID, bad.Name, bad.VNI = NewUUID(), "bad6", good.VNI+100
	bad.IPv6 = &api.Subnet6{CIDR: "fd00:a::/80"} // slaac needs a /64
	bp := gp
	bp.ID, bp.Name, bp.NetworkID = NewUUID(), "bp", bad.ID
	// A port on the good network whose SLAAC address is not its MAC's.
	wp := gp
	wp.ID, wp.Name, wp.MAC = NewUUID(), "wp", "fa:16:3e:00:09:09"
	for k, v := range map[string]any{pNetworks + bad.ID: bad, pPorts + bp.ID: bp, pPorts + wp.ID: wp} {
		if _, err := s.Client().Put(ctx, k, jsonOf(t, v)); err != nil {
			t.Fatal(err)
		}
	}
	st := waitState(t, f.m, "the problems", func(st State) bool {
		return len(st.ProblemsOf(KindNetworks, bad.ID)) == 1 && len(st.ProblemsOf(KindPorts, bp.ID)) == 1 && len(st.ProblemsOf(KindPorts, wp.ID)) == 1
	})
	if p := st.ProblemsOf(KindNetworks, bad.ID)[0]; p.Class != ProblemInvalid || !strings.Contains(p.Err, `network.ipv6.cidr "fd00:a::/80": address mode slaac needs a /64`) {
		t.Errorf("network problem %+v", p)
	}
	if p := st.ProblemsOf(KindPorts, bp.ID)[0]; p.Class != ProblemDangling {
		t.Errorf("port on the bad network: %+v", p)
	}
	if p := st.ProblemsOf(KindPorts, wp.ID)[0]; p.Class != ProblemInvalid || !strings.Contains(p.Err, "EUI-64") {
		t.Errorf("port with a foreign SLAAC address: %+v", p)
	}
	if _, ok := st.Networks[bad.ID]; ok {
		t.Error("bad network kept")
	}
	if _, ok := st.Ports[gp.ID]; !ok || len(st.Ports) != 3 {
		t.Errorf("ports kept: %v", st.Ports)
	}
	// The store goes on: a new port shows up next to the problems.
	np := mustPort(t, s, api.Port{Name: "np", NetworkID: "v6", Host: "h1"})
	waitState(t, f.m, "a port created after the problems", func(st State) bool { _, ok := st.Ports[np.ID]; return ok })
}
