package flows

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPriority is OpenFlow's default; ovs-ofctl omits it from dumps.
const DefaultPriority = 32768

// Flow is one OpenFlow flow of a bridge. Actions run in order; a GotoTable, if any,
// comes last. No actions means drop.
type Flow struct {
	Bridge   Bridge
	Table    uint8
	Priority uint16
	Cookie   Cookie
	Match    Match
	Actions  []Action
}

// Ethernet types with an ovs-ofctl shorthand.
const (
	EthIPv4 = 0x0800
	EthARP  = 0x0806
	EthIPv6 = 0x86dd
)

// VLANPresent is the CFI bit OVS uses in vlan_tci to mean "has an 802.1Q tag".
const VLANPresent = 0x1000

// VLAN matches the 802.1Q TCI like OVS's vlan_tci=TCI/Mask. The zero value matches
// anything; TagVID(v) matches a tag with VID v (ovs-ofctl prints dl_vlan=v).
type VLAN struct{ TCI, Mask uint16 }

// TagVID matches frames tagged with VLAN ID vid.
func TagVID(vid uint16) VLAN { return VLAN{VLANPresent | vid, VLANPresent | 0x0fff} }

// Match is the small set of fields lanes' pipeline matches on. Zero values and nil
// mean "any". tun_id 0 cannot be matched (VNIs start at 1).
type Match struct {
	InPort     uint32
	EthType    uint16
	TunID      uint64
	VLAN       VLAN
	EthSrc     net.HardwareAddr
	EthDst     net.HardwareAddr
	EthDstMask net.HardwareAddr // nil = exact
	ARPSpa     netip.Prefix     // a /32 is an exact address; needs EthType EthARP
	ARPTpa     netip.Addr       // needs EthType EthARP
	ARPOp      uint16           // needs EthType EthARP
	// IP protocol and L4 fields: the VM-port isolation and ND anti-spoofing flows
	// (ndspoof.go) and the DHCP interception; ovs-ofctl shows IPProto through its
	// shorthand (udp, tcp6, icmp6, ...) where it has one.
	IPProto    uint8        // needs EthType EthIPv4 or EthIPv6
	TpSrc      uint16       // UDP or TCP source port; needs IPProto IPProtoUDP or IPProtoTCP
	TpDst      uint16       // UDP or TCP destination port; needs IPProto IPProtoUDP or IPProtoTCP
	ICMPv6Type uint8        // needs IPProto IPProtoICMPv6 (type 0 is unassigned: 0 = any)
	NDTarget   netip.Prefix // nd_target; needs ICMPv6Type 135 or 136
	// IPv6Src is an exact ipv6_src; the unspecified address :: is a valid value (a
	// duplicate address detection probe's source), the zero netip.Addr means any.
	IPv6Src netip.Addr // needs EthType EthIPv6
	// The link-layer address options of neighbour discovery; all zeros matches a
	// message without the option.
	NDSll net.HardwareAddr // nd_sll; needs ICMPv6Type 135
	NDTll net.HardwareAddr // nd_tll; needs ICMPv6Type 136
}

// IP protocols lanes' flows match.
const (
	IPProtoICMP   = 1
	IPProtoTCP    = 6
	IPProtoUDP    = 17
	IPProtoICMPv6 = 58
)

// ipShorthand is ovs-ofctl's name for an ethertype and IP protocol; "" when it has
// none (the protocol is then printed as nw_proto).
func ipShorthand(ethType uint16, proto uint8) string {
	if proto == 0 {
		return map[uint16]string{EthIPv4: "ip", EthARP: "arp", EthIPv6: "ipv6"}[ethType]
	}
	switch ethType {
	case EthIPv4:
		return map[uint8]string{IPProtoICMP: "icmp", IPProtoTCP: "tcp", IPProtoUDP: "udp"}[proto]
	case EthIPv6:
		return map[uint8]string{IPProtoTCP: "tcp6", IPProtoUDP: "udp6", IPProtoICMPv6: "icmp6"}[proto]
	}
	return ""
}

// Action is one OpenFlow action (or the goto_table instruction), printed as ovs-ofctl
// prints it.
type Action interface {
	String() string
	action()
}

// The actions lanes' pipeline uses.
type (
	PushVLAN     struct{}              // push an 802.1Q header (TPID 0x8100)
	SetVLANVID   struct{ VID uint16 }  // set_field vlan_vid (OF1.3+: VID|0x1000)
	PopVLAN      struct{}              // strip the outer 802.1Q header
	SetTunID     struct{ ID uint64 }   // tunnel ID (VNI) for the tunnel output
	Output       struct{ Port uint32 } // output to an ofport
	OutputInPort struct{}              // output back where it came from (IN_PORT)
	Normal       struct{}              // the NORMAL L2 switch
	GotoTable    struct{ Table uint8 } // continue in a later table
	SetEthSrc    struct{ MAC net.HardwareAddr }
	SetARPOp     struct{ Op uint16 }
	SetARPSha    struct{ MAC net.HardwareAddr }
	SetARPSpa    struct{ IP netip.Addr }
	Move         struct{ Src, Dst Field } // copy a whole field (OF1.5 copy_field)
	// The neighbour-advertisement rewrite of br-tun's ND responder (ndresponder.go).
	SetIPv6Src       struct{ IP netip.Addr }
	SetICMPv6Type    struct{ Type uint8 }
	SetNDReserved    struct{ Flags uint32 } // the R, S, O bits and the reserved rest
	SetNDOptionsType struct{ Type uint8 }   // the type of the first ND option
	// Resubmit runs the packet, as rewritten so far, through Table again and comes
	// back (Nicira's resubmit): a flow later in the same table sees the new headers.
	Resubmit struct{ Table uint8 }
	// Controller sends the packet to the OpenFlow connections with controller ID ID,
	// through meter MeterID (0: none): Nicira's controller2 action, which carries the
	// whole packet.
	Controller struct {
		ID      uint16
		MeterID uint32
	}
)

// Learn is Neutron's table-10 learn() action (§1.4 of the pipeline reference): it
// installs into Table, for the VLAN of this packet and dl_dst = this packet's dl_src,
// a flow that strips the VLAN, sets tun_id to the packet's tun_id and outputs to the
// tunnel port the packet came in on. Only the parameters vary; the spec is fixed.
type Learn struct {
	Table       uint8
	Priority    uint16
	HardTimeout uint16
	Cookie      Cookie
}

// Field is a header field a Move copies, named as ovs-ofctl prints it.
type Field string

// Fields for Move.
const (
	FieldEthSrc  Field = "NXM_OF_ETH_SRC"
	FieldEthDst  Field = "NXM_OF_ETH_DST"
	FieldARPSha  Field = "NXM_NX_ARP_SHA"
	FieldARPTha  Field = "NXM_NX_ARP_THA"
	FieldARPSpa  Field = "NXM_OF_ARP_SPA"
	FieldARPTpa  Field = "NXM_OF_ARP_TPA"
	FieldIPv6Src Field = "NXM_NX_IPV6_SRC"
	FieldIPv6Dst Field = "NXM_NX_IPV6_DST"
	FieldNDTll   Field = "NXM_NX_ND_TLL"
)

// Bits is the field's width.
func (f Field) Bits() uint16 {
	switch f {
	case FieldEthSrc, FieldEthDst, FieldARPSha, FieldARPTha, FieldNDTll:
		return 48
	case FieldARPSpa, FieldARPTpa:
		return 32
	case FieldIPv6Src, FieldIPv6Dst:
		return 128
	}
	return 0
}

func (PushVLAN) String() string     { return "push_vlan:0x8100" }
func (a SetVLANVID) String() string { return fmt.Sprintf("set_field:%d->vlan_vid", VLANPresent|a.VID) }
func (PopVLAN) String() string      { return "pop_vlan" }
func (a SetTunID) String() string   { return fmt.Sprintf("set_field:%#x->tun_id", a.ID) }
func (a Output) String() string     { return "output:" + strconv.FormatUint(uint64(a.Port), 10) }
func (OutputInPort) String() string { return "IN_PORT" }
func (Normal) String() string       { return "NORMAL" }
func (a GotoTable) String() string  { return "goto_table:" + strconv.Itoa(int(a.Table)) }
func (a SetEthSrc) String() string  { return "set_field:" + a.MAC.String() + "->eth_src" }
func (a SetARPOp) String() string   { return fmt.Sprintf("set_field:%d->arp_op", a.Op) }
func (a SetARPSha) String() string  { return "set_field:" + a.MAC.String() + "->arp_sha" }
func (a SetARPSpa) String() string  { return "set_field:" + a.IP.String() + "->arp_spa" }
func (a Move) String() string       { return fmt.Sprintf("move:%s[]->%s[]", a.Src, a.Dst) }
func (a SetIPv6Src) String() string { return "set_field:" + a.IP.String() + "->ipv6_src" }
func (a SetICMPv6Type) String() string {
	return "set_field:" + strconv.Itoa(int(a.Type)) + "->icmpv6_type"
}

// String prints the flags in decimal, as ovs-ofctl dumps nd_reserved.
func (a SetNDReserved) String() string {
	return "set_field:" + strconv.FormatUint(uint64(a.Flags), 10) + "->nd_reserved"
}
func (a SetNDOptionsType) String() string {
	return "set_field:" + strconv.Itoa(int(a.Type)) + "->nd_options_type"
}
func (a Resubmit) String() string { return "resubmit(," + strconv.Itoa(int(a.Table)) + ")" }
func (a Controller) String() string {
	var p []string
	if a.ID != 0 {
		p = append(p, fmt.Sprintf("id=%d", a.ID))
	}
	if a.MeterID != 0 {
		p = append(p, fmt.Sprintf("meter_id=%d", a.MeterID))
	}
	if len(p) == 0 {
		return "CONTROLLER:65535"
	}
	return "controller(" + strings.Join(p, ",") + ")"
}
func (a Learn) String() string {
	return fmt.Sprintf("learn(table=%d,hard_timeout=%d,priority=%d,cookie=%#x,"+
		"NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"+
		"load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])",
		a.Table, a.HardTimeout, a.Priority, uint64(a.Cookie))
}

func (PushVLAN) action()         {}
func (SetVLANVID) action()       {}
func (PopVLAN) action()          {}
func (SetTunID) action()         {}
func (Output) action()           {}
func (OutputInPort) action()     {}
func (Normal) action()           {}
func (GotoTable) action()        {}
func (SetEthSrc) action()        {}
func (SetARPOp) action()         {}
func (SetARPSha) action()        {}
func (SetARPSpa) action()        {}
func (Move) action()             {}
func (SetIPv6Src) action()       {}
func (SetICMPv6Type) action()    {}
func (SetNDReserved) action()    {}
func (SetNDOptionsType) action() {}
func (Resubmit) action()         {}
func (Controller) action()       {}
func (Learn) action()            {}

// String renders the match in ovs-ofctl's order (lib/match.c match_format):
// priority, protocol shorthand, tun_id, in_port, VLAN, dl_src, dl_dst, other
// dl_type, then the ARP fields.
func (m Match) String(priority uint16) string { return string(m.appendTo(nil, priority)) }

// appendTo appends String's text to b. Every flow is keyed by it when it is built,
// so it appends rather than formats field by field.
func (m Match) appendTo(b []byte, priority uint16) []byte {
	start := len(b)
	field := func(name string) {
		if len(b) > start {
			b = append(b, ',')
		}
		b = append(b, name...)
	}
	num := func(name string, v uint64) {
		field(name)
		b = strconv.AppendUint(b, v, 10)
	}
	if priority != DefaultPriority {
		num("priority=", uint64(priority))
	}
	shorthand := ipShorthand(m.EthType, m.IPProto)
	if shorthand != "" {
		field(shorthand)
	}
	if m.TunID != 0 {
		field("tun_id=0x")
		b = strconv.AppendUint(b, m.TunID, 16)
	}
	if m.InPort != 0 {
		num("in_port=", uint64(m.InPort))
	}
	switch v := m.VLAN; {
	case v.Mask == 0:
	case v.Mask == VLANPresent|0x0fff && v.TCI&VLANPresent != 0:
		num("dl_vlan=", uint64(v.TCI&0x0fff))
	default:
		field("vlan_tci=")
		b = appendHex4(b, v.TCI)
		b = append(b, '/')
		b = appendHex4(b, v.Mask)
	}
	if m.EthSrc != nil {
		field("dl_src=")
		b = appendHW(b, m.EthSrc)
	}
	if m.EthDst != nil {
		field("dl_dst=")
		b = appendHW(b, m.EthDst)
		if m.EthDstMask != nil {
			b = append(b, '/')
			b = appendHW(b, m.EthDstMask)
		}
	}
	if m.EthType != 0 && shorthand == "" {
		field("dl_type=")
		b = appendHex4(b, m.EthType)
	}
	if m.ARPSpa.IsValid() {
		field("arp_spa=")
		if m.ARPSpa.Bits() == 32 {
			b = m.ARPSpa.Addr().AppendTo(b)
		} else {
			b = m.ARPSpa.AppendTo(b)
		}
	}
	if m.ARPTpa.IsValid() {
		field("arp_tpa=")
		b = m.ARPTpa.AppendTo(b)
	}
	if m.ARPOp != 0 {
		num("arp_op=", uint64(m.ARPOp))
	}
	if m.IPv6Src.IsValid() {
		field("ipv6_src=")
		b = m.IPv6Src.AppendTo(b)
	}
	if m.ICMPv6Type != 0 {
		num("icmp_type=", uint64(m.ICMPv6Type))
	}
	if m.NDTarget.IsValid() {
		field("nd_target=")
		if m.NDTarget.IsSingleIP() {
			b = m.NDTarget.Addr().AppendTo(b)
		} else {
			b = m.NDTarget.AppendTo(b)
		}
	}
	if m.NDSll != nil {
		field("nd_sll=")
		b = appendHW(b, m.NDSll)
	}
	if m.NDTll != nil {
		field("nd_tll=")
		b = appendHW(b, m.NDTll)
	}
	if m.IPProto != 0 && shorthand == "" {
		num("nw_proto=", uint64(m.IPProto))
	}
	if m.TpSrc != 0 {
		num("tp_src=", uint64(m.TpSrc))
	}
	if m.TpDst != 0 {
		num("tp_dst=", uint64(m.TpDst))
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendHex4 appends v as 0x and four hex digits (%#04x would drop the padding).
func appendHex4(b []byte, v uint16) []byte {
	return append(b, '0', 'x', hexDigits[v>>12], hexDigits[v>>8&0xf], hexDigits[v>>4&0xf], hexDigits[v&0xf])
}

// appendHW appends a as net.HardwareAddr.String does.
func appendHW(b []byte, a net.HardwareAddr) []byte {
	for i, x := range a {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}

// String renders the flow exactly as one line of
// `ovs-ofctl -O OpenFlow15 dump-flows --no-stats --no-names` (leading space included):
// cookie and table are left out when zero, priority when it is the default.
func (f Flow) String() string {
	var b strings.Builder
	b.WriteByte(' ')
	if f.Cookie != 0 {
		fmt.Fprintf(&b, "cookie=%#x, ", uint64(f.Cookie))
	}
	if f.Table != 0 {
		fmt.Fprintf(&b, "table=%d, ", f.Table)
	}
	b.WriteString(f.Match.String(f.Priority))
	if !strings.HasSuffix(b.String(), " ") {
		b.WriteByte(' ')
	}
	b.WriteString("actions=" + ActionsString(f.Actions))
	return b.String()
}

// ActionsString renders an action list as ovs-ofctl does ("drop" when empty).
func ActionsString(as []Action) string {
	if len(as) == 0 {
		return "drop"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// Key identifies the flow within its bridge as OpenFlow does (table, priority,
// match): two flows with the same key replace each other.
func (f Flow) Key() string {
	b := make([]byte, 0, 96)
	b = append(b, "table="...)
	b = strconv.AppendUint(b, uint64(f.Table), 10)
	b = append(b, ",priority="...)
	b = strconv.AppendUint(b, uint64(f.Priority), 10)
	n := len(b)
	if b = f.Match.appendTo(append(b, ','), DefaultPriority); len(b) == n+1 { // priority is spelled out above
		b = b[:n]
	}
	return string(b)
}

// WithRound returns the flow with round r in its cookie and in the cookie of any
// learn() action, so that learned entries also belong to the current round.
func (f Flow) WithRound(r uint16) Flow {
	f.Cookie = f.Cookie.WithRound(r)
	if len(f.Actions) > 0 {
		as := make([]Action, len(f.Actions))
		for i, a := range f.Actions {
			if l, ok := a.(Learn); ok {
				l.Cookie = l.Cookie.WithRound(r)
				a = l
			}
			as[i] = a
		}
		f.Actions = as
	}
	return f
}

// Fields is the set of fields m matches on.
func (m Match) Fields() MatchFields {
	var fs MatchFields
	set := func(f MatchFields, used bool) {
		if used {
			fs |= f
		}
	}
	set(MatchInPort, m.InPort != 0)
	set(MatchEthType, m.EthType != 0)
	set(MatchTunID, m.TunID != 0)
	set(MatchVLAN, m.VLAN.Mask != 0)
	set(MatchEthSrc, m.EthSrc != nil)
	set(MatchEthDst, m.EthDst != nil || m.EthDstMask != nil)
	set(MatchARPSpa, m.ARPSpa.IsValid())
	set(MatchARPTpa, m.ARPTpa.IsValid())
	set(MatchARPOp, m.ARPOp != 0)
	set(MatchIPProto, m.IPProto != 0)
	set(MatchTpSrc, m.TpSrc != 0)
	set(MatchTpDst, m.TpDst != 0)
	set(MatchICMPType, m.ICMPv6Type != 0)
	set(MatchNDTarget, m.NDTarget.IsValid())
	set(MatchIPv6Src, m.IPv6Src.IsValid())
	set(MatchNDSll, m.NDSll != nil)
	set(MatchNDTll, m.NDTll != nil)
	return fs
}

// ofppMax is the largest ofport a switch gives a port (OpenFlow's OFPP_MAX); the
// numbers above it are reserved ports with their own actions.
const ofppMax = 0xffffff00

// ErrBadFlow is wrapped by every Validate error.
var ErrBadFlow = errors.New("bad flow")

// Validate checks the flow against its bridge's table registry (its table exists, it
// matches only fields the table allows, at a priority the table has, it jumps only
// where the table may go, and a catch-all flow is the table's registered miss) and
// checks what OVS would silently normalise or refuse, so that String() stays equal
// to what the switch dumps.
func (f Flow) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s %s: %s", ErrBadFlow, f.Bridge, strings.TrimSpace(f.String()), fmt.Sprintf(format, args...))
	}
	t, ok := LookupTable(f.Bridge, f.Table)
	if !ok {
		return bad("no table %d on %s", f.Table, f.Bridge)
	}
	m := f.Match
	if extra := m.Fields() &^ t.Match; extra != 0 {
		return bad("table %d (%s) does not match on %s", t.ID, t.Name, extra)
	}
	if !t.MayUse(f.Priority) {
		return bad("table %d (%s) has no priority %d", t.ID, t.Name, f.Priority)
	}
	for i, a := range f.Actions {
		switch a := a.(type) {
		case GotoTable:
			if i != len(f.Actions)-1 {
				return bad("goto_table must be last")
			}
			if !t.MayGoTo(a.Table) {
				return bad("table %d (%s) may not go to table %d", t.ID, t.Name, a.Table)
			}
		case Learn:
			lt, ok := LookupTable(f.Bridge, a.Table)
			if !ok {
				return bad("learn() into unknown table %d", a.Table)
			}
			if !lt.MayUse(a.Priority) {
				return bad("learn() into table %d (%s) at priority %d, which it does not have", lt.ID, lt.Name, a.Priority)
			}
		case Move:
			if a.Src.Bits() == 0 || a.Src.Bits() != a.Dst.Bits() {
				return bad("move between fields of different or unknown width")
			}
		case SetVLANVID:
			if a.VID == 0 || a.VID > 4095 {
				return bad("VLAN ID %d out of range", a.VID)
			}
		case Output:
			if a.Port == 0 || a.Port > ofppMax {
				return bad("output to ofport %d: want 1..%d", a.Port, ofppMax)
			}
		case SetARPSpa:
			if !a.IP.Is4() {
				return bad("set arp_spa to %v: not an IPv4 address", a.IP)
			}
		case SetIPv6Src:
			if !a.IP.Is6() || a.IP.Is4In6() || a.IP.Zone() != "" {
				return bad("set ipv6_src to %v: not an IPv6 address", a.IP)
			}
		case SetICMPv6Type:
			if m.ICMPv6Type == 0 {
				return bad("set icmpv6_type needs an icmp_type match")
			}
		case SetNDReserved, SetNDOptionsType:
			// OVS checks a set_field's prerequisites against the match alone.
			if m.ICMPv6Type != 135 && m.ICMPv6Type != 136 {
				return bad("%s needs icmp_type 135 or 136", a)
			}
		case Resubmit:
			// The one use is a second pass through the same table; anything else
			// would be a jump the registry does not know.
			if a.Table != f.Table {
				return bad("resubmit to table %d: only the flow's own table", a.Table)
			}
		}
		if mv, ok := a.(Move); ok && (mv.Dst == FieldNDTll || mv.Src == FieldNDTll) && m.ICMPv6Type != 136 {
			return bad("nd_tll needs icmp_type 136")
		}
	}
	if m.InPort > ofppMax {
		return bad("in_port %d: want 1..%d", m.InPort, ofppMax)
	}
	if (m.ARPSpa.IsValid() || m.ARPTpa.IsValid() || m.ARPOp != 0) && m.EthType != EthARP {
		return bad("ARP fields need eth_type arp")
	}
	if m.ARPSpa.IsValid() && (m.ARPSpa.Bits() == 0 || m.ARPSpa != m.ARPSpa.Masked() || !m.ARPSpa.Addr().Is4()) {
		return bad("arp_spa must be a masked IPv4 prefix longer than /0")
	}
	if m.IPProto != 0 && m.EthType != EthIPv4 && m.EthType != EthIPv6 {
		return bad("nw_proto needs eth_type ip or ipv6")
	}
	if (m.TpSrc != 0 || m.TpDst != 0) && m.IPProto != IPProtoUDP && m.IPProto != IPProtoTCP {
		return bad("tp_src and tp_dst need nw_proto udp or tcp")
	}
	if m.ARPTpa.IsValid() && !m.ARPTpa.Is4() {
		return bad("arp_tpa %s: not an IPv4 address", m.ARPTpa)
	}
	if m.IPv6Src.IsValid() && (m.EthType != EthIPv6 || m.IPv6Src.Zone() != "" || !m.IPv6Src.Is6()) {
		return bad("ipv6_src needs eth_type ipv6 and an IPv6 address")
	}
	if m.ICMPv6Type != 0 && (m.EthType != EthIPv6 || m.IPProto != IPProtoICMPv6) {
		return bad("icmp_type needs icmp6")
	}
	if m.NDTarget.IsValid() && (m.ICMPv6Type != 135 && m.ICMPv6Type != 136 ||
		!m.NDTarget.Addr().Is6() || m.NDTarget.Bits() == 0 || m.NDTarget != m.NDTarget.Masked()) {
		return bad("nd_target needs icmp_type 135 or 136 and a masked IPv6 prefix longer than /0")
	}
	if m.NDSll != nil && m.ICMPv6Type != icmp6NeighborSolicit || m.NDTll != nil && m.ICMPv6Type != icmp6NeighborAdvert {
		return bad("nd_sll needs icmp_type 135, nd_tll icmp_type 136")
	}
	if m.VLAN.TCI&^m.VLAN.Mask != 0 || m.VLAN.Mask&^(VLANPresent|0x0fff) != 0 {
		return bad("vlan_tci value outside its mask, or mask beyond VID and present bit")
	}
	for _, mac := range []net.HardwareAddr{m.EthSrc, m.EthDst, m.EthDstMask, m.NDSll, m.NDTll} {
		if mac != nil && len(mac) != 6 {
			return bad("MAC %s is not 6 bytes", mac)
		}
	}
	if m.EthDstMask != nil {
		if m.EthDst == nil {
			return bad("dl_dst mask without dl_dst")
		}
		for i := range m.EthDst {
			if m.EthDst[i]&^m.EthDstMask[i] != 0 {
				return bad("dl_dst value outside its mask")
			}
		}
		if m.EthDstMask.String() == "ff:ff:ff:ff:ff:ff" {
			return bad("full dl_dst mask: match exactly instead")
		}
	}
	if m.Fields() == 0 {
		if err := t.checkMiss(f); err != "" {
			return bad("table %d (%s) catch-all: %s", t.ID, t.Name, err)
		}
	}
	return nil
}

// checkMiss says what is wrong with f as table t's catch-all flow, or "". Only the
// round may differ from what the registry builds (learn()'s cookie carries it), and
// the learn flow's output port is whatever patch-int's ofport is.
func (t Table) checkMiss(f Flow) string {
	if t.Miss.Kind == MissNoFlow {
		return "the table has none: a miss drops"
	}
	if f.Priority != t.Miss.Priority {
		return fmt.Sprintf("priority %d, want %s", f.Priority, t.Miss)
	}
	var port uint32
	if len(f.Actions) == 2 {
		if o, ok := f.Actions[1].(Output); ok {
			port = o.Port
		}
	}
	want := t.Miss.actions(port)
	if len(want) != len(f.Actions) {
		return "want " + t.Miss.String()
	}
	for i, a := range f.Actions {
		if l, ok := a.(Learn); ok {
			l.Cookie &^= RoundMask
			a = l
		}
		if a.String() != want[i].String() {
			return "want " + t.Miss.String()
		}
	}
	return ""
}
