package controller

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
)

// dhcpServerMAC is the Ethernet source of lanesd's DHCP replies: locally administered,
// the same on every host, owned by no port.
var dhcpServerMAC = net.HardwareAddr{0x02, 0x4c, 0x41, 0x4e, 0x45, 0x53}

// dhcpNoGatewayServerID identifies the server to clients of a network without a
// gateway: a link-local address no tenant port can hold.
var dhcpNoGatewayServerID = netip.MustParseAddr("169.254.169.254")

// dhcpPort is what the responder answers on one ofport: the port and its network's
// settings, parsed once per reconcile.
type dhcpPort struct {
	ID, Name string
	Network  string
	MAC      net.HardwareAddr
	IP       netip.Addr // invalid: the port has no IPv4 address, refused
	Disabled bool       // the network serves no DHCP, refused
	Prefix   netip.Prefix
	Router   netip.Addr // invalid: none
	ServerID netip.Addr
	DNS      []net.IP
	Domain   string
	Search   []string
	Routes   []*dhcpv4.Route
	MTU      int
	Lease    time.Duration
	Hostname string
}

// newDHCPPort derives what to answer for port p on network n.
func newDHCPPort(id, name, mac string, hw net.HardwareAddr, addrs []netip.Addr, n api.Network) *dhcpPort {
	dp := &dhcpPort{ID: id, Name: name, Network: n.Name, MAC: hw, Disabled: n.DHCP.Disabled, MTU: n.MTU,
		Lease: time.Duration(n.DHCP.Lease()) * time.Second, Hostname: api.Hostname(name), Domain: n.DHCP.Domain,
		Search: n.DHCP.Search(), ServerID: dhcpNoGatewayServerID}
	dp.Prefix, _ = netip.ParsePrefix(n.CIDR)
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() && dp.Prefix.Contains(a) {
			dp.IP = a
			break
		}
	}
	if gw, err := netip.ParseAddr(n.Gateway); err == nil {
		dp.Router, dp.ServerID = gw, gw
	}
	for _, s := range n.DHCP.DNSServers {
		if a, err := netip.ParseAddr(s); err == nil {
			dp.DNS = append(dp.DNS, a.AsSlice())
		}
	}
	for _, r := range n.DHCP.HostRoutes {
		dst, err1 := netip.ParsePrefix(r.Destination)
		hop, err2 := netip.ParseAddr(r.NextHop)
		if err1 != nil || err2 != nil {
			continue
		}
		dp.Routes = append(dp.Routes, &dhcpv4.Route{
			Dest:   &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)},
			Router: hop.AsSlice(),
		})
	}
	// A client that takes option 121 ignores option 3 (RFC 3442): the default route
	// goes into the classless routes too.
	if len(dp.Routes) > 0 && dp.Router.IsValid() {
		dp.Routes = append(dp.Routes, &dhcpv4.Route{Dest: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Router: dp.Router.AsSlice()})
	}
	return dp
}

// Verdicts of one request.
const (
	dhcpAnswered = "answered"
	dhcpRefused  = "refused"
	dhcpReleased = "released"
)

// dhcpVerdict says what the responder did with a request and why.
type dhcpVerdict struct {
	Kind    string // dhcpAnswered, dhcpRefused, dhcpReleased
	Request string // DISCOVER, REQUEST, ... ("" when it did not parse)
	Reply   string // OFFER, ACK, NAK
	Reason  string // why it was refused
}

func (v dhcpVerdict) String() string {
	req := v.Request
	if req == "" {
		req = "packet"
	}
	switch v.Kind {
	case dhcpAnswered:
		return req + " -> " + v.Reply
	case dhcpReleased:
		return req + " (the address stays the port's)"
	}
	return req + " refused: " + v.Reason
}

func refuse(req, format string, args ...any) dhcpVerdict {
	return dhcpVerdict{Kind: dhcpRefused, Request: req, Reason: fmt.Sprintf(format, args...)}
}

// answer is the responder for one frame from port p: the reply frame to send back
// out of the port (nil: none) and the verdict. It is pure, so every rule is tested
// without a switch.
func (p *dhcpPort) answer(frame []byte) ([]byte, dhcpVerdict) {
	src, payload, err := parseDHCPFrame(frame)
	if err != nil {
		return nil, refuse("", "%v", err)
	}
	req, err := dhcpv4.FromBytes(payload)
	if err != nil {
		return nil, refuse("", "not a DHCP message: %v", err)
	}
	typ := req.MessageType()
	name := dhcpTypeName(typ)
	switch {
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		return nil, refuse(name, "not a client message")
	case p.Disabled:
		return nil, refuse(name, "DHCP is off on network %s", p.Network)
	case !equalMAC(src, p.MAC):
		return nil, refuse(name, "frame from %s, not the port's MAC %s", src, p.MAC)
	case !equalMAC(req.ClientHWAddr, p.MAC):
		return nil, refuse(name, "client MAC %s is not the port's %s", req.ClientHWAddr, p.MAC)
	case !p.IP.IsValid():
		return nil, refuse(name, "the port has no IPv4 address")
	}
	var reply *dhcpv4.DHCPv4
	switch typ {
	case dhcpv4.MessageTypeDiscover:
		reply, err = p.reply(req, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.IsUnspecified() && !sid.Equal(p.ServerID.AsSlice()) {
			return nil, refuse(name, "for server %s, not %s", sid, p.ServerID)
		}
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		if want != nil && !want.IsUnspecified() && !want.Equal(p.IP.AsSlice()) {
			reply, err = p.nak(req, fmt.Sprintf("%s is not this port's address", want))
			break
		}
		reply, err = p.reply(req, dhcpv4.MessageTypeAck)
	case dhcpv4.MessageTypeInform:
		reply, err = p.reply(req, dhcpv4.MessageTypeAck)
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		return nil, dhcpVerdict{Kind: dhcpReleased, Request: name}
	default:
		return nil, refuse(name, "not a request a server answers")
	}
	if err != nil {
		return nil, refuse(name, "build reply: %v", err)
	}
	return p.frame(req, reply), dhcpVerdict{Kind: dhcpAnswered, Request: name, Reply: dhcpTypeName(reply.MessageType())}
}

// reply builds an OFFER or ACK: the port's address (not for INFORM, RFC 2131 4.3.5)
// and the network's settings.
func (p *dhcpPort) reply(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	mask := net.CIDRMask(p.Prefix.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(p.ServerID.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.ServerID.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(api.LastAddr(p.Prefix).AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptHostName(p.Hostname)),
		dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(p.MTU))),
	}
	if req.MessageType() != dhcpv4.MessageTypeInform {
		mods = append(mods, dhcpv4.WithYourIP(p.IP.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(p.Lease)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(p.Lease/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(p.Lease*7/8)))
	}
	if p.Router.IsValid() {
		mods = append(mods, dhcpv4.WithRouter(p.Router.AsSlice()))
	}
	if len(p.DNS) > 0 {
		mods = append(mods, dhcpv4.WithDNS(p.DNS...))
	}
	if p.Domain != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(p.Domain)))
	}
	if len(p.Search) > 0 {
		mods = append(mods, dhcpv4.WithDomainSearchList(p.Search...))
	}
	if len(p.Routes) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(p.Routes...)))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

func (p *dhcpPort) nak(req *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, error) {
	return dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.ServerID.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)))
}

// frame wraps a reply for the port (RFC 2131 4.1): to ciaddr when the client has an
// address, to broadcast for a NAK or when the client asks for it, to yiaddr
// otherwise; always to the client's MAC, since the reply goes out of its port only.
func (p *dhcpPort) frame(req, reply *dhcpv4.DHCPv4) []byte {
	dst := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	ciaddr, _ := netip.AddrFromSlice(req.ClientIPAddr.To4())
	switch {
	case reply.MessageType() == dhcpv4.MessageTypeNak || req.IsBroadcast():
	case ciaddr.IsValid() && !ciaddr.IsUnspecified():
		dst = ciaddr
	case reply.MessageType() != dhcpv4.MessageTypeNak && req.MessageType() != dhcpv4.MessageTypeInform:
		dst = p.IP
	}
	payload := reply.ToBytes()
	if len(payload) < 300 { // BOOTP's minimum, which some clients insist on
		payload = append(payload, make([]byte, 300-len(payload))...)
	}
	return buildUDPFrame(dhcpServerMAC, p.MAC, p.ServerID, dst, 67, 68, payload)
}

func dhcpTypeName(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeDiscover:
		return "DISCOVER"
	case dhcpv4.MessageTypeOffer:
		return "OFFER"
	case dhcpv4.MessageTypeRequest:
		return "REQUEST"
	case dhcpv4.MessageTypeDecline:
		return "DECLINE"
	case dhcpv4.MessageTypeAck:
		return "ACK"
	case dhcpv4.MessageTypeNak:
		return "NAK"
	case dhcpv4.MessageTypeRelease:
		return "RELEASE"
	case dhcpv4.MessageTypeInform:
		return "INFORM"
	case dhcpv4.MessageTypeNone:
		return "BOOTP"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

func equalMAC(a, b net.HardwareAddr) bool { return len(a) == 6 && a.String() == b.String() }

// parseDHCPFrame checks that frame is an unfragmented IPv4 UDP datagram from port 68
// to port 67 (an 802.1Q tag is skipped) and returns its Ethernet source and payload.
func parseDHCPFrame(b []byte) (net.HardwareAddr, []byte, error) {
	if len(b) < 14 {
		return nil, nil, errors.New("frame too short")
	}
	src := net.HardwareAddr(append([]byte(nil), b[6:12]...))
	et, off := binary.BigEndian.Uint16(b[12:14]), 14
	if et == 0x8100 && len(b) >= 18 {
		et, off = binary.BigEndian.Uint16(b[16:18]), 18
	}
	ip := b[off:]
	if et != 0x0800 || len(ip) < 20 || ip[0]>>4 != 4 {
		return src, nil, errors.New("not IPv4")
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total < ihl+8 || total > len(ip) {
		return src, nil, errors.New("bad IPv4 header")
	}
	if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return src, nil, errors.New("fragmented")
	}
	if ip[9] != 17 {
		return src, nil, errors.New("not UDP")
	}
	udp := ip[ihl:total]
	if binary.BigEndian.Uint16(udp[0:2]) != 68 || binary.BigEndian.Uint16(udp[2:4]) != 67 {
		return src, nil, errors.New("not from port 68 to port 67")
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return src, nil, errors.New("bad UDP length")
	}
	return src, udp[8:ulen], nil
}

// buildUDPFrame makes an Ethernet/IPv4/UDP frame with valid checksums.
func buildUDPFrame(srcMAC, dstMAC net.HardwareAddr, srcIP, dstIP netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 14+20+8+len(payload))
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], 0x0800)
	ip := b[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+8+len(payload)))
	s4, d4 := srcIP.As4(), dstIP.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip, 0))
	udp := b[34:]
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(8+len(payload)))
	copy(udp[8:], payload)
	pseudo := uint32(17) + uint32(len(udp))
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	cs := checksum(udp, pseudo)
	if cs == 0 {
		cs = 0xffff // 0 would mean "no checksum"
	}
	binary.BigEndian.PutUint16(udp[6:8], cs)
	return b
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// DHCP rate limits. The switch meters each port's packet-ins at dhcpMeterRate; the
// server keeps its own bucket per port at twice that, which only bites when the
// meters are missing (a switch without meter support, a moment after a restart).
const (
	dhcpMeterRate  = 20 // packets per second per port
	dhcpMeterBurst = 40
	dhcpQueueLen   = 512
)

// dhcpServer answers packet-ins from br-int's DHCP flows. The packet-in callback only
// rate-limits and queues (it runs on the OpenFlow receive goroutine); one worker
// parses, answers and sends packet-outs.
type dhcpServer struct {
	log   *slog.Logger
	m     *dhcpMetrics
	out   func(ofport uint32, frame []byte) error
	ports atomic.Pointer[map[uint32]*dhcpPort] // by ofport
	queue chan ofsync.PacketIn
	rate  float64 // tokens per second per port (controller side)
	burst float64

	mu      sync.Mutex
	buckets map[uint32]*bucket
	stats   *dhcpStats // dhcpstats.go
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newDHCPServer(log *slog.Logger, m *dhcpMetrics, out func(uint32, []byte) error) *dhcpServer {
	s := &dhcpServer{log: log, m: m, out: out, queue: make(chan ofsync.PacketIn, dhcpQueueLen),
		rate: 2 * dhcpMeterRate, burst: 2 * dhcpMeterBurst, buckets: map[uint32]*bucket{}, stats: newDHCPStats()}
	empty := map[uint32]*dhcpPort{}
	s.ports.Store(&empty)
	return s
}

// setPorts replaces what is answered on which ofport; counters of ports that left
// are dropped.
func (s *dhcpServer) setPorts(ports map[uint32]*dhcpPort) {
	s.ports.Store(&ports)
	keep := map[string]bool{}
	for _, p := range ports {
		keep[p.ID] = true
	}
	s.stats.keep(keep)
	s.mu.Lock()
	defer s.mu.Unlock()
	for of := range s.buckets {
		if ports[of] == nil {
			delete(s.buckets, of)
		}
	}
}

// packetIn is the PacketHandler: it never blocks.
func (s *dhcpServer) packetIn(in ofsync.PacketIn) {
	if !s.take(in.InPort, time.Now()) {
		s.m.Dropped.WithLabelValues("rate").Inc()
		s.note(in.InPort, refuse("", "over the rate limit of %d requests/s", int(s.rate)))
		return
	}
	select {
	case s.queue <- in:
	default:
		s.m.Dropped.WithLabelValues("queue").Inc()
	}
}

// take spends a token of ofport's bucket.
func (s *dhcpServer) take(ofport uint32, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[ofport]
	if b == nil {
		b = &bucket{tokens: s.burst, at: now}
		s.buckets[ofport] = b
	}
	b.tokens = min(s.burst, b.tokens+now.Sub(b.at).Seconds()*s.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// run answers queued packet-ins until stop is closed.
func (s *dhcpServer) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case in := <-s.queue:
			s.handle(in)
		}
	}
}

func (s *dhcpServer) handle(in ofsync.PacketIn) {
	start := time.Now()
	p := (*s.ports.Load())[in.InPort]
	if p == nil {
		s.m.Verdicts.WithLabelValues(dhcpRefused).Inc()
		s.log.Debug("DHCP from an ofport with no DHCP port", "ofport", in.InPort)
		return
	}
	reply, v := p.answer(in.Frame)
	if v.Request != "" {
		s.m.Requests.WithLabelValues(v.Request).Inc()
	}
	if reply != nil {
		if err := s.out(in.InPort, reply); err != nil {
			v = refuse(v.Request, "packet-out failed: %v", err)
		} else {
			s.m.Answers.WithLabelValues(v.Reply).Inc()
			s.m.AnswerSeconds.Observe(time.Since(start).Seconds())
		}
	}
	s.m.Verdicts.WithLabelValues(v.Kind).Inc()
	if v.Kind == dhcpRefused {
		s.log.Debug("DHCP refused", "port", p.Name, "why", v.String())
	}
	s.note(in.InPort, v)
}

// note records a verdict against the port on ofport.
func (s *dhcpServer) note(ofport uint32, v dhcpVerdict) {
	p := (*s.ports.Load())[ofport]
	if p == nil {
		return
	}
	last := v.String()
	if v.Kind == dhcpAnswered && v.Reply != "NAK" {
		last += " " + p.IP.String()
	}
	s.stats.note(p.ID, v.Kind, last)
}

// DHCPReport is the responder's record of a port, for lanesctl status.
func (s *dhcpServer) DHCPReport(portID string) (api.DHCPReport, bool) {
	var p *dhcpPort
	for _, q := range *s.ports.Load() {
		if q.ID == portID {
			p = q
		}
	}
	if p == nil {
		return api.DHCPReport{}, false
	}
	r := s.stats.get(portID)
	r.Serving = !p.Disabled && p.IP.IsValid()
	if p.IP.IsValid() {
		r.Address = p.IP.String()
	}
	return r, true
}

// dhcpMetrics count the responder's work.
type dhcpMetrics struct {
	Requests      *prometheus.CounterVec // by DHCP message type
	Answers       *prometheus.CounterVec // by reply type
	Verdicts      *prometheus.CounterVec // answered, refused, released
	Dropped       *prometheus.CounterVec // before parsing: rate, queue
	AnswerSeconds prometheus.Histogram
}

func newDHCPMetrics(reg prometheus.Registerer) *dhcpMetrics {
	m := &dhcpMetrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcp_requests_total", Help: "DHCP messages from local ports, by type.",
		}, []string{"type"}),
		Answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcp_answers_total", Help: "DHCP replies sent to local ports, by type (OFFER, ACK, NAK).",
		}, []string{"type"}),
		Verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcp_verdicts_total", Help: "DHCP packet-ins by outcome: answered, refused (not the port's MAC, no IPv4, DHCP off, ...), released.",
		}, []string{"verdict"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_dhcp_dropped_total", Help: "DHCP packet-ins dropped before parsing: over the port's rate (rate) or the queue full (queue).",
		}, []string{"why"}),
		AnswerSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lanes_dhcp_answer_seconds", Help: "Time from dequeuing a DHCP packet-in to its packet-out.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 14),
		}),
	}
	reg.MustRegister(m.Requests, m.Answers, m.Verdicts, m.Dropped, m.AnswerSeconds)
	return m
}
