package ofsync

import (
	"math/rand/v2"
	"net"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

func testFlow(table uint8, prio uint16, owner string, port uint32) flows.Flow {
	return flows.Flow{
		Bridge: flows.BrTun, Table: table, Priority: prio,
		Cookie:  flows.MakeCookie(0, flows.CatRemotePort, owner),
		Match:   flows.Match{InPort: port},
		Actions: []flows.Action{flows.Output{Port: port + 100}},
	}
}

func keys(fs []flows.Flow) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Key()
	}
	return out
}

func TestDiff(t *testing.T) {
	a := testFlow(flows.LocalSwitching, 1, "a", 1)
	b := testFlow(flows.LocalSwitching, 1, "b", 2)
	c := testFlow(flows.LocalSwitching, 1, "c", 3)
	bActions := b
	bActions.Actions = []flows.Action{flows.Output{Port: 7}}
	bCookie := b
	bCookie.Cookie = flows.MakeCookie(0, flows.CatRemotePort, "other")
	installed := Index([]flows.Flow{a, b}, 3)

	for _, tc := range []struct {
		name         string
		desired      []flows.Flow
		full         bool
		adds, delete []flows.Flow
	}{
		{name: "same", desired: []flows.Flow{a, b}},
		{name: "add", desired: []flows.Flow{a, b, c}, adds: []flows.Flow{c}},
		{name: "delete", desired: []flows.Flow{a}, delete: []flows.Flow{b}},
		{name: "replace actions", desired: []flows.Flow{a, bActions}, adds: []flows.Flow{bActions}},
		{name: "replace cookie", desired: []flows.Flow{a, bCookie}, adds: []flows.Flow{bCookie}},
		{name: "add and delete", desired: []flows.Flow{c, a}, adds: []flows.Flow{c}, delete: []flows.Flow{b}},
		{name: "full", desired: []flows.Flow{a, b}, full: true, adds: []flows.Flow{a, b}},
		{name: "full with delete", desired: []flows.Flow{c}, full: true, adds: []flows.Flow{c}, delete: []flows.Flow{a, b}},
		{name: "empty desired", desired: nil, delete: []flows.Flow{a, b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Diff(installed, Index(tc.desired, 3), tc.full)
			if p.Sweep != tc.full {
				t.Errorf("Sweep = %v, want %v", p.Sweep, tc.full)
			}
			// Stamped with the round, in key order.
			want := func(fs []flows.Flow) []string {
				out := make([]string, len(fs))
				for i, f := range fs {
					out[i] = f.WithRound(3).String()
				}
				slices.Sort(out)
				return out
			}
			got := func(fs []flows.Flow) []string {
				out := make([]string, len(fs))
				for i, f := range fs {
					out[i] = f.String()
				}
				slices.Sort(out)
				return out
			}
			if g, w := got(p.Add), want(tc.adds); !slices.Equal(g, w) {
				t.Errorf("Add = %q\nwant %q", g, w)
			}
			if g, w := got(p.Delete), want(tc.delete); !slices.Equal(g, w) {
				t.Errorf("Delete = %q\nwant %q", g, w)
			}
			if !slices.IsSorted(keys(p.Add)) || !slices.IsSorted(keys(p.Delete)) {
				t.Errorf("plan not in key order: %q %q", keys(p.Add), keys(p.Delete))
			}
			if p.Empty() != (len(tc.adds) == 0 && len(tc.delete) == 0 && !tc.full) {
				t.Errorf("Empty = %v", p.Empty())
			}
		})
	}
}

// TestDiffIdempotent: applying a plan's adds and deletes to the installed set gives
// the desired set, and diffing again gives an empty plan.
func TestDiffIdempotent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func() []flows.Flow {
		var fs []flows.Flow
		for i := range 40 {
			if rng.IntN(2) == 0 {
				continue
			}
			f := testFlow(flows.UcastToTun, 2, "p", uint32(i+1))
			f.Match = flows.Match{VLAN: flows.TagVID(1), EthDst: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, byte(i)}}
			if rng.IntN(3) == 0 {
				f.Actions = []flows.Action{flows.Output{Port: 9}}
			}
			fs = append(fs, f)
		}
		return fs
	}
	for range 50 {
		installed, desired := Index(mk(), 1), Index(mk(), 1)
		p := Diff(installed, desired, false)
		next := map[string]Entry{}
		for k, e := range installed {
			next[k] = e
		}
		for _, f := range p.Delete {
			if _, ok := desired[f.Key()]; ok {
				t.Fatalf("deletes desired flow %s", f.Key())
			}
			delete(next, f.Key())
		}
		for _, f := range p.Add {
			next[f.Key()] = Entry{f, f.String()}
		}
		if len(next) != len(desired) {
			t.Fatalf("after plan %d flows, want %d", len(next), len(desired))
		}
		for k, e := range desired {
			if next[k].Text != e.Text {
				t.Fatalf("after plan %s = %s, want %s", k, next[k].Text, e.Text)
			}
		}
		if p2 := Diff(next, desired, false); !p2.Empty() {
			t.Fatalf("second diff not empty: %+v", p2)
		}
	}
}

// matchedBy reports whether a delete by (cookie, mask) removes a flow with cookie c.
func matchedBy(c flows.Cookie, pairs [][2]flows.Cookie) bool {
	for _, p := range pairs {
		if c&p[1] == p[0] {
			return true
		}
	}
	return false
}

func TestSweepMasks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rounds := []uint16{0, 1, 0xffff, 0x8000, 0x7fff}
	for range 200 {
		rounds = append(rounds, uint16(rng.Uint32()))
	}
	for _, r := range rounds {
		pairs := SweepMasks(r)
		if len(pairs) != 16 {
			t.Fatalf("round %d: %d pairs, want 16", r, len(pairs))
		}
		for _, p := range pairs {
			if p[0]&^p[1] != 0 || p[1]&^flows.RoundMask != 0 {
				t.Fatalf("round %d: pair %#x/%#x: cookie outside its mask or mask outside the round bits", r, p[0], p[1])
			}
		}
		others := []uint16{r, r ^ 1, r ^ 0x8000, r + 1, r - 1, ^r}
		for range 100 {
			others = append(others, uint16(rng.Uint32()))
		}
		for _, r2 := range others {
			for _, cat := range []flows.Category{flows.CatSetup, flows.CatRemotePort, flows.CatLearned} {
				c := flows.MakeCookie(r2, cat, "owner-"+string(rune('a'+rng.IntN(26))))
				if got, want := matchedBy(c, pairs), r2 != r; got != want {
					t.Fatalf("round %d: cookie %#x (round %d) matched = %v, want %v", r, uint64(c), r2, got, want)
				}
			}
		}
	}
	// Exhaustively for one round: every other round is swept, its own never.
	r := uint16(0xa5c3)
	pairs := SweepMasks(r)
	for r2 := 0; r2 <= 0xffff; r2++ {
		c := flows.MakeCookie(uint16(r2), flows.CatNetwork, "n")
		if matchedBy(c, pairs) != (uint16(r2) != r) {
			t.Fatalf("round %d: cookie of round %d wrongly matched", r, r2)
		}
	}
}
