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

// BenchmarkRemotePortEvent is one remote port added, then deleted, at 1000 peers and
// 10 000 remote ports: Build of the whole Desired (as on a view that says nothing of
// what changed) against Update with the one port, on the same Builder state. The
// parent prints build/update, measured in the same run.
func BenchmarkRemotePortEvent(b *testing.B) {
	d := flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}
	for n := range 10 {
		d.Networks = append(d.Networks, flows.Network{ID: fmt.Sprintf("net-%d", n), VNI: uint32(100 + n), LocalVLAN: uint16(1 + n)})
	}
	for h := range 1000 {
		d.Tunnels = append(d.Tunnels, flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{172, 30, byte(h >> 8), byte(h)}), Ofport: uint32(0x4000 + h)})
	}
	port := func(i int) flows.RemotePort {
		return flows.RemotePort{ID: fmt.Sprintf("remote-%06d", i), NetworkID: fmt.Sprintf("net-%d", i%10),
			MAC: net.HardwareAddr{0xfa, 0x16, 0x3e, byte(i >> 16), byte(i >> 8), byte(i)}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			HostIP: d.Tunnels[i%1000].RemoteIP}
	}
	for i := range 10000 {
		d.RemotePorts = append(d.RemotePorts, port(i))
	}
	with := d
	with.RemotePorts = append(d.RemotePorts[:len(d.RemotePorts):len(d.RemotePorts)], port(10000))
	id := port(10000).ID
	only := d
	only.RemotePorts = with.RemotePorts[10000:]
	none := d
	none.RemotePorts = nil
	perEvent := map[string]float64{}
	for _, mode := range []string{"update", "build"} {
		b.Run(mode, func(b *testing.B) {
			var fb flows.Builder
			if _, err := fb.Build(&d); err != nil {
				b.Fatal(err)
			}
			n := 0
			for ; b.Loop(); n++ {
				var err error
				switch {
				case mode == "build" && n%2 == 0:
					_, err = fb.Build(&with)
				case mode == "build":
					_, err = fb.Build(&d)
				case n%2 == 0:
					_, err = fb.Update(&only, map[string]bool{id: true})
				default:
					_, err = fb.Update(&none, map[string]bool{id: true})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			perEvent[mode] = float64(b.Elapsed().Nanoseconds()) / float64(n)
		})
	}
	if perEvent["update"] > 0 {
		fmt.Printf("flows per remote port event at 10k remote ports, 1k tunnels: build/update %.1fx (%.0f / %.0f µs)\n",
			perEvent["build"]/perEvent["update"], perEvent["build"]/1e3, perEvent["update"]/1e3)
	}
}
