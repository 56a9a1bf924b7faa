package flows

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// TestMatchStringAsFormatted: the appending renderer writes what formatting each
// field with fmt did, for random matches of every field (the text is what ovs-ofctl
// prints, and what flows are keyed by).
func TestMatchStringAsFormatted(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	hw := func() net.HardwareAddr {
		if r.IntN(3) == 0 {
			return nil
		}
		return net.HardwareAddr{byte(r.Uint32()), byte(r.Uint32()), 0x0a, 0, byte(r.Uint32()), byte(r.Uint32())}
	}
	maybe := func(n uint64) uint64 {
		if r.IntN(2) == 0 {
			return 0
		}
		return r.Uint64N(n)
	}
	v4 := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
	}
	v6 := func() netip.Addr {
		return netip.MustParseAddr(fmt.Sprintf("fe80::%x:%x", r.Uint32N(1<<16), r.Uint32N(1<<16)))
	}
	for i := range 5000 {
		m := Match{InPort: uint32(maybe(1 << 16)), EthType: []uint16{0, EthARP, EthIPv4, EthIPv6, 0x88cc}[r.IntN(5)], TunID: maybe(1 << 24),
			VLAN:   []VLAN{{}, TagVID(uint16(1 + r.IntN(4094))), {TCI: uint16(r.Uint32()), Mask: uint16(r.Uint32())}}[r.IntN(3)],
			EthSrc: hw(), EthDst: hw(), ARPOp: uint16(maybe(3)), IPProto: []uint8{0, IPProtoICMP, IPProtoUDP, IPProtoTCP, IPProtoICMPv6, 99}[r.IntN(6)],
			TpSrc: uint16(maybe(65536)), TpDst: uint16(maybe(65536)), ICMPv6Type: uint8(maybe(256)), NDSll: hw(), NDTll: hw()}
		if m.EthDst != nil && r.IntN(2) == 0 {
			m.EthDstMask = net.HardwareAddr{0x01, 0, 0, 0, 0, 0}
		}
		if r.IntN(2) == 0 {
			m.ARPSpa = netip.PrefixFrom(v4(), []int{32, 24, 0}[r.IntN(3)]).Masked()
		}
		if r.IntN(2) == 0 {
			m.ARPTpa = v4()
		}
		if r.IntN(2) == 0 {
			m.IPv6Src = v6()
		}
		if r.IntN(2) == 0 {
			m.NDTarget = netip.PrefixFrom(v6(), []int{128, 64}[r.IntN(2)]).Masked()
		}
		prio := []uint16{DefaultPriority, 0, uint16(r.Uint32())}[r.IntN(3)]
		if got, want := m.String(prio), oldMatchString(m, prio); got != want {
			t.Fatalf("match %d: %q, want %q", i, got, want)
		}
		f := Flow{Table: uint8(r.Uint32()), Priority: prio, Match: m}
		if got, want := f.Key(), oldKey(f); got != want {
			t.Fatalf("flow %d: key %q, want %q", i, got, want)
		}
	}
	if got := (Flow{Table: 3, Priority: 7}).Key(); got != "table=3,priority=7" {
		t.Errorf("key of a match of nothing: %q", got)
	}
}

func oldKey(f Flow) string {
	k := fmt.Sprintf("table=%d,priority=%d", f.Table, f.Priority)
	if m := oldMatchString(f.Match, DefaultPriority); m != "" {
		k += "," + m
	}
	return k
}

func oldMatchString(m Match, priority uint16) string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	if priority != DefaultPriority {
		add("priority=%d", priority)
	}
	shorthand := ipShorthand(m.EthType, m.IPProto)
	if shorthand != "" {
		add("%s", shorthand)
	}
	if m.TunID != 0 {
		add("tun_id=%#x", m.TunID)
	}
	if m.InPort != 0 {
		add("in_port=%d", m.InPort)
	}
	switch v := m.VLAN; {
	case v.Mask == 0:
	case v.Mask == VLANPresent|0x0fff && v.TCI&VLANPresent != 0:
		add("dl_vlan=%d", v.TCI&0x0fff)
	default:
		add("vlan_tci=0x%04x/0x%04x", v.TCI, v.Mask)
	}
	if m.EthSrc != nil {
		add("dl_src=%s", m.EthSrc)
	}
	if m.EthDst != nil {
		if m.EthDstMask != nil {
			add("dl_dst=%s/%s", m.EthDst, m.EthDstMask)
		} else {
			add("dl_dst=%s", m.EthDst)
		}
	}
	if m.EthType != 0 && shorthand == "" {
		add("dl_type=0x%04x", m.EthType)
	}
	if m.ARPSpa.IsValid() {
		if m.ARPSpa.Bits() == 32 {
			add("arp_spa=%s", m.ARPSpa.Addr())
		} else {
			add("arp_spa=%s", m.ARPSpa)
		}
	}
	if m.ARPTpa.IsValid() {
		add("arp_tpa=%s", m.ARPTpa)
	}
	if m.ARPOp != 0 {
		add("arp_op=%d", m.ARPOp)
	}
	if m.IPv6Src.IsValid() {
		add("ipv6_src=%s", m.IPv6Src)
	}
	if m.ICMPv6Type != 0 {
		add("icmp_type=%d", m.ICMPv6Type)
	}
	if m.NDTarget.IsValid() {
		if m.NDTarget.IsSingleIP() {
			add("nd_target=%s", m.NDTarget.Addr())
		} else {
			add("nd_target=%s", m.NDTarget)
		}
	}
	if m.NDSll != nil {
		add("nd_sll=%s", m.NDSll)
	}
	if m.NDTll != nil {
		add("nd_tll=%s", m.NDTll)
	}
	if m.IPProto != 0 && shorthand == "" {
		add("nw_proto=%d", m.IPProto)
	}
	if m.TpSrc != 0 {
		add("tp_src=%d", m.TpSrc)
	}
	if m.TpDst != 0 {
		add("tp_dst=%d", m.TpDst)
	}
	return strings.Join(p, ",")
}
