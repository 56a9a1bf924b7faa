package store

import (
	"container/heap"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// Patching the State for a few changed ports.
//
// The common change in a big cluster is a port put or deleted somewhere, and building
// the whole State again for it costs every agent a sort and a check of every port. So
// when nothing but ports (and statuses) changed since the last build, the mirror
// patches that build instead: it judges again the changed ports and the ports whose
// verdict can depend on them, and nothing else.
//
// Why that is enough. Networks, groups, hosts, routers and floating IPs are the same
// as in the last build (a change to any of them is a full build), so what a port's
// verdict depends on is its own record and, through the conflict check, which older
// port (lower create revision, then lower ID: the build's order) holds each thing it
// claims. Ports judged in age order see exactly the claims of the older kept ports.
// So the verdict of an unchanged port Z can only change when some older port X starts
// or stops holding a claim C that Z wants, and only after X's own verdict changed (or
// X itself changed). Whenever X's holding of C changes, every newer port that wants C
// is queued: the newer holder X displaces, and the ports left out for a conflict that
// want C (they may get C now, or be refused by another holder, which the problem
// names). Ports are taken from the queue oldest first and only ever queue newer ones,
// so each port is judged once, after every older port whose verdict changed; by
// induction on age, the claims of the older ports are right when it is judged. A
// judged port whose holder of C turns out to be newer than itself ignores that holder
// (in the build it would not have claimed C yet) and, if kept, takes C from it.
//
// A changed port first gives up what it held and wanted, and everybody who wants any
// of that is queued: its age may have changed too (deleted and created again), and a
// port between its old and its new age must not see its old claims.
//
// A port that a router's interface or a floating IP names decides part of the router
// or floating IP; when its record in the State changes, the patch gives up and the
// mirror builds everything.

// portIndex is how the ports' claims fell out in the mirror's built State: what a patch
// needs besides the State. It belongs to the mirror (under m.mu) and a patch changes
// it in place; the States it describes never change.
type portIndex struct {
	left   map[string]string // networks left out, and why
	holder claims            // every claim of a kept port, to that port
	// losers are the ports left out for a conflict, by what they claim; lost is what
	// each of them claims.
	losers      map[claim][]string
	lost        map[string][]claim
	probs       map[string][]Problem // the problems of each port that has some
	statusProbs map[string]Problem
	l3refs      map[string]bool // ports named by routers and floating IPs
}

func newPortIndex() *portIndex {
	return &portIndex{
		holder:      claims{},
		losers:      map[claim][]string{},
		lost:        map[string][]claim{},
		probs:       map[string][]Problem{},
		statusProbs: map[string]Problem{},
	}
}

func (ix *portIndex) addLost(id string, want []claim) {
	ix.lost[id] = want
	for _, c := range want {
		ix.losers[c] = append(ix.losers[c], id)
	}
}

func (ix *portIndex) dropLost(id string) {
	for _, c := range ix.lost[id] {
		l := slices.DeleteFunc(ix.losers[c], func(s string) bool { return s == id })
		if len(l) == 0 {
			delete(ix.losers, c)
		} else {
			ix.losers[c] = l
		}
	}
	delete(ix.lost, id)
}

// patched is a State patched for changed ports and statuses.
type patched struct {
	st    State
	ports map[string]bool // the ports whose record in the State or problems changed
	// removed and added are the problems that went and came.
	removed, added []Problem
}

// patch returns prev, the State ix describes, brought up to date with rs for the
// ports and statuses changed since (dirty, dirtyStatuses), and updates ix to describe
// the result. It fails when the change reaches a router or floating IP; ix is then
// spent.
func (ix *portIndex) patch(rs *records, prev State, rev int64, dirty, dirtyStatuses map[string]bool) (patched, bool) {
	out := patched{st: prev, ports: map[string]bool{}}
	out.st.Revision = rev
	q := &ageQueue{rs: rs, queued: map[string]bool{}}
	held := func(p *api.Port) []claim { return portClaims(nil, p, prev.Networks[p.NetworkID].VNI) }

	for id := range dirty {
		if p, ok := prev.Ports[id]; ok {
			for _, c := range held(p) {
				if ix.holder[c] == id {
					delete(ix.holder, c)
				}
				q.pushAll(ix.losers[c])
			}
		}
		ix.dropLost(id)
		q.push(id)
	}

	// ports is a copy of prev.Ports from the first change on; it shares the ports
	// themselves, which nobody changes (see State.Ports).
	var ports map[string]*api.Port
	verdict := func(id string, v portVerdict) bool {
		old, had := prev.Ports[id]
		var now *api.Port
		if v.kept {
			now = prev.routerPortHost(&v.port)
		}
		portDiff := had != v.kept || had && !reflect.DeepEqual(old, now)
		oldProbs := ix.probs[id]
		probDiff := !slices.Equal(oldProbs, v.probs)
		if portDiff {
			if ix.l3refs[id] {
				return false
			}
			if ports == nil {
				ports = maps.Clone(prev.Ports)
			}
			if v.kept {
				ports[id] = now
			} else {
				delete(ports, id)
			}
		}
		if probDiff {
			out.removed = append(out.removed, oldProbs...)
			out.added = append(out.added, v.probs...)
			if len(v.probs) > 0 {
				ix.probs[id] = v.probs
			} else {
				delete(ix.probs, id)
			}
		}
		if portDiff || probDiff {
			out.ports[id] = true
		}
		return true
	}

	for q.Len() > 0 {
		id := heap.Pop(q).(aged).id
		var had []claim // what the port held in prev and has not given up yet
		if p, ok := prev.Ports[id]; ok && !dirty[id] {
			had = held(p)
		}
		ix.dropLost(id)
		heldBy := func(c claim) string {
			if h := ix.holder[c]; h != "" && h != id && q.older(h, id) {
				return h
			}
			return ""
		}
		v := rs.judgePort(id, rs.ports[id], &prev, ix.left, heldBy, nil)
		var holds []claim
		switch {
		case v.kept:
			holds = v.want
		case v.want != nil:
			ix.addLost(id, v.want)
		}
		for _, c := range holds {
			if h := ix.holder[c]; h != id {
				if h != "" {
					q.push(h) // newer (an older one would have refused the port): it loses c
				}
				ix.holder[c] = id
				q.pushNewer(ix.losers[c], id)
			}
		}
		for _, c := range had {
			if !slices.Contains(holds, c) {
				if ix.holder[c] == id {
					delete(ix.holder, c)
				}
				q.pushNewer(ix.losers[c], id)
			}
		}
		if !verdict(id, v) {
			return patched{}, false
		}
	}
	for id := range dirty {
		if _, ok := rs.ports[id]; !ok && !verdict(id, portVerdict{}) {
			return patched{}, false
		}
	}
	if ports != nil {
		out.st.Ports = ports
	}

	if len(dirtyStatuses) > 0 {
		out.st.Statuses = maps.Clone(prev.Statuses)
		for id := range dirtyStatuses {
			delete(out.st.Statuses, id)
			old, hadProb := ix.statusProbs[id]
			var now Problem
			hasProb := false
			if r, ok := rs.statuses[id]; ok {
				if r.bad != nil {
					now, hasProb = *r.bad, true
				} else {
					out.st.Statuses[id] = r.v
				}
			}
			if hadProb == hasProb && old == now {
				continue
			}
			if hadProb {
				out.removed = append(out.removed, old)
				delete(ix.statusProbs, id)
			}
			if hasProb {
				out.added = append(out.added, now)
				ix.statusProbs[id] = now
			}
		}
	}
	out.st.Problems = patchProblems(prev.Problems, out.removed, out.added)
	return out, true
}

// patchProblems returns old, sorted, without removed and with added, in a new slice
// when anything changes: old may be shared with readers.
func patchProblems(old, removed, added []Problem) []Problem {
	if len(removed) == 0 && len(added) == 0 {
		return old
	}
	gone := make(map[Problem]int, len(removed))
	for _, p := range removed {
		gone[p]++
	}
	added = slices.Clone(added)
	slices.SortFunc(added, compareProblems)
	out := make([]Problem, 0, len(old)-len(removed)+len(added))
	i := 0
	for _, p := range old {
		if gone[p] > 0 {
			gone[p]--
			continue
		}
		for i < len(added) && compareProblems(added[i], p) < 0 {
			out = append(out, added[i])
			i++
		}
		out = append(out, p)
	}
	out = append(out, added[i:]...)
	if len(out) == 0 {
		return nil // as the build leaves it
	}
	return out
}

// aged is a port's place in the build's order.
type aged struct {
	create int64
	id     string
}

func (a aged) before(b aged) bool {
	return a.create < b.create || a.create == b.create && a.id < b.id
}

// ageQueue hands out ports oldest first, each once.
type ageQueue struct {
	rs     *records
	list   []aged
	queued map[string]bool // ever queued, popped or not
}

func (q *ageQueue) push(id string) {
	r, ok := q.rs.ports[id]
	if !ok || q.queued[id] {
		return
	}
	q.queued[id] = true
	heap.Push(q, aged{r.create, id})
}

func (q *ageQueue) pushAll(ids []string) {
	for _, id := range ids {
		q.push(id)
	}
}

// pushNewer queues those of ids that are newer than than.
func (q *ageQueue) pushNewer(ids []string, than string) {
	for _, id := range ids {
		if q.older(than, id) {
			q.push(id)
		}
	}
}

// older reports whether port a comes before port b in the build's order; both exist.
func (q *ageQueue) older(a, b string) bool {
	return aged{q.rs.ports[a].create, a}.before(aged{q.rs.ports[b].create, b})
}

func (q *ageQueue) Len() int           { return len(q.list) }
func (q *ageQueue) Less(i, j int) bool { return q.list[i].before(q.list[j]) }
func (q *ageQueue) Swap(i, j int)      { q.list[i], q.list[j] = q.list[j], q.list[i] }
func (q *ageQueue) Push(x any)         { q.list = append(q.list, x.(aged)) }
func (q *ageQueue) Pop() any {
	a := q.list[len(q.list)-1]
	q.list = q.list[:len(q.list)-1]
	return a
}

// Verify builds the State from scratch and compares it with the current one, which
// may have been patched: the two must be equal. A difference is a bug of the patch;
// Verify then makes the next read a full build (a Delta of All) and returns an error
// naming what differs. The build runs on a copy of the records taken under the lock,
// outside it: the mirror goes on applying changes and answering reads meanwhile.
func (m *Mirror) Verify() error {
	m.mu.Lock()
	got, recs, rev := m.sharedLocked(), m.recs.clone(), m.rev
	m.mu.Unlock()
	if m.verifyHook != nil {
		m.verifyHook()
	}
	want := recs.build(rev)
	got.Gen = 0
	if reflect.DeepEqual(got, want) {
		return nil
	}
	m.mu.Lock()
	m.stale, m.dirtyAll = true, true
	m.mu.Unlock()
	ports := differingPorts(got, want)
	what := "records other than ports"
	if len(ports) > 0 {
		what = fmt.Sprintf("ports %s", strings.Join(ports[:min(len(ports), 5)], ", "))
		if len(ports) > 5 {
			what += fmt.Sprintf(" and %d more", len(ports)-5)
		}
		if a, b := withoutPorts(got), withoutPorts(want); !reflect.DeepEqual(a, b) {
			what += " and records other than ports"
		}
	}
	slog.Error("store mirror: patched state differs from a full build; building it whole", "differs", what)
	return fmt.Errorf("patched state differs from a full build in %s", what)
}

// differingPorts lists, sorted, the ports whose record in the State or problems
// differ between a and b.
func differingPorts(a, b State) []string {
	probs := func(st State) map[string][]Problem {
		m := map[string][]Problem{}
		for _, p := range st.Problems {
			if p.Kind == KindPorts {
				m[p.ID] = append(m[p.ID], p)
			}
		}
		return m
	}
	pa, pb := probs(a), probs(b)
	ids := map[string]bool{}
	for id := range a.Ports {
		ids[id] = true
	}
	for id := range b.Ports {
		ids[id] = true
	}
	for id := range pa {
		ids[id] = true
	}
	for id := range pb {
		ids[id] = true
	}
	var diff []string
	for id := range ids {
		x, okx := a.Ports[id]
		y, oky := b.Ports[id]
		if okx != oky || !reflect.DeepEqual(x, y) || !slices.Equal(pa[id], pb[id]) {
			diff = append(diff, id)
		}
	}
	slices.Sort(diff)
	return diff
}

// withoutPorts is st without its ports, their problems and what may differ between
// two equal States (Gen, Revision).
func withoutPorts(st State) State {
	st.Ports, st.Gen, st.Revision = nil, 0, 0
	st.Problems = slices.DeleteFunc(slices.Clone(st.Problems), func(p Problem) bool { return p.Kind == KindPorts })
	if len(st.Problems) == 0 {
		st.Problems = nil
	}
	return st
}
