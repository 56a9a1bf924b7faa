package ofsync

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// remoteState is the desired state of n remote ports without IPs spread over 16
// networks and 8 tunnels, with the ports moved(i) says on the next tunnel: about 60
// flows of setup, networks and tunnels besides the ports' (two each: unicast and
// ND responder). BenchmarkModify's states.
func remoteState(n int, moved func(i int) bool) flows.Desired {
	d := flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}
	for v := range 16 {
		d.Networks = append(d.Networks, flows.Network{ID: fmt.Sprintf("net-%d", v), VNI: 1000 + uint32(v), LocalVLAN: uint16(v + 1)})
	}
	for h := range 8 {
		d.Tunnels = append(d.Tunnels, flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{172, 31, 0, byte(h + 2)}), Ofport: uint32(h + 2)})
	}
	d.RemotePorts = make([]flows.RemotePort, n)
	for i := range n {
		h := i % 8
		if moved != nil && moved(i) {
			h = (h + 1) % 8
		}
		d.RemotePorts[i] = flows.RemotePort{
			ID: fmt.Sprintf("port-%d", i), NetworkID: fmt.Sprintf("net-%d", i%16),
			MAC:    net.HardwareAddr{0xfa, 0x16, 0x3e, byte(i >> 16), byte(i >> 8), byte(i)},
			HostIP: netip.AddrFrom4([4]byte{172, 31, 0, byte(h + 2)}),
		}
	}
	return d
}

func movedSet(tb testing.TB, n int, moved func(i int) bool) flows.Set {
	d := remoteState(n, moved)
	s, err := d.Flows()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkFromScratch times the CPU side of SyncSet's full path for BenchmarkModify's
// move of 10% of 50k remote ports, without a switch: index the new set against the
// installed one, and diff; the recount of every flow per table is what the plan's
// counts replace.
func BenchmarkFromScratch(b *testing.B) {
	before := movedSet(b, 50000, nil)
	after := movedSet(b, 50000, func(i int) bool { return i%10 == 3 })
	installed := Index(before, flows.BrTun, 1)
	b.Run("indexFrom", func(b *testing.B) {
		for range b.N {
			indexFrom(&installed, after, flows.BrTun, 1)
		}
	})
	desired := indexFrom(&installed, after, flows.BrTun, 1)
	b.Run("diff", func(b *testing.B) {
		for range b.N {
			if p := Diff(installed, desired, false); len(p.Add) < 5000 {
				b.Fatalf("%d adds", len(p.Add))
			}
		}
	})
	b.Run("perTable", func(b *testing.B) {
		for range b.N {
			desired.perTable()
		}
	})
}

// BenchmarkIncremental times the CPU side of SyncSet's fast path for the same move,
// given as Builder.Update derives it: take in the changed owners, diff them.
func BenchmarkIncremental(b *testing.B) {
	moved := func(i int) bool { return i%10 == 3 }
	var fb flows.Builder
	d0, d1 := remoteState(50000, nil), remoteState(50000, moved)
	s0, err := fb.Build(&d0)
	if err != nil {
		b.Fatal(err)
	}
	ids := map[string]bool{}
	part := d1
	part.RemotePorts = nil
	for i, p := range d1.RemotePorts {
		if moved(i) {
			ids[p.ID] = true
			part.RemotePorts = append(part.RemotePorts, p)
		}
	}
	s1, err := fb.Update(&part, ids)
	if err != nil {
		b.Fatal(err)
	}
	changed, ok := s1.Changed(flows.BrTun, s0)
	if !ok {
		b.Fatal("not derived")
	}
	installed := Index(s0, flows.BrTun, 1)
	b.Run("with", func(b *testing.B) {
		for range b.N {
			installed.with(s1, flows.BrTun, changed, 1)
		}
	})
	_, pairs := installed.with(s1, flows.BrTun, changed, 1)
	b.Run("diff", func(b *testing.B) {
		for range b.N {
			if p := diffPairs(pairs); len(p.Add) < 5000 {
				b.Fatalf("%d adds", len(p.Add))
			}
		}
	})
}
