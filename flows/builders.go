package flows

import (
	"fmt"
	"net"
	"net/netip"
)

// Learned MAC entries age out like Neutron's: hard_timeout=300 s, at
// PrioTun20Learned, so that l2pop's PrioTun20L2pop entries win.
const learnHardTimeout = 300

var (
	macBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macZero      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	macGroupBit  = net.HardwareAddr{1, 0, 0, 0, 0, 0}
)

// acts makes action lists read like ovs-ofctl's.
func acts(a ...Action) []Action { return a }

// TunBridge builds br-tun's flows; its methods are Neutron's OVSTunnelBridge
// methods of the same names (native/br_tun.py), with l2pop and the ARP responder on
// and DVR off. The caller passes the owner's cookie.
type TunBridge struct {
	tunTable uint8 // ingress table of this host's tunnel type: 3, 4 or 6
}

// NewTunBridge returns the builder for tunnel type vxlan, gre or geneve.
func NewTunBridge(tunnelType string) (TunBridge, error) {
	t, ok := TunTable(tunnelType)
	if !ok {
		return TunBridge{}, fmt.Errorf("tunnel type %q: want vxlan, gre or geneve", tunnelType)
	}
	return TunBridge{tunTable: t}, nil
}

func tun(table uint8, prio uint16, c Cookie, m Match, a ...Action) Flow {
	return Flow{Bridge: BrTun, Table: table, Priority: prio, Cookie: c, Match: m, Actions: a}
}

// SetupDefaultTable is br-tun's fixed skeleton: traffic from br-int goes to table 2,
// anything else unknown is dropped; table 2 splits unicast, broadcast ARP and
// multicast neighbour solicitations (to the responder, table 21) and flooding; packets from tunnels are learned in table 10 and handed to br-int. Every
// table's catch-all comes from the registry (missFlows). Neutron's priority-2
// GARP/RA/NA learn flows (2025) are left out: only the classic priority-1 learn flow.
func (TunBridge) SetupDefaultTable(c Cookie, patchInt uint32) []Flow {
	fs := []Flow{
		tun(LocalSwitching, PrioTun0PatchInt, c, Match{InPort: patchInt}, GotoTable{PatchLVToTun}),
		tun(PatchLVToTun, PrioTun2BroadcastARP, c, Match{EthType: EthARP, EthDst: macBroadcast}, GotoTable{ARPResponder}),
		tun(PatchLVToTun, PrioTun2NS, c, solicitToGroup, GotoTable{ARPResponder}),
		tun(PatchLVToTun, PrioTun2ByGroupBit, c, Match{EthDst: macZero, EthDstMask: macGroupBit}, GotoTable{UcastToTun}),
		tun(PatchLVToTun, PrioTun2ByGroupBit, c, Match{EthDst: macGroupBit, EthDstMask: macGroupBit}, GotoTable{FloodToTun}),
	}
	fs = append(fs, ndResponderSetup(c)...)
	return append(fs, missFlows(BrTun, c, patchInt)...)
}

// missFlows are the catch-all flows the registry gives bridge b's tables.
func missFlows(b Bridge, c Cookie, patchInt uint32) []Flow {
	var fs []Flow
	for _, t := range Tables(b) {
		if t.Miss.Kind != MissNoFlow {
			fs = append(fs, Flow{Bridge: b, Table: t.ID, Priority: t.Miss.Priority, Cookie: c, Actions: t.Miss.actions(patchInt)})
		}
	}
	return fs
}

// ProvisionLocalVLAN maps a network's VNI to its local VLAN on the way in.
func (b TunBridge) ProvisionLocalVLAN(c Cookie, lvid uint16, vni uint32) Flow {
	return tun(b.tunTable, PrioTunToLV, c, Match{TunID: uint64(vni)},
		PushVLAN{}, SetVLANVID{lvid}, GotoTable{LearnFromTun})
}

// SetupTunnelPort sends what arrives on a tunnel port to the tunnel type's table.
func (b TunBridge) SetupTunnelPort(c Cookie, ofport uint32) Flow {
	return tun(LocalSwitching, PrioTun0Tunnel, c, Match{InPort: ofport}, GotoTable{b.tunTable})
}

// InstallFloodToTun floods a network's broadcast and unknown unicast to the given
// tunnel ports, in the given order.
func (TunBridge) InstallFloodToTun(c Cookie, lvid uint16, vni uint32, ports []uint32) Flow {
	a := acts(PopVLAN{}, SetTunID{uint64(vni)})
	for _, p := range ports {
		a = append(a, Output{p})
	}
	return tun(FloodToTun, PrioTun22Flood, c, Match{VLAN: TagVID(lvid)}, a...)
}

// InstallUnicastToTun sends frames for a known remote MAC to its host's tunnel.
func (TunBridge) InstallUnicastToTun(c Cookie, lvid uint16, vni uint32, ofport uint32, mac net.HardwareAddr) Flow {
	return tun(UcastToTun, PrioTun20L2pop, c, Match{VLAN: TagVID(lvid), EthDst: mac},
		PopVLAN{}, SetTunID{uint64(vni)}, Output{ofport})
}

// InstallARPResponder answers an ARP request for a known remote IP on the spot: it
// turns the request into the reply and sends it back out of patch-int, still
// tagged. The action order is Neutron's native driver's.
func (TunBridge) InstallARPResponder(c Cookie, lvid uint16, ip netip.Addr, mac net.HardwareAddr) Flow {
	return tun(ARPResponder, PrioTun21Responder, c, Match{EthType: EthARP, VLAN: TagVID(lvid), ARPTpa: ip},
		SetARPOp{2},
		Move{FieldARPSha, FieldARPTha},
		Move{FieldARPSpa, FieldARPTpa},
		SetARPSha{mac},
		SetARPSpa{ip},
		Move{FieldEthSrc, FieldEthDst},
		SetEthSrc{mac},
		OutputInPort{},
	)
}

// IntBridge builds br-int's flows; its methods are Neutron's OVSIntegrationBridge
// methods of the same intent (native/br_int.py), pre-Yoga layout (see brInt).
type IntBridge struct{}

func brint(table uint8, prio uint16, c Cookie, m Match, a ...Action) Flow {
	return Flow{Bridge: BrInt, Table: table, Priority: prio, Cookie: c, Match: m, Actions: a}
}

// deadVLAN is the tag of ports that must not forward (Neutron's DEAD_VLAN_TAG).
const deadVLAN = 4095

// SetupDefaultTable is br-int's skeleton: the dead VLAN drop and, from the
// registry, every table's catch-all (the canary, NORMAL switching, the
// anti-spoofing default drop).
func (IntBridge) SetupDefaultTable(c Cookie) []Flow {
	fs := []Flow{brint(LocalSwitching, PrioInt0DeadVLAN, c, Match{VLAN: TagVID(deadVLAN)})}
	return append(fs, missFlows(BrInt, c, 0)...)
}

// SetupSpoofingProtection is Neutron's setup_arp_spoofing_protection plus
// set_allowed_macs_for_port for a port with port security on: frames from ofport must
// come from one of macs, and its ARP must claim one of the IPv4 prefixes among ips (a
// /32 is one address). As in Neutron, a 0.0.0.0/0 turns the ARP check off, and no
// IPv4 prefix at all still installs the ARP jump, so all its ARP is dropped. IPv6
// prefixes take no part in ARP; SetupNDSpoofingProtection checks the port's
// neighbour discovery against them.
func (IntBridge) SetupSpoofingProtection(c Cookie, ofport uint32, macs []net.HardwareAddr, ips []netip.Prefix) []Flow {
	var fs []Flow
	for _, mac := range macs {
		fs = append(fs, brint(MACSpoof, PrioInt25Allowed, c, Match{InPort: ofport, EthSrc: mac}, GotoTable{Transient}))
	}
	fs = append(fs, brint(LocalSwitching, PrioInt0Port, c, Match{InPort: ofport}, GotoTable{MACSpoof}))
	var v4 []netip.Prefix
	for _, p := range ips {
		if !p.Addr().Is4() {
			continue
		}
		if p.Bits() == 0 {
			return fs
		}
		v4 = append(v4, p)
	}
	for _, p := range v4 {
		fs = append(fs, brint(ARPSpoof, PrioInt24Allowed, c, Match{InPort: ofport, EthType: EthARP, ARPSpa: p}, GotoTable{MACSpoof}))
	}
	return append(fs, brint(LocalSwitching, PrioInt0ARP, c, Match{InPort: ofport, EthType: EthARP}, GotoTable{ARPSpoof}))
}

// DHCP client traffic: UDP from port 68 to port 67.
const (
	DHCPClientPort = 68
	DHCPServerPort = 67
)

// DHCPv6 client traffic: UDP from port 546 to port 547 (RFC 8415 7.2), and the
// ICMPv6 type of a router solicitation.
const (
	DHCPv6ClientPort    = 546
	DHCPv6ServerPort    = 547
	ICMPv6RouterSolicit = 133
)

// ControllerID is the OpenFlow controller ID lanesd's connection to br-int takes, so
// that the DHCP flows' packet-ins go to lanesd and to no other connection (an
// ovs-ofctl monitor has ID 0).
const ControllerID = 0x4c41

// DHCPMeter is the meter of a port's packet-ins: one per port, numbered by its
// ofport, so that a VM flooding DHCP is cut in the datapath and cannot starve the
// packet-ins of the others.
func DHCPMeter(ofport uint32) uint32 { return ofport }

// SetupDHCP is Neutron's DHCP extension for one port (add_dhcp_ipv4_flow): its DHCP
// client traffic leaves NORMAL switching for table 77, which hands it to lanesd
// through the port's meter. The table's miss drops, so no DHCP request of a DHCP
// port is ever switched, let alone flooded to the tunnels.
func (IntBridge) SetupDHCP(c Cookie, ofport uint32) []Flow {
	return []Flow{
		brint(Transient, PrioInt60DHCP, c, Match{InPort: ofport, EthType: EthIPv4, IPProto: IPProtoUDP, TpSrc: DHCPClientPort, TpDst: DHCPServerPort},
			GotoTable{DHCPIPv4}),
		brint(DHCPIPv4, PrioInt77Port, c, Match{InPort: ofport}, Controller{ID: ControllerID, MeterID: DHCPMeter(ofport)}),
	}
}

// SetupDHCPv6 is SetupDHCP's IPv6 counterpart for a port whose network has an IPv6
// subnet: its DHCPv6 client messages (Neutron's add_dhcp_ipv6_flow) and its router
// solicitations go to table 78 and from there to lanesd, through the same meter as
// its DHCPv4, so one VM cannot make lanesd answer more than one budget of requests.
// They come after the port's anti-spoofing (tables 0, 24, 25), so a solicitation from
// a MAC that is not the port's never reaches lanesd.
func (IntBridge) SetupDHCPv6(c Cookie, ofport uint32) []Flow {
	return []Flow{
		brint(Transient, PrioInt60DHCP, c, Match{InPort: ofport, EthType: EthIPv6, IPProto: IPProtoUDP, TpSrc: DHCPv6ClientPort, TpDst: DHCPv6ServerPort},
			GotoTable{DHCPIPv6}),
		brint(Transient, PrioInt60DHCP, c, Match{InPort: ofport, EthType: EthIPv6, IPProto: IPProtoICMPv6, ICMPv6Type: ICMPv6RouterSolicit},
			GotoTable{DHCPIPv6}),
		brint(DHCPIPv6, PrioInt78Port, c, Match{InPort: ofport}, Controller{ID: ControllerID, MeterID: DHCPMeter(ofport)}),
	}
}
