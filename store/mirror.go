package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// State is the typed content of the store at one revision.
type State struct {
	Revision int64
	Networks map[string]api.Network       // by ID
	Ports    map[string]api.Port          // by ID
	Groups   map[string]api.SecurityGroup // by ID
	Hosts    map[string]api.Host          // by name; all Alive
	Statuses map[string]api.PortStatus    // by port ID
}

func newState() State {
	return State{
		Networks: map[string]api.Network{},
		Ports:    map[string]api.Port{},
		Groups:   map[string]api.SecurityGroup{},
		Hosts:    map[string]api.Host{},
		Statuses: map[string]api.PortStatus{},
	}
}

// Clone copies the maps and the slices inside their values, so the copy can be read
// and changed while the original keeps changing.
func (st State) Clone() State {
	c := State{
		Revision: st.Revision,
		Networks: maps.Clone(st.Networks),
		Ports:    make(map[string]api.Port, len(st.Ports)),
		Groups:   make(map[string]api.SecurityGroup, len(st.Groups)),
		Hosts:    maps.Clone(st.Hosts),
		Statuses: maps.Clone(st.Statuses),
	}
	for k, p := range st.Ports {
		c.Ports[k] = clonePort(p)
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

	mu      sync.RWMutex
	state   State
	relists int

	// afterList, set by tests, runs after each list, before the watch starts.
	afterList func(rev int64)
}

// NewMirror makes a mirror of s; Run fills and follows it.
func (s *Store) NewMirror(opts MirrorOptions) *Mirror {
	return &Mirror{
		s:       s,
		opts:    opts,
		changed: make(chan struct{}, 1),
		synced:  make(chan struct{}),
		state:   newState(),
	}
}

// Changed receives after the state changes; several changes between two reads are
// coalesced into one signal.
func (m *Mirror) Changed() <-chan struct{} { return m.changed }

// Synced is closed once the first full list has been loaded. Until then the mirror's
// state is empty, not the store's: an agent must not remove anything before this.
func (m *Mirror) Synced() <-chan struct{} { return m.synced }

// Snapshot returns a copy of the current state.
func (m *Mirror) Snapshot() State {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.state.Clone()
}

// Revision is the store revision the state reflects.
func (m *Mirror) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.state.Revision
}

// Relists counts the lists made after the first one (compactions, broken watches).
func (m *Mirror) Relists() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.relists
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
	st := newState()
	for _, kv := range resp.Kvs {
		m.apply(&st, mvccpb.PUT, kv)
	}
	st.Revision = resp.Header.Revision
	m.mu.Lock()
	m.state = st
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
		if wr.CompactRevision != 0 {
			return fmt.Errorf("watch from %d compacted (compact revision %d)", rev, wr.CompactRevision)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch from %d: %w", rev, err)
		}
		if wr.IsProgressNotify() {
			m.mu.Lock()
			if wr.Header.Revision > m.state.Revision {
				m.state.Revision = wr.Header.Revision
			}
			m.mu.Unlock()
			continue
		}
		if len(wr.Events) == 0 {
			continue
		}
		changed := false
		m.mu.Lock()
		for _, ev := range wr.Events {
			if m.apply(&m.state, ev.Type, ev.Kv) {
				changed = true
			}
			m.state.Revision = ev.Kv.ModRevision
		}
		m.mu.Unlock()
		if changed {
			m.notify()
		}
	}
	return errors.New("watch closed")
}

// apply puts or deletes one key in st and reports whether st changed.
func (m *Mirror) apply(st *State, typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) bool {
	key := string(kv.Key)
	kind, id, ok := strings.Cut(strings.TrimPrefix(key, Prefix), "/")
	if kind == "status" { // status/<host>/<port id>, kept by port ID
		_, id, ok = parseStatusKey(key)
	}
	if !ok || id == "" || strings.Contains(id, "/") {
		return false
	}
	del := typ == mvccpb.DELETE
	decode := func(v any) bool {
		if err := json.Unmarshal(kv.Value, v); err != nil {
			slog.Warn("store mirror: skipping undecodable key", "key", key, "err", err)
			return false
		}
		return true
	}
	switch kind {
	case "networks":
		if del {
			return deleted(st.Networks, id)
		} else if v := (api.Network{}); decode(&v) {
			st.Networks[id] = v
		}
	case "ports":
		if del {
			return deleted(st.Ports, id)
		} else if v := (api.Port{}); decode(&v) {
			st.Ports[id] = v
		}
	case "secgroups":
		if del {
			return deleted(st.Groups, id)
		} else if v := (api.SecurityGroup{}); decode(&v) {
			st.Groups[id] = v
		}
	case "hosts":
		if del {
			return deleted(st.Hosts, id)
		} else if v := (api.Host{}); decode(&v) {
			v.Alive = true
			st.Hosts[id] = v
		}
	case "status":
		if del {
			return deleted(st.Statuses, id)
		} else if v := (api.PortStatus{}); decode(&v) {
			if m.opts.KeepStatus != nil && !m.opts.KeepStatus(v) {
				if _, had := st.Statuses[id]; !had {
					return false
				}
				delete(st.Statuses, id)
				return true
			}
			st.Statuses[id] = v
		}
	default:
		return false
	}
	return true
}

func deleted[V any](m map[string]V, id string) bool {
	_, ok := m[id]
	delete(m, id)
	return ok
}
