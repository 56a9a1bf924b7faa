package controller

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
)

var portLL = api.LinkLocal(portMAC)

func net6(mode string, dns ...string) api.Network {
	n := dhcpNet
	n.IPv6 = &api.Subnet6{CIDR: "fd00:7::/64", AddressMode: mode, DNSServers: dns}
	return n
}

func testPort6(t *testing.T, n api.Network, ips ...string) *dhcp6Port {
	t.Helper()
	var addrs []netip.Addr
	for _, s := range ips {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	p := newDHCP6Port("p1", "web_1", portMAC, addrs, n)
	if p == nil {
		t.Fatal("no IPv6 port")
	}
	return p
}

// parsed6 is a reply frame read back, its checksum checked.
type parsed6 struct {
	dstMAC net.HardwareAddr
	pkt    ipv6Packet
}

func parse6(t *testing.T, f []byte) parsed6 {
	t.Helper()
	pkt, err := parseIPv6Frame(f)
	if err != nil {
		t.Fatalf("reply frame: %v", err)
	}
	ip := f[ethHeaderLen:]
	upper := ip[ipv6HeaderLen:]
	if checksum(upper, pseudo6(pkt.src.As16(), pkt.dst.As16(), pkt.proto, len(upper))) != 0 {
		t.Error("bad upper-layer checksum")
	}
	if pkt.src != dhcpServerLinkLocal || !equalMAC(net.HardwareAddr(f[6:12]), dhcpServerMAC) {
		t.Errorf("from %s %s, want the server's link-local and MAC", net.HardwareAddr(f[6:12]), pkt.src)
	}
	return parsed6{dstMAC: net.HardwareAddr(f[0:6]), pkt: pkt}
}

// raOptions splits an RA's options by type.
func raOptions(t *testing.T, ra []byte) map[byte][]byte {
	t.Helper()
	opts := map[byte][]byte{}
	for b := ra[16:]; len(b) > 0; {
		if len(b) < 8 || b[1] == 0 || int(b[1])*8 > len(b) {
			t.Fatalf("bad option at %x", b)
		}
		opts[b[0]] = b[:int(b[1])*8]
		b = b[int(b[1])*8:]
	}
	return opts
}

func TestRouterAdvertByMode(t *testing.T) {
	for _, tc := range []struct {
		mode         string
		flags, pflag byte
	}{
		{api.IPv6SLAAC, 0, pfxFlagOnLink | pfxFlagAuto},
		{"", 0, pfxFlagOnLink | pfxFlagAuto},
		{api.IPv6DHCPStateless, raFlagOther, pfxFlagOnLink | pfxFlagAuto},
		{api.IPv6DHCPStateful, raFlagManaged | raFlagOther, pfxFlagOnLink},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p := testPort6(t, net6(tc.mode, "fd00:7::53", "2001:db8::53"))
			r := parse6(t, p.unsolicitedAdvert())
			if r.pkt.dst != allNodesAddr || r.dstMAC.String() != allNodesMAC || r.pkt.hopLimit != 255 || r.pkt.proto != ipProtoICMPv6 {
				t.Errorf("to %s %s hop limit %d", r.dstMAC, r.pkt.dst, r.pkt.hopLimit)
			}
			ra := r.pkt.payload
			if ra[0] != icmp6RA || ra[1] != 0 || ra[5] != tc.flags || binary.BigEndian.Uint16(ra[6:8]) != 0 {
				t.Errorf("RA header %x: want flags %#x and router lifetime 0", ra[:16], tc.flags)
			}
			opts := raOptions(t, ra)
			if o := opts[ndOptSrcLLAddr]; !equalMAC(net.HardwareAddr(o[2:8]), dhcpServerMAC) {
				t.Errorf("source link-layer option %x", o)
			}
			if o := opts[ndOptMTU]; o == nil || binary.BigEndian.Uint32(o[4:8]) != 1450 {
				t.Errorf("MTU option %x, want 1450", o)
			}
			pi := opts[ndOptPrefixInfo]
			if pi == nil || pi[2] != 64 || pi[3] != tc.pflag || netip.AddrFrom16([16]byte(pi[16:32])) != netip.MustParseAddr("fd00:7::") {
				t.Errorf("prefix option %x, want fd00:7::/64 flags %#x", pi, tc.pflag)
			}
			rd := opts[ndOptRDNSS]
			if rd == nil || rd[1] != 5 || netip.AddrFrom16([16]byte(rd[8:24])).String() != "fd00:7::53" || netip.AddrFrom16([16]byte(rd[24:40])).String() != "2001:db8::53" {
				t.Errorf("RDNSS option %x", rd)
			}
		})
	}
	// No DNS servers, no RDNSS option.
	p := testPort6(t, net6(api.IPv6SLAAC))
	if _, ok := raOptions(t, parse6(t, p.unsolicitedAdvert()).pkt.payload)[ndOptRDNSS]; ok {
		t.Error("RDNSS option without DNS servers")
	}
	if newDHCP6Port("p1", "web_1", portMAC, nil, dhcpNet) != nil {
		t.Error("a port of a network without an IPv6 subnet is served")
	}
}

// rs is a router solicitation from src with hop limit hl.
func rs(from net.HardwareAddr, src netip.Addr, hl uint8) []byte {
	msg := []byte{flows.ICMPv6RouterSolicit, 0, 0, 0, 0, 0, 0, 0, ndOptSrcLLAddr, 1}
	msg = append(msg, from...)
	mac, _ := net.ParseMAC("33:33:00:00:00:02")
	return buildIPv6Frame(from, mac, src, netip.MustParseAddr("ff02::2"), ipProtoICMPv6, hl, msg)
}

func TestRouterSolicitation(t *testing.T) {
	p := testPort6(t, net6(api.IPv6SLAAC))
	reply, v := p.answer6(rs(portMAC, portLL, 255))
	if v.Kind != dhcpAnswered || v.Reply != "RA" {
		t.Fatalf("verdict %v", v)
	}
	if r := parse6(t, reply); r.pkt.dst != portLL || !equalMAC(r.dstMAC, portMAC) {
		t.Errorf("solicited RA to %s %s, want the solicitor", r.dstMAC, r.pkt.dst)
	}
	reply, v = p.answer6(rs(portMAC, netip.IPv6Unspecified(), 255))
	if r := parse6(t, reply); v.Kind != dhcpAnswered || r.pkt.dst != allNodesAddr {
		t.Errorf("RS from ::: %v to %s, want all nodes", v, r.pkt.dst)
	}
	other := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 9}
	for name, f := range map[string][]byte{
		"hop limit 64": rs(portMAC, portLL, 64),
		"foreign MAC":  rs(other, api.LinkLocal(other), 255),
		"IPv4":         clientFrame(t, portMAC, mustDiscover(t)),
		"truncated":    rs(portMAC, portLL, 255)[:50],
	} {
		if reply, v := p.answer6(f); reply != nil || v.Kind != dhcpRefused {
			t.Errorf("%s: %v", name, v)
		}
	}
}

// client6 sends m from the port's link-local to the all-servers group and returns
// the reply frame's DHCPv6 message (nil: no reply) and the verdict.
func client6(t *testing.T, p *dhcp6Port, m *dhcpv6.Message) (*dhcpv6.Message, dhcpVerdict) {
	t.Helper()
	mac, _ := net.ParseMAC("33:33:00:01:00:02")
	f := buildUDP6Frame(portMAC, mac, portLL, netip.MustParseAddr("ff02::1:2"), 546, 547, m.ToBytes())
	reply, v := p.answer6(f)
	if reply == nil {
		return nil, v
	}
	r := parse6(t, reply)
	if r.pkt.dst != portLL || !equalMAC(r.dstMAC, portMAC) || r.pkt.sport != 547 || r.pkt.dport != 546 {
		t.Errorf("reply to %s %s port %d from %d", r.dstMAC, r.pkt.dst, r.pkt.dport, r.pkt.sport)
	}
	out, err := dhcpv6.MessageFromBytes(r.pkt.payload)
	if err != nil {
		t.Fatal(err)
	}
	if sid := out.Options.ServerID(); sid == nil || !sid.Equal(dhcpServerDUID) {
		t.Errorf("server ID %v", sid)
	}
	if out.TransactionID != m.TransactionID {
		t.Errorf("transaction %v, want %v", out.TransactionID, m.TransactionID)
	}
	return out, v
}

func solicit(t *testing.T, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	t.Helper()
	m, err := dhcpv6.NewSolicit(portMAC, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustDiscover(t *testing.T) *dhcpv4.DHCPv4 {
	t.Helper()
	d, err := dhcpv4.NewDiscovery(portMAC)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func iaAddr(m *dhcpv6.Message) string {
	ia := m.Options.OneIANA()
	if ia == nil {
		return "no IA_NA"
	}
	if st := ia.Options.Status(); st != nil {
		return st.StatusCode.String()
	}
	if a := ia.Options.OneAddress(); a != nil {
		return a.IPv6Addr.String()
	}
	return "empty IA_NA"
}

func TestDHCPv6Stateful(t *testing.T) {
	p := testPort6(t, net6(api.IPv6DHCPStateful, "fd00:7::53"), "10.0.0.5", "fd00:7::5")
	sol := solicit(t)
	adv, v := client6(t, p, sol)
	if adv == nil || adv.Type() != dhcpv6.MessageTypeAdvertise || v.Reply != "ADVERTISE" {
		t.Fatalf("solicit: %v", v)
	}
	if got := iaAddr(adv); got != "fd00:7::5" {
		t.Errorf("advertised %s", got)
	}
	if adv.Options.Preference() != 255 || joinIPs(adv.Options.DNS()) != "fd00:7::53" {
		t.Errorf("preference %d, DNS %v", adv.Options.Preference(), adv.Options.DNS())
	}
	ia := adv.Options.OneIANA()
	if a := ia.Options.OneAddress(); ia.T1 != 30*time.Minute || a.ValidLifetime != time.Hour {
		t.Errorf("T1 %s, valid %s: want half the hour lease, and the lease", ia.T1, a.ValidLifetime)
	}

	req, err := dhcpv6.NewRequestFromAdvertise(adv)
	if err != nil {
		t.Fatal(err)
	}
	rep, v := client6(t, p, req)
	if rep == nil || rep.Type() != dhcpv6.MessageTypeReply || iaAddr(rep) != "fd00:7::5" || v.Kind != dhcpAnswered {
		t.Fatalf("request: %v", v)
	}

	rapid := solicit(t, dhcpv6.WithRapidCommit)
	if rep, v := client6(t, p, rapid); rep == nil || rep.Type() != dhcpv6.MessageTypeReply || iaAddr(rep) != "fd00:7::5" {
		t.Errorf("rapid commit: %v", v)
	}

	// A request for another server, and a solicit naming a server, are ignored.
	foreign := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	req.UpdateOption(dhcpv6.OptServerID(foreign))
	if rep, v := client6(t, p, req); rep != nil || v.Kind != dhcpRefused {
		t.Errorf("request for another server: %v", v)
	}
	sol.AddOption(dhcpv6.OptServerID(dhcpServerDUID))
	if rep, v := client6(t, p, sol); rep != nil || v.Kind != dhcpRefused {
		t.Errorf("solicit with a server ID: %v", v)
	}

	// Confirm: on link, or not.
	conf := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeConfirm, TransactionID: dhcpv6.TransactionID{1, 2, 3}}
	conf.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: portMAC}))
	conf.AddOption(&dhcpv6.OptIANA{IaId: [4]byte{1}, Options: dhcpv6.IdentityOptions{Options: dhcpv6.Options{&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP("fd00:7::5")}}}})
	if rep, v := client6(t, p, conf); rep == nil || rep.Options.Status() == nil || rep.Options.Status().StatusCode != iana.StatusSuccess {
		t.Errorf("confirm on link: %v", v)
	}
	conf.UpdateOption(&dhcpv6.OptIANA{IaId: [4]byte{1}, Options: dhcpv6.IdentityOptions{Options: dhcpv6.Options{&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP("fd00:8::5")}}}})
	if rep, v := client6(t, p, conf); rep == nil || rep.Options.Status() == nil || rep.Options.Status().StatusCode != iana.StatusNotOnLink {
		t.Errorf("confirm off link: %v", v)
	}

	// Nothing for a client without an address to answer, or from another MAC.
	group, _ := net.ParseMAC("33:33:00:01:00:02")
	other := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 9}
	for name, f := range map[string][]byte{
		"from ::":      buildUDP6Frame(portMAC, group, netip.IPv6Unspecified(), netip.MustParseAddr("ff02::1:2"), 546, 547, solicit(t).ToBytes()),
		"foreign MAC":  buildUDP6Frame(other, group, api.LinkLocal(other), netip.MustParseAddr("ff02::1:2"), 546, 547, solicit(t).ToBytes()),
		"server ports": buildUDP6Frame(portMAC, group, portLL, netip.MustParseAddr("ff02::1:2"), 547, 547, solicit(t).ToBytes()),
		"not DHCPv6":   buildUDP6Frame(portMAC, group, portLL, netip.MustParseAddr("ff02::1:2"), 546, 547, []byte{1}),
	} {
		if reply, v := p.answer6(f); reply != nil || v.Kind != dhcpRefused {
			t.Errorf("%s: %v", name, v)
		}
	}

	// A stateful port without an IPv6 fixed IP gets NoAddrsAvail.
	bare := testPort6(t, net6(api.IPv6DHCPStateful), "10.0.0.5")
	if adv, v := client6(t, bare, solicit(t)); adv == nil || iaAddr(adv) != "NoAddrsAvail" || !strings.Contains(v.Reply, "NoAddrsAvail") {
		t.Errorf("no address: %v", v)
	}
}

func TestDHCPv6Stateless(t *testing.T) {
	for _, mode := range []string{api.IPv6DHCPStateless, api.IPv6SLAAC} {
		p := testPort6(t, net6(mode, "fd00:7::53"), "fd00:7::f816:3eff:fe00:5")
		// Addresses come from SLAAC: a solicit for one is refused with NoAddrsAvail.
		adv, v := client6(t, p, solicit(t))
		if adv == nil || iaAddr(adv) != "NoAddrsAvail" {
			t.Errorf("%s: solicit: %v", mode, v)
		}
		info := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeInformationRequest, TransactionID: dhcpv6.TransactionID{4, 5, 6}}
		info.AddOption(dhcpv6.OptClientID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: portMAC}))
		info.AddOption(dhcpv6.OptRequestedOption(dhcpv6.OptionDNSRecursiveNameServer))
		rep, v := client6(t, p, info)
		if rep == nil || rep.Type() != dhcpv6.MessageTypeReply || joinIPs(rep.Options.DNS()) != "fd00:7::53" || rep.Options.OneIANA() != nil {
			t.Errorf("%s: information-request: %v %v", mode, v, rep)
		}
	}
}

// TestRouterAdvertSchedule runs the server with short intervals against a fake
// switch: a new port gets an advertisement at once and then its initial ones, a
// port whose subnet changes gets a new one at once, and nothing goes to a port
// that left.
func TestRouterAdvertSchedule(t *testing.T) {
	var mu sync.Mutex
	sent := map[uint32][][]byte{}
	out := func(of uint32, f []byte) error {
		mu.Lock()
		defer mu.Unlock()
		sent[of] = append(sent[of], f)
		return nil
	}
	count := func(of uint32) int {
		mu.Lock()
		defer mu.Unlock()
		return len(sent[of])
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := newDHCP6Server(log, newDHCP6Metrics(prometheus.NewRegistry()), newDHCPServer(log, newDHCPMetrics(prometheus.NewRegistry()), out), out)
	s.setTiming(50*time.Millisecond, 100*time.Millisecond, 20*time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	go s.run(stop)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	slaac := testPort6(t, net6(api.IPv6SLAAC))
	s.setPorts(map[uint32]*dhcp6Port{5: slaac})
	waitFor("the first advertisement", func() bool { return count(5) >= 1 })
	waitFor("periodic advertisements", func() bool { return count(5) >= raInitialCount+2 })

	// The subnet becomes stateful: the next advertisement, at once, says M.
	s.setPorts(map[uint32]*dhcp6Port{5: testPort6(t, net6(api.IPv6DHCPStateful))})
	waitFor("an advertisement with M", func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := sent[5][len(sent[5])-1]
		return last[ethHeaderLen+ipv6HeaderLen+5]&raFlagManaged != 0
	})
	s.setPorts(map[uint32]*dhcp6Port{})
	n := count(5)
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if count(5) > n+1 { // one may have been in flight when the port left
			t.Fatalf("advertisements go on to a port that left: %d after %d", count(5), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDHCPv6SharesTheDHCPBudget: a port's router solicitations and DHCPv6 spend the
// tokens of its DHCPv4 bucket, as the switch meters them as one.
func TestDHCPv6SharesTheDHCPBudget(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := func(uint32, []byte) error { return nil }
	v4 := newDHCPServer(log, newDHCPMetrics(prometheus.NewRegistry()), out)
	v6 := newDHCP6Server(log, newDHCP6Metrics(prometheus.NewRegistry()), v4, out)
	frame := rs(portMAC, portLL, 255)
	for range 2 * dhcpMeterBurst {
		v6.packetIn(ofsync.PacketIn{InPort: 5, Table: flows.DHCPIPv6, Frame: frame})
	}
	if v4.take(5, time.Now()) {
		t.Error("DHCPv4 of a port still has tokens after a burst of router solicitations")
	}
	if !v4.take(6, time.Now()) {
		t.Error("another port has no tokens")
	}
	if n := len(v6.queue); n != 2*dhcpMeterBurst {
		t.Errorf("%d packet-ins queued, want the burst %d", n, 2*dhcpMeterBurst)
	}
}
