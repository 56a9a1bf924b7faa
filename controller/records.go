package controller

import (
	"maps"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// recordGuard keeps what this host runs working when its record turns bad. The store
// mirror leaves out a record that does not decode, validate or agree with the others
// (store.Problem); taken literally, a local port whose record was overwritten with
// garbage would be unwired, and a network or group whose record broke would take its
// ports down with it. Instead the guard puts back the last good version of every
// record this host was using, until the record is fixed or deleted; the problem is
// still reported on its owner. A record that is deleted is gone, guard or not.
type recordGuard struct {
	self     string
	networks map[string]api.Network
	ports    map[string]api.Port
	groups   map[string]api.SecurityGroup
}

func newRecordGuard(self string) *recordGuard {
	return &recordGuard{self: self, networks: map[string]api.Network{}, ports: map[string]api.Port{}, groups: map[string]api.SecurityGroup{}}
}

// Apply returns st with the last good versions of the records this host used put back
// where the mirror left a record out, and remembers what this host uses now: its
// networks, every port on them, and the groups of those ports. st may be shared (the
// mirror's Shared state): a map is copied before a record is first put back into it.
func (g *recordGuard) Apply(st store.State) store.State {
	var ownPorts, ownNetworks, ownGroups bool
	for _, p := range st.Problems {
		if !p.Whole() {
			continue
		}
		switch p.Kind {
		case store.KindPorts:
			putBack(&st.Ports, &ownPorts, g.ports, p.ID)
		case store.KindNetworks:
			putBack(&st.Networks, &ownNetworks, g.networks, p.ID)
		case store.KindGroups:
			putBack(&st.Groups, &ownGroups, g.groups, p.ID)
		}
	}
	ports, networks, groups := map[string]api.Port{}, map[string]api.Network{}, map[string]api.SecurityGroup{}
	for _, p := range st.Ports {
		if n, ok := st.Networks[p.NetworkID]; ok && p.Host == g.self {
			networks[n.ID] = n
		}
	}
	// Every port of those networks, remote ones too: their l2pop flows and tunnels
	// carry traffic to this host's ports.
	for id, p := range st.Ports {
		if _, ok := networks[p.NetworkID]; !ok {
			continue
		}
		ports[id] = p
		for _, gid := range p.SecurityGroups {
			if sg, ok := st.Groups[gid]; ok {
				groups[gid] = sg
			}
		}
	}
	g.ports, g.networks, g.groups = ports, networks, groups
	return st
}

// putBack puts the last good record id into *m when the mirror left it out, copying
// the (shared) map first unless *own says it was copied already.
func putBack[T any](m *map[string]T, own *bool, good map[string]T, id string) {
	v, ok := good[id]
	if !ok {
		return
	}
	if _, present := (*m)[id]; present {
		return
	}
	if !*own {
		*m, *own = maps.Clone(*m), true
	}
	(*m)[id] = v
}
