package flows_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

func TestNDResponderFlow(t *testing.T) {
	tb, err := flows.NewTunBridge("vxlan")
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 7}
	target := netip.MustParseAddr("fd00::7")
	vm := tb.InstallNDResponder(1, 3, target, mac, false)
	if err := vm.Validate(); err != nil {
		t.Fatal(err)
	}
	router := tb.InstallNDResponder(1, 3, target, mac, true)
	if vm.Equal(router) {
		t.Errorf("a router's answer equals a VM's:\n%s", vm)
	}
	if again := tb.InstallNDResponder(1, 3, target, append(net.HardwareAddr(nil), mac...), false); !vm.Equal(again) {
		t.Errorf("equal inputs, different flows:\n%s\n%s", vm, again)
	}
	// Every IPv6 address once, the link-local one first; IPv4 ones are ARP's.
	p := flows.RemotePort{ID: "r", MAC: mac, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.7"), target, target, netip.MustParseAddr("fe80::f816:3eff:fe00:7")}}
	fs := tb.RemotePortND(1, 3, p)
	var got []string
	for _, f := range fs {
		got = append(got, f.Match.NDTarget.Addr().String())
	}
	if want := []string{"fe80::f816:3eff:fe00:7", "fd00::7"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("targets %v, want %v", got, want)
	}
}

func TestValidateRefusesBadNDRewrites(t *testing.T) {
	ns := flows.Match{EthType: flows.EthIPv6, IPProto: flows.IPProtoICMPv6, ICMPv6Type: 135}
	udp := flows.Match{EthType: flows.EthIPv6, IPProto: flows.IPProtoUDP}
	for name, f := range map[string]flows.Flow{
		"nd_reserved without an ND match": {Match: udp, Actions: []flows.Action{flows.SetNDReserved{0x60000000}}},
		"nd_options_type without ND":      {Match: udp, Actions: []flows.Action{flows.SetNDOptionsType{2}}},
		"icmpv6_type without icmp6":       {Match: udp, Actions: []flows.Action{flows.SetICMPv6Type{136}}},
		"nd_tll under a solicitation":     {Match: ns, Actions: []flows.Action{flows.Move{Src: flows.FieldEthSrc, Dst: flows.FieldNDTll}}},
		"ipv6_src to an IPv4 address":     {Match: ns, Actions: []flows.Action{flows.SetIPv6Src{netip.MustParseAddr("10.0.0.1")}}},
		"ipv6_src to a mapped address":    {Match: ns, Actions: []flows.Action{flows.SetIPv6Src{netip.MustParseAddr("::ffff:10.0.0.1")}}},
		"resubmit to another table":       {Match: ns, Actions: []flows.Action{flows.Resubmit{flows.FloodToTun}}},
		"move of unequal widths":          {Match: ns, Actions: []flows.Action{flows.Move{Src: flows.FieldIPv6Src, Dst: flows.FieldEthDst}}},
	} {
		f.Bridge, f.Table, f.Priority, f.Cookie = flows.BrTun, flows.ARPResponder, flows.PrioTun21Responder, 1
		if err := f.Validate(); !errors.Is(err, flows.ErrBadFlow) {
			t.Errorf("%s: want ErrBadFlow, got %v", name, err)
		}
	}
}
