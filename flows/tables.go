// Package flows is lanes' OpenFlow pipeline as pure data: the tables of br-int and
// br-tun, the flows Neutron's Open vSwitch agent installs in them, and the complete
// flow set a host should have for a given desired state. Flows render as the exact
// text `ovs-ofctl -O OpenFlow15 dump-flows --no-stats --no-names` prints, so the
// golden tests read like a dump. Nothing here does I/O; flows/ofbind turns a Flow
// into OpenFlow messages.
package flows

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// Bridge names the OVS bridge a flow belongs to.
type Bridge string

// The two bridges lanes programs.
const (
	BrInt Bridge = api.BrInt
	BrTun Bridge = api.BrTun
)

// Table numbers are Neutron's (neutron_lib/plugins/ml2/ovs_constants.py), so an
// operator who knows Neutron reads our dumps at once. One namespace for both bridges,
// as in Neutron; only LocalSwitching exists on both.
const (
	LocalSwitching = 0 // both bridges

	// br-tun
	PatchLVToTun  = 2
	GRETunToLV    = 3
	VXLANTunToLV  = 4
	GeneveTunToLV = 6
	LearnFromTun  = 10
	UcastToTun    = 20
	ARPResponder  = 21
	FloodToTun    = 22

	// br-int
	Canary    = 23
	ARPSpoof  = 24
	MACSpoof  = 25
	Transient = 60
	DHCPIPv4  = 77 // Neutron's DHCP_IPV4_TABLE
	DHCPIPv6  = 78 // Neutron's DHCP_IPV6_TABLE
)

// Priorities are Neutron's, named Prio<bridge><table><what> after the flows that use
// them, so a builder says which rule it is and the registry says which priorities a
// table holds. Equal numbers in one table are flows with disjoint matches.
const (
	// PrioMiss is the catch-all of every table whose miss is a priority-0 flow.
	PrioMiss = 0

	PrioTun0PatchInt     = 1 // br-tun 0: in_port=patch-int -> 2
	PrioTun0Tunnel       = 1 // br-tun 0: in_port=<tunnel port> -> the tunnel type's table
	PrioTun2BroadcastARP = 1 // br-tun 2: broadcast ARP -> 21
	PrioTun2NS           = 1 // br-tun 2: neighbour solicitation to a solicited-node group -> 21
	PrioTun2ByGroupBit   = 0 // br-tun 2: unicast -> 20, multicast and broadcast -> 22
	PrioTunToLV          = 1 // br-tun 3, 4, 6: tun_id=<VNI> -> push the local VLAN, 10
	PrioTun10Learn       = 1 // br-tun 10: learn(), output to patch-int
	PrioTun20L2pop       = 2 // br-tun 20: a remote port the store knows
	PrioTun20Learned     = 1 // br-tun 20: made by table 10's learn(); l2pop wins
	PrioTun21DAD         = 2 // br-tun 21: a duplicate address probe (from ::) is never answered -> 22
	PrioTun21Responder   = 1 // br-tun 21: ARP or a solicitation for a remote port's address, answered here
	PrioTun21NDAdvert    = 1 // br-tun 21: the advertisement a solicitation became: its link-layer option, out
	PrioTun22Flood       = 1 // br-tun 22: a network's flood list

	PrioInt0DeadVLAN = 65535 // br-int 0: frames tagged 4095 die
	PrioInt0Tagged   = 12    // br-int 0: any VLAN-tagged frame from a port with port security dies
	PrioInt0Server   = 11    // br-int 0: DHCP server replies and router advertisements from a port die
	PrioInt0ARP      = 10    // br-int 0: ARP (and IPv6 NS and NA) from a port with port security -> 24
	PrioInt0Port     = 9     // br-int 0: anything else from such a port -> 25
	PrioInt24Allowed = 2     // br-int 24: an address the port may claim -> 25
	PrioInt25Allowed = 2     // br-int 25: a MAC the port may send from -> 60
	PrioInt60Normal  = 3     // br-int 60: NORMAL (Neutron's pre-Yoga priority)
	PrioInt60DHCP    = 101   // br-int 60: a DHCP port's client traffic -> 77, DHCPv6 and RS -> 78 (Neutron's)
	PrioInt77Port    = 100   // br-int 77: a DHCP port's requests -> lanesd (Neutron's)
	PrioInt78Port    = 100   // br-int 78: a port's DHCPv6 and router solicitations -> lanesd
)

// MatchFields is a set of the Match fields a flow uses, or a table allows.
type MatchFields uint32

// The fields of Match. Names are ovs-ofctl's.
const (
	MatchInPort   MatchFields = 1 << iota // in_port
	MatchEthType                          // dl_type (arp, ip, ipv6)
	MatchTunID                            // tun_id
	MatchVLAN                             // vlan_tci (dl_vlan)
	MatchEthSrc                           // dl_src
	MatchEthDst                           // dl_dst, with or without a mask
	MatchARPSpa                           // arp_spa
	MatchARPTpa                           // arp_tpa
	MatchARPOp                            // arp_op
	MatchIPProto                          // nw_proto (udp, tcp, icmp, icmp6)
	MatchTpSrc                            // tp_src
	MatchTpDst                            // tp_dst
	MatchICMPType                         // icmp_type (ICMPv6)
	MatchNDTarget                         // nd_target
	MatchIPv6Src                          // ipv6_src
	MatchNDSll                            // nd_sll
	MatchNDTll                            // nd_tll
)

var matchFieldNames = []string{"in_port", "dl_type", "tun_id", "vlan_tci", "dl_src", "dl_dst", "arp_spa", "arp_tpa", "arp_op",
	"nw_proto", "tp_src", "tp_dst", "icmp_type", "nd_target", "ipv6_src", "nd_sll", "nd_tll"}

// String lists the fields by their ovs-ofctl names, comma separated; "none" for the
// empty set.
func (fs MatchFields) String() string {
	var names []string
	for i, n := range matchFieldNames {
		if fs&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := fs &^ (1<<len(matchFieldNames) - 1); rest != 0 {
		names = append(names, fmt.Sprintf("%#x", uint32(rest)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// MissKind is what a table does with a packet none of its other flows match.
type MissKind uint8

// Miss kinds. The zero value is no kind, so a registry entry cannot forget its miss.
const (
	MissDrop   MissKind = iota + 1 // a catch-all flow without actions
	MissGoto                       // a catch-all flow going to Miss.Goto
	MissNormal                     // a catch-all flow to the NORMAL switch
	MissLearn                      // br-tun 10: every packet is learned and sent to patch-int
	MissNoFlow                     // no catch-all flow: OpenFlow's table-miss drops
)

// Miss is a table's miss behaviour (Faucet's miss_goto, and Neutron's explicit
// catch-all flows): every table but the ones of kind MissNoFlow has exactly one flow
// that matches nothing, at Priority.
type Miss struct {
	Kind     MissKind
	Priority uint16
	Goto     uint8 // MissGoto only
}

func (m Miss) String() string {
	var what string
	switch m.Kind {
	case MissDrop:
		what = "drop"
	case MissGoto:
		what = fmt.Sprintf("goto_table:%d", m.Goto)
	case MissNormal:
		what = "NORMAL"
	case MissLearn:
		what = "learn(), output to patch-int"
	case MissNoFlow:
		return "drop (no flow: OpenFlow's table-miss)"
	default:
		return fmt.Sprintf("miss-kind-%d", m.Kind)
	}
	return fmt.Sprintf("%s (priority %d)", what, m.Priority)
}

// actions are the catch-all flow's actions; patchInt is br-tun's patch-int ofport,
// which only MissLearn needs. MissDrop and MissNoFlow have none.
func (m Miss) actions(patchInt uint32) []Action {
	switch m.Kind {
	case MissGoto:
		return []Action{GotoTable{m.Goto}}
	case MissNormal:
		return []Action{Normal{}}
	case MissLearn:
		learn := Learn{Table: UcastToTun, Priority: PrioTun20Learned, HardTimeout: learnHardTimeout, Cookie: LearnedCookie}
		return []Action{learn, Output{patchInt}}
	}
	return nil
}

func drop(p uint16) Miss              { return Miss{Kind: MissDrop, Priority: p} }
func missGoto(p uint16, t uint8) Miss { return Miss{Kind: MissGoto, Priority: p, Goto: t} }

// Table is one OpenFlow table of a bridge, in the spirit of Faucet's
// ValveTableConfig: what it is for, which fields its flows may match, at which
// priorities, where they may jump (goto_table) and what a miss does. Flow.Validate
// refuses a flow that steps outside its table's entry.
type Table struct {
	ID      uint8
	Name    string
	Purpose string
	// Match is every field the table's flows may match on.
	Match MatchFields
	// Priorities are the priorities its flows may have, besides Miss.Priority.
	Priorities []uint16
	Miss       Miss
	GoesTo     []uint8
}

// brTun is br-tun's pipeline (Neutron's br_tun.py without DVR tables 1 and 9).
var brTun = []Table{
	{ID: LocalSwitching, Name: "LOCAL_SWITCHING",
		Purpose:    "classify by in_port: from patch-int to table 2, from a tunnel port to its tunnel type's table",
		Match:      MatchInPort,
		Priorities: []uint16{PrioTun0PatchInt, PrioTun0Tunnel},
		Miss:       drop(PrioMiss),
		GoesTo:     []uint8{PatchLVToTun, GRETunToLV, VXLANTunToLV, GeneveTunToLV}},
	{ID: PatchLVToTun, Name: "PATCH_LV_TO_TUN",
		Purpose:    "from br-int, tagged with the local VLAN: broadcast ARP and multicast neighbour solicitations to the responder, unicast to table 20, other multicast and broadcast to flooding",
		Match:      MatchEthType | MatchEthDst | MatchIPProto | MatchICMPType,
		Priorities: []uint16{PrioTun2BroadcastARP, PrioTun2NS, PrioTun2ByGroupBit},
		Miss:       Miss{Kind: MissNoFlow}, // the two group-bit flows match every frame
		GoesTo:     []uint8{UcastToTun, ARPResponder, FloodToTun}},
	{ID: GRETunToLV, Name: "GRE_TUN_TO_LV",
		Purpose:    "from a GRE tunnel: tun_id -> local VLAN; unknown VNIs die",
		Match:      MatchTunID,
		Priorities: []uint16{PrioTunToLV},
		Miss:       drop(PrioMiss),
		GoesTo:     []uint8{LearnFromTun}},
	{ID: VXLANTunToLV, Name: "VXLAN_TUN_TO_LV",
		Purpose:    "from a VXLAN tunnel: tun_id -> local VLAN; unknown VNIs die",
		Match:      MatchTunID,
		Priorities: []uint16{PrioTunToLV},
		Miss:       drop(PrioMiss),
		GoesTo:     []uint8{LearnFromTun}},
	{ID: GeneveTunToLV, Name: "GENEVE_TUN_TO_LV",
		Purpose:    "from a Geneve tunnel: tun_id -> local VLAN; unknown VNIs die",
		Match:      MatchTunID,
		Priorities: []uint16{PrioTunToLV},
		Miss:       drop(PrioMiss),
		GoesTo:     []uint8{LearnFromTun}},
	{ID: LearnFromTun, Name: "LEARN_FROM_TUN",
		Purpose: "learn the sender's MAC -> tunnel port into table 20, then output to patch-int",
		Miss:    Miss{Kind: MissLearn, Priority: PrioTun10Learn}},
	{ID: UcastToTun, Name: "UCAST_TO_TUN",
		Purpose:    "known unicast -> its host's tunnel: l2pop entries from the store, and learned ones",
		Match:      MatchVLAN | MatchEthDst,
		Priorities: []uint16{PrioTun20L2pop, PrioTun20Learned},
		Miss:       missGoto(PrioMiss, FloodToTun),
		GoesTo:     []uint8{FloodToTun}},
	{ID: ARPResponder, Name: "ARP_RESPONDER",
		Purpose:    "answer ARP requests and neighbour solicitations for remote ports' addresses on the spot, back out of patch-int",
		Match:      MatchEthType | MatchVLAN | MatchARPTpa | MatchIPProto | MatchICMPType | MatchNDTarget | MatchIPv6Src,
		Priorities: []uint16{PrioTun21DAD, PrioTun21Responder, PrioTun21NDAdvert},
		Miss:       missGoto(PrioMiss, FloodToTun),
		GoesTo:     []uint8{FloodToTun}},
	{ID: FloodToTun, Name: "FLOOD_TO_TUN",
		Purpose:    "broadcast, multicast and unknown unicast -> the tunnels of the hosts with a port on the network",
		Match:      MatchVLAN,
		Priorities: []uint16{PrioTun22Flood},
		Miss:       drop(PrioMiss)},
}

// brInt is br-int's pipeline in Neutron's pre-Yoga layout: table 0's default and the
// allowed-MAC flows of table 25 go straight to TRANSIENT (60). Yoga inserted the QoS
// rate-limit tables 58/59 and Local-IP tables 30/31 in between; lanes has neither
// feature, and empty pass-through tables would only lengthen every dump and trace.
var brInt = []Table{
	{ID: LocalSwitching, Name: "LOCAL_SWITCHING",
		Purpose:    "dead VLAN drop, per-port drops of tagged frames and server traffic, anti-spoofing jumps; everything else to table 60",
		Match:      MatchInPort | MatchEthType | MatchVLAN | MatchIPProto | MatchTpSrc | MatchTpDst | MatchICMPType,
		Priorities: []uint16{PrioInt0DeadVLAN, PrioInt0Tagged, PrioInt0Server, PrioInt0ARP, PrioInt0Port},
		Miss:       missGoto(PrioMiss, Transient),
		GoesTo:     []uint8{ARPSpoof, MACSpoof, Transient}},
	{ID: Canary, Name: "CANARY",
		Purpose: "one drop flow no packet reaches, kept from Neutron (its agent's OVS-restart check); lanesd counts its own flows instead",
		Miss:    drop(PrioMiss)},
	{ID: ARPSpoof, Name: "ARP_SPOOF",
		Purpose:    "ARP from a port must claim one of its IPv4 addresses (arp_spa), a neighbour advertisement one of its IPv6 ones (nd_target), and neighbour discovery may name only its own MACs (nd_sll, nd_tll)",
		Match:      MatchInPort | MatchEthType | MatchARPSpa | MatchIPProto | MatchICMPType | MatchNDTarget | MatchNDSll | MatchNDTll,
		Priorities: []uint16{PrioInt24Allowed},
		Miss:       drop(PrioMiss),
		GoesTo:     []uint8{MACSpoof}},
	{ID: MACSpoof, Name: "MAC_SPOOF",
		Purpose:    "frames from a port must carry one of its MACs (dl_src)",
		Match:      MatchInPort | MatchEthSrc,
		Priorities: []uint16{PrioInt25Allowed},
		Miss:       Miss{Kind: MissNoFlow},
		GoesTo:     []uint8{Transient}},
	{ID: Transient, Name: "TRANSIENT",
		Purpose:    "DHCP client traffic of a port on a DHCP network to table 77, DHCPv6 and router solicitations of a port on an IPv6 network to table 78; everything else NORMAL: the VLAN-aware MAC learning switch",
		Match:      MatchInPort | MatchEthType | MatchIPProto | MatchTpSrc | MatchTpDst | MatchICMPType,
		Priorities: []uint16{PrioInt60DHCP},
		Miss:       Miss{Kind: MissNormal, Priority: PrioInt60Normal},
		GoesTo:     []uint8{DHCPIPv4, DHCPIPv6}},
	{ID: DHCPIPv4, Name: "DHCP_IPV4",
		Purpose:    "a port's DHCP requests to lanesd (packet-in, metered per port), which answers with a packet-out to the port; nothing else passes",
		Match:      MatchInPort,
		Priorities: []uint16{PrioInt77Port},
		Miss:       drop(PrioMiss)},
	{ID: DHCPIPv6, Name: "DHCP_IPV6",
		Purpose:    "a port's DHCPv6 requests and router solicitations to lanesd (packet-in, through the port's DHCP meter), which answers with a packet-out to the port; nothing else passes",
		Match:      MatchInPort,
		Priorities: []uint16{PrioInt78Port},
		Miss:       drop(PrioMiss)},
}

// Tables lists a bridge's tables in table order. The entries are shared: do not
// modify them.
func Tables(b Bridge) []Table {
	switch b {
	case BrTun:
		return brTun
	case BrInt:
		return brInt
	}
	return nil
}

// LookupTable finds table id of bridge b.
func LookupTable(b Bridge, id uint8) (Table, bool) {
	for _, t := range Tables(b) {
		if t.ID == id {
			return t, true
		}
	}
	return Table{}, false
}

// LookupTableName finds a table of bridge b by its name, in any case
// ("ucast_to_tun").
func LookupTableName(b Bridge, name string) (Table, bool) {
	for _, t := range Tables(b) {
		if strings.EqualFold(t.Name, name) {
			return t, true
		}
	}
	return Table{}, false
}

// MayGoTo reports whether flows of table t may jump to table to.
func (t Table) MayGoTo(to uint8) bool { return slices.Contains(t.GoesTo, to) }

// MayUse reports whether flows of table t may have priority p.
func (t Table) MayUse(p uint16) bool {
	return slices.Contains(t.Priorities, p) || (t.Miss.Kind != MissNoFlow && p == t.Miss.Priority)
}

// TunTable is br-tun's ingress table for a tunnel type (Neutron's TUN_TABLE).
func TunTable(tunnelType string) (uint8, bool) {
	switch tunnelType {
	case api.TunnelVXLAN:
		return VXLANTunToLV, true
	case api.TunnelGRE:
		return GRETunToLV, true
	case api.TunnelGeneve:
		return GeneveTunToLV, true
	}
	return 0, false
}
