package flows

import (
	"cmp"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lanes-net/lanes/internal/chunked"
)

// Set is a host's complete flow set: per bridge, per owner, each owner's flows in
// install order, with an index from cookie to owner. A Set is immutable once Flows
// or Build has returned it; the zero Set is empty.
type Set struct {
	bridges map[Bridge]*bridgeSet
	// id names the Set, parent the one it was derived from (0: none), and changed
	// lists, per bridge, the owners that differ from the parent: a consumer that
	// holds the parent (ofsync) redoes only those.
	id, parent uint64
	changed    map[Bridge][]Owner
}

// setIDs numbers the Sets Builders make, process-wide, so that a Set from one
// Builder is never taken for the parent of another's.
var setIDs atomic.Uint64

type bridgeSet struct {
	// owners holds each owner's flows, never empty, by category and key; its chunks
	// are shared with the Sets before and after that did not change them.
	owners chunked.Seq[Owner, []Flow]
	// byCookie maps every round-0 cookie the bridge's flows carry or give learned
	// entries to its owner. Only diagnostics ask, so it is built on first use rather
	// than on every change.
	cookieOnce sync.Once
	byCookie   map[Cookie]Owner
}

// Owners lists the owners that have flows on bridge b, sorted by category and key.
func (s Set) Owners(b Bridge) []Owner {
	if bs := s.bridges[b]; bs != nil {
		return bs.owners.Keys()
	}
	return nil
}

// Flows lists every flow of bridge b, owner by owner in Owners order.
func (s Set) Flows(b Bridge) []Flow {
	bs := s.bridges[b]
	if bs == nil {
		return nil
	}
	var fs []Flow
	for _, ofs := range bs.owners.All() {
		fs = append(fs, ofs...)
	}
	return fs
}

// OwnerFlows lists owner o's flows on bridge b in install order.
func (s Set) OwnerFlows(b Bridge, o Owner) []Flow {
	if bs := s.bridges[b]; bs != nil {
		return slices.Clone(bs.owned(o))
	}
	return nil
}

func (bs *bridgeSet) owned(o Owner) []Flow {
	fs, _ := bs.owners.Get(o, compareOwner)
	return fs
}

// Owner names the owner of a flow on bridge b by its cookie, whatever the cookie's
// round: a diagnostic that reads a cookie from the switch asks the set it installed.
// The cookie learn() gives its entries answers Owner{CatLearned, ""}, an owner with
// no flows of its own. A cookie of no owner of this set answers false.
func (s Set) Owner(b Bridge, c Cookie) (Owner, bool) {
	bs := s.bridges[b]
	if bs == nil {
		return Owner{}, false
	}
	bs.cookieOnce.Do(func() {
		bs.byCookie = map[Cookie]Owner{}
		for o, fs := range bs.owners.All() {
			for _, f := range fs {
				for c, claimant := range cookiesOf(o, f) {
					bs.byCookie[c] = claimant
				}
			}
		}
	})
	o, ok := bs.byCookie[c&^RoundMask]
	return o, ok
}

// cookiesOf yields the round-0 cookies flow f of owner o claims: its own, and that of
// the entries its learn() actions make, which belong to no owner but their category.
func cookiesOf(o Owner, f Flow) func(yield func(Cookie, Owner) bool) {
	return func(yield func(Cookie, Owner) bool) {
		if !yield(f.Cookie&^RoundMask, o) {
			return
		}
		for _, a := range f.Actions {
			if l, ok := a.(Learn); ok {
				if !yield(l.Cookie&^RoundMask, Owner{Category: l.Cookie.Category()}) {
					return
				}
			}
		}
	}
}

func compareOwner(x, y Owner) int {
	return cmp.Or(cmp.Compare(x.Category, y.Category), cmp.Compare(x.Key, y.Key))
}

// Builder builds successive Sets of one host, reusing what did not change: for each
// owner it keeps the input its flows were built from and the flows, validated and
// keyed, and for each bridge which owner holds each flow key and cookie and how many
// catch-alls each table has. It also keeps what the owners' inputs are derived from
// (desired.go: the networks, tunnels and every remote port, with or without flows),
// so that Update, told which remote ports changed, redoes only the owners they
// touch. It holds the current owners only: an owner that leaves is forgotten in the
// pass that no longer has it. A Builder is not safe for concurrent use; the Sets it
// returns are.
type Builder struct {
	owners  map[Owner]*built
	set     Set
	indexes map[Bridge]*bridgeIndex
	inputs  inputs // desired.go
}

// Owners counts the owners the last Build kept: none means the next Build computes
// everything from scratch.
func (b *Builder) Owners() int { return len(b.owners) }

// built is one owner's flows, built from in.
type built struct {
	in      any // the owner's input, of its kind's type (setupIn, remoteIn, ...)
	bridges []bridgeFlows
}

type bridgeFlows struct {
	bridge Bridge
	flows  []Flow
	keys   []string // flows[i].Key()
}

// bridgeIndex is what the checks across owners need of one bridge.
type bridgeIndex struct {
	keys     map[string]Owner
	cookies  map[Cookie]cookieClaim
	catchAll map[uint8]int
}

type cookieClaim struct {
	owner Owner
	n     int // flows (and learn actions) carrying the cookie
}

// pass is one Build's or Update's changes to the owners as they are collected: the
// owners it touches only, so that its cost follows the change, not the host.
type pass struct {
	gone []ownerBuilt // owners that left or changed, with their previous flows
	came []ownerBuilt // owners that came or changed, with their new flows
}

type ownerBuilt struct {
	owner Owner
	*built
}

func newPass() *pass { return &pass{} }

// ownerInput is an owner's input: what its flows are a pure function of.
type ownerInput[T any] interface{ equal(T) bool }

// take makes in owner o's input in this pass: its flows stay those of the previous
// pass if its input was the same, else they are build(in), validated and keyed.
func take[T ownerInput[T]](b *Builder, ps *pass, o Owner, in T, build func(T) ([]Flow, error)) error {
	old := b.owners[o]
	if old != nil {
		if prev, ok := old.in.(T); ok && prev.equal(in) {
			return nil
		}
	}
	fs, err := build(in)
	if err != nil {
		return err
	}
	bt := &built{in: in}
	for _, f := range fs {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("owner %s: %w", o, err)
		}
		i := slices.IndexFunc(bt.bridges, func(x bridgeFlows) bool { return x.bridge == f.Bridge })
		if i < 0 {
			i = len(bt.bridges)
			bt.bridges = append(bt.bridges, bridgeFlows{bridge: f.Bridge})
		}
		bt.bridges[i].flows = append(bt.bridges[i].flows, f)
		bt.bridges[i].keys = append(bt.bridges[i].keys, f.Key())
	}
	if old != nil {
		ps.gone = append(ps.gone, ownerBuilt{o, old})
	}
	ps.came = append(ps.came, ownerBuilt{o, bt})
	return nil
}

// drop takes owner o out in this pass, if it had flows.
func (b *Builder) drop(ps *pass, o Owner) {
	if old := b.owners[o]; old != nil {
		ps.gone = append(ps.gone, ownerBuilt{o, old})
	}
}

// commit applies the pass: it updates the indexes for the owners that left, came or
// changed, checks them, and derives the new Set from the previous one. On an error
// the Builder forgets everything: the next Build starts from scratch.
func (b *Builder) commit(ps *pass) (Set, error) {
	if b.indexes == nil {
		b.indexes = map[Bridge]*bridgeIndex{}
	}
	if b.owners == nil {
		b.owners = map[Owner]*built{}
	}
	gone, came := ps.gone, ps.came
	// Sorted, so that an error names the same owners whatever the map order, and so
	// that the Set merges them in one walk.
	byOwner := func(x, y ownerBuilt) int { return compareOwner(x.owner, y.owner) }
	slices.SortFunc(gone, byOwner)
	slices.SortFunc(came, byOwner)
	for _, o := range gone {
		for _, bf := range o.bridges {
			b.index(bf.bridge).remove(o.owner, bf)
		}
	}
	for _, o := range came {
		for _, bf := range o.bridges {
			if err := b.index(bf.bridge).add(o.owner, bf); err != nil {
				*b = Builder{}
				return Set{}, err
			}
		}
	}
	for br, ix := range b.indexes {
		if err := ix.checkCatchAlls(br); err != nil {
			*b = Builder{}
			return Set{}, err
		}
	}
	b.set = b.set.with(gone, came)
	for _, o := range gone {
		delete(b.owners, o.owner)
	}
	for _, o := range came {
		b.owners[o.owner] = o.built
	}
	return b.set, nil
}

func (b *Builder) index(br Bridge) *bridgeIndex {
	ix := b.indexes[br]
	if ix == nil {
		ix = &bridgeIndex{keys: map[string]Owner{}, cookies: map[Cookie]cookieClaim{}, catchAll: map[uint8]int{}}
		b.indexes[br] = ix
	}
	return ix
}

func (ix *bridgeIndex) remove(o Owner, bf bridgeFlows) {
	for i, f := range bf.flows {
		if ix.keys[bf.keys[i]] == o {
			delete(ix.keys, bf.keys[i])
		}
		if f.Match.Fields() == 0 {
			ix.catchAll[f.Table]--
		}
		for c := range cookiesOf(o, f) {
			if cl := ix.cookies[c]; cl.n <= 1 {
				delete(ix.cookies, c)
			} else {
				cl.n--
				ix.cookies[c] = cl
			}
		}
	}
}

// add claims bf's keys and cookies for o. Two owners claiming one flow key would
// overwrite each other in the switch and fight forever in a diff; two sharing a
// cookie could not be told apart by a diagnostic.
func (ix *bridgeIndex) add(o Owner, bf bridgeFlows) error {
	for i, f := range bf.flows {
		if prev, dup := ix.keys[bf.keys[i]]; dup {
			return fmt.Errorf("%s flow %s claimed by both %s and %s", bf.bridge, bf.keys[i], prev, o)
		}
		ix.keys[bf.keys[i]] = o
		if f.Match.Fields() == 0 {
			ix.catchAll[f.Table]++
		}
		for c, claimant := range cookiesOf(o, f) {
			cl, ok := ix.cookies[c]
			if ok && cl.owner != claimant {
				return fmt.Errorf("%s: owners %s and %s share cookie %#x", bf.bridge, cl.owner, claimant, uint64(c))
			}
			ix.cookies[c] = cookieClaim{claimant, cl.n + 1}
		}
	}
	return nil
}

// checkCatchAlls checks that every table of the registry has the catch-all it gives
// the table, and no other.
func (ix *bridgeIndex) checkCatchAlls(b Bridge) error {
	for _, t := range Tables(b) {
		want := 1
		if t.Miss.Kind == MissNoFlow {
			want = 0
		}
		if ix.catchAll[t.ID] != want {
			return fmt.Errorf("%s table %d (%s): %d catch-all flows, want %d (miss: %s)", b, t.ID, t.Name, ix.catchAll[t.ID], want, t.Miss)
		}
	}
	return nil
}

// with returns s changed by gone (owners that left or changed, with their previous
// flows) and came (owners that came or changed, with their new ones), both sorted.
// A bridge none of them touches keeps its bridgeSet; the new Set remembers s as its
// parent and which owners of each bridge differ from it.
func (s Set) with(gone, came []ownerBuilt) Set {
	out := Set{id: setIDs.Add(1), parent: s.id, changed: map[Bridge][]Owner{}}
	changes := map[Bridge][]chunked.Change[Owner, []Flow]{}
	for _, o := range gone {
		for _, bf := range o.bridges {
			changes[bf.bridge] = append(changes[bf.bridge], chunked.Change[Owner, []Flow]{Key: o.owner, Del: true})
		}
	}
	for _, o := range came {
		for _, bf := range o.bridges {
			changes[bf.bridge] = append(changes[bf.bridge], chunked.Change[Owner, []Flow]{Key: o.owner, Val: bf.flows})
		}
	}
	if len(changes) == 0 {
		out.bridges = s.bridges
		return out
	}
	out.bridges = maps.Clone(s.bridges)
	if out.bridges == nil {
		out.bridges = map[Bridge]*bridgeSet{}
	}
	for br, cs := range changes {
		// An owner that changed is in both lists: its removal first, then its flows,
		// so that a stable sort leaves the flows last, and the last change counts.
		slices.SortStableFunc(cs, func(x, y chunked.Change[Owner, []Flow]) int { return compareOwner(x.Key, y.Key) })
		var old chunked.Seq[Owner, []Flow]
		if s.bridges[br] != nil {
			old = s.bridges[br].owners
		}
		for i, c := range cs {
			if i == 0 || cs[i-1].Key != c.Key {
				out.changed[br] = append(out.changed[br], c.Key)
			}
		}
		bs := &bridgeSet{owners: old.With(cs, compareOwner)}
		if bs.owners.Len() == 0 {
			delete(out.bridges, br)
			continue
		}
		out.bridges[br] = bs
	}
	return out
}

// Changed lists the owners of bridge b whose flows in s may differ from those in
// parent, sorted, when s was derived from parent by a Builder; otherwise ok is false
// and the caller compares everything. An owner listed may have the same flows as
// before (it was rebuilt), one not listed has the very same slice.
func (s Set) Changed(b Bridge, parent Set) (owners []Owner, ok bool) {
	if parent.id == 0 || s.parent != parent.id {
		return nil, false
	}
	return s.changed[b], true
}

// FlowsOf returns owner o's flows on bridge b themselves, not a copy (see
// EachOwner), or nil.
func (s Set) FlowsOf(b Bridge, o Owner) []Flow {
	if bs := s.bridges[b]; bs != nil {
		return bs.owned(o)
	}
	return nil
}

// Check validates s from scratch, owner by owner and across owners, the way a Set
// built from nothing is checked: every flow against the registry, one owner per flow
// key and cookie, every table's catch-all. A Builder's checks are incremental; this is
// their reference.
func (s Set) Check() error {
	for b, bs := range s.bridges {
		ix := &bridgeIndex{keys: map[string]Owner{}, cookies: map[Cookie]cookieClaim{}, catchAll: map[uint8]int{}}
		var prev *Owner
		for o, fs := range bs.owners.All() {
			if prev != nil && compareOwner(*prev, o) >= 0 {
				return fmt.Errorf("%s: owners %s and %s out of order", b, *prev, o)
			}
			prev = &o
			if len(fs) == 0 {
				return fmt.Errorf("%s: owner %s listed without flows", b, o)
			}
			bf := bridgeFlows{bridge: b, flows: fs}
			for _, f := range fs {
				if err := f.Validate(); err != nil {
					return fmt.Errorf("owner %s: %w", o, err)
				}
				if f.Bridge != b {
					return fmt.Errorf("owner %s: a %s flow among %s's", o, f.Bridge, b)
				}
				bf.keys = append(bf.keys, f.Key())
			}
			if err := ix.add(o, bf); err != nil {
				return err
			}
		}
		if err := ix.checkCatchAlls(b); err != nil {
			return err
		}
	}
	return nil
}

// Same reports how s and t differ, owner by owner on each bridge, or nil when they
// hold the same owners with the same flows in the same order.
func (s Set) Same(t Set) error {
	for _, b := range []Bridge{BrInt, BrTun} {
		so, to := s.Owners(b), t.Owners(b)
		if !slices.Equal(so, to) {
			return fmt.Errorf("%s: %d owners, want %d (first difference: %s)", b, len(so), len(to), firstDiff(so, to))
		}
		if len(so) == 0 {
			continue
		}
		// Both hold the same owners in the same order: walk their flows side by side.
		next, stop := iter.Pull2(t.bridges[b].owners.All())
		for o, sf := range s.bridges[b].owners.All() {
			_, tf, _ := next()
			if !FlowsEqual(sf, tf) {
				stop()
				return fmt.Errorf("%s: owner %s: flows %v, want %v", b, o, sf, tf)
			}
		}
		stop()
	}
	for b := range s.bridges {
		if b != BrInt && b != BrTun {
			return fmt.Errorf("flows on unknown bridge %q", b)
		}
	}
	return nil
}

func firstDiff(a, b []Owner) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%s vs %s", a[i], b[i])
		}
	}
	if len(a) > len(b) {
		return fmt.Sprintf("%s extra", a[len(b)])
	}
	if len(b) > len(a) {
		return fmt.Sprintf("%s missing", b[len(a)])
	}
	return "none"
}
