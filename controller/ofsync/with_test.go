package ofsync

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// randomRemote is a host whose remote ports change at random, one Update at a
// time, and whose tunnels and networks change now and then through a full Build.
type randomRemote struct {
	r    *rand.Rand
	d    flows.Desired
	b    flows.Builder
	next int
}

func newRandomRemote(t *testing.T, seed uint64) (*randomRemote, flows.Set) {
	h := &randomRemote{r: rand.New(rand.NewPCG(seed, 19)), d: flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}}
	for n := range 3 {
		h.d.Networks = append(h.d.Networks, flows.Network{ID: fmt.Sprint("net-", n), VNI: uint32(100 + n), LocalVLAN: uint16(1 + n)})
	}
	for i := range 4 {
		h.d.Tunnels = append(h.d.Tunnels, flows.Tunnel{RemoteIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(2 + i)}), Ofport: uint32(10 + i)})
	}
	for range 40 {
		h.d.RemotePorts = append(h.d.RemotePorts, h.port())
	}
	s, err := h.b.Build(&h.d)
	if err != nil {
		t.Fatal(err)
	}
	return h, s
}

func (h *randomRemote) port() flows.RemotePort {
	h.next++
	i := h.next
	return flows.RemotePort{ID: fmt.Sprintf("r%03d", i), NetworkID: fmt.Sprint("net-", h.r.IntN(3)),
		MAC: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, byte(i >> 8), byte(i)}, IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})},
		HostIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(2 + h.r.IntN(5))})} // .6 has no tunnel
}

// step changes the host and returns its next Set, as the flow step makes it.
func (h *randomRemote) step(t *testing.T) (flows.Set, string) {
	t.Helper()
	d := &h.d
	changed := map[string]bool{}
	what := ""
	switch h.r.IntN(6) {
	case 0, 1:
		p := h.port()
		d.RemotePorts = append(slices.Clone(d.RemotePorts), p)
		changed[p.ID], what = true, "add"
	case 2:
		if len(d.RemotePorts) > 0 {
			i := h.r.IntN(len(d.RemotePorts))
			changed[d.RemotePorts[i].ID] = true
			d.RemotePorts = slices.Delete(slices.Clone(d.RemotePorts), i, i+1)
		}
		what = "delete"
	case 3:
		if len(d.RemotePorts) > 0 {
			d.RemotePorts = slices.Clone(d.RemotePorts)
			i := h.r.IntN(len(d.RemotePorts))
			p := h.port()
			p.ID = d.RemotePorts[i].ID
			d.RemotePorts[i] = p
			changed[p.ID] = true
		}
		what = "move or readdress"
	case 4:
		d.Tunnels = slices.Clone(d.Tunnels)
		i := h.r.IntN(len(d.Tunnels))
		d.Tunnels[i].Ofport = uint32(20 + h.next)
		h.next++
		what = "tunnel renumbered (full build)"
		s, err := h.b.Build(d)
		if err != nil {
			t.Fatal(err)
		}
		return s, what
	default:
		what = "nothing"
	}
	part := *d
	part.RemotePorts = slices.DeleteFunc(slices.Clone(d.RemotePorts), func(p flows.RemotePort) bool { return !changed[p.ID] })
	s, err := h.b.Update(&part, changed)
	if err != nil {
		t.Fatal(err)
	}
	return s, what
}

func owners(fl Flows) []flows.Owner {
	var out []flows.Owner
	for _, o := range fl.entries() {
		out = append(out, o.owner)
	}
	return out
}

// TestWithEqualsIndex: Flows.with, given the owners a Set says changed, equals a
// fresh index of the Set, and the diff of only those owners is the diff of the
// whole: what SyncSet's fast path sends is what a full diff would.
func TestWithEqualsIndex(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			h, prevSet := newRandomRemote(t, seed)
			prev := Index(prevSet, flows.BrTun, 3)
			prev.All() // render caches filled, as a push leaves them
			for step := range 150 {
				s, what := h.step(t)
				changed, ok := s.Changed(flows.BrTun, prevSet)
				if !ok {
					t.Fatalf("step %d (%s): set not derived from the previous one", step, what)
				}
				cur, pairs := prev.with(s, flows.BrTun, changed, 3)
				want := Index(s, flows.BrTun, 3)
				if !slices.Equal(owners(cur), owners(want)) {
					t.Fatalf("step %d (%s): owners %v, want %v", step, what, owners(cur), owners(want))
				}
				ce, we := cur.entries(), want.entries()
				for i := range ce {
					if !sameFlows(ce[i].ownerFlows, we[i].ownerFlows) {
						t.Fatalf("step %d (%s): owner %s: flows differ", step, what, ce[i].owner)
					}
				}
				fast := diffPairs(pairs)
				full := Diff(prev, want, false)
				if got, want := planText(fast), planText(full); !slices.Equal(got, want) {
					t.Fatalf("step %d (%s): diff of the changed owners %v, of all %v", step, what, got, want)
				}
				// The counts a Bridge keeps: the installed ones plus the plan's, of
				// the changed owners alone or of all.
				for name, p := range map[string]Plan{"changed owners": fast, "all owners": full} {
					n := prev.perTable()
					applyCounts(n, p)
					if want := want.perTable(); !equalCounts(n, want) {
						t.Fatalf("step %d (%s): flows per table after the plan of the %s %v, want %v", step, what, name, n, want)
					}
				}
				prev, prevSet = cur, s
			}
		})
	}
}

func equalCounts(a, b map[uint8]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
