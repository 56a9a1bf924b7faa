package flows_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// randomHost keeps a host's Desired and changes it at random, as store events would.
type randomHost struct {
	r    *rand.Rand
	d    flows.Desired
	next int
	away []flows.Network // networks taken out, to come back (update_test.go)
}

func newRandomHost(seed uint64) *randomHost {
	h := &randomHost{r: rand.New(rand.NewPCG(seed, 7)), d: flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}}
	for n := range 6 {
		net := flows.Network{ID: fmt.Sprintf("net-%d", n), VNI: uint32(100 + n), LocalVLAN: uint16(1 + n)}
		if n == 5 {
			net.TunnelType = "geneve"
		}
		h.d.Networks = append(h.d.Networks, net)
	}
	for t := range 8 {
		h.d.Tunnels = append(h.d.Tunnels, flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{172, 31, 0, byte(2 + t)}), Ofport: uint32(0x4000 + t)})
	}
	h.d.Tunnels = append(h.d.Tunnels, flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{172, 31, 0, 2}), Ofport: 0x5000, Type: "geneve"})
	for range 10 {
		h.d.LocalPorts = append(h.d.LocalPorts, h.localPort())
	}
	for range 60 {
		h.d.RemotePorts = append(h.d.RemotePorts, h.remotePort())
	}
	return h
}

func (h *randomHost) id() int { h.next++; return h.next }

func mac(i int) net.HardwareAddr {
	return net.HardwareAddr{0xfa, 0x16, 0x3e, byte(i >> 16), byte(i >> 8), byte(i)}
}
func ip4(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }

func (h *randomHost) remotePort() flows.RemotePort {
	i := h.id()
	p := flows.RemotePort{ID: fmt.Sprintf("remote-%d", i), NetworkID: h.d.Networks[h.r.IntN(len(h.d.Networks))].ID,
		MAC: mac(i), IPs: []netip.Addr{ip4(i)}, HostIP: netip.AddrFrom4([4]byte{172, 31, 0, byte(2 + h.r.IntN(9))})}
	if h.r.IntN(4) == 0 {
		p.IPs = append(p.IPs, netip.MustParseAddr(fmt.Sprintf("fd00::%x", i)))
	}
	return p
}

func (h *randomHost) localPort() flows.LocalPort {
	i := h.id()
	p := flows.LocalPort{ID: fmt.Sprintf("local-%d", i), NetworkID: h.d.Networks[h.r.IntN(len(h.d.Networks))].ID,
		Ofport: uint32(10 + i), MAC: mac(i), IPs: []netip.Addr{ip4(i)}, DHCP: h.r.IntN(2) == 0, PortSecurityDisabled: h.r.IntN(5) == 0}
	if h.r.IntN(3) == 0 {
		p.AllowedAddressPairs = []flows.AddressPair{{Prefix: netip.MustParsePrefix("192.168.0.0/24"), MAC: mac(i + 1000)}}
	}
	return p
}

// change makes one random change and says what it was. The slices of d are never
// changed in place: a new value replaces the old one, as a new view does.
func (h *randomHost) change() string {
	d := &h.d
	pick := func(n int) int { return h.r.IntN(max(n, 1)) }
	switch h.r.IntN(10) {
	case 0, 1:
		d.RemotePorts = append(slices.Clone(d.RemotePorts), h.remotePort())
		return "add remote port"
	case 2, 3:
		if len(d.RemotePorts) > 0 {
			i := pick(len(d.RemotePorts))
			d.RemotePorts = slices.Delete(slices.Clone(d.RemotePorts), i, i+1)
		}
		return "delete remote port"
	case 4:
		if len(d.RemotePorts) > 0 { // moved to another host, or readdressed
			d.RemotePorts = slices.Clone(d.RemotePorts)
			i := pick(len(d.RemotePorts))
			p := h.remotePort()
			p.ID = d.RemotePorts[i].ID
			d.RemotePorts[i] = p
		}
		return "change remote port"
	case 5:
		d.LocalPorts = slices.Clone(d.LocalPorts)
		if len(d.LocalPorts) > 0 && h.r.IntN(2) == 0 {
			i := pick(len(d.LocalPorts))
			p := h.localPort()
			p.ID, p.NetworkID = d.LocalPorts[i].ID, d.LocalPorts[i].NetworkID
			d.LocalPorts[i] = p
			return "change local port"
		}
		d.LocalPorts = append(d.LocalPorts, h.localPort())
		return "add local port"
	case 6:
		if len(d.LocalPorts) > 0 {
			i := pick(len(d.LocalPorts))
			d.LocalPorts = slices.Delete(slices.Clone(d.LocalPorts), i, i+1)
		}
		return "delete local port"
	case 7:
		d.Tunnels = slices.Clone(d.Tunnels)
		i := pick(len(d.Tunnels))
		if h.r.IntN(2) == 0 && len(d.Tunnels) > 1 {
			d.Tunnels = slices.Delete(d.Tunnels, i, i+1)
			return "delete tunnel"
		}
		t := flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{172, 31, 0, byte(2 + h.r.IntN(9))}), Ofport: uint32(0x4100 + h.id())}
		if j := slices.IndexFunc(d.Tunnels, func(x flows.Tunnel) bool { return x.RemoteIP == t.RemoteIP && x.Type == "" }); j >= 0 {
			d.Tunnels[j].Ofport = t.Ofport // the tunnel port was re-created
			return "renumber tunnel"
		}
		d.Tunnels = append(d.Tunnels, t)
		return "add tunnel"
	case 8:
		d.Networks = slices.Clone(d.Networks)
		i := pick(len(d.Networks) - 1) // the geneve network stays
		d.Networks[i].VNI = uint32(1000 + h.id())
		return "change VNI"
	default:
		d.PatchIntOfport = uint32(1 + h.r.IntN(3))
		return "patch-int renumbered"
	}
}

// TestBuilderEqualsFromScratch applies random sequences of changes through one
// Builder and compares every Set with a from-scratch computation, and checks that
// the owners a change did not touch keep the very slices of the previous Set.
func TestBuilderEqualsFromScratch(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			h := newRandomHost(seed)
			var b flows.Builder
			prev, err := b.Build(&h.d)
			if err != nil {
				t.Fatal(err)
			}
			for step := range 200 {
				what := h.change()
				got, err := b.Build(&h.d)
				want, werr := h.d.Flows()
				if (err == nil) != (werr == nil) {
					t.Fatalf("step %d (%s): incremental error %v, from scratch %v", step, what, err, werr)
				}
				if err != nil {
					continue
				}
				if err := got.Same(want); err != nil {
					t.Fatalf("step %d (%s): incremental != from scratch: %v", step, what, err)
				}
				if err := got.Check(); err != nil {
					t.Fatalf("step %d (%s): %v", step, what, err)
				}
				for _, br := range []flows.Bridge{flows.BrInt, flows.BrTun} {
					got.EachOwner(br, func(o flows.Owner, fs []flows.Flow) {
						if unchanged(prev, got, o) && !sameSlice(prevFlows(prev, br, o), fs) {
							t.Errorf("step %d (%s): %s %s unchanged but rebuilt", step, what, br, o)
						}
					})
				}
				prev = got
			}
		})
	}
}

// unchanged reports whether owner o has the same flows on both bridges in s and t:
// an owner is rebuilt as a whole, whichever bridge its change is on.
func unchanged(s, t flows.Set, o flows.Owner) bool {
	for _, br := range []flows.Bridge{flows.BrInt, flows.BrTun} {
		if !slices.EqualFunc(s.OwnerFlows(br, o), t.OwnerFlows(br, o), flows.Flow.Equal) {
			return false
		}
	}
	return true
}

func prevFlows(s flows.Set, b flows.Bridge, o flows.Owner) []flows.Flow {
	var out []flows.Flow
	s.EachOwner(b, func(x flows.Owner, fs []flows.Flow) {
		if x == o {
			out = fs
		}
	})
	return out
}

func sameSlice(a, b []flows.Flow) bool { return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0] }

// TestBuilderRecoversFromConflict: a state that two owners claim one flow in fails
// like a from-scratch computation does, and the next good state is built right.
func TestBuilderRecoversFromConflict(t *testing.T) {
	h := newRandomHost(99)
	var b flows.Builder
	if _, err := b.Build(&h.d); err != nil {
		t.Fatal(err)
	}
	good := h.d
	twin := h.d.RemotePorts[0]
	twin.ID = "twin" // same MAC, network and host: same l2pop flow key
	h.d.RemotePorts = append(slices.Clone(h.d.RemotePorts), twin)
	if _, err := h.d.Flows(); err == nil {
		t.Fatal("from scratch: no error for two owners of one flow")
	}
	_, err := b.Build(&h.d)
	if err == nil || !strings.Contains(err.Error(), "claimed by both") {
		t.Fatalf("incremental: error %v, want a flow claimed by both owners", err)
	}
	h.d.RemotePorts = append(slices.Clone(good.RemotePorts), good.RemotePorts[0])
	if _, err := b.Build(&h.d); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("incremental: error %v for a port listed twice", err)
	}
	got, err := b.Build(&good)
	if err != nil {
		t.Fatal(err)
	}
	want, err := good.Flows()
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Same(want); err != nil {
		t.Fatal(err)
	}
}
