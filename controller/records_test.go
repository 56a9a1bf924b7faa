package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// refGuard is the record guard as first written: it remembers copies of every record
// this host uses on every pass. The guard must give the same states.
type refGuard struct {
	self     string
	networks map[string]api.Network
	ports    map[string]api.Port
	groups   map[string]api.SecurityGroup
}

func (g *refGuard) apply(st store.State) store.State {
	st.Ports, st.Networks, st.Groups = maps.Clone(st.Ports), maps.Clone(st.Networks), maps.Clone(st.Groups)
	for _, p := range st.Problems {
		if !p.Whole() {
			continue
		}
		switch p.Kind {
		case store.KindPorts:
			if v, ok := g.ports[p.ID]; ok && !has(st.Ports, p.ID) {
				st.Ports[p.ID] = &v
			}
		case store.KindNetworks:
			if v, ok := g.networks[p.ID]; ok && !has(st.Networks, p.ID) {
				st.Networks[p.ID] = v
			}
		case store.KindGroups:
			if v, ok := g.groups[p.ID]; ok && !has(st.Groups, p.ID) {
				st.Groups[p.ID] = v
			}
		}
	}
	g.ports, g.networks, g.groups = map[string]api.Port{}, map[string]api.Network{}, map[string]api.SecurityGroup{}
	for _, p := range st.Ports {
		if n, ok := st.Networks[p.NetworkID]; ok && p.Host == g.self {
			g.networks[n.ID] = n
		}
	}
	for id, p := range st.Ports {
		if _, ok := g.networks[p.NetworkID]; ok {
			g.ports[id] = *p
			for _, gid := range p.SecurityGroups {
				if sg, ok := st.Groups[gid]; ok {
					g.groups[gid] = sg
				}
			}
		}
	}
	return st
}

func has[T any](m map[string]T, id string) bool { _, ok := m[id]; return ok }

// guardWorld makes random store states: ports of this host and others on a few
// networks and groups, any of which may be refused by the mirror (a whole problem)
// or deleted, with the mirror's exact Delta from one state to the next.
type guardWorld struct {
	r     *rand.Rand
	st    store.State
	ver   int
	ports []string
}

func (w *guardWorld) step() store.Delta {
	st := w.st
	st.Ports, st.Networks, st.Groups = maps.Clone(st.Ports), maps.Clone(st.Networks), maps.Clone(st.Groups)
	probs := map[string]store.Problem{}
	for _, p := range st.Problems {
		probs[p.Kind+"/"+p.ID] = p
	}
	d := store.Delta{Ports: map[string]bool{}}
	w.ver++
	id := w.ports[w.r.IntN(len(w.ports))]
	switch k := w.r.IntN(10); {
	case k < 5: // a port written (maybe moved), well or badly
		p := api.Port{ID: id, Name: fmt.Sprintf("v%d", w.ver), NetworkID: fmt.Sprintf("n%d", w.r.IntN(3)),
			Host: []string{"h1", "h2", "h3"}[w.r.IntN(3)], SecurityGroups: []string{fmt.Sprintf("g%d", w.r.IntN(2))}}
		if w.r.IntN(4) == 0 {
			delete(st.Ports, id)
			probs[store.KindPorts+"/"+id] = store.Problem{Kind: store.KindPorts, ID: id, Class: store.ProblemInvalid, Err: "bad"}
		} else {
			st.Ports[id] = &p
			delete(probs, store.KindPorts+"/"+id)
		}
		d.Ports[id] = true
	case k < 7: // a port deleted
		delete(st.Ports, id)
		delete(probs, store.KindPorts+"/"+id)
		d.Ports[id] = true
	default: // a network or group written, well or badly
		kind, rid := store.KindNetworks, fmt.Sprintf("n%d", w.r.IntN(3))
		if k == 9 {
			kind, rid = store.KindGroups, fmt.Sprintf("g%d", w.r.IntN(2))
		}
		bad := w.r.IntN(2) == 0
		if bad {
			probs[kind+"/"+rid] = store.Problem{Kind: kind, ID: rid, Class: store.ProblemInvalid, Err: "bad"}
		} else {
			delete(probs, kind+"/"+rid)
		}
		if kind == store.KindNetworks {
			delete(st.Networks, rid)
			if !bad {
				st.Networks[rid] = api.Network{ID: rid, Name: fmt.Sprintf("v%d", w.ver)}
			}
		} else {
			delete(st.Groups, rid)
			if !bad {
				st.Groups[rid] = api.SecurityGroup{ID: rid, Name: fmt.Sprintf("v%d", w.ver)}
			}
		}
		d = store.Delta{All: true}
	}
	st.Problems = nil
	for _, p := range probs {
		st.Problems = append(st.Problems, p)
	}
	w.st = st
	return d
}

// TestRecordGuardEqualsReference drives the guard and the reference through random
// states: they must put back the same records, and the guard's Delta must name every
// port whose guarded record changed.
func TestRecordGuardEqualsReference(t *testing.T) {
	for seed := range uint64(20) {
		w := &guardWorld{r: rand.New(rand.NewPCG(seed, 1)), st: store.State{Ports: map[string]*api.Port{}, Networks: map[string]api.Network{}, Groups: map[string]api.SecurityGroup{}}}
		for i := range 12 {
			w.ports = append(w.ports, fmt.Sprintf("p%02d", i))
		}
		g, ref := newRecordGuard("h1"), &refGuard{self: "h1"}
		var prev store.State
		for step := range 400 {
			d := w.step()
			if step == 0 {
				d = store.Delta{All: true}
			}
			got, gd := g.Apply(w.st, d)
			want := ref.apply(w.st)
			if !reflect.DeepEqual(got.Ports, want.Ports) || !reflect.DeepEqual(got.Networks, want.Networks) || !reflect.DeepEqual(got.Groups, want.Groups) {
				t.Fatalf("seed %d step %d: guard\n ports %v\n nets %v\nreference\n ports %v\n nets %v", seed, step, got.Ports, got.Networks, want.Ports, want.Networks)
			}
			if !gd.All {
				for id := range union(prev.Ports, got.Ports) {
					a, aok := prev.Ports[id]
					b, bok := got.Ports[id]
					if (aok != bok || !reflect.DeepEqual(a, b)) && !gd.Ports[id] {
						t.Fatalf("seed %d step %d: port %s changed (%v -> %v) but is not in the delta %v", seed, step, id, a, b, gd.Ports)
					}
				}
			}
			prev = got
		}
	}
}

func union[T any](a, b map[string]T) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}
