package flows_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

func TestNDSpoofingProtection(t *testing.T) {
	mac, _ := net.ParseMAC("fa:16:3e:00:00:01")
	pair, _ := net.ParseMAC("fa:16:3e:00:00:99")
	ll := func(fs []flows.Flow) []string {
		var out []string
		for _, f := range fs {
			out = append(out, strings.TrimSpace(f.String()))
		}
		return out
	}
	got := ll(flows.IntBridge{}.SetupNDSpoofingProtection(1, 5, []net.HardwareAddr{mac, pair, mac},
		[]netip.Prefix{netip.MustParsePrefix("fd00::5/128"), netip.MustParsePrefix("fd00:1::1/64")}))
	var want []string
	for _, target := range []string{"fe80::f816:3eff:fe00:1", "fe80::f816:3eff:fe00:99", "fd00::5", "fd00:1::/64"} {
		for _, ll := range []string{"fa:16:3e:00:00:01", "fa:16:3e:00:00:99", "00:00:00:00:00:00"} {
			want = append(want, "cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_target="+target+",nd_tll="+ll+" actions=goto_table:25")
		}
	}
	want = append(want,
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=135,nd_sll=fa:16:3e:00:00:01 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=135,nd_sll=fa:16:3e:00:00:99 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=135,nd_sll=00:00:00:00:00:00 actions=goto_table:25",
		"cookie=0x1, priority=10,icmp6,in_port=5,icmp_type=136 actions=goto_table:24",
		"cookie=0x1, priority=10,icmp6,in_port=5,icmp_type=135 actions=goto_table:24",
	)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// ::/0 allows every target, as in Neutron, but not every link-layer address.
	got = ll(flows.IntBridge{}.SetupNDSpoofingProtection(1, 5, []net.HardwareAddr{mac}, []netip.Prefix{netip.MustParsePrefix("fd00::5/128"), netip.MustParsePrefix("::/0")}))
	want = []string{
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_tll=fa:16:3e:00:00:01 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_tll=00:00:00:00:00:00 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=135,nd_sll=fa:16:3e:00:00:01 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=135,nd_sll=00:00:00:00:00:00 actions=goto_table:25",
		"cookie=0x1, priority=10,icmp6,in_port=5,icmp_type=136 actions=goto_table:24",
		"cookie=0x1, priority=10,icmp6,in_port=5,icmp_type=135 actions=goto_table:24",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("::/0: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range append(flows.IntBridge{}.SetupPortIsolation(1, 5), flows.IntBridge{}.SetupNDSpoofingProtection(1, 5, []net.HardwareAddr{mac}, nil)...) {
		if err := f.Validate(); err != nil {
			t.Error(err)
		}
	}
}

func TestValidateRefusesInconsistentL4Matches(t *testing.T) {
	bad := []flows.Match{
		{EthType: flows.EthARP, IPProto: flows.IPProtoUDP},
		{EthType: flows.EthIPv4, IPProto: flows.IPProtoICMPv6},
		{EthType: flows.EthIPv4, TpSrc: 67},
		{EthType: flows.EthIPv4, IPProto: flows.IPProtoUDP, ICMPv6Type: 134},
		{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 134, NDTarget: netip.MustParsePrefix("fe80::1/128")},
		{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 136, NDTarget: netip.MustParsePrefix("10.0.0.1/32")},
		{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 136, NDTarget: netip.MustParsePrefix("fd00::1/64")},
		{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 136, NDSll: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}},
		{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 135, NDTll: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}},
		{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 135, NDSll: net.HardwareAddr{0xfa, 0x16, 0x3e}},
		{EthType: flows.EthIPv6, IPv6Src: netip.MustParseAddr("10.0.0.1")},
		{EthType: flows.EthIPv4, IPv6Src: netip.IPv6Unspecified()},
	}
	for _, m := range bad {
		f := flows.Flow{Bridge: flows.BrInt, Table: flows.LocalSwitching, Priority: 1, Cookie: 1, Match: m}
		if err := f.Validate(); !errors.Is(err, flows.ErrBadFlow) {
			t.Errorf("%s: want ErrBadFlow, got %v", f, err)
		}
	}
}
