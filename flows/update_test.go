package flows_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// awkward makes the changes an incremental path gets wrong most easily, and says
// what it did: the last remote ports of a network leave, a network leaves (its
// remote ports wait without flows) and comes back, a port moves to another host,
// two ports claim one flow, the host's tunnel type changes.
func (h *randomHost) awkward() string {
	d := &h.d
	switch h.r.IntN(6) {
	case 0:
		n := d.Networks[h.r.IntN(len(d.Networks))].ID
		d.RemotePorts = slices.DeleteFunc(slices.Clone(d.RemotePorts), func(p flows.RemotePort) bool { return p.NetworkID == n })
		return "last remote ports of " + n + " deleted"
	case 1:
		if len(d.Networks) > 3 {
			i := h.r.IntN(len(d.Networks) - 1) // the geneve network stays
			n := d.Networks[i]
			h.away = append(h.away, n)
			d.Networks = slices.Delete(slices.Clone(d.Networks), i, i+1)
			d.LocalPorts = slices.DeleteFunc(slices.Clone(d.LocalPorts), func(p flows.LocalPort) bool { return p.NetworkID == n.ID })
			return "network " + n.ID + " left"
		}
		fallthrough
	case 2:
		if len(h.away) > 0 {
			n := h.away[0]
			h.away = h.away[1:]
			d.Networks = append(slices.Clone(d.Networks), n)
			return "network " + n.ID + " back"
		}
		return "nothing"
	case 3:
		if len(d.RemotePorts) > 0 {
			d.RemotePorts = slices.Clone(d.RemotePorts)
			i := h.r.IntN(len(d.RemotePorts))
			d.RemotePorts[i].HostIP = h.remotePort().HostIP
			return "remote port moved to another host"
		}
		return "nothing"
	case 4:
		if len(d.RemotePorts) > 0 {
			twin := d.RemotePorts[h.r.IntN(len(d.RemotePorts))]
			twin.ID = fmt.Sprint("twin-", h.id()) // same MAC, network and host: same l2pop flow key
			d.RemotePorts = append(slices.Clone(d.RemotePorts), twin)
			return "a twin claims a port's flows"
		}
		return "nothing"
	default:
		if d.TunnelType == "vxlan" {
			d.TunnelType = "gre"
		} else {
			d.TunnelType = "vxlan"
		}
		return "host tunnel type now " + d.TunnelType
	}
}

// changedRemote is what a view's diff says of two lists of remote ports: the IDs
// that came, left or differ.
func changedRemote(prev, cur []flows.RemotePort) map[string]bool {
	byID := func(ps []flows.RemotePort) map[string]flows.RemotePort {
		m := map[string]flows.RemotePort{}
		for _, p := range ps {
			m[p.ID] = p
		}
		return m
	}
	a, b := byID(prev), byID(cur)
	out := map[string]bool{}
	for id, p := range a {
		if q, ok := b[id]; !ok || !reflect.DeepEqual(p, q) {
			out[id] = true
		}
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			out[id] = true
		}
	}
	return out
}

// TestUpdateEqualsFromScratch applies random sequences of changes through Update,
// given only the remote ports that changed, and compares every Set with a
// from-scratch computation of the whole Desired; an error must be an error from
// scratch too, after which the next pass builds everything, as the flow step does.
// Each Set must also name, against its parent, exactly the owners whose flows differ
// (or a superset), so that a consumer that redoes only those misses nothing.
func TestUpdateEqualsFromScratch(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			h := newRandomHost(seed)
			var b flows.Builder
			prev, err := b.Build(&h.d)
			if err != nil {
				t.Fatal(err)
			}
			for step := range 300 {
				before := h.d.RemotePorts
				var what string
				if h.r.IntN(4) == 0 {
					what = h.awkward()
				} else {
					what = h.change()
				}
				changed := changedRemote(before, h.d.RemotePorts)
				if h.r.IntN(5) == 0 && len(h.d.RemotePorts) > 0 { // a change the view reports that changed nothing
					changed[h.d.RemotePorts[h.r.IntN(len(h.d.RemotePorts))].ID] = true
				}
				var got flows.Set
				var err error
				fresh := b.Owners() == 0
				if fresh {
					got, err = b.Build(&h.d)
				} else {
					part := h.d
					part.RemotePorts = slices.DeleteFunc(slices.Clone(h.d.RemotePorts), func(p flows.RemotePort) bool { return !changed[p.ID] })
					got, err = b.Update(&part, changed)
				}
				want, werr := h.d.Flows()
				if (err == nil) != (werr == nil) {
					t.Fatalf("step %d (%s): incremental error %v, from scratch %v", step, what, err, werr)
				}
				if err != nil {
					// The twin goes again, as an operator would fix it.
					h.d.RemotePorts = slices.DeleteFunc(slices.Clone(h.d.RemotePorts), func(p flows.RemotePort) bool { return len(p.ID) > 5 && p.ID[:5] == "twin-" })
					prev = flows.Set{}
					continue
				}
				if err := got.Same(want); err != nil {
					t.Fatalf("step %d (%s): incremental != from scratch: %v", step, what, err)
				}
				if err := got.Check(); err != nil {
					t.Fatalf("step %d (%s): %v", step, what, err)
				}
				for _, br := range []flows.Bridge{flows.BrInt, flows.BrTun} {
					owners, ok := got.Changed(br, prev)
					if !ok {
						if fresh {
							continue // after an error: built from scratch
						}
						t.Fatalf("step %d (%s): %s: set not derived from the previous one", step, what, br)
					}
					if !slices.IsSortedFunc(owners, func(x, y flows.Owner) int {
						return cmpOwner(x, y)
					}) {
						t.Fatalf("step %d (%s): %s: changed owners not sorted: %v", step, what, br, owners)
					}
					for _, o := range union(prev.Owners(br), got.Owners(br)) {
						same := sameSlice(prev.FlowsOf(br, o), got.FlowsOf(br, o))
						listed := slices.Contains(owners, o)
						if !same && !listed {
							t.Fatalf("step %d (%s): %s %s changed but not listed", step, what, br, o)
						}
					}
				}
				prev = got
			}
		})
	}
}

func cmpOwner(x, y flows.Owner) int {
	if x.Category != y.Category {
		return int(x.Category) - int(y.Category)
	}
	switch {
	case x.Key < y.Key:
		return -1
	case x.Key > y.Key:
		return 1
	}
	return 0
}

func union(a, b []flows.Owner) []flows.Owner {
	out := slices.Concat(a, b)
	slices.SortFunc(out, cmpOwner)
	return slices.Compact(out)
}

// TestUpdateWithoutBuild: Update needs a previous Build to take the unchanged
// remote ports from.
func TestUpdateWithoutBuild(t *testing.T) {
	h := newRandomHost(1)
	var b flows.Builder
	if _, err := b.Update(&h.d, map[string]bool{}); err == nil {
		t.Fatal("Update on an empty Builder: no error")
	}
}
