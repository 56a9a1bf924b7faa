package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is the typed content of the store at one revision, as far as it is valid: every
// record in it decoded, passed the api validation the CLI applies, and agrees with the
// others (its network and groups exist, what it claims is its own). Records that do
// not are left out, wholly or in part, and listed in Problems, so that one bad record
// costs its owner and nothing else.
type State struct {
	Revision int64
	// Gen numbers the mirror's builds of its State, from 1: two States of one mirror
	// with the same Gen are the same (SharedSince says what differs between two). A
	// change that leaves the State as it was (a port put again as it was) makes no new
	// generation.
	Gen      uint64
	Networks map[string]api.Network // by ID
	// Ports (by ID) holds pointers so that a State patched for one port shares every
	// other port with the State before it instead of copying them all: a port is too
	// big for a map to keep inline. A *api.Port in a State is never changed once the
	// State is handed out, since readers on other goroutines (the local API, trace)
	// still hold older States that point at it; whoever wants a changed port copies it
	// (clonePort) and stores the new pointer. Clone (and so Snapshot) copies the ports
	// themselves.
	Ports    map[string]*api.Port
	Groups   map[string]api.SecurityGroup // by ID
	Hosts    map[string]api.Host          // by name; Alive while the host's lease is held
	Statuses map[string]api.PortStatus    // by port ID
	// Routers and FloatingIPs (by ID) are kept when valid on their own; the ports of
	// router interfaces carry the router's current host (api.RouterHost), not the
	// scheduled one, so every host's l2pop follows a router that moved.
	Routers     map[string]api.Router
	FloatingIPs map[string]api.FloatingIP
	// Problems lists what was left out and why, sorted by key. A record appears at
	// most once with an empty Part (left out), possibly several times with a Part
	// (kept without that part).
	Problems []Problem
}

func newState() State {
	return State{
		Networks: map[string]api.Network{},
		Ports:    map[string]*api.Port{},
		Groups:   map[string]api.SecurityGroup{},
		Hosts:    map[string]api.Host{},
		Statuses: map[string]api.PortStatus{},

		Routers:     map[string]api.Router{},
		FloatingIPs: map[string]api.FloatingIP{},
	}
}

// Clone copies the maps and the slices inside their values, so the copy can be read
// and changed while the original keeps changing.
func (st State) Clone() State {
	c := State{
		Revision: st.Revision,
		Gen:      st.Gen,
		Networks: maps.Clone(st.Networks),
		Ports:    make(map[string]*api.Port, len(st.Ports)),
		Groups:   make(map[string]api.SecurityGroup, len(st.Groups)),
		Hosts:    maps.Clone(st.Hosts),
		Statuses: maps.Clone(st.Statuses),
		Problems: slices.Clone(st.Problems),

		Routers:     make(map[string]api.Router, len(st.Routers)),
		FloatingIPs: maps.Clone(st.FloatingIPs),
	}
	for k, r := range st.Routers {
		r.Interfaces = slices.Clone(r.Interfaces)
		if r.Gateway != nil {
			g := *r.Gateway
			r.Gateway = &g
		}
		c.Routers[k] = r
	}
	for k, p := range st.Ports {
		cp := clonePort(*p)
		c.Ports[k] = &cp
	}
	for k, g := range st.Groups {
		c.Groups[k] = cloneGroup(g)
	}
	return c
}

// MirrorOptions tune a Mirror.
type MirrorOptions struct {
	// KeepStatus, when set, decides which port statuses the mirror keeps; an agent that
	// only cares about its own ports' statuses can drop the others'.
	KeepStatus func(api.PortStatus) bool
}

// Mirror keeps an in-memory copy of the store for an agent: it lists everything at a
// revision R, then watches from R+1, so no change is missed; when the watch is
// compacted away or breaks, it lists again.
type Mirror struct {
	s       *Store
	opts    MirrorOptions
	changed chan struct{}
	synced  chan struct{}

	mu    sync.Mutex
	recs  *records
	rev   int64
	built State // recs checked against each other, when !stale
	gen   uint64
	stale bool
	// ix says how built's ports came out, so that the next build can patch built for
	// the ports changed since (dirtyPorts), unless anything else changed (dirtyAll).
	// Statuses are patched too (dirtyStatuses).
	ix            *portIndex
	dirtyPorts    map[string]bool
	dirtyStatuses map[string]bool
	dirtyAll      bool
	// deltas are the changes of the latest patched builds since the last full one,
	// oldest first, at most maxDeltas: what SharedSince answers from.
	deltas  []buildDelta
	relists int
	// reported remembers the problems already logged, so each is logged once.
	reported map[Problem]bool
	// received is when the oldest change not yet taken by TakeReceived arrived.
	received time.Time

	// afterList, set by tests, runs after each list, before the watch starts;
	// verifyHook, before Verify builds.
	afterList  func(rev int64)
	verifyHook func()
}

// NewMirror makes a mirror of s; Run fills and follows it.
func (s *Store) NewMirror(opts MirrorOptions) *Mirror {
	return &Mirror{
		s:       s,
		opts:    opts,
		changed: make(chan struct{}, 1),
		synced:  make(chan struct{}),
		recs:    newRecords(),
		built:   newState(),
	}
}

// Changed receives after the state changes; several changes between two reads are
// coalesced into one signal.
func (m *Mirror) Changed() <-chan struct{} { return m.changed }

// Synced is closed once the first full list has been loaded. Until then the mirror's
// state is empty, not the store's: an agent must not remove anything before this.
func (m *Mirror) Synced() <-chan struct{} { return m.synced }

// Snapshot returns a copy of the current state. The records are checked against each
// other here, once per change, rather than on every event: an agent reads the state
// far less often than a busy store changes.
func (m *Mirror) Snapshot() State {
	// Outside the lock: a built state is never changed, only replaced.
	return m.Shared().Clone()
}

// Shared returns the current state without copying it: the State and everything in
// it is shared with the mirror and with every other caller of Shared, and must not be
// changed. A reader that changes nothing (an agent computing its view once per
// change) saves Snapshot's copy of every record.
func (m *Mirror) Shared() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sharedLocked()
}

func (m *Mirror) sharedLocked() State {
	if m.stale {
		m.rebuild()
	}
	st := m.built
	st.Revision = m.rev
	return st
}

// rebuild brings built up to date with recs: patched for the ports and statuses that
// changed, when nothing else did, else built again.
func (m *Mirror) rebuild() {
	dirty, dirtyStatuses, all := m.dirtyPorts, m.dirtyStatuses, m.dirtyAll || m.ix == nil
	m.stale, m.dirtyPorts, m.dirtyStatuses, m.dirtyAll = false, nil, nil, false
	if !all {
		if p, ok := m.ix.patch(m.recs, m.built, m.rev, dirty, dirtyStatuses); ok {
			if len(p.ports) == 0 && len(dirtyStatuses) == 0 {
				return // the same State: no new generation for readers to look at
			}
			m.gen++
			p.st.Gen = m.gen
			m.built = p.st
			m.deltas = append(m.deltas, buildDelta{gen: m.gen, ports: p.ports})
			if len(m.deltas) > maxDeltas {
				m.deltas = slices.Delete(m.deltas, 0, len(m.deltas)-maxDeltas)
			}
			m.logChanged(p.removed, p.added)
			return
		}
	}
	m.built, m.ix = m.recs.buildIndexed(m.rev)
	m.gen++
	m.built.Gen = m.gen
	m.deltas = nil
	m.logNew(m.built.Problems)
}

// note marks what a change of the record kind/id leaves to the next build.
func (m *Mirror) note(kind, id string) {
	switch {
	case m.dirtyAll:
	case kind == KindPorts:
		if m.dirtyPorts == nil {
			m.dirtyPorts = map[string]bool{}
		}
		m.dirtyPorts[id] = true
		// A bulk change is cheaper built whole, and a reader recomputes all of it
		// anyway.
		if len(m.dirtyPorts) > max(64, len(m.recs.ports)/4) {
			m.dirtyAll, m.dirtyPorts, m.dirtyStatuses = true, nil, nil
		}
	case kind == KindStatus:
		if m.dirtyStatuses == nil {
			m.dirtyStatuses = map[string]bool{}
		}
		m.dirtyStatuses[id] = true
	default:
		m.dirtyAll, m.dirtyPorts, m.dirtyStatuses = true, nil, nil
	}
}

// logChanged logs the added problems not logged before and forgets the removed ones
// that are gone.
func (m *Mirror) logChanged(removed, added []Problem) {
	if m.reported == nil {
		m.reported = map[Problem]bool{}
	}
	stay := make(map[Problem]bool, len(added))
	for _, p := range added {
		stay[p] = true
		if !m.reported[p] {
			slog.Warn("store mirror: record left out", "key", p.Key, "part", p.Part, "class", p.Class, "err", p.Err)
			m.reported[p] = true
		}
	}
	for _, p := range removed {
		if !stay[p] {
			delete(m.reported, p)
		}
	}
}

// logNew logs the problems not logged before and forgets those that are gone.
func (m *Mirror) logNew(probs []Problem) {
	now := make(map[Problem]bool, len(probs))
	for _, p := range probs {
		now[p] = true
		if !m.reported[p] {
			slog.Warn("store mirror: record left out", "key", p.Key, "part", p.Part, "class", p.Class, "err", p.Err)
		}
	}
	m.reported = now
}

// Revision is the store revision the state reflects.
func (m *Mirror) Revision() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// Relists counts the lists made after the first one (compactions, broken watches).
func (m *Mirror) Relists() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.relists
}

// TakeReceived returns when the oldest change that arrived since the last call was
// received from etcd (zero: none), and starts over. An agent calls it just before
// Snapshot: a change that arrives between the two calls is in that snapshot and is
// also counted for the next one, so a lag measured from here is never too short.
func (m *Mirror) TakeReceived() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.received
	m.received = time.Time{}
	return t
}

// markReceived notes the arrival of a change at; m.mu is held.
func (m *Mirror) markReceived(at time.Time) {
	if m.received.IsZero() {
		m.received = at
	}
}

func (m *Mirror) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Run lists and watches until ctx is cancelled, and returns ctx's error.
func (m *Mirror) Run(ctx context.Context) error {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	pause := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		return nil
	}
	lists := 0
	for {
		rev, err := m.list(ctx, lists > 0)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			slog.Warn("store mirror: list failed", "err", err, "retry_in", backoff)
			if err := pause(); err != nil {
				return err
			}
			continue
		}
		if lists == 0 {
			close(m.synced)
		}
		lists++
		if m.afterList != nil {
			m.afterList(rev)
		}
		started := time.Now()
		err = m.watch(ctx, rev+1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		slog.Info("store mirror: listing again", "reason", err, "revision", rev)
		// A watch that breaks at once (no leader, say) must not turn into a busy loop
		// of full lists; one that ran for a while has earned an immediate re-list.
		if time.Since(started) < time.Second {
			if err := pause(); err != nil {
				return err
			}
		} else {
			backoff = minBackoff
		}
	}
}

func (m *Mirror) list(ctx context.Context, again bool) (int64, error) {
	resp, err := m.s.cli.Get(ctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", Prefix, err)
	}
	recs := newRecords()
	for _, kv := range resp.Kvs {
		m.apply(recs, mvccpb.PUT, kv)
	}
	m.mu.Lock()
	m.recs, m.rev, m.stale = recs, resp.Header.Revision, true
	m.dirtyAll, m.dirtyPorts, m.dirtyStatuses = true, nil, nil
	m.markReceived(time.Now())
	if again {
		m.relists++
	}
	m.mu.Unlock()
	m.notify()
	return resp.Header.Revision, nil
}

// watch applies events from rev on; it returns why it stopped.
func (m *Mirror) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := m.s.cli.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify())
	for wr := range wch {
		at := time.Now() // before applying: a big batch takes a while
		if wr.CompactRevision != 0 {
			return fmt.Errorf("watch from %d compacted (compact revision %d)", rev, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch from %d: %w", rev, err)
		}
		if wr.IsProgressNotify() {
			m.mu.Lock()
			m.rev = max(m.rev, wr.Header.Revision)
			m.mu.Unlock()
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		changed := false
		m.mu.Lock()
		for _, ev := range wr.Events {
			if m.applyEvent(ev.Type, ev.Kv) {
				changed = true
			}
			m.rev = ev.Kv.ModRevision
		}
		m.stale = m.stale || changed
		if changed {
			m.markReceived(at)
		}
		m.mu.Unlock()
		if changed {
			m.notify()
		}
	}
	return errors.New("watch closed")
}

// applyEvent applies one watched event to the mirror's records (m.mu held), notes it
// for the next build, and reports whether the records changed.
func (m *Mirror) applyEvent(typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) bool {
	kind, id, changed := m.apply(m.recs, typ, kv)
	if changed {
		m.note(kind, id)
	}
	return changed
}

// apply puts or deletes one key in rs and reports whether rs changed, and the kind and
// ID of the record.
func (m *Mirror) apply(rs *records, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) (string, string, bool) {
	key := string(kv.Key)
	kind, id, ok := strings.Cut(strings.TrimPrefix(key, Prefix), "/")
	if kind == "status" { // status/<host>/<port id>, kept by port ID
		_, id, ok = parseStatusKey(key)
	}
	if !ok || id == "" || strings.Contains(id, "/") {
		return kind, id, false
	}
	return kind, id, m.applyRecord(rs, kind, id, typ == mvccpb.DELETE, kv)
}

// applyRecord puts or deletes the record kind/id in rs and reports whether rs changed.
func (m *Mirror) applyRecord(rs *records, kind, id string, del bool, kv *mvccpb.KeyValue) bool {
	switch kind {
	case KindNetworks:
		return put(rs.networks, id, del, func() *record[api.Network] { return readNetwork(kv, id) })
	case KindPorts:
		return put(rs.ports, id, del, func() *record[api.Port] { return readPort(kv, id) })
	case KindGroups:
		return put(rs.groups, id, del, func() *record[api.SecurityGroup] { return readGroup(kv, id) })
	case KindHosts:
		return put(rs.hosts, id, del, func() *record[api.Host] { return readHost(kv, id) })
	case KindRouters:
		return put(rs.routers, id, del, func() *record[api.Router] { return readRouter(kv, id) })
	case KindFloatingIPs:
		return put(rs.fips, id, del, func() *record[api.FloatingIP] { return readFloatingIP(kv, id) })
	case KindStatus:
		if del {
			return put(rs.statuses, id, true, nil)
		}
		r := readStatus(kv, id)
		// An agent that keeps only some statuses has no use for the others, nor for
		// the problems of those it cannot even read.
		if m.opts.KeepStatus != nil && (r.bad != nil || !m.opts.KeepStatus(r.v)) {
			return put(rs.statuses, id, true, nil)
		}
		return put(rs.statuses, id, false, func() *record[api.PortStatus] { return r })
	case kindAlive:
		if del {
			_, was := rs.alive[id]
			delete(rs.alive, id)
			return was
		}
		_, was := rs.alive[id]
		rs.alive[id] = true
		return !was
	}
	return false
}

// put stores the record read, or deletes it, and reports whether m changed.
func put[T any](m map[string]*record[T], id string, del bool, read func() *record[T]) bool {
	if del {
		_, ok := m[id]
		delete(m, id)
		return ok
	}
	m[id] = read()
	return true
}
