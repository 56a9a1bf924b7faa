package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/hostwire"
)

// memberViews yields views whose members change at random from step to step, each
// with the exact Changes: a member added, removed or moved to another network, the
// last member of a network or of a group gone, a group gone and back.
func memberViews(rng *rand.Rand, steps int, yield func(*view.View)) {
	groups := []string{"g1", "g2", "g3"}
	nets := []string{"n1", "n2"}
	members := map[string]map[string][]netip.Addr{}
	for step := range steps {
		g, n := groups[rng.IntN(len(groups))], nets[rng.IntN(len(nets))]
		next := map[string]map[string][]netip.Addr{}
		for id, byNet := range members {
			next[id] = maps.Clone(byNet)
		}
		if next[g] == nil {
			next[g] = map[string][]netip.Addr{}
		}
		l := next[g][n]
		switch rng.IntN(5) {
		case 0, 1:
			l = append(slices.Clone(l), netip.AddrFrom4([4]byte{10, 0, byte(step >> 8), byte(step)}))
		case 2:
			if len(l) > 0 {
				i := rng.IntN(len(l))
				l = slices.Delete(slices.Clone(l), i, i+1)
			}
		case 3:
			l = nil
		case 4:
			delete(next, g)
		}
		if next[g] != nil {
			if len(l) == 0 {
				delete(next[g], n)
			} else {
				next[g][n] = l
			}
			if len(next[g]) == 0 {
				delete(next, g)
			}
		}
		changed := map[string]bool{}
		for _, id := range groups {
			if !reflect.DeepEqual(members[id], next[id]) {
				changed[id] = true
			}
		}
		members = next
		v := &view.View{Groups: map[string]api.SecurityGroup{}, Members: members, Changes: view.Changes{Members: changed}}
		for id := range members {
			v.Groups[id] = api.SecurityGroup{ID: id}
		}
		yield(v)
	}
}

// TestFirewallGroupStateIncrementalEqualsFull: the member text handed to the firewall
// equals hostwire.GroupState of the view after every step, on incremental passes
// (trusting Changes) and on full ones.
func TestFirewallGroupStateIncrementalEqualsFull(t *testing.T) {
	s := &firewallStep{}
	rng := rand.New(rand.NewPCG(14, 2))
	step := 0
	memberViews(rng, 500, func(v *view.View) {
		step++
		got := s.groupState(v, step%7 == 0)
		want := hostwire.GroupState(v.Groups, v.Members)
		if !reflect.DeepEqual(got.Members, want.Members) || !reflect.DeepEqual(got.Groups, want.Groups) {
			t.Fatalf("step %d: members %v, want %v", step, got.Members, want.Members)
		}
		for id := range s.members {
			if _, ok := v.Members[id]; !ok {
				t.Fatalf("step %d: group %s gone from the view is still kept", step, id)
			}
		}
	})
}

// BenchmarkFirewallGroupState: 10k members of one group on 10 networks, one member
// added per pass, incremental against the full conversion.
func BenchmarkFirewallGroupState(b *testing.B) {
	members := map[string][]netip.Addr{}
	for i := range 10000 {
		n := fmt.Sprintf("n%d", i%10)
		members[n] = append(members[n], netip.AddrFrom4([4]byte{10, byte(i % 10), byte(i >> 8), byte(i)}))
	}
	v := &view.View{Groups: map[string]api.SecurityGroup{"g": {ID: "g"}}, Members: map[string]map[string][]netip.Addr{"g": members}}
	b.Run("full", func(b *testing.B) {
		for range b.N {
			hostwire.GroupState(v.Groups, v.Members)
		}
	})
	b.Run("incremental", func(b *testing.B) {
		s := &firewallStep{}
		s.groupState(v, true)
		for i := range b.N {
			m := maps.Clone(members)
			m["n0"] = append(slices.Clip(m["n0"]), netip.AddrFrom4([4]byte{11, 0, byte(i >> 8), byte(i)}))
			w := &view.View{Groups: v.Groups, Members: map[string]map[string][]netip.Addr{"g": m}, Changes: view.Changes{Members: map[string]bool{"g": true}}}
			s.groupState(w, false)
		}
	})
}
