package hostwire

import (
	"net/netip"

	"github.com/lanes-net/lanes/api"
)

// The cases both the model's unit test and the kernel agreement test run: each suite
// is one firewall state, each case one packet at one port with the verdict expected.

type verdictCase struct {
	name string
	port string
	dir  string
	pkt  Packet
	// want is compared on Allowed, Reason, GroupID and RuleID.
	want Verdict
	// noProbe says why the agreement test cannot send this packet; empty: it does.
	noProbe string
}

type verdictSuite struct {
	name  string
	state FirewallState
	cases []verdictCase
}

// The golden fixture's ports: P0 is filtered (two groups, address pairs), P1 has port
// security off, P2's only group is gone.
const (
	mP0, mP1, mP2 = "0d8a43d2-3a3f-4b4e-9c2f-2f3a1e5b7c01", "1e000000-0000-0000-0000-000000000002", "2f000000-0000-0000-0000-000000000003"
	mP0MAC        = "fa:16:3e:4c:2e:01"
	mP2MAC        = "fa:16:3e:4c:2e:03"
	// mP0LL and mPairLL are the IPv6 link-local addresses of P0's MAC and of its
	// address pair's MAC.
	mP0LL   = "fe80::f816:3eff:fe4c:2e01"
	mPairLL = "fe80::f816:3eff:fe00:99"
	// mServerLL is the link-local address lanesd sends RAs and DHCPv6 replies from.
	mServerLL = "fe80::4c:41ff:fe4e:4553"
	// mForeignMAC belongs to no port.
	mForeignMAC = "fa:16:3e:99:99:99"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func tcpPkt(src, dst string, dport int) Packet {
	return Packet{Src: addr(src), Dst: addr(dst), Protocol: 6, DstPort: dport}
}

func udpPkt(src, dst string, sport, dport int) Packet {
	return Packet{Src: addr(src), Dst: addr(dst), Protocol: 17, SrcPort: sport, DstPort: dport}
}

// icmpPkt is ICMP for IPv4 addresses, ICMPv6 for IPv6 ones.
func icmpPkt(src, dst string, typ, code int) Packet {
	p := Packet{Src: addr(src), Dst: addr(dst), Protocol: 1, ICMPType: typ, ICMPCode: code}
	if p.Src.Is6() {
		p.Protocol = 58
	}
	return p
}

func protoPkt(src, dst string, proto int) Packet {
	return Packet{Src: addr(src), Dst: addr(dst), Protocol: proto}
}

func withMAC(p Packet, mac string) Packet { p.SrcMAC = mac; return p }

func established(p Packet) Packet { p.Established = true; return p }

func byRule(group, rule string) Verdict {
	return Verdict{Allowed: true, Reason: ReasonRule, GroupID: group, RuleID: rule}
}

func allowedBy(r Reason) Verdict { return Verdict{Allowed: true, Reason: r} }

func droppedBy(r Reason) Verdict { return Verdict{Reason: r} }

// p0 is the golden P0 without groups or address pairs.
func p0(groups ...string) FirewallPort {
	return FirewallPort{ID: mP0, NetworkID: "9a000000-net-a", MAC: mP0MAC, FixedIPs: []string{"10.0.0.5"}, PortSecurity: true, SecurityGroups: groups}
}

func p2(groups ...string) FirewallPort {
	return FirewallPort{ID: mP2, NetworkID: "9b000000-net-b", MAC: mP2MAC, FixedIPs: []string{"10.0.0.7"}, PortSecurity: true, SecurityGroups: groups}
}

func groupMap(gs ...*api.SecurityGroup) map[string]*api.SecurityGroup {
	m := map[string]*api.SecurityGroup{}
	for _, g := range gs {
		m[g.ID] = g
	}
	return m
}

func verdictSuites() []verdictSuite {
	golden := goldenState()
	web := "5b7e9c2a-1111-4b3c-8d2e-000000000001"
	var suites []verdictSuite
	suites = append(suites, verdictSuite{name: "golden", state: golden, cases: []verdictCase{
		// web's rules come first; r4 admits any IPv4 source (web's members hold 0.0.0.0/0).
		{name: "tcp 22, first of two equal rules", port: mP0, dir: api.Ingress, pkt: tcpPkt("203.0.113.7", "10.0.0.5", 22), want: byRule(web, "r1")},
		{name: "tcp 8080 from the remote CIDR", port: mP0, dir: api.Ingress, pkt: tcpPkt("192.168.3.4", "10.0.0.5", 8080), want: byRule(web, "r3")},
		{name: "tcp 8081 by the remote group", port: mP0, dir: api.Ingress, pkt: tcpPkt("192.168.3.4", "10.0.0.5", 8081), want: byRule(web, "r4")},
		{name: "udp by the remote group", port: mP0, dir: api.Ingress, pkt: udpPkt("203.0.113.7", "10.0.0.5", 0, 53), want: byRule(web, "r4")},
		{name: "icmp echo", port: mP0, dir: api.Ingress, pkt: icmpPkt("203.0.113.7", "10.0.0.5", 8, 0), want: byRule(web, "r2")},
		{name: "icmpv6 echo 128/0", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 128, 0), want: byRule(web, "r7")},
		{name: "icmpv6 echo with code 1", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 128, 1), want: droppedBy(ReasonNoRule)},
		{name: "tcp over IPv6", port: mP0, dir: api.Ingress, pkt: tcpPkt("fd00::1", "fd00::5", 22), want: droppedBy(ReasonNoRule)},
		{name: "neighbour solicitation", port: mP0, dir: api.Ingress, pkt: icmpPkt("fe80::1", "ff02::1:ff4c:2e01", 135, 0), want: allowedBy(ReasonBuiltin)},
		{name: "DHCP reply", port: mP0, dir: api.Ingress, pkt: udpPkt("10.0.0.2", "10.0.0.5", 67, 68), want: allowedBy(ReasonBuiltin)},
		{name: "router advertisement from lanesd", port: mP0, dir: api.Ingress, pkt: icmpPkt(mServerLL, "ff02::1", 134, 0), want: allowedBy(ReasonBuiltin)},
		{name: "solicited router advertisement from lanesd", port: mP0, dir: api.Ingress, pkt: icmpPkt(mServerLL, mP0LL, 134, 0), want: allowedBy(ReasonBuiltin)},
		{name: "DHCPv6 reply from lanesd", port: mP0, dir: api.Ingress, pkt: udpPkt(mServerLL, mP0LL, 547, 546), want: allowedBy(ReasonBuiltin)},
		{name: "router advertisement from another link-local", port: mP0, dir: api.Ingress, pkt: icmpPkt("fe80::2", "ff02::1", 134, 0), want: droppedBy(ReasonNoRule)},
		{name: "DHCPv6 reply from another link-local", port: mP0, dir: api.Ingress, pkt: udpPkt("fe80::2", mP0LL, 547, 546), want: droppedBy(ReasonNoRule)},
		{name: "udp from lanesd's address to another port", port: mP0, dir: api.Ingress, pkt: udpPkt(mServerLL, mP0LL, 547, 547), want: droppedBy(ReasonNoRule)},
		{name: "egress udp", port: mP0, dir: api.Egress, pkt: udpPkt("10.0.0.5", "8.8.8.8", 0, 53), want: byRule(web, "r5")},
		{name: "egress from an address pair", port: mP0, dir: api.Egress, pkt: tcpPkt("10.0.0.100", "10.0.0.9", 443), want: byRule(web, "r5")},
		{name: "egress from a CIDR pair with its MAC", port: mP0, dir: api.Egress, pkt: withMAC(tcpPkt("10.0.1.7", "10.0.0.9", 443), "fa:16:3e:00:00:99"), want: byRule(web, "r5")},
		{name: "egress from a CIDR pair with the port's MAC", port: mP0, dir: api.Egress, pkt: tcpPkt("10.0.1.7", "10.0.0.9", 443), want: droppedBy(ReasonSpoofed)},
		{name: "egress from a foreign IP", port: mP0, dir: api.Egress, pkt: tcpPkt("10.0.0.9", "10.0.0.6", 443), want: droppedBy(ReasonSpoofed)},
		{name: "egress from a foreign MAC", port: mP0, dir: api.Egress, pkt: withMAC(tcpPkt("10.0.0.5", "10.0.0.6", 443), mForeignMAC), want: droppedBy(ReasonSpoofed)},
		{name: "egress IPv6 from link-local", port: mP0, dir: api.Egress, pkt: tcpPkt(mP0LL, "fd00::2", 80), want: byRule(web, "r6")},
		{name: "egress IPv6 from the pair MAC's link-local", port: mP0, dir: api.Egress, pkt: withMAC(tcpPkt(mPairLL, "fd00::2", 80), "fa:16:3e:00:00:99"), want: byRule(web, "r6")},
		{name: "egress IPv6 from a foreign IP", port: mP0, dir: api.Egress, pkt: tcpPkt("fd00::5", "fd00::2", 80), want: droppedBy(ReasonSpoofed)},
		{name: "egress DHCP server reply", port: mP0, dir: api.Egress, pkt: udpPkt("10.0.0.5", "10.0.0.6", 67, 68), want: droppedBy(ReasonDHCPServer)},
		{name: "egress DHCPv6 server reply", port: mP0, dir: api.Egress, pkt: udpPkt(mP0LL, "fe80::2", 547, 546), want: droppedBy(ReasonDHCPServer)},
		{name: "egress router advertisement", port: mP0, dir: api.Egress, pkt: icmpPkt(mP0LL, "ff02::1", 134, 0), want: droppedBy(ReasonRouterAdvert)},
		{name: "egress DHCP discover", port: mP0, dir: api.Egress, pkt: udpPkt("0.0.0.0", "255.255.255.255", 68, 67), want: allowedBy(ReasonBuiltin)},
		{name: "egress icmpv6 always", port: mP0, dir: api.Egress, pkt: icmpPkt(mP0LL, "fd00::2", 128, 0), want: allowedBy(ReasonBuiltin)},
		{name: "port security off in", port: mP1, dir: api.Ingress, pkt: tcpPkt("203.0.113.7", "10.0.0.6", 9999), want: allowedBy(ReasonPortSecurityOff)},
		{name: "port security off out, spoofed", port: mP1, dir: api.Egress, pkt: withMAC(tcpPkt("192.0.2.1", "10.0.0.5", 80), mForeignMAC), want: allowedBy(ReasonPortSecurityOff)},
		// P2 names a group that is gone beside web: web's rules still apply.
		{name: "group gone beside web, in", port: mP2, dir: api.Ingress, pkt: icmpPkt("10.0.0.5", "10.0.0.7", 8, 0), want: byRule(web, "r2")},
		{name: "group gone beside web, out", port: mP2, dir: api.Egress, pkt: tcpPkt("10.0.0.7", "10.0.0.5", 80), want: byRule(web, "r5")},
		{name: "group gone, DHCP reply", port: mP2, dir: api.Ingress, pkt: udpPkt("10.0.0.2", "255.255.255.255", 67, 68), want: allowedBy(ReasonBuiltin)},
		{name: "group gone, DHCP reply to another address", port: mP2, dir: api.Ingress, pkt: udpPkt("10.0.0.2", "10.0.0.8", 67, 68), want: droppedBy(ReasonNoRule)},
	}})

	// ICMP type and code: the drift that made trace call an echo request admitted by a
	// rule for echo replies.
	icmp := &api.SecurityGroup{ID: "icmp", Name: "icmp", Rules: []api.Rule{
		{ID: "reply", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: intp(0)},
		{ID: "host-unreach", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: intp(3), ICMPCode: intp(1)},
		{ID: "unreach6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "icmpv6", ICMPType: intp(1)},
		{ID: "out", Direction: api.Egress, Ethertype: api.IPv4},
	}}
	suites = append(suites, verdictSuite{name: "icmp type and code", state: FirewallState{
		Ports: []FirewallPort{p0("icmp")}, Groups: groupMap(icmp),
	}, cases: []verdictCase{
		{name: "echo request, only replies allowed", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 8, 0), want: droppedBy(ReasonNoRule)},
		{name: "unsolicited echo reply: invalid, but the rule comes first", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 0, 0), want: byRule("icmp", "reply")},
		{name: "type 3 code 1", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 3, 1), want: byRule("icmp", "host-unreach")},
		{name: "type 3 code 3", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 3, 3), want: droppedBy(ReasonInvalid)},
		{name: "time exceeded", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 11, 0), want: droppedBy(ReasonInvalid)},
		{name: "timestamp request", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 13, 0), want: droppedBy(ReasonNoRule)},
		{name: "icmpv6 unreachable, any code", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 1, 4), want: byRule("icmp", "unreach6")},
		{name: "icmpv6 packet too big", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 2, 0), want: droppedBy(ReasonInvalid)},
		{name: "icmpv6 echo request", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 128, 0), want: droppedBy(ReasonNoRule)},
		{name: "echo reply to the port's own request", port: mP0, dir: api.Ingress, pkt: established(icmpPkt("10.0.0.2", "10.0.0.5", 0, 0)), want: allowedBy(ReasonEstablished)},
	}})

	// Type 255 is iptables' "any type" for IPv4; ip6tables has no such wildcard. The
	// protocol names cross families: icmp in an IPv6 rule means ICMPv6, icmpv6 in an
	// IPv4 rule is protocol 58.
	anyICMP := &api.SecurityGroup{ID: "any-icmp", Rules: []api.Rule{
		{ID: "t255", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: intp(255)},
		{ID: "t255v6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "ipv6-icmp", ICMPType: intp(255)},
	}}
	crossed := &api.SecurityGroup{ID: "crossed", Rules: []api.Rule{
		{ID: "icmp-in-v6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "icmp"},
		{ID: "58-in-v4", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmpv6"},
	}}
	suites = append(suites, verdictSuite{name: "icmp wildcard and names", state: FirewallState{
		Ports: []FirewallPort{p0("any-icmp"), p2("crossed")}, Groups: groupMap(anyICMP, crossed),
	}, cases: []verdictCase{
		{name: "type 255 admits an echo request", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 8, 0), want: byRule("any-icmp", "t255")},
		{name: "type 255 admits type 3/1", port: mP0, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.5", 3, 1), want: byRule("any-icmp", "t255")},
		{name: "icmpv6 type 255 is no wildcard", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 128, 0), want: droppedBy(ReasonNoRule)},
		{name: "icmpv6 type 255 itself", port: mP0, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::5", 255, 0), want: byRule("any-icmp", "t255v6")},
		{name: "icmp in an IPv6 rule is ICMPv6", port: mP2, dir: api.Ingress, pkt: icmpPkt("fd00::1", "fd00::7", 128, 0), want: byRule("crossed", "icmp-in-v6")},
		{name: "icmpv6 in an IPv4 rule is protocol 58", port: mP2, dir: api.Ingress, pkt: protoPkt("10.0.0.2", "10.0.0.7", 58), want: byRule("crossed", "58-in-v4")},
		{name: "icmp over IPv4 is not protocol 58", port: mP2, dir: api.Ingress, pkt: icmpPkt("10.0.0.2", "10.0.0.7", 8, 0), want: droppedBy(ReasonNoRule)},
	}})

	// Port ranges, single ports, any port, protocol numbers, remote CIDRs both ways.
	ports := &api.SecurityGroup{ID: "ports", Name: "ports", Rules: []api.Rule{
		{ID: "range", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 1000, PortMax: 2000},
		{ID: "single", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 53},
		{ID: "all-udp-from-cidr", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 1, PortMax: 65535, RemoteCIDR: "192.0.2.0/24"},
		{ID: "https-from-cidr", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "6", PortMin: 443, PortMax: 443, RemoteCIDR: "198.18.0.1/15"},
		{ID: "proto-253", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "253"},
		{ID: "sctp", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "132", PortMin: 5000, PortMax: 5000},
		{ID: "web-out", Direction: api.Egress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 80, PortMax: 81},
		{ID: "udp-out-cidr", Direction: api.Egress, Ethertype: api.IPv4, Protocol: "udp", RemoteCIDR: "10.9.0.0/16"},
		{ID: "v6-range", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "udp", PortMin: 7000, PortMax: 7001, RemoteCIDR: "fd00:1::/64"},
	}}
	suites = append(suites, verdictSuite{name: "ports and protocols", state: FirewallState{
		Ports: []FirewallPort{p0("ports")}, Groups: groupMap(ports),
	}, cases: []verdictCase{
		{name: "below the range", port: mP0, dir: api.Ingress, pkt: tcpPkt("203.0.113.1", "10.0.0.5", 999), want: droppedBy(ReasonNoRule)},
		{name: "range start", port: mP0, dir: api.Ingress, pkt: tcpPkt("203.0.113.1", "10.0.0.5", 1000), want: byRule("ports", "range")},
		{name: "range end", port: mP0, dir: api.Ingress, pkt: tcpPkt("203.0.113.1", "10.0.0.5", 2000), want: byRule("ports", "range")},
		{name: "above the range", port: mP0, dir: api.Ingress, pkt: tcpPkt("203.0.113.1", "10.0.0.5", 2001), want: droppedBy(ReasonNoRule)},
		{name: "udp range is not tcp", port: mP0, dir: api.Ingress, pkt: udpPkt("203.0.113.1", "10.0.0.5", 0, 1500), want: droppedBy(ReasonNoRule)},
		{name: "single port, no max", port: mP0, dir: api.Ingress, pkt: udpPkt("203.0.113.1", "10.0.0.5", 0, 53), want: byRule("ports", "single")},
		{name: "next to the single port", port: mP0, dir: api.Ingress, pkt: udpPkt("203.0.113.1", "10.0.0.5", 0, 54), want: droppedBy(ReasonNoRule)},
		{name: "1-65535 from the CIDR", port: mP0, dir: api.Ingress, pkt: udpPkt("192.0.2.200", "10.0.0.5", 0, 54), want: byRule("ports", "all-udp-from-cidr")},
		{name: "unmasked CIDR, inside", port: mP0, dir: api.Ingress, pkt: tcpPkt("198.19.255.1", "10.0.0.5", 443), want: byRule("ports", "https-from-cidr")},
		{name: "unmasked CIDR, outside", port: mP0, dir: api.Ingress, pkt: tcpPkt("198.20.0.1", "10.0.0.5", 443), want: droppedBy(ReasonNoRule)},
		{name: "protocol number", port: mP0, dir: api.Ingress, pkt: protoPkt("203.0.113.1", "10.0.0.5", 253), want: byRule("ports", "proto-253")},
		{name: "other protocol number", port: mP0, dir: api.Ingress, pkt: protoPkt("203.0.113.1", "10.0.0.5", 254), want: droppedBy(ReasonNoRule)},
		{name: "sctp port", port: mP0, dir: api.Ingress, pkt: Packet{Src: addr("203.0.113.1"), Dst: addr("10.0.0.5"), Protocol: 132, SrcPort: 5000, DstPort: 5000}, want: byRule("ports", "sctp"),
			noProbe: "a real SCTP INIT needs a CRC32c checksum conntrack verifies; the probe builder does not make one"},
		{name: "egress range", port: mP0, dir: api.Egress, pkt: tcpPkt("10.0.0.5", "10.0.0.9", 81), want: byRule("ports", "web-out")},
		{name: "egress outside the range", port: mP0, dir: api.Egress, pkt: tcpPkt("10.0.0.5", "10.0.0.9", 82), want: droppedBy(ReasonNoRule)},
		{name: "egress to the CIDR", port: mP0, dir: api.Egress, pkt: udpPkt("10.0.0.5", "10.9.1.1", 0, 5000), want: byRule("ports", "udp-out-cidr")},
		{name: "egress outside the CIDR", port: mP0, dir: api.Egress, pkt: udpPkt("10.0.0.5", "10.10.0.1", 0, 5000), want: droppedBy(ReasonNoRule)},
		{name: "IPv6 range from the CIDR", port: mP0, dir: api.Ingress, pkt: udpPkt("fd00:1::9", "fd00::5", 0, 7001), want: byRule("ports", "v6-range")},
		{name: "IPv6 range from elsewhere", port: mP0, dir: api.Ingress, pkt: udpPkt("fd00:2::9", "fd00::5", 0, 7001), want: droppedBy(ReasonNoRule)},
	}})

	// Remote groups of both families, as source (ingress) and destination (egress), and
	// ethertype separation.
	db := &api.SecurityGroup{ID: "db", Name: "db", Rules: []api.Rule{
		{ID: "pg4", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 5432, PortMax: 5432, RemoteGroupID: "app"},
		{ID: "pg6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "tcp", PortMin: 5432, PortMax: 5432, RemoteGroupID: "app"},
		{ID: "ssh6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{ID: "out6", Direction: api.Egress, Ethertype: api.IPv6, RemoteGroupID: "app"},
		{ID: "nobody", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", RemoteGroupID: "empty"},
	}}
	dbPort := p0("db")
	dbPort.FixedIPs = []string{"10.0.0.5", "fd00:2::5"}
	suites = append(suites, verdictSuite{name: "remote groups and ethertype", state: FirewallState{
		Ports: []FirewallPort{dbPort}, Groups: groupMap(db),
		// Members of app on another network share no set with db's port: 10.1.0.11
		// there is no member for it.
		Members: map[string]map[string][]string{
			"app": {"9a000000-net-a": {"10.1.0.10", "10.2.0.0/28", "fd00:1::10"}, "9b000000-net-b": {"10.1.0.11"}},
			"db":  {"9a000000-net-a": {"10.0.0.5", "fd00:2::5"}},
		},
	}, cases: []verdictCase{
		{name: "member", port: mP0, dir: api.Ingress, pkt: tcpPkt("10.1.0.10", "10.0.0.5", 5432), want: byRule("db", "pg4")},
		{name: "member CIDR", port: mP0, dir: api.Ingress, pkt: tcpPkt("10.2.0.15", "10.0.0.5", 5432), want: byRule("db", "pg4")},
		{name: "not a member", port: mP0, dir: api.Ingress, pkt: tcpPkt("10.1.0.11", "10.0.0.5", 5432), want: droppedBy(ReasonNoRule)},
		{name: "IPv6 member", port: mP0, dir: api.Ingress, pkt: tcpPkt("fd00:1::10", "fd00:2::5", 5432), want: byRule("db", "pg6")},
		{name: "IPv6 not a member", port: mP0, dir: api.Ingress, pkt: tcpPkt("fd00:1::11", "fd00:2::5", 5432), want: droppedBy(ReasonNoRule)},
		{name: "IPv6-only rule, IPv6", port: mP0, dir: api.Ingress, pkt: tcpPkt("fd00:9::1", "fd00:2::5", 22), want: byRule("db", "ssh6")},
		{name: "IPv6-only rule, IPv4", port: mP0, dir: api.Ingress, pkt: tcpPkt("10.1.0.10", "10.0.0.5", 22), want: droppedBy(ReasonNoRule)},
		{name: "empty group admits nobody", port: mP0, dir: api.Ingress, pkt: udpPkt("10.1.0.10", "10.0.0.5", 0, 9), want: droppedBy(ReasonNoRule)},
		{name: "egress to a member", port: mP0, dir: api.Egress, pkt: tcpPkt("fd00:2::5", "fd00:1::10", 80), want: byRule("db", "out6")},
		{name: "egress to a non-member", port: mP0, dir: api.Egress, pkt: tcpPkt("fd00:2::5", "fd00:1::99", 80), want: droppedBy(ReasonNoRule)},
		{name: "egress IPv4, no IPv4 egress rule", port: mP0, dir: api.Egress, pkt: tcpPkt("10.0.0.5", "10.1.0.10", 80), want: droppedBy(ReasonNoRule)},
	}})

	// Stateful: replies pass by conntrack, before the rules, but never past
	// anti-spoofing.
	client := &api.SecurityGroup{ID: "client", Rules: []api.Rule{
		{ID: "out", Direction: api.Egress, Ethertype: api.IPv4},
	}}
	server := &api.SecurityGroup{ID: "server", Rules: []api.Rule{
		{ID: "ssh", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{ID: "dns", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 53, PortMax: 53},
	}}
	suites = append(suites, verdictSuite{name: "stateful", state: FirewallState{
		Ports: []FirewallPort{p0("client"), p2("server")}, Groups: groupMap(client, server),
	}, cases: []verdictCase{
		{name: "new connection in", port: mP0, dir: api.Ingress, pkt: tcpPkt("10.0.0.2", "10.0.0.5", 80), want: droppedBy(ReasonNoRule)},
		{name: "tcp reply in", port: mP0, dir: api.Ingress, pkt: established(Packet{Src: addr("10.0.0.2"), Dst: addr("10.0.0.5"), Protocol: 6, SrcPort: 80}), want: allowedBy(ReasonEstablished)},
		{name: "udp reply in", port: mP0, dir: api.Ingress, pkt: established(udpPkt("10.0.0.2", "10.0.0.5", 53, 0)), want: allowedBy(ReasonEstablished)},
		{name: "echo reply in", port: mP0, dir: api.Ingress, pkt: established(icmpPkt("10.0.0.2", "10.0.0.5", 0, 0)), want: allowedBy(ReasonEstablished)},
		{name: "new connection out", port: mP2, dir: api.Egress, pkt: tcpPkt("10.0.0.7", "10.0.0.2", 80), want: droppedBy(ReasonNoRule)},
		{name: "tcp reply out", port: mP2, dir: api.Egress, pkt: established(Packet{Src: addr("10.0.0.7"), Dst: addr("10.0.0.2"), Protocol: 6, SrcPort: 22}), want: allowedBy(ReasonEstablished)},
		{name: "udp reply out", port: mP2, dir: api.Egress, pkt: established(udpPkt("10.0.0.7", "10.0.0.2", 53, 0)), want: allowedBy(ReasonEstablished)},
		{name: "reply out from a foreign MAC", port: mP2, dir: api.Egress, pkt: withMAC(established(Packet{Src: addr("10.0.0.7"), Dst: addr("10.0.0.2"), Protocol: 6, SrcPort: 22}), mForeignMAC), want: droppedBy(ReasonSpoofed)},
	}})

	// Address pairs of both families, and a port without fixed IPs: IPv4 then allows
	// any source with the port's MAC, IPv6 only its link-local address.
	pairs := &api.SecurityGroup{ID: "all-out", Rules: []api.Rule{
		{ID: "v4", Direction: api.Egress, Ethertype: api.IPv4},
		{ID: "v6", Direction: api.Egress, Ethertype: api.IPv6},
	}}
	pairPort := p0("all-out")
	pairPort.FixedIPs = []string{"10.0.0.5", "fd00::5"}
	pairPort.AllowedAddressPairs = []api.AddressPair{{IP: "fd00:9::/64"}, {IP: "10.5.0.1", MAC: "fa:16:3e:00:00:77"}}
	noIP := p2("all-out")
	noIP.FixedIPs = nil
	suites = append(suites, verdictSuite{name: "address pairs", state: FirewallState{
		Ports: []FirewallPort{pairPort, noIP}, Groups: groupMap(pairs),
	}, cases: []verdictCase{
		{name: "IPv6 fixed IP", port: mP0, dir: api.Egress, pkt: udpPkt("fd00::5", "fd00::2", 0, 9), want: byRule("all-out", "v6")},
		{name: "IPv6 pair prefix", port: mP0, dir: api.Egress, pkt: udpPkt("fd00:9::1234", "fd00::2", 0, 9), want: byRule("all-out", "v6")},
		{name: "outside the IPv6 pair", port: mP0, dir: api.Egress, pkt: udpPkt("fd00:8::1", "fd00::2", 0, 9), want: droppedBy(ReasonSpoofed)},
		{name: "IPv4 pair with its MAC", port: mP0, dir: api.Egress, pkt: withMAC(udpPkt("10.5.0.1", "10.0.0.2", 0, 9), "fa:16:3e:00:00:77"), want: byRule("all-out", "v4")},
		{name: "IPv4 pair with the port's MAC", port: mP0, dir: api.Egress, pkt: udpPkt("10.5.0.1", "10.0.0.2", 0, 9), want: droppedBy(ReasonSpoofed)},
		{name: "pair MAC with the fixed IP", port: mP0, dir: api.Egress, pkt: withMAC(udpPkt("10.0.0.5", "10.0.0.2", 0, 9), "fa:16:3e:00:00:77"), want: droppedBy(ReasonSpoofed)},
		{name: "no fixed IP: any IPv4 source", port: mP2, dir: api.Egress, pkt: udpPkt("10.77.0.1", "10.0.0.2", 0, 9), want: byRule("all-out", "v4")},
		{name: "no fixed IP: foreign MAC", port: mP2, dir: api.Egress, pkt: withMAC(udpPkt("10.77.0.1", "10.0.0.2", 0, 9), mForeignMAC), want: droppedBy(ReasonSpoofed)},
		{name: "no fixed IP: IPv6 only link-local", port: mP2, dir: api.Egress, pkt: udpPkt("fd00::77", "fd00::2", 0, 9), want: droppedBy(ReasonSpoofed)},
		{name: "no fixed IP: IPv6 link-local", port: mP2, dir: api.Egress, pkt: udpPkt("fe80::f816:3eff:fe4c:2e03", "fd00::2", 0, 9), want: byRule("all-out", "v6")},
	}})
	return suites
}
