// Package ofsync keeps one bridge's OpenFlow table equal to a desired flow set: it
// diffs desired flows against what it last installed, owner by owner, sends every
// change as one atomic bundle on a connection of its own (ofconn.go), and updates
// its cache only when the bundle commits. A new connection (first start, or
// ovs-vswitchd restarted) gets the whole desired set replayed, with a sweep of every
// flow of another round in the same bundle.
package ofsync

import (
	"cmp"
	"iter"
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
	// counts is, per table, how many flows the desired owners have more than the
	// installed ones: the installed counts plus these are the desired set's, without
	// a walk over its unchanged owners. A table whose count does not change may be
	// missing.
	counts map[uint8]int
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

// cursor walks a Flows' owners in order, so that two of them are walked in step
// without listing either.
type cursor struct {
	next  func() (flows.Owner, *ownerFlows, bool)
	stop  func()
	owner flows.Owner
	of    *ownerFlows // nil at the end
}

func walk(f Flows) *cursor {
	c := &cursor{}
	c.next, c.stop = iter.Pull2(f.seq.All())
	c.advance()
	return c
}

func (c *cursor) advance() {
	o, of, ok := c.next()
	if !ok {
		c.owner, c.of = flows.Owner{}, nil
		return
	}
	c.owner, c.of = o, of
}

// compare orders the owners under two cursors; one at the end comes last.
func (c *cursor) compare(d *cursor) int {
	switch {
	case c.of == nil && d.of == nil:
		return 0
	case c.of == nil:
		return 1
	case d.of == nil:
		return -1
	}
	return compareOwners(c.owner, d.owner)
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

func (o *ownerFlows) flows() []flows.Flow { return o.appendTo(make([]flows.Flow, 0, len(o.given))) }

// appendTo appends the owner's flows, stamped, to dst.
func (o *ownerFlows) appendTo(dst []flows.Flow) []flows.Flow {
	for i := range o.given {
		dst = append(dst, stamp(&o.given[i], o.round))
	}
	return dst
}

// stamp is f.WithRound(round) sharing f's actions when none of them carries a
// cookie (only learn() does): the flows of a plan are read, never changed, and a
// copy of every action list was most of what a diff allocated.
func stamp(f *flows.Flow, round uint16) flows.Flow {
	for _, a := range f.Actions {
		if _, ok := a.(flows.Learn); ok {
			return f.WithRound(round)
		}
	}
	g := *f
	g.Cookie = g.Cookie.WithRound(round)
	return g
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
// nil. Both are sorted by owner, so it walks them in step rather than looking every
// owner up in prev.
func indexFrom(prev *Flows, s flows.Set, b flows.Bridge, round uint16) Flows {
	if prev == nil {
		return Index(s, b, round)
	}
	keys, vals := make([]flows.Owner, 0, prev.seq.Len()), make([]*ownerFlows, 0, prev.seq.Len())
	old := walk(*prev)
	defer old.stop()
	s.EachOwner(b, func(o flows.Owner, fs []flows.Flow) {
		for old.of != nil && compareOwners(old.owner, o) < 0 {
			old.advance()
		}
		var was *ownerFlows
		if old.of != nil && old.owner == o {
			was = old.of
		}
		keys, vals = append(keys, o), append(vals, reuse(was, fs, round))
	})
	return Flows{chunked.FromSorted(keys, vals)}
}

// with returns f changed to bridge b's flows of s for the owners listed (sorted),
// those whose flows in s may differ from the set f was taken from (flows.Set.Changed):
// an owner's entry is kept when its flows are the very slice it was given, and the
// chunks of the owners not listed are shared. Its cost is the owners listed. It also
// returns each listed owner's entries in f and in the result, for diffPairs (never
// nil: an empty list is a diff of no owner).
func (f Flows) with(s flows.Set, b flows.Bridge, owners []flows.Owner, round uint16) (Flows, []pair) {
	cs := make([]chunked.Change[flows.Owner, *ownerFlows], len(owners))
	ps := make([]pair, len(owners))
	for i, o := range owners {
		cs[i].Key = o
		ps[i].installed, _ = f.seq.Get(o, compareOwners)
		fs := s.FlowsOf(b, o)
		if len(fs) == 0 {
			cs[i].Del = true
			continue
		}
		cs[i].Val = reuse(ps[i].installed, fs, round)
		ps[i].desired = cs[i].Val
	}
	return Flows{f.seq.With(cs, compareOwners)}, ps
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

// perTable counts the flows by table: the reference of the counts a Bridge keeps
// from its plans (Plan.counts).
func (f Flows) perTable() map[uint8]int {
	n := map[uint8]int{}
	for _, o := range f.seq.All() {
		for i := range o.given {
			n[o.given[i].Table]++
		}
	}
	return n
}

// count adds sign times o's flows per table to the plan's counts.
func (p *Plan) count(o *ownerFlows, sign int) {
	for i := range o.given {
		p.counts[o.given[i].Table] += sign
	}
}

// applyCounts adds a plan's counts to n, dropping the tables left with none.
func applyCounts(n map[uint8]int, p Plan) {
	for t, d := range p.counts {
		if n[t] += d; n[t] == 0 {
			delete(n, t)
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
	p := Plan{Sweep: full, counts: map[uint8]int{}}
	in, de := walk(installed), walk(desired)
	defer in.stop()
	defer de.stop()
	for in.of != nil || de.of != nil {
		switch c := in.compare(de); {
		case c < 0: // gone
			p.owner(in.of, nil, full)
			in.advance()
		case c > 0: // new
			p.owner(nil, de.of, full)
			de.advance()
		default:
			p.owner(in.of, de.of, full)
			in.advance()
			de.advance()
		}
	}
	p.dropMoved()
	return p
}

// pair is one owner's entries in the installed and the desired flows; nil where it
// has none.
type pair struct {
	installed, desired *ownerFlows
}

// diffPairs is Diff of the owners listed alone (sorted), given their entries: the
// fast path's diff, with no owner looked up again.
func diffPairs(ps []pair) Plan {
	p := Plan{counts: map[uint8]int{}}
	n := 0
	for _, x := range ps {
		if x.desired != nil {
			n += len(x.desired.given)
		}
	}
	p.Add = make([]flows.Flow, 0, n)
	for _, x := range ps {
		if x.installed != nil || x.desired != nil {
			p.owner(x.installed, x.desired, false)
		}
	}
	p.dropMoved()
	return p
}

// owner adds to the plan what turns one owner's installed flows (old, nil if it
// had none) into its desired ones (cur, nil if it has none left).
func (p *Plan) owner(old, cur *ownerFlows, full bool) {
	switch {
	case cur == nil:
		p.Delete = old.appendTo(p.Delete)
		p.count(old, -1)
		return
	case old == nil:
		p.Add = cur.appendTo(p.Add)
		p.count(cur, 1)
		return
	case sameFlows(old, cur):
		if full {
			p.Add = old.appendTo(p.Add)
		}
		return
	}
	p.count(old, -1)
	p.count(cur, 1)
	if len(old.given)*len(cur.given) <= smallOwner {
		p.diffSmall(old, cur, full)
		return
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

// dropMoved drops the deletes of flows that moved to another owner: their add
// replaces them (ADD replaces the cookie in place and keeps the counters). It keys
// only the plan's flows.
func (p *Plan) dropMoved() {
	if len(p.Delete) == 0 {
		return
	}
	added := make(map[string]bool, len(p.Add))
	for _, f := range p.Add {
		added[f.Key()] = true
	}
	p.Delete = slices.DeleteFunc(p.Delete, func(f flows.Flow) bool { return added[f.Key()] })
}

// smallOwner bounds the pairs of flows an owner's diff compares field by field
// rather than by rendered key: a remote port has one to three flows.
const smallOwner = 64

// sameKey reports whether two flows have the same key (table, priority, match)
// without rendering it.
func sameKey(f, g *flows.Flow) bool {
	return f.Table == g.Table && f.Priority == g.Priority && f.Match.Equal(g.Match)
}

// diffSmall diffs one owner's few flows pair by pair, stamping only the flows it
// sends.
func (p *Plan) diffSmall(old, cur *ownerFlows, full bool) {
	for i := range old.given {
		f := &old.given[i]
		if !slices.ContainsFunc(cur.given, func(g flows.Flow) bool { return sameKey(f, &g) }) {
			p.Delete = append(p.Delete, stamp(f, old.round))
		}
	}
	for i := range cur.given {
		g := &cur.given[i]
		if full || !slices.ContainsFunc(old.given, func(f flows.Flow) bool { return g.Equal(f) }) {
			p.Add = append(p.Add, stamp(g, cur.round))
		}
	}
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
