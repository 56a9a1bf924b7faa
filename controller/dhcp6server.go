package controller

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
)

// dhcpServerLinkLocal is the IPv6 source of lanesd's router advertisements and
// DHCPv6 replies: the EUI-64 link-local of dhcpServerMAC. The ports' ingress
// firewall admits exactly this source (hostwire.FirewallState.ServerLinkLocal).
var dhcpServerLinkLocal = api.LinkLocal(dhcpServerMAC)

// dhcpServerDUID identifies lanesd to DHCPv6 clients, the same on every host: a
// port that moves keeps talking to "its" server.
var dhcpServerDUID = &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: dhcpServerMAC}

// Wire constants of router advertisements, DHCPv6 and their frames (RFC 4861, 8106,
// 8415); the intervals and lifetimes are radvd's defaults.
const (
	raHopLimit      = 64                      // Cur Hop Limit the guests take for their own packets
	raValidLifetime = 30 * 24 * time.Hour     // prefix valid lifetime (radvd: 30 days)
	raPreferredLife = 7 * 24 * time.Hour      // prefix preferred lifetime (radvd: 7 days)
	raRDNSSLifetime = 3 * raMaxInterval       // RFC 8106 5.1: at least 3 x MaxRtrAdvInterval
	raMinInterval   = 200 * time.Second       // MinRtrAdvInterval
	raMaxInterval   = 600 * time.Second       // MaxRtrAdvInterval
	raInitialCount  = 3                       // MAX_INITIAL_RTR_ADVERTISEMENTS
	raInitialGap    = 16 * time.Second        // MAX_INITIAL_RTR_ADVERT_INTERVAL
	raRetry         = 2 * time.Second         // after a failed packet-out (switch not connected)
	icmp6RA         = 134                     // router advertisement
	ipProtoICMPv6   = 58                      // next header of ICMPv6
	ipProtoUDP      = 17                      // next header of UDP
	dhcp6Preference = 255                     // RFC 8415 18.2.1: clients take a 255 ADVERTISE at once
	ethIPv6         = 0x86dd                  // EtherType of IPv6
	ethVLAN         = 0x8100                  // EtherType of an 802.1Q tag
	ndOptSrcLLAddr  = 1                       // RFC 4861 4.6.1
	ndOptPrefixInfo = 3                       // RFC 4861 4.6.2
	ndOptMTU        = 5                       // RFC 4861 4.6.4
	ndOptRDNSS      = 25                      // RFC 8106 5.1
	raFlagManaged   = 0x80                    // M: addresses by DHCPv6
	raFlagOther     = 0x40                    // O: other configuration by DHCPv6
	pfxFlagOnLink   = 0x80                    // L
	pfxFlagAuto     = 0x40                    // A: form an address by SLAAC
	allNodes        = "ff02::1"               // destination of unsolicited advertisements
	allNodesMAC     = "33:33:00:00:00:01"     // its Ethernet multicast address (RFC 2464 7)
	ipv6HeaderLen   = 40                      // fixed IPv6 header
	ethHeaderLen    = 14                      // untagged Ethernet header
	dhcp6NoIP       = "no IPv6 fixed address" // why a stateful port gets NoAddrsAvail
)

var allNodesAddr = netip.MustParseAddr(allNodes)

// dhcp6Port is what lanesd answers for one ofport whose network has an IPv6 subnet:
// router advertisements and DHCPv6, both from the subnet's settings.
type dhcp6Port struct {
	ID, Name string
	Network  string
	MAC      net.HardwareAddr
	Mode     string       // api.IPv6SLAAC, IPv6DHCPStateful, IPv6DHCPStateless
	Prefix   netip.Prefix // the subnet
	IP       netip.Addr   // the port's IPv6 fixed IP inside Prefix; invalid: none
	DNS      []net.IP
	MTU      int
	Lease    time.Duration
}

// newDHCP6Port derives the answers for a port on network n, nil when n has no
// (usable) IPv6 subnet.
func newDHCP6Port(id, name string, hw net.HardwareAddr, addrs []netip.Addr, n api.Network) *dhcp6Port {
	if n.IPv6 == nil {
		return nil
	}
	pfx, err := netip.ParsePrefix(n.IPv6.CIDR)
	if err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6() {
		return nil
	}
	p := &dhcp6Port{ID: id, Name: name, Network: n.Name, MAC: hw, Mode: n.IPv6.Mode(), Prefix: pfx.Masked(), MTU: n.MTU,
		Lease: time.Duration(n.DHCP.Lease()) * time.Second}
	for _, a := range addrs {
		if a.Is6() && !a.Is4In6() && p.Prefix.Contains(a) {
			p.IP = a
			break
		}
	}
	for _, s := range n.IPv6.DNSServers {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			p.DNS = append(p.DNS, a.AsSlice())
		}
	}
	return p
}

// servesDHCPv6 says whether port flows send a port's router solicitations and
// DHCPv6 to lanesd: its network has an IPv6 subnet.
func servesDHCPv6(n api.Network) bool { return n.IPv6 != nil }

// routerAdvert is the advertisement for the port, to dst (the all-nodes group for an
// unsolicited one, else the solicitor) at Ethernet dstMAC.
func (p *dhcp6Port) routerAdvert(dst netip.Addr, dstMAC net.HardwareAddr) []byte {
	var flags byte
	switch p.Mode {
	case api.IPv6DHCPStateful:
		flags = raFlagManaged | raFlagOther
	case api.IPv6DHCPStateless:
		flags = raFlagOther
	}
	// Router lifetime 0: lanes routers do not route IPv6 yet, so this is no default
	// router (RFC 4861 6.2.5); the guest still takes the prefix and the options.
	ra := []byte{icmp6RA, 0, 0, 0, raHopLimit, flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	ra = append(ra, ndOptSrcLLAddr, 1)
	ra = append(ra, dhcpServerMAC...)
	if p.MTU > 0 {
		ra = append(ra, ndOptMTU, 1, 0, 0)
		ra = binary.BigEndian.AppendUint32(ra, uint32(p.MTU))
	}
	pflags := byte(pfxFlagOnLink)
	if p.Mode != api.IPv6DHCPStateful {
		pflags |= pfxFlagAuto
	}
	ra = append(ra, ndOptPrefixInfo, 4, byte(p.Prefix.Bits()), pflags)
	ra = binary.BigEndian.AppendUint32(ra, uint32(raValidLifetime/time.Second))
	ra = binary.BigEndian.AppendUint32(ra, uint32(raPreferredLife/time.Second))
	ra = append(ra, 0, 0, 0, 0)
	pb := p.Prefix.Addr().As16()
	ra = append(ra, pb[:]...)
	if len(p.DNS) > 0 {
		ra = append(ra, ndOptRDNSS, byte(1+2*len(p.DNS)), 0, 0)
		ra = binary.BigEndian.AppendUint32(ra, uint32(raRDNSSLifetime/time.Second))
		for _, d := range p.DNS {
			ra = append(ra, d.To16()...)
		}
	}
	return buildIPv6Frame(dhcpServerMAC, dstMAC, dhcpServerLinkLocal, dst, ipProtoICMPv6, 255, ra)
}

// unsolicitedAdvert is the periodic advertisement to the all-nodes group.
func (p *dhcp6Port) unsolicitedAdvert() []byte {
	mac, _ := net.ParseMAC(allNodesMAC)
	return p.routerAdvert(allNodesAddr, mac)
}

// answer6 is the responder for one frame of table 78 from port p: a router
// solicitation or a DHCPv6 client message. Pure, like dhcpPort.answer.
func (p *dhcp6Port) answer6(frame []byte) ([]byte, dhcpVerdict) {
	pkt, err := parseIPv6Frame(frame)
	if err != nil {
		return nil, refuse("", "%v", err)
	}
	if !equalMAC(pkt.srcMAC, p.MAC) {
		return nil, refuse("", "frame from %s, not the port's MAC %s", pkt.srcMAC, p.MAC)
	}
	switch pkt.proto {
	case ipProtoICMPv6:
		return p.answerRS(pkt)
	case ipProtoUDP:
		return p.answerDHCPv6(pkt)
	}
	return nil, refuse("", "next header %d is neither ICMPv6 nor UDP", pkt.proto)
}

// answerRS answers a router solicitation (RFC 4861 6.1.1, 6.2.6): unicast to the
// solicitor when it has an address, to all nodes when it solicits from ::.
func (p *dhcp6Port) answerRS(pkt ipv6Packet) ([]byte, dhcpVerdict) {
	const req = "RS"
	switch {
	case len(pkt.payload) < 8 || pkt.payload[0] != flows.ICMPv6RouterSolicit:
		return nil, refuse("", "not a router solicitation")
	case pkt.hopLimit != 255:
		return nil, refuse(req, "hop limit %d, not 255: not from the link", pkt.hopLimit)
	case pkt.payload[1] != 0:
		return nil, refuse(req, "ICMPv6 code %d", pkt.payload[1])
	}
	if pkt.src.IsUnspecified() {
		return p.unsolicitedAdvert(), dhcpVerdict{Kind: dhcpAnswered, Request: req, Reply: "RA"}
	}
	return p.routerAdvert(pkt.src, pkt.srcMAC), dhcpVerdict{Kind: dhcpAnswered, Request: req, Reply: "RA"}
}

// answerDHCPv6 answers a DHCPv6 client message (RFC 8415 18.3) from the port's own
// settings: its fixed address in IA_NA on a stateful subnet, DNS servers always.
func (p *dhcp6Port) answerDHCPv6(pkt ipv6Packet) ([]byte, dhcpVerdict) {
	if pkt.sport != flows.DHCPv6ClientPort || pkt.dport != flows.DHCPv6ServerPort {
		return nil, refuse("", "not from port %d to port %d", flows.DHCPv6ClientPort, flows.DHCPv6ServerPort)
	}
	msg, err := dhcpv6.MessageFromBytes(pkt.payload)
	if err != nil {
		return nil, refuse("", "not a DHCPv6 message: %v", err)
	}
	name := msg.Type().String()
	if pkt.src.IsUnspecified() { // clients send from their link-local (RFC 8415 13.1): no address to answer
		return nil, refuse(name, "from the unspecified address")
	}
	cid := msg.Options.ClientID()
	if cid == nil {
		return nil, refuse(name, "no client identifier")
	}
	sid := msg.Options.ServerID()
	switch msg.Type() {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRebind:
		if sid != nil { // RFC 8415 16.2, 16.5, 16.7: discard
			return nil, refuse(name, "carries a server identifier")
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if sid == nil || !sid.Equal(dhcpServerDUID) {
			return nil, refuse(name, "for server %v, not %v", sid, dhcpServerDUID)
		}
	case dhcpv6.MessageTypeInformationRequest:
		if sid != nil && !sid.Equal(dhcpServerDUID) {
			return nil, refuse(name, "for server %v, not %v", sid, dhcpServerDUID)
		}
	default:
		return nil, refuse(name, "not a message a server answers")
	}
	mods := []dhcpv6.Modifier{dhcpv6.WithServerID(dhcpServerDUID)}
	if len(p.DNS) > 0 {
		mods = append(mods, dhcpv6.WithDNS(p.DNS...))
	}
	var reply *dhcpv6.Message
	kind := dhcpAnswered
	switch msg.Type() {
	case dhcpv6.MessageTypeSolicit:
		mods = append(mods, p.addresses(msg)...)
		if msg.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
			reply, err = dhcpv6.NewReplyFromMessage(msg, mods...)
		} else {
			mods = append(mods, dhcpv6.WithPreference(dhcp6Preference))
			reply, err = dhcpv6.NewAdvertiseFromSolicit(msg, mods...)
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		mods = append(mods, p.addresses(msg)...)
		reply, err = dhcpv6.NewReplyFromMessage(msg, mods...)
	case dhcpv6.MessageTypeConfirm:
		mods = append(mods, withStatus(p.confirm(msg)))
		reply, err = dhcpv6.NewReplyFromMessage(msg, mods...)
	case dhcpv6.MessageTypeInformationRequest:
		reply, err = dhcpv6.NewReplyFromMessage(msg, mods...)
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		// The address stays the port's; the client waits for this Reply (18.3.7).
		kind = dhcpReleased
		mods = append(mods, withStatus(iana.StatusSuccess, "the address stays the port's"))
		reply = &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: msg.TransactionID}
		reply.AddOption(msg.GetOneOption(dhcpv6.OptionClientID))
		for _, m := range mods {
			m(reply)
		}
	}
	if err != nil {
		return nil, refuse(name, "build reply: %v", err)
	}
	v := dhcpVerdict{Kind: kind, Request: name, Reply: reply.Type().String()}
	if st := noAddrs(reply); st != "" {
		v.Reply += " " + st
	}
	return buildUDP6Frame(dhcpServerMAC, pkt.srcMAC, dhcpServerLinkLocal, pkt.src, flows.DHCPv6ServerPort, flows.DHCPv6ClientPort, reply.ToBytes()), v
}

// addresses answers every IA_NA of msg: the port's fixed address on a stateful
// subnet; NoAddrsAvail otherwise (RFC 8415 18.3.9, 18.3.10), in each IA and, for a
// message without IA_NA, at the top level.
func (p *dhcp6Port) addresses(msg *dhcpv6.Message) []dhcpv6.Modifier {
	ias := msg.Options.IANA()
	var why string
	switch {
	case p.Mode != api.IPv6DHCPStateful:
		why = fmt.Sprintf("network %s assigns addresses by SLAAC (%s)", p.Network, p.Mode)
	case !p.IP.IsValid():
		why = dhcp6NoIP
	}
	if len(ias) == 0 {
		if why != "" && msg.Type() != dhcpv6.MessageTypeRenew && msg.Type() != dhcpv6.MessageTypeRebind {
			return []dhcpv6.Modifier{withStatus(iana.StatusNoAddrsAvail, why)}
		}
		return nil
	}
	var mods []dhcpv6.Modifier
	for _, ia := range ias {
		out := &dhcpv6.OptIANA{IaId: ia.IaId}
		if why != "" {
			out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNoAddrsAvail, StatusMessage: why})
		} else {
			out.T1, out.T2 = p.Lease/2, p.Lease*4/5
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: p.IP.AsSlice(), PreferredLifetime: p.Lease, ValidLifetime: p.Lease})
			// An address the client held that is not the port's gets lifetime 0, so
			// the client drops it (RFC 8415 18.3.4).
			for _, a := range ia.Options.Addresses() {
				if old, ok := netip.AddrFromSlice(a.IPv6Addr); ok && old != p.IP {
					out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.IPv6Addr})
				}
			}
		}
		mods = append(mods, dhcpv6.WithOption(out))
	}
	return mods
}

// confirm is the status of a CONFIRM (RFC 8415 18.3.3): the client's addresses are
// all on the port's link, or NotOnLink.
func (p *dhcp6Port) confirm(msg *dhcpv6.Message) (iana.StatusCode, string) {
	for _, ia := range msg.Options.IANA() {
		for _, a := range ia.Options.Addresses() {
			addr, ok := netip.AddrFromSlice(a.IPv6Addr)
			if !ok || !p.Prefix.Contains(addr) {
				return iana.StatusNotOnLink, fmt.Sprintf("%s is not on %s", a.IPv6Addr, p.Prefix)
			}
		}
	}
	return iana.StatusSuccess, "on link"
}

func withStatus(code iana.StatusCode, msg string) dhcpv6.Modifier {
	return dhcpv6.WithOption(&dhcpv6.OptStatusCode{StatusCode: code, StatusMessage: msg})
}

// noAddrs names a NoAddrsAvail or NotOnLink status anywhere in reply, "" if none.
func noAddrs(reply *dhcpv6.Message) string {
	codes := []*dhcpv6.OptStatusCode{reply.Options.Status()}
	for _, ia := range reply.Options.IANA() {
		codes = append(codes, ia.Options.Status())
	}
	for _, c := range codes {
		if c != nil && c.StatusCode != iana.StatusSuccess {
			return c.StatusCode.String()
		}
	}
	return ""
}

// ipv6Packet is the part of a punted frame the responder reads.
type ipv6Packet struct {
	srcMAC       net.HardwareAddr
	src, dst     netip.Addr
	hopLimit     uint8
	proto        uint8
	sport, dport uint16 // UDP only
	payload      []byte // ICMPv6 message, or UDP payload
}

// parseIPv6Frame reads an Ethernet/IPv6 frame (an 802.1Q tag is skipped) whose next
// header is ICMPv6 or UDP; extension headers are refused, since neither a router
// solicitation nor a DHCPv6 client message needs one.
func parseIPv6Frame(b []byte) (ipv6Packet, error) {
	var pkt ipv6Packet
	if len(b) < ethHeaderLen {
		return pkt, errors.New("frame too short")
	}
	pkt.srcMAC = net.HardwareAddr(append([]byte(nil), b[6:12]...))
	et, off := binary.BigEndian.Uint16(b[12:14]), ethHeaderLen
	if et == ethVLAN && len(b) >= ethHeaderLen+4 {
		et, off = binary.BigEndian.Uint16(b[16:18]), ethHeaderLen+4
	}
	ip := b[off:]
	if et != ethIPv6 || len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 {
		return pkt, errors.New("not IPv6")
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ipv6HeaderLen+plen > len(ip) {
		return pkt, errors.New("bad IPv6 payload length")
	}
	pkt.proto, pkt.hopLimit = ip[6], ip[7]
	pkt.src = netip.AddrFrom16([16]byte(ip[8:24]))
	pkt.dst = netip.AddrFrom16([16]byte(ip[24:40]))
	payload := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	switch pkt.proto {
	case ipProtoICMPv6:
		pkt.payload = payload
	case ipProtoUDP:
		if len(payload) < 8 {
			return pkt, errors.New("UDP header too short")
		}
		ulen := int(binary.BigEndian.Uint16(payload[4:6]))
		if ulen < 8 || ulen > len(payload) {
			return pkt, errors.New("bad UDP length")
		}
		pkt.sport, pkt.dport = binary.BigEndian.Uint16(payload[0:2]), binary.BigEndian.Uint16(payload[2:4])
		pkt.payload = payload[8:ulen]
	default:
		return pkt, fmt.Errorf("next header %d: neither ICMPv6 nor UDP", pkt.proto)
	}
	return pkt, nil
}

// buildIPv6Frame makes an Ethernet/IPv6 frame around an upper-layer message (ICMPv6
// or UDP), filling in that message's checksum at its offset.
func buildIPv6Frame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, proto, hopLimit uint8, upper []byte) []byte {
	b := make([]byte, ethHeaderLen+ipv6HeaderLen+len(upper))
	copy(b[0:6], dstMAC)
	copy(b[6:12], srcMAC)
	binary.BigEndian.PutUint16(b[12:14], ethIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(upper)))
	ip[6], ip[7] = proto, hopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	u := ip[ipv6HeaderLen:]
	copy(u, upper)
	csOff := 2 // ICMPv6
	if proto == ipProtoUDP {
		csOff = 6
	}
	u[csOff], u[csOff+1] = 0, 0
	cs := checksum(u, pseudo6(s, d, proto, len(u)))
	if cs == 0 && proto == ipProtoUDP {
		cs = 0xffff // UDP over IPv6 must carry a checksum; 0 is written as all ones
	}
	binary.BigEndian.PutUint16(u[csOff:], cs)
	return b
}

// buildUDP6Frame makes an Ethernet/IPv6/UDP frame with a valid checksum.
func buildUDP6Frame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:2], sport)
	binary.BigEndian.PutUint16(udp[2:4], dport)
	binary.BigEndian.PutUint16(udp[4:6], uint16(8+len(payload)))
	udp = append(udp, payload...)
	return buildIPv6Frame(srcMAC, dstMAC, src, dst, ipProtoUDP, 255, udp)
}

// pseudo6 is the partial sum of the IPv6 pseudo-header (RFC 8200 8.1).
func pseudo6(src, dst [16]byte, proto uint8, length int) uint32 {
	sum := uint32(proto) + uint32(length>>16) + uint32(length&0xffff)
	for i := 0; i < 16; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(src[i:])) + uint32(binary.BigEndian.Uint16(dst[i:]))
	}
	return sum
}

// dhcp6Summary is how a port's last answer reads in logs: verdict and address.
func (p *dhcp6Port) dhcp6Summary(v dhcpVerdict) string {
	s := v.String()
	if v.Kind == dhcpAnswered && p.IP.IsValid() && p.Mode == api.IPv6DHCPStateful && !strings.Contains(v.Reply, "NoAddrsAvail") && v.Request != "RS" {
		s += " " + p.IP.String()
	}
	return s
}
