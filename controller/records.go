package controller

import (
	"maps"

	"github.com/lanes-net/lanes/store"
)

// recordGuard keeps what this host runs working when its record turns bad. The store
// mirror leaves out a record that does not decode, validate or agree with the others
// (store.Problem); taken literally, a local port whose record was overwritten with
// garbage would be unwired, and a network or group whose record broke would take its
// ports down with it. Instead the guard puts back the last good version of every
// record this host was using, until the record is fixed or deleted; the problem is
// still reported on its owner. A record that is deleted is gone, guard or not.
//
// What this host was using is read from the state the guard returned last time (a
// State is never changed once handed out), so that a pass costs the problems, not
// the cluster: its networks (those with a port of this host), every port on them,
// and the groups of those ports.
type recordGuard struct {
	self string
	prev store.State     // what Apply returned last
	nets map[string]bool // networks with a port of this host in prev
	// back are the records put back in prev, by kind and ID: a record that stops
	// being put back (fixed, deleted, no longer used) changed for the readers too.
	back map[string]map[string]bool
}

func newRecordGuard(self string) *recordGuard {
	return &recordGuard{self: self, nets: map[string]bool{}}
}

// Apply returns st with the last good versions of the records this host used put back
// where the mirror left a record out, and d, what differs in st from the state of the
// previous call, widened by what the guard changed: a port put back or no longer put
// back is in its Ports, a network or group is All. st may be shared (the mirror's
// Shared state): a map is copied before a record is first put back into it.
func (g *recordGuard) Apply(st store.State, d store.Delta) (store.State, store.Delta) {
	back := map[string]map[string]bool{}
	var ownPorts, ownNetworks, ownGroups bool
	var groupsUsed map[string]bool // of prev, on first need
	for _, p := range st.Problems {
		if !p.Whole() {
			continue
		}
		switch p.Kind {
		case store.KindPorts:
			if old, ok := g.prev.Ports[p.ID]; ok && g.nets[old.NetworkID] {
				putBack(&st.Ports, &ownPorts, old, p.ID, back, p.Kind)
			}
		case store.KindNetworks:
			if old, ok := g.prev.Networks[p.ID]; ok && g.nets[p.ID] {
				putBack(&st.Networks, &ownNetworks, old, p.ID, back, p.Kind)
			}
		case store.KindGroups:
			if groupsUsed == nil {
				groupsUsed = g.groupsUsed()
			}
			if old, ok := g.prev.Groups[p.ID]; ok && groupsUsed[p.ID] {
				putBack(&st.Groups, &ownGroups, old, p.ID, back, p.Kind)
			}
		}
	}
	d = g.widen(d, back)
	// This host's networks change only with a port of its own (or with All).
	own := d.All
	for id := range d.Ports {
		if own {
			break
		}
		old, was := g.prev.Ports[id]
		now, is := st.Ports[id]
		own = (was && old.Host == g.self) || (is && now.Host == g.self)
	}
	if own {
		g.nets = map[string]bool{}
		for _, p := range st.Ports {
			if _, ok := st.Networks[p.NetworkID]; ok && p.Host == g.self {
				g.nets[p.NetworkID] = true
			}
		}
	}
	g.prev, g.back = st, back
	return st, d
}

// widen adds to d what the guard put back differently from the last pass.
func (g *recordGuard) widen(d store.Delta, back map[string]map[string]bool) store.Delta {
	if d.All {
		return d
	}
	for _, kind := range []string{store.KindNetworks, store.KindGroups} {
		if !maps.Equal(back[kind], g.back[kind]) {
			return store.Delta{All: true}
		}
	}
	var ports map[string]bool
	flip := func(id string) {
		if d.Ports[id] {
			return
		}
		if ports == nil {
			ports = maps.Clone(d.Ports)
			if ports == nil {
				ports = map[string]bool{}
			}
		}
		ports[id] = true
	}
	for id := range back[store.KindPorts] {
		if !g.back[store.KindPorts][id] {
			flip(id)
		}
	}
	for id := range g.back[store.KindPorts] {
		if !back[store.KindPorts][id] {
			flip(id)
		}
	}
	if ports != nil {
		d.Ports = ports
	}
	return d
}

// groupsUsed are the groups of the ports on this host's networks in prev.
func (g *recordGuard) groupsUsed() map[string]bool {
	used := map[string]bool{}
	for _, p := range g.prev.Ports {
		if g.nets[p.NetworkID] {
			for _, id := range p.SecurityGroups {
				used[id] = true
			}
		}
	}
	return used
}

// putBack puts the last good record v back into *m under id when the mirror left it
// out, copying the (shared) map first unless *own says it was copied already.
func putBack[T any](m *map[string]T, own *bool, v T, id string, back map[string]map[string]bool, kind string) {
	if _, present := (*m)[id]; present {
		return
	}
	if !*own {
		*m, *own = maps.Clone(*m), true
	}
	(*m)[id] = v
	if back[kind] == nil {
		back[kind] = map[string]bool{}
	}
	back[kind][id] = true
}
