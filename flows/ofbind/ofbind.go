// Package ofbind encodes flows.Flow values as OpenFlow 1.5 FlowMods through ofnet's
// OFAction API. OVS refuses the legacy Nicira load/move actions on an OpenFlow 1.5
// connection, so every "load" is a set_field and every "move" a copy_field.
//
// The controller sends the result inside a bundle:
//
//	fm, err := ofbind.FlowMod(f, openflow15.FC_ADD)
//	...
//	err = tx.AddFlow(fm) // tx := sw.NewTransaction(ofctrl.Atomic)
package ofbind

import (
	"fmt"
	"net"

	"antrea.io/libOpenflow/openflow15"
	"antrea.io/libOpenflow/util"
	"antrea.io/ofnet/ofctrl"

	"github.com/lanes-net/lanes/flows"
)

// FlowMod encodes f for command: openflow15.FC_ADD (replaces a flow with the same
// table, priority and match, cookie included) or FC_DELETE_STRICT. A strict delete
// matches the cookie exactly, so it never removes a flow another owner has meanwhile
// installed under the same match. The xid is left to ofnet, which assigns one when
// the message is sent.
func FlowMod(f flows.Flow, command int) (*openflow15.FlowMod, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if f.Cookie == 0 {
		// ofnet would replace a zero cookie with a global counter.
		return nil, fmt.Errorf("flow %s: cookie 0 is not allowed", f.Key())
	}
	of := &ofctrl.Flow{
		Table:    ofctrl.NewTable(f.Table, nil),
		CookieID: uint64(f.Cookie),
		Match:    match(f),
	}
	if command == openflow15.FC_DELETE_STRICT {
		all := ^uint64(0)
		of.CookieMask = &all
	}
	for _, a := range f.Actions {
		if g, ok := a.(flows.GotoTable); ok {
			of.Goto(g.Table)
			continue
		}
		oa, err := action(a)
		if err != nil {
			return nil, fmt.Errorf("flow %s: %w", f.Key(), err)
		}
		of.ApplyAction(oa)
	}
	msg, err := of.GetBundleMessage(command)
	if err != nil {
		return nil, fmt.Errorf("flow %s: %w", f.Key(), err)
	}
	fm := msg.GetMessage().(*openflow15.FlowMod)
	// ofctrl.FlowMatch has no arp_spa mask; a CIDR (allowed address pair) is added
	// here as a masked OXM field.
	if p := f.Match.ARPSpa; p.IsValid() && p.Bits() < 32 {
		mask := net.CIDRMask(p.Bits(), 32)
		fld := openflow15.NewArpSpaField(p.Addr().AsSlice())
		fld.HasMask, fld.Mask = true, &openflow15.ArpXPaField{ArpPa: net.IP(mask)}
		fld.Length += uint8(fld.Mask.Len())
		fm.Match.AddField(*fld)
	}
	return fm, nil
}

// DeleteByCookie is a non-strict delete, over all tables, of the flows whose cookie
// agrees with cookie on the bits set in mask: flows.RoundMask selects a round,
// flows.CategoryMask|flows.OwnerMask one owner in any round.
func DeleteByCookie(cookie, mask flows.Cookie) *openflow15.FlowMod {
	fm := openflow15.NewFlowMod()
	fm.Command = openflow15.FC_DELETE
	fm.TableId = openflow15.OFPTT_ALL
	fm.Cookie, fm.CookieMask = uint64(cookie), uint64(mask)
	return fm
}

func match(f flows.Flow) ofctrl.FlowMatch {
	m := f.Match
	om := ofctrl.FlowMatch{
		Priority:  f.Priority,
		InputPort: m.InPort,
		Ethertype: m.EthType,
		TunnelId:  m.TunID,
		ArpOper:   m.ARPOp,
		IpProto:   m.IPProto,
	}
	if m.TpSrc != 0 {
		om.SrcPort = m.TpSrc
	}
	if m.TpDst != 0 {
		om.DstPort = m.TpDst
	}
	switch v := m.VLAN; {
	case v.Mask == 0:
	case v.TCI&flows.VLANPresent == 0 && v.Mask == flows.VLANPresent|0x0fff:
		om.NonVlan = true
	default:
		// ofctrl ORs the present bit into the value and uses the mask as given.
		vid := v.TCI & 0x0fff
		om.VlanId = &vid
		if v.Mask != flows.VLANPresent|0x0fff {
			om.VlanMask = &v.Mask
		}
	}
	if m.EthSrc != nil {
		om.MacSa = &m.EthSrc
	}
	if m.EthDst != nil {
		om.MacDa = &m.EthDst
		if m.EthDstMask != nil {
			om.MacDaMask = &m.EthDstMask
		}
	}
	if m.ARPTpa.IsValid() {
		ip := net.IP(m.ARPTpa.AsSlice())
		om.ArpTpa = &ip
	}
	if m.ARPSpa.IsValid() && m.ARPSpa.Bits() == 32 {
		ip := net.IP(m.ARPSpa.Addr().AsSlice())
		om.ArpSpa = &ip
	}
	om.IpProto, om.SrcPort, om.DstPort = m.IPProto, m.TpSrc, m.TpDst
	if m.ICMPv6Type != 0 {
		typ := m.ICMPv6Type
		om.Icmp6Type = &typ
	}
	if m.NDSll != nil {
		om.NdSll = &m.NDSll
	}
	if m.NDTll != nil {
		om.NdTll = &m.NDTll
	}
	if m.IPv6Src.IsValid() {
		// ofctrl picks the IPv6 field for an address that has no IPv4 form; As16
		// keeps :: (whose net.IP.To4 is nil) a 16-byte address.
		b := m.IPv6Src.As16()
		ip := net.IP(b[:])
		om.IpSa = &ip
	}
	if p := m.NDTarget; p.IsValid() {
		ip := net.IP(p.Addr().AsSlice())
		om.NdTarget = &ip
		if !p.IsSingleIP() {
			mask := net.IP(net.CIDRMask(p.Bits(), 128))
			om.NdTargetMask = &mask
		}
	}
	return om
}

func action(a flows.Action) (ofctrl.OFAction, error) {
	switch a := a.(type) {
	case flows.PushVLAN:
		return &ofctrl.PushVLANAction{EtherType: 0x8100}, nil
	case flows.SetVLANVID:
		return &ofctrl.SetVLANAction{VlanID: a.VID}, nil
	case flows.PopVLAN:
		return &ofctrl.PopVLANAction{}, nil
	case flows.SetTunID:
		return &ofctrl.SetTunnelIDAction{TunnelID: a.ID}, nil
	case flows.Output:
		return ofctrl.NewOutputPort(a.Port), nil
	case flows.OutputInPort:
		return ofctrl.NewOutputInPort(), nil
	case flows.Normal:
		return ofctrl.NewOutputNormal(), nil
	case flows.SetEthSrc:
		return &ofctrl.SetSrcMACAction{MAC: a.MAC}, nil
	case flows.SetARPOp:
		return &ofctrl.SetARPOpAction{Value: a.Op}, nil
	case flows.SetARPSha:
		return &ofctrl.SetARPShaAction{MAC: a.MAC}, nil
	case flows.SetARPSpa:
		return &ofctrl.SetARPSpaAction{IP: a.IP.AsSlice()}, nil
	case flows.SetIPv6Src:
		b := a.IP.As16()
		return setField("NXM_NX_IPV6_SRC", &openflow15.Ipv6SrcField{Ipv6Src: net.IP(b[:])})
	case flows.SetICMPv6Type:
		return &ofctrl.SetICMPv6TypeAction{Type: a.Type}, nil
	case flows.SetNDReserved:
		return ericSetField(ericNDReserved, 4, &openflow15.Uint32Message{Data: a.Flags}), nil
	case flows.SetNDOptionsType:
		return ericSetField(ericNDOptionsType, 1, &openflow15.IcmpTypeField{Type: a.Type}), nil
	case flows.Resubmit:
		return resubmit{a.Table}, nil
	case flows.Move:
		src, err := openflow15.FindOxmIdByName(string(a.Src), false)
		if err != nil {
			return nil, fmt.Errorf("move source: %w", err)
		}
		dst, err := openflow15.FindOxmIdByName(string(a.Dst), false)
		if err != nil {
			return nil, fmt.Errorf("move destination: %w", err)
		}
		return ofctrl.NewCopyFieldAction(a.Src.Bits(), 0, 0, src, dst), nil
	case flows.Learn:
		return learn(a)
	case flows.Controller:
		// Version 2 (NXAST_CONTROLLER2) carries the meter; ofnet sends the whole packet.
		return &ofctrl.NXController{Version2: true, ControllerID: a.ID, Reason: openflow15.R_APPLY_ACTION, MeterID: a.MeterID}, nil
	}
	return nil, fmt.Errorf("action %s has no OpenFlow 1.5 encoding", a)
}

// OVS's nd_reserved and nd_options_type live in the ERICOXM_OF class of
// meta-flow (fields 1 and 2, "ERICOXM_OF_ICMPV6_ND_RESERVED" and
// "..._OPTIONS_TYPE" in ovs-fields(7)), which libOpenflow has no names for.
const (
	ericOXMClass      = 0x1000
	ericNDReserved    = 1
	ericNDOptionsType = 2
)

// ofAction wraps a ready libOpenflow action for FlowMod's ApplyAction.
type ofAction struct{ a openflow15.Action }

func (a ofAction) GetActionMessage() openflow15.Action { return a.a }
func (a ofAction) GetActionType() string               { return "lanesSetField" }

func setField(name string, v util.Message) (ofctrl.OFAction, error) {
	field, err := openflow15.FindFieldHeaderByName(name, false)
	if err != nil {
		return nil, err
	}
	field.Value = v
	return ofAction{openflow15.NewActionSetField(*field)}, nil
}

func ericSetField(field uint8, length uint8, v util.Message) ofctrl.OFAction {
	return ofAction{openflow15.NewActionSetField(openflow15.MatchField{Class: ericOXMClass, Field: field, Length: length, Value: v})}
}

// resubmit is Nicira's resubmit(,table): the packet's in_port stays.
type resubmit struct{ table uint8 }

func (r resubmit) GetActionMessage() openflow15.Action {
	return openflow15.NewNXActionResubmitTableAction(openflow15.OFPP_IN_PORT, r.table)
}
func (resubmit) GetActionType() string { return "lanesResubmit" }

// learn encodes Neutron's table-10 learn spec. ofnet's gotchas: the "same field"
// shorthand FIELD[0..11] needs the field passed as its own source, and an immediate
// value must be exactly 2*ceil(bits/16) bytes.
func learn(a flows.Learn) (ofctrl.OFAction, error) {
	l := ofctrl.NewLearnAction(a.Table, a.Priority, 0, a.HardTimeout, 0, 0, uint64(a.Cookie))
	field := func(name string) *ofctrl.LearnField { return &ofctrl.LearnField{Name: name} }
	tci := field("NXM_OF_VLAN_TCI")
	for _, err := range []error{
		l.AddMatch(tci, 12, tci, nil),                                            // NXM_OF_VLAN_TCI[0..11]
		l.AddMatch(field("NXM_OF_ETH_DST"), 48, field("NXM_OF_ETH_SRC"), nil),    // NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]
		l.AddLoadAction(tci, 16, nil, []byte{0, 0}),                              // load:0->NXM_OF_VLAN_TCI[]
		l.AddLoadAction(field("NXM_NX_TUN_ID"), 64, field("NXM_NX_TUN_ID"), nil), // load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[]
		l.AddOutputAction(field("OXM_OF_IN_PORT"), 32),                           // output:OXM_OF_IN_PORT[]
	} {
		if err != nil {
			return nil, fmt.Errorf("learn: %w", err)
		}
	}
	return l, nil
}

// ForgetLearned is a non-strict delete of the table-20 entries that learn() created
// for mac, in every VLAN and round: when a remote port goes away its learned entry
// must not keep sending its MAC to the old host until the hard timeout.
func ForgetLearned(mac net.HardwareAddr) *openflow15.FlowMod {
	fm := openflow15.NewFlowMod()
	fm.Command = openflow15.FC_DELETE
	fm.TableId = flows.UcastToTun
	fm.Cookie, fm.CookieMask = uint64(flows.MakeCookie(0, flows.CatLearned, "")&flows.CategoryMask), uint64(flows.CategoryMask)
	fm.Match.AddField(*openflow15.NewEthDstField(mac, nil))
	return fm
}
