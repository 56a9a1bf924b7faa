// Package ofsync keeps one bridge's OpenFlow table equal to a desired flow set: it
// diffs desired flows against what it last installed, owner by owner, sends every
// change as one atomic bundle on a connection of its own (ofconn.go), and updates
// its cache only when the bundle commits. A new connection (first start, or
// ovs-vswitchd restarted) gets the whole desired set replayed, with a sweep of every
// flow of another round in the same bundle.
package ofsync

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/chunked"
)

// Plan is the set of FlowMods that turns the installed flows into the desired ones.
type Plan struct {
	Add    []flows.Flow // new flows, and flows whose actions or cookie changed (ADD replaces in place)
	Delete []flows.Flow // installed flows no longer desired (DELETE_STRICT)
	// Sweep deletes every flow of another round (restart, reconnect).
	Sweep bool
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Add) == 0 && len(p.Delete) == 0 && !p.Sweep }

// Entry is a flow stamped with the round, with its rendering.
type Entry struct {
	Flow flows.Flow
	Text string // Flow.String()
}

// Flows is one bridge's flows by owner, stamped with a round. An owner's flows are
// rendered and keyed only when they changed and are diffed against installed ones:
// an owner whose flows are unchanged costs a comparison, and a new or deleted owner
// a FlowMod per flow. Its chunks are shared with the Flows it was derived from
// wherever no owner changed (with).
type Flows struct {
	seq chunked.Seq[flows.Owner, *ownerFlows] // by category and key
}

type owned struct {
	owner flows.Owner
	*ownerFlows
}

// entries lists the owners in order.
func (f Flows) entries() []owned {
	out := make([]owned, 0, f.seq.Len())
	for o, of := range f.seq.All() {
		out = append(out, owned{o, of})
	}
	return out
}

func fromEntries(es []owned) Flows {
	keys, vals := make([]flows.Owner, len(es)), make([]*ownerFlows, len(es))
	for i, e := range es {
		keys[i], vals[i] = e.owner, e.ownerFlows
	}
	return Flows{chunked.FromSorted(keys, vals)}
}

// ownerFlows is one owner's flows as given (the Builder's own slice, shared, not
// copied) and the round they go in with. The flows stamped with the round are made
// when a diff or a replay needs them and not kept: at 10k remote ports a kept copy
// of every owner's flows was a fifth of lanesd's heap, for flows that are sent once.
// Only an owner with more flows than a pair-by-pair diff compares (the bridges'
// skeleton) keeps its index.
type ownerFlows struct {
	given []flows.Flow
	idx   map[string]Entry
	round uint16
}

func (o *ownerFlows) flows() []flows.Flow {
	stamped := make([]flows.Flow, len(o.given))
	for i, f := range o.given {
		stamped[i] = f.WithRound(o.round)
	}
	return stamped
}

func (o *ownerFlows) index() map[string]Entry {
	if o.idx == nil {
		o.idx = make(map[string]Entry, len(o.given))
		for _, f := range o.flows() {
			o.idx[f.Key()] = Entry{Flow: f, Text: f.String()}
		}
	}
	return o.idx
}

// Index takes bridge b's flows of a set, stamped with round.
func Index(s flows.Set, b flows.Bridge, round uint16) Flows {
	var es []owned
	s.EachOwner(b, func(o flows.Owner, fs []flows.Flow) {
		es = append(es, owned{o, &ownerFlows{given: fs, round: round}})
	})
	return fromEntries(es)
}

// reuse returns prev when it holds the very slice fs (a flows.Builder hands out the
// same slice for an unchanged owner) for round, so that its rendering stays cached,
// and a new entry otherwise.
func reuse(prev *ownerFlows, fs []flows.Flow, round uint16) *ownerFlows {
	if prev != nil && prev.round == round && len(prev.given) == len(fs) && len(fs) > 0 && &prev.given[0] == &fs[0] {
		return prev
	}
	return &ownerFlows{given: fs, round: round}
}

// indexFrom is Index reusing prev's entry of every owner whose flows are the very
// slice prev was given: no allocation, and its rendering stays cached. prev may be
// nil.
func indexFrom(prev *Flows, s flows.Set, b flows.Bridge, round uint16) Flows {
	if prev == nil {
		return Index(s, b, round)
	}
	var es []owned
	s.EachOwner(b, func(o flows.Owner, fs []flows.Flow) {
		old, _ := prev.seq.Get(o, compareOwners)
		es = append(es, owned{o, reuse(old, fs, round)})
	})
	return fromEntries(es)
}

// with returns f changed to bridge b's flows of s for the owners listed (sorted),
// those whose flows in s may differ from the set f was taken from (flows.Set.Changed):
// an owner's entry is kept when its flows are the very slice it was given, and the
// chunks of the owners not listed are shared. Its cost is the owners listed.
func (f Flows) with(s flows.Set, b flows.Bridge, owners []flows.Owner, round uint16) Flows {
	cs := make([]chunked.Change[flows.Owner, *ownerFlows], len(owners))
	for i, o := range owners {
		cs[i].Key = o
		fs := s.FlowsOf(b, o)
		if len(fs) == 0 {
			cs[i].Del = true
			continue
		}
		old, _ := f.seq.Get(o, compareOwners)
		cs[i].Val = reuse(old, fs, round)
	}
	return Flows{f.seq.With(cs, compareOwners)}
}

// only returns the entries of f of the owners listed (sorted) that f has.
func (f Flows) only(owners []flows.Owner) Flows {
	es := make([]owned, 0, len(owners))
	for _, o := range owners {
		if of, ok := f.seq.Get(o, compareOwners); ok {
			es = append(es, owned{o, of})
		}
	}
	return fromEntries(es)
}

// IndexFlows takes a list of flows, stamped with round, each owned by its cookie's
// owner (category and owner hash).
func IndexFlows(fs []flows.Flow, round uint16) Flows {
	by := map[flows.Cookie]*ownerFlows{}
	var es []owned
	for _, f := range fs {
		c := f.Cookie &^ flows.RoundMask
		of := by[c]
		if of == nil {
			of = &ownerFlows{round: round}
			by[c] = of
			es = append(es, owned{flows.Owner{Category: c.Category(), Key: strconv.FormatUint(uint64(c), 16)}, of})
		}
		of.given = append(of.given, f)
	}
	slices.SortFunc(es, func(x, y owned) int { return compareOwners(x.owner, y.owner) })
	return fromEntries(es)
}

func compareOwners(x, y flows.Owner) int {
	return cmp.Or(cmp.Compare(x.Category, y.Category), cmp.Compare(x.Key, y.Key))
}

// Len is the number of flows.
func (f Flows) Len() int {
	n := 0
	for _, o := range f.seq.All() {
		n += len(o.given)
	}
	return n
}

// perTable counts the flows by table.
func (f Flows) perTable() map[uint8]int {
	n := map[uint8]int{}
	f.count(n, 1)
	return n
}

// count adds sign times f's flows per table to n; a table's count that drops to
// zero goes.
func (f Flows) count(n map[uint8]int, sign int) {
	for _, o := range f.seq.All() {
		for _, fl := range o.given {
			if n[fl.Table] += sign; n[fl.Table] == 0 {
				delete(n, fl.Table)
			}
		}
	}
}

// All lists every flow, stamped, owner by owner.
func (f Flows) All() []flows.Flow {
	out := make([]flows.Flow, 0, f.Len())
	for _, o := range f.seq.All() {
		out = append(out, o.flows()...)
	}
	return out
}

// sameFlows reports whether two owners' flows are the same flows in the same order.
func sameFlows(a, b *ownerFlows) bool {
	return a.round == b.round && flows.FlowsEqual(a.given, b.given)
}

// Diff compares installed and desired flows owner by owner, and by key (table,
// priority, match) within an owner whose flows changed. With full set, every desired
// flow is re-added, as after a reconnect, when the switch may hold anything. A flow
// that moves from one owner to another (same key, new cookie) is only added.
//
// Diffing fills the render caches of the entries, so desired must not be diffed
// concurrently.
func Diff(installed, desired Flows, full bool) Plan {
	p := Plan{Sweep: full}
	in, de := installed.entries(), desired.entries()
	for i, j := 0, 0; i < len(in) || j < len(de); {
		c := 0
		switch {
		case i == len(in):
			c = 1
		case j == len(de):
			c = -1
		default:
			c = compareOwners(in[i].owner, de[j].owner)
		}
		switch {
		case c < 0: // gone
			p.Delete = append(p.Delete, in[i].flows()...)
			i++
			continue
		case c > 0: // new
			p.Add = append(p.Add, de[j].flows()...)
			j++
			continue
		}
		old, cur := in[i].ownerFlows, de[j].ownerFlows
		i, j = i+1, j+1
		if sameFlows(old, cur) {
			if full {
				p.Add = append(p.Add, old.flows()...)
			}
			continue
		}
		if len(old.given)*len(cur.given) <= smallOwner {
			p = diffSmall(p, old, cur, full)
			continue
		}
		oi, ci := old.index(), cur.index()
		for _, f := range old.flows() {
			if _, ok := ci[f.Key()]; !ok {
				p.Delete = append(p.Delete, f)
			}
		}
		for _, f := range cur.flows() {
			k := f.Key()
			if e, ok := oi[k]; full || !ok || e.Text != ci[k].Text {
				p.Add = append(p.Add, f)
			}
		}
	}
	if len(p.Delete) > 0 {
		// A flow that moved to another owner is replaced by its add (ADD replaces
		// the cookie in place and keeps its counters); keys only the plan's flows.
		added := make(map[string]bool, len(p.Add))
		for _, f := range p.Add {
			added[f.Key()] = true
		}
		p.Delete = slices.DeleteFunc(p.Delete, func(f flows.Flow) bool { return added[f.Key()] })
	}
	return p
}

// smallOwner bounds the pairs of flows an owner's diff compares field by field
// rather than by rendered key: a remote port has one to three flows.
const smallOwner = 64

// sameKey reports whether two flows have the same key (table, priority, match)
// without rendering it.
func sameKey(f, g flows.Flow) bool {
	return f.Table == g.Table && f.Priority == g.Priority && f.Match.Equal(g.Match)
}

// diffSmall diffs one owner's few flows pair by pair.
func diffSmall(p Plan, old, cur *ownerFlows, full bool) Plan {
	for _, f := range old.flows() {
		if !slices.ContainsFunc(cur.given, func(g flows.Flow) bool { return sameKey(f, g) }) {
			p.Delete = append(p.Delete, f)
		}
	}
	for i, f := range cur.flows() {
		g := cur.given[i]
		if full || !slices.ContainsFunc(old.given, g.Equal) {
			p.Add = append(p.Add, f)
		}
	}
	return p
}

// SweepMasks returns (cookie, mask) pairs whose delete-by-cookie-mask removes every
// flow whose round differs from round and nothing else: a flow of another round
// differs in at least one of the 16 round bits, and each pair matches one bit set
// opposite to round's. Sixteen non-strict deletes in the same bundle as the adds,
// so no desired flow is ever missing.
func SweepMasks(round uint16) [][2]flows.Cookie {
	out := make([][2]flows.Cookie, 0, 16)
	for i := 0; i < 16; i++ {
		bit := flows.Cookie(1) << (48 + i)
		cookie := bit
		if round&(1<<i) != 0 {
			cookie = 0
		}
		out = append(out, [2]flows.Cookie{cookie, bit})
	}
	return out
}
