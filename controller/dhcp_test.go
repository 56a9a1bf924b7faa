package controller

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/lanes-net/lanes/api"
)

var (
	dhcpNet = api.Network{ID: "n1", Name: "blue", VNI: 7, CIDR: "10.0.0.0/24", MTU: 1450, Gateway: "10.0.0.1",
		DHCP: api.DHCP{DNSServers: []string{"10.0.0.53", "192.0.2.53"}, Domain: "blue.example", SearchDomains: []string{"blue.example", "example"},
			HostRoutes: []api.HostRoute{{Destination: "192.168.0.0/16", NextHop: "10.0.0.254"}}, LeaseSeconds: 3600}}
	portMAC = net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 5}
)

func testPort(n api.Network, ips ...string) *dhcpPort {
	var addrs []netip.Addr
	for _, s := range ips {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	return newDHCPPort("p1", "web_1", portMAC.String(), portMAC, addrs, n)
}

// clientFrame is what a guest's client sends: from 0.0.0.0 (or ciaddr) to broadcast.
func clientFrame(t *testing.T, src net.HardwareAddr, m *dhcpv4.DHCPv4) []byte {
	t.Helper()
	from := netip.IPv4Unspecified()
	if c, ok := netip.AddrFromSlice(m.ClientIPAddr.To4()); ok {
		from = c
	}
	return buildUDPFrame(src, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, from, netip.AddrFrom4([4]byte{255, 255, 255, 255}), 68, 67, m.ToBytes())
}

// parseReply checks the reply frame's headers and returns the DHCP message and the
// IPv4 source and destination.
func parseReply(t *testing.T, f []byte) (*dhcpv4.DHCPv4, netip.Addr, netip.Addr) {
	t.Helper()
	if got := net.HardwareAddr(f[0:6]); got.String() != portMAC.String() {
		t.Errorf("reply to MAC %s, want the port's %s", got, portMAC)
	}
	ip := f[14:34]
	if checksum(ip, 0) != 0 {
		t.Error("bad IPv4 header checksum")
	}
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	udp := f[34:]
	if binary.BigEndian.Uint16(udp[0:2]) != 67 || binary.BigEndian.Uint16(udp[2:4]) != 68 || int(binary.BigEndian.Uint16(udp[4:6])) != len(udp) {
		t.Errorf("UDP header %x", udp[:8])
	}
	s4, d4 := src.As4(), dst.As4()
	pseudo := uint32(17) + uint32(len(udp))
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	if checksum(udp, pseudo) != 0 {
		t.Error("bad UDP checksum")
	}
	m, err := dhcpv4.FromBytes(udp[8:])
	if err != nil {
		t.Fatal(err)
	}
	return m, src, dst
}

func TestDHCPOfferCarriesTheNetwork(t *testing.T) {
	p := testPort(dhcpNet, "fd00::5", "10.0.0.5")
	disc, err := dhcpv4.NewDiscovery(portMAC)
	if err != nil {
		t.Fatal(err)
	}
	reply, v := p.answer(clientFrame(t, portMAC, disc))
	if v.Kind != dhcpAnswered || v.Reply != "OFFER" || reply == nil {
		t.Fatalf("verdict %v", v)
	}
	m, src, dst := parseReply(t, reply)
	if m.MessageType() != dhcpv4.MessageTypeOffer || m.TransactionID != disc.TransactionID || !m.YourIPAddr.Equal(net.ParseIP("10.0.0.5")) {
		t.Errorf("offer %s", m.Summary())
	}
	if src.String() != "10.0.0.1" || dst.String() != "10.0.0.5" || !m.ServerIdentifier().Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("from %s to %s, server id %s: want the gateway to the offered address", src, dst, m.ServerIdentifier())
	}
	check := func(what, got, want string) {
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	check("mask", net.IP(m.SubnetMask()).String(), "255.255.255.0")
	check("router", joinIPs(m.Router()), "10.0.0.1")
	check("dns", joinIPs(m.DNS()), "10.0.0.53,192.0.2.53")
	check("domain", m.DomainName(), "blue.example")
	check("search", strings.Join(m.DomainSearch().Labels, ","), "blue.example,example")
	check("hostname", m.HostName(), "web-1")
	check("lease", m.IPAddressLeaseTime(0).String(), time.Hour.String())
	check("mtu", string(rune(binary.BigEndian.Uint16(m.Options.Get(dhcpv4.OptionInterfaceMTU)))), string(rune(1450)))
	var routes []string
	for _, r := range m.ClasslessStaticRoute() {
		routes = append(routes, r.String())
	}
	check("classless routes", strings.Join(routes, ", "), "route to 192.168.0.0/16 via 10.0.0.254, route to 0.0.0.0/0 via 10.0.0.1")
}

func joinIPs(ips []net.IP) string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

func TestDHCPRules(t *testing.T) {
	p := testPort(dhcpNet, "10.0.0.5")
	other := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 9}
	disc, _ := dhcpv4.NewDiscovery(portMAC)
	offer, _ := dhcpv4.NewReplyFromRequest(disc, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer), dhcpv4.WithYourIP(net.ParseIP("10.0.0.5")),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.1"))))
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	spoofed, _ := dhcpv4.NewDiscovery(other)
	greedy, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.6"))))
	elsewhere, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.2"))))
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(portMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.ParseIP("10.0.0.5")))
	inform, _ := dhcpv4.New(dhcpv4.WithHwAddr(portMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.ParseIP("10.0.0.5")))
	release, _ := dhcpv4.New(dhcpv4.WithHwAddr(portMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(net.ParseIP("10.0.0.5")))
	off := dhcpNet
	off.DHCP.Disabled = true

	for _, c := range []struct {
		name    string
		port    *dhcpPort
		frame   []byte
		kind    string
		reply   string // reply type, or a word of the refusal
		dstIP   string // of the reply
		yiaddr  string
		noLease bool
	}{
		{"request", p, clientFrame(t, portMAC, req), dhcpAnswered, "ACK", "10.0.0.5", "10.0.0.5", false},
		{"renew to ciaddr", p, clientFrame(t, portMAC, renew), dhcpAnswered, "ACK", "10.0.0.5", "10.0.0.5", false},
		{"inform: no address, no lease", p, clientFrame(t, portMAC, inform), dhcpAnswered, "ACK", "10.0.0.5", "0.0.0.0", true},
		{"request for another address", p, clientFrame(t, portMAC, greedy), dhcpAnswered, "NAK", "255.255.255.255", "0.0.0.0", true},
		{"request for another server", p, clientFrame(t, portMAC, elsewhere), dhcpRefused, "server", "", "", false},
		{"frame from another MAC", p, clientFrame(t, other, disc), dhcpRefused, "frame from", "", "", false},
		{"client MAC of another port", p, clientFrame(t, portMAC, spoofed), dhcpRefused, "client MAC", "", "", false},
		{"port without IPv4", testPort(dhcpNet, "fd00::5"), clientFrame(t, portMAC, disc), dhcpRefused, "no IPv4", "", "", false},
		{"DHCP off", testPort(off, "10.0.0.5"), clientFrame(t, portMAC, disc), dhcpRefused, "DHCP is off", "", "", false},
		{"release", p, clientFrame(t, portMAC, release), dhcpReleased, "", "", "", false},
		{"not UDP 68->67", p, buildUDPFrame(portMAC, portMAC, netip.IPv4Unspecified(), netip.IPv4Unspecified(), 68, 53, disc.ToBytes()), dhcpRefused, "port 67", "", "", false},
		{"not DHCP", p, buildUDPFrame(portMAC, portMAC, netip.IPv4Unspecified(), netip.IPv4Unspecified(), 68, 67, []byte{1, 2, 3}), dhcpRefused, "not a DHCP", "", "", false},
		{"runt", p, []byte{1, 2, 3}, dhcpRefused, "short", "", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			reply, v := c.port.answer(c.frame)
			if v.Kind != c.kind {
				t.Fatalf("verdict %v, want %s", v, c.kind)
			}
			if c.kind != dhcpAnswered {
				if reply != nil {
					t.Error("a reply to a request that is not answered")
				}
				if c.kind == dhcpRefused && !strings.Contains(v.Reason, c.reply) {
					t.Errorf("reason %q, want it to say %q", v.Reason, c.reply)
				}
				return
			}
			m, _, dst := parseReply(t, reply)
			if dhcpTypeName(m.MessageType()) != c.reply || dst.String() != c.dstIP || m.YourIPAddr.String() != c.yiaddr {
				t.Errorf("%s to %s yiaddr %s, want %s to %s yiaddr %s", dhcpTypeName(m.MessageType()), dst, m.YourIPAddr, c.reply, c.dstIP, c.yiaddr)
			}
			if lease := m.Options.Has(dhcpv4.OptionIPAddressLeaseTime); lease == c.noLease {
				t.Errorf("lease time option present: %v", lease)
			}
		})
	}
	// Without a gateway the server is a link-local address, and no router is handed out.
	bare := dhcpNet
	bare.Gateway, bare.DHCP = "", api.DHCP{}
	reply, _ := testPort(bare, "10.0.0.5").answer(clientFrame(t, portMAC, disc))
	m, src, _ := parseReply(t, reply)
	if src.String() != "169.254.169.254" || len(m.Router()) != 0 || m.Options.Has(dhcpv4.OptionClasslessStaticRoute) || m.IPAddressLeaseTime(0) != 24*time.Hour {
		t.Errorf("bare network: from %s, %s", src, m.Summary())
	}
}

func TestDHCPRateLimitPerPort(t *testing.T) {
	s := newDHCPServer(nil, nil, nil)
	now := time.Now()
	n := 0
	for range 1000 {
		if s.take(5, now) {
			n++
		}
	}
	if n != int(s.burst) {
		t.Errorf("a burst of 1000 let %d through, want the burst %v", n, s.burst)
	}
	if !s.take(6, now) {
		t.Error("port 6 starved by port 5's burst")
	}
	if !s.take(5, now.Add(time.Second/time.Duration(s.rate)+time.Millisecond)) {
		t.Error("port 5 got no token back after 1/rate")
	}
}

// The per-port record lanesctl status shows: counts by verdict, the last answer with
// the address it gave (a NAK gives none), and nothing kept for a port that left.
func TestDHCPRecord(t *testing.T) {
	s := newDHCPServer(nil, nil, nil)
	hw := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}
	n := api.Network{ID: "n", Name: "blue", CIDR: "10.0.0.0/24", MTU: 1450}
	p := newDHCPPort("p1", "vm1", hw.String(), hw, []netip.Addr{netip.MustParseAddr("10.0.0.5")}, n)
	s.setPorts(map[uint32]*dhcpPort{7: p})
	s.note(7, dhcpVerdict{Kind: dhcpAnswered, Request: "DISCOVER", Reply: "OFFER"})
	s.note(7, dhcpVerdict{Kind: dhcpRefused, Request: "REQUEST", Reason: "not the port's MAC"})
	s.note(7, dhcpVerdict{Kind: dhcpAnswered, Request: "REQUEST", Reply: "ACK"})
	r, ok := s.DHCPReport("p1")
	if !ok || !r.Serving || r.Address != "10.0.0.5" || r.Answered != 2 || r.Refused != 1 || r.Last != "REQUEST -> ACK 10.0.0.5" {
		t.Errorf("record: %+v %v", r, ok)
	}
	s.note(7, dhcpVerdict{Kind: dhcpAnswered, Request: "REQUEST", Reply: "NAK"})
	if r, _ := s.DHCPReport("p1"); r.Last != "REQUEST -> NAK" {
		t.Errorf("after a NAK: last %q", r.Last)
	}
	s.setPorts(map[uint32]*dhcpPort{})
	s.setPorts(map[uint32]*dhcpPort{7: p})
	if r, _ := s.DHCPReport("p1"); r.Answered != 0 || r.Last != "" {
		t.Errorf("a port that left and came back kept its record: %+v", r)
	}
}
