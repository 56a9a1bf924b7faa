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
	want := []string{
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_target=fe80::f816:3eff:fe00:1 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_target=fe80::f816:3eff:fe00:99 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_target=fd00::5 actions=goto_table:25",
		"cookie=0x1, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_target=fd00:1::/64 actions=goto_table:25",
		"cookie=0x1, priority=10,icmp6,in_port=5,icmp_type=136 actions=goto_table:24",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// ::/0 allows every target: no jump, so advertisements go the port's normal way.
	if fs := (flows.IntBridge{}).SetupNDSpoofingProtection(1, 5, []net.HardwareAddr{mac}, []netip.Prefix{netip.MustParsePrefix("::/0")}); len(fs) != 0 {
		t.Errorf("::/0: %v", ll(fs))
	}
	for _, f := range append(flows.IntBridge{}.SetupPortIsolation(1, 5), flows.IntBridge{}.SetupNDSpoofingProtection(1, 5, []net.HardwareAddr{mac}, nil)...) {
		if err := f.Validate(); err != nil {
			t.Error(err)
		}
	}
}

func TestEUI64LinkLocal(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	if got := flows.EUI64LinkLocal(mac).String(); got != "fe80::5054:ff:fe12:3456" {
		t.Errorf("got %s", got)
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
	}
	for _, m := range bad {
		f := flows.Flow{Bridge: flows.BrInt, Table: flows.LocalSwitching, Priority: 1, Cookie: 1, Match: m}
		if err := f.Validate(); !errors.Is(err, flows.ErrBadFlow) {
			t.Errorf("%s: want ErrBadFlow, got %v", f, err)
		}
	}
}
