package flows

import (
	"bytes"
	"net"
	"net/netip"
	"slices"

	"github.com/lanes-net/lanes/api"
)

// tagged matches any frame with an 802.1Q or 802.1ad header, priority tags (VID 0)
// included.
var tagged = VLAN{TCI: VLANPresent, Mask: VLANPresent}

// SetupPortIsolation drops, at the door of br-int, what a VM port with port security
// must never send whatever the iptables firewall on its qbr let through:
//   - any VLAN-tagged frame. The qvo access port takes priority-tagged (VID 0) frames
//     as untagged ones, and the Linux bridge hands tagged frames around iptables
//     (QinQ always, 802.1Q unless bridge-nf-filter-vlan-tagged is set), so a tag
//     would carry a foreign source address, a rogue DHCP offer or a router
//     advertisement past the port's anti-spoofing;
//   - DHCPv4 server replies (udp 67 -> 68), DHCPv6 server replies (udp 547 -> 546)
//     and router advertisements: the same drops as the egress chain's, kept here so
//     they hold even if bridged traffic ever skips iptables.
func (IntBridge) SetupPortIsolation(c Cookie, ofport uint32) []Flow {
	return []Flow{
		brint(LocalSwitching, PrioInt0Tagged, c, Match{InPort: ofport, VLAN: tagged}),
		brint(LocalSwitching, PrioInt0Server, c, Match{InPort: ofport, EthType: EthIPv4, IPProto: IPProtoUDP, TpSrc: 67, TpDst: 68}),
		brint(LocalSwitching, PrioInt0Server, c, Match{InPort: ofport, EthType: EthIPv6, IPProto: IPProtoUDP, TpSrc: 547, TpDst: 546}),
		brint(LocalSwitching, PrioInt0Server, c, Match{InPort: ofport, EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6RouterAdvert}),
	}
}

// ICMPv6 message types of neighbour discovery.
const (
	icmp6RouterAdvert   = 134
	icmp6NeighborAdvert = 136
)

// SetupNDSpoofingProtection is Neutron's install_icmpv6_na_spoofing_protection plus
// the link-layer checks of OVN's port security: from ofport,
//   - a neighbour advertisement must be about one of the port's IPv6 addresses, the
//     EUI-64 link-local address of each of macs plus v6 (addresses or prefixes).
//     Otherwise a VM could announce a neighbour's address as its own and take that
//     neighbour's traffic. As in Neutron, a ::/0 among v6 turns this check off;
//   - the link-layer address an advertisement (target option) or a solicitation
//     (source option) gives must be one of macs, or absent (all zeros: duplicate
//     address probes and unicast solicitations may omit it). Otherwise a VM with an
//     honest Ethernet source could still make its neighbours cache a foreign MAC for
//     its own address and aim their traffic at another VM.
//
// Everything else is dropped by ARP_SPOOF's default. Unlike Neutron, a valid message
// goes on to MAC_SPOOF, so its Ethernet source is checked as an ARP packet's is.
func (IntBridge) SetupNDSpoofingProtection(c Cookie, ofport uint32, macs []net.HardwareAddr, v6 []netip.Prefix) []Flow {
	var targets []netip.Prefix
	add := func(p netip.Prefix) {
		if !slices.Contains(targets, p) {
			targets = append(targets, p)
		}
	}
	for _, m := range macs {
		add(netip.PrefixFrom(api.LinkLocal(m), 128))
	}
	for _, p := range v6 {
		if p.Bits() == 0 {
			targets = []netip.Prefix{{}} // no nd_target match
			break
		}
		add(p.Masked())
	}
	lladdrs := []net.HardwareAddr{}
	for _, m := range append(slices.Clone(macs), macZero) {
		if !slices.ContainsFunc(lladdrs, func(x net.HardwareAddr) bool { return bytes.Equal(x, m) }) {
			lladdrs = append(lladdrs, m)
		}
	}
	na := Match{InPort: ofport, EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6NeighborAdvert}
	ns := Match{InPort: ofport, EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6NeighborSolicit}
	var fs []Flow
	for _, t := range targets {
		for _, ll := range lladdrs {
			m := na
			m.NDTarget, m.NDTll = t, ll
			fs = append(fs, brint(ARPSpoof, PrioInt24Allowed, c, m, GotoTable{MACSpoof}))
		}
	}
	for _, ll := range lladdrs {
		m := ns
		m.NDSll = ll
		fs = append(fs, brint(ARPSpoof, PrioInt24Allowed, c, m, GotoTable{MACSpoof}))
	}
	return append(fs,
		brint(LocalSwitching, PrioInt0ARP, c, na, GotoTable{ARPSpoof}),
		brint(LocalSwitching, PrioInt0ARP, c, ns, GotoTable{ARPSpoof}))
}
