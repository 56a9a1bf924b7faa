package flows

import (
	"net"
	"net/netip"
	"slices"

	"github.com/lanes-net/lanes/api"
)

// ICMPv6 neighbour solicitation, the request the ND responder answers.
const icmp6NeighborSolicit = 135

// Neighbour advertisement flags (RFC 4861 4.4), the top bits of the word OVS calls
// nd_reserved: Router, Solicited, Override.
const (
	ndFlagRouter    = 0x80000000
	ndFlagSolicited = 0x40000000
	ndFlagOverride  = 0x20000000
)

// ndOptTargetLinkAddr is the ND option type of a target link-layer address; a
// solicitation carries type 1, the source link-layer address.
const ndOptTargetLinkAddr = 2

// solicitToGroup is a neighbour solicitation sent to a solicited-node multicast
// address (ff02::1:ffXX:XXXX, Ethernet 33:33:ff:XX:XX:XX): address resolution and
// duplicate address detection. Unicast solicitations (reachability probes) go to
// their target like any unicast.
var solicitToGroup = Match{EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6NeighborSolicit,
	EthDst:     net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 0},
	EthDstMask: net.HardwareAddr{0xff, 0xff, 0xff, 0, 0, 0}}

// ndResponderSetup are the responder's two fixed flows in table 21:
//   - a solicitation from :: is a duplicate address probe. Answering it would tell the
//     prober its address is taken, so it is flooded as before, and the remote port
//     that really holds the address defends it;
//   - a solicitation the per-address flow has rewritten into an advertisement comes
//     back here through resubmit: it gets the target link-layer option, copied from
//     its new eth_src, and leaves by patch-int. This takes a second flow because OVS
//     refuses to set nd_tll in a flow that matches a solicitation, and applies
//     nd_options_type before nd_sll, so the per-address flow can neither write the
//     target option nor the source option it is about to retype. Nothing else
//     reaches table 21 as an advertisement: table 2 sends it solicitations only.
func ndResponderSetup(c Cookie) []Flow {
	dad := Match{EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6NeighborSolicit, IPv6Src: netip.IPv6Unspecified()}
	na := Match{EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6NeighborAdvert}
	return []Flow{
		tun(ARPResponder, PrioTun21DAD, c, dad, GotoTable{FloodToTun}),
		tun(ARPResponder, PrioTun21NDAdvert, c, na, Move{FieldEthSrc, FieldNDTll}, OutputInPort{}),
	}
}

// InstallNDResponder is the IPv6 counterpart of InstallARPResponder, which Neutron
// does not have: a neighbour solicitation for target on the network's local VLAN
// becomes the solicited advertisement from mac, with the override flag (and the
// router flag for a router's port, so that a guest keeps it as its default router),
// and goes back to the asker through ndResponderSetup's advertisement flow. OVS
// fixes the ICMPv6 checksum as it rewrites. The packet keeps its hop limit of 255,
// which receivers of ND messages require.
func (TunBridge) InstallNDResponder(c Cookie, lvid uint16, target netip.Addr, mac net.HardwareAddr, router bool) Flow {
	flags := uint32(ndFlagSolicited | ndFlagOverride)
	if router {
		flags |= ndFlagRouter
	}
	m := Match{EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: icmp6NeighborSolicit, VLAN: TagVID(lvid),
		NDTarget: netip.PrefixFrom(target, 128)}
	return tun(ARPResponder, PrioTun21Responder, c, m,
		Move{FieldEthSrc, FieldEthDst},
		SetEthSrc{mac},
		Move{FieldIPv6Src, FieldIPv6Dst},
		SetIPv6Src{target},
		SetICMPv6Type{icmp6NeighborAdvert},
		SetNDReserved{flags},
		SetNDOptionsType{ndOptTargetLinkAddr},
		Resubmit{ARPResponder},
	)
}

// RemotePortND is a remote port's ND responder flows: one per IPv6 address of the
// port, its EUI-64 link-local address first (every guest has one, and neighbours
// resolve it before any other).
func (tb TunBridge) RemotePortND(c Cookie, lvid uint16, p RemotePort) []Flow {
	targets := []netip.Addr{api.LinkLocal(p.MAC)}
	for _, a := range uniq(p.IPs) {
		if a.Is6() && a.Zone() == "" && !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	fs := make([]Flow, 0, len(targets))
	for _, t := range targets {
		fs = append(fs, tb.InstallNDResponder(c, lvid, t, p.MAC, p.Router))
	}
	return fs
}
