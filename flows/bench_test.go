package flows_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// bigDesired is a busy host: 50 networks, 20 peers, 200 local and 2000 remote ports.
func bigDesired() flows.Desired {
	d := flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}
	for n := range 50 {
		d.Networks = append(d.Networks, flows.Network{ID: fmt.Sprintf("net-%d", n), VNI: uint32(100 + n), LocalVLAN: uint16(1 + n)})
	}
	for h := range 20 {
		d.Tunnels = append(d.Tunnels, flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{172, 31, 0, byte(2 + h)}), Ofport: uint32(0x4000 + h)})
	}
	mac := func(i int) net.HardwareAddr {
		return net.HardwareAddr{0xfa, 0x16, 0x3e, byte(i >> 16), byte(i >> 8), byte(i)}
	}
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range 200 {
		d.LocalPorts = append(d.LocalPorts, flows.LocalPort{ID: fmt.Sprintf("local-%d", i), NetworkID: fmt.Sprintf("net-%d", i%50),
			Ofport: uint32(10 + i), MAC: mac(i), IPs: []netip.Addr{ip(i)}})
	}
	for i := 200; i < 2200; i++ {
		d.RemotePorts = append(d.RemotePorts, flows.RemotePort{ID: fmt.Sprintf("remote-%d", i), NetworkID: fmt.Sprintf("net-%d", i%50),
			MAC: mac(i), IPs: []netip.Addr{ip(i)}, HostIP: d.Tunnels[i%20].RemoteIP})
	}
	return d
}

func BenchmarkFlows(b *testing.B) {
	d := bigDesired()
	for b.Loop() {
		if _, err := d.Flows(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetOwner(b *testing.B) {
	d := bigDesired()
	s, err := d.Flows()
	if err != nil {
		b.Fatal(err)
	}
	fs := s.Flows(flows.BrTun)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := s.Owner(flows.BrTun, fs[i%len(fs)].Cookie.WithRound(3)); !ok {
			b.Fatal("no owner")
		}
	}
}
