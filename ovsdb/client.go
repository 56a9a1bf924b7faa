package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ovn-kubernetes/libovsdb/client"
	ovs "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// ErrNotFound is returned when a bridge or port that must exist does not.
var ErrNotFound = errors.New("not found")

// Client is a connection to one ovsdb-server. Its methods are safe for concurrent
// use; changes are serialised so each is planned against the result of the previous.
type Client struct {
	c        client.Client
	mon      *monitor
	endpoint string
	log      *slog.Logger

	// mu serialises plan+transact+cache-wait, so planning never sees a half-applied
	// change of our own.
	mu sync.Mutex

	txCount atomic.Uint64

	changeMu sync.Mutex
	changed  chan struct{} // closed and replaced on every cache event

	// gen counts cache events; snap is the snapshot taken at generation snapGen.
	// Listing the cache copies every row, the largest cost of a reconcile at scale,
	// and most reconciles (a store event elsewhere) find OVSDB unchanged.
	gen     atomic.Uint64
	snapMu  sync.Mutex
	snap    *snapshot
	snapGen uint64
}

// Connect connects to endpoint (e.g. "unix:/var/run/openvswitch/db.sock"), monitors
// the tables lanes uses and returns once the cache holds the current contents. The
// client reconnects by itself for as long as it lives; calls made while disconnected
// block until reconnected or until their context ends.
func Connect(ctx context.Context, endpoint string) (*Client, error) {
	dbm, err := clientModel()
	if err != nil {
		return nil, fmt.Errorf("ovsdb model: %w", err)
	}
	cl := &Client{endpoint: endpoint, log: slog.With("ovsdb", endpoint), changed: make(chan struct{})}
	// The monitor starts first: its initial load, the larger part of connecting,
	// overlaps libovsdb's schema handshake.
	cl.mon, err = startMonitor(endpoint, cl.log, cl.notify)
	if err != nil {
		return nil, fmt.Errorf("ovsdb %w", err)
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 2 * time.Second
	// libovsdb panics when its reconnect backoff gives up, so it must never give up.
	bo.MaxElapsedTime = 0
	c, err := client.NewOVSDBClient(dbm,
		client.WithEndpoint(endpoint),
		client.WithReconnect(10*time.Second, bo))
	if err != nil {
		cl.mon.close()
		return nil, fmt.Errorf("ovsdb client %s: %w", endpoint, err)
	}
	// libovsdb checks the model against the server's schema here, and carries the
	// transactions; it monitors nothing.
	if err := c.Connect(ctx); err != nil {
		cl.mon.close()
		return nil, fmt.Errorf("ovsdb connect %s: %w", endpoint, err)
	}
	cl.c = c
	if err := cl.mon.wait(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("ovsdb monitor %s: %w", endpoint, err)
	}
	return cl, nil
}

// Close disconnects and stops reconnecting.
func (c *Client) Close() {
	c.mon.close()
	c.c.Close()
}

// Connected reports whether both connections (transactions and monitor) are up.
func (c *Client) Connected() bool { return c.c.Connected() && c.mon.up.Load() }

// Transactions counts the transactions this client has sent (writes and ofport
// read-backs); a no-op ensure leaves it unchanged.
func (c *Client) Transactions() uint64 { return c.txCount.Load() }

// Generation counts the changes the client has seen in OVSDB: reads done while it
// stays the same saw the same rows, so a caller may keep what it derived from them.
func (c *Client) Generation() uint64 { return c.gen.Load() }

func (c *Client) notify() {
	c.gen.Add(1)
	c.changeMu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.changeMu.Unlock()
}

// Changes returns a channel closed at the next change of any row lanes follows (its
// own writes included): lanesd repairs rows deleted or edited by hand without waiting
// for its periodic resync. Call it again after each change.
func (c *Client) Changes() <-chan struct{} { return c.changes() }

func (c *Client) changes() <-chan struct{} {
	c.changeMu.Lock()
	defer c.changeMu.Unlock()
	return c.changed
}

// cacheTimeout bounds how long a write waits for its own effect to reach the cache.
const cacheTimeout = 10 * time.Second

// awaitCache waits until done() holds. libovsdb applies monitor updates on their own
// goroutine, so the cache can lag the transaction reply by a little.
func (c *Client) awaitCache(ctx context.Context, what string, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, cacheTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond) // safety net; events do the real work
	defer tick.Stop()
	for {
		ch := c.changes()
		if done() {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("ovsdb: cache did not show %s: %w", what, ctx.Err())
		}
	}
}

// awaitConnected waits while the client is reconnecting: planning against the cache
// of a dead connection would redo changes that are already in place.
func (c *Client) awaitConnected(ctx context.Context) error {
	for !c.Connected() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("ovsdb %s: not connected: %w", c.endpoint, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// transact sends one transaction and turns every failed operation into an error.
func (c *Client) transact(ctx context.Context, ops []ovs.Operation) ([]ovs.OperationResult, error) {
	c.txCount.Add(1)
	res, err := c.c.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("ovsdb transact: %w", err)
	}
	opErrs, err := ovs.CheckOperationResults(res, ops)
	if err != nil {
		msgs := make([]string, 0, len(opErrs))
		for _, e := range opErrs {
			msgs = append(msgs, e.Error())
		}
		if len(msgs) == 0 {
			return res, fmt.Errorf("ovsdb transact: %w", err)
		}
		return res, fmt.Errorf("ovsdb transact: %w: %s", err, strings.Join(msgs, "; "))
	}
	return res, nil
}

// snapshot is a consistent copy of the cached tables, indexed for planning.
type snapshot struct {
	root       *openvSwitch
	bridges    map[string]*bridge // by name
	ports      map[string]*port   // by name
	portByUUID map[string]*port
	ifaces     map[string]*iface // by name
	ifaceByID  map[string]*iface
	portBridge map[string]*bridge // port UUID -> bridge
}

// snapshot returns the cache's rows, indexed; it lists them again only after a cache
// event. A snapshot is read-only: planners build new rows for what they change.
func (c *Client) snapshot(ctx context.Context) (*snapshot, error) {
	// The generation is read before listing: an event during the listing makes the
	// next call list again, never keeps a snapshot older than its generation.
	g := c.gen.Load()
	c.snapMu.Lock()
	if c.snap != nil && c.snapGen == g {
		s := c.snap
		c.snapMu.Unlock()
		return s, nil
	}
	c.snapMu.Unlock()
	s, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	c.snapMu.Lock()
	c.snap, c.snapGen = s, g
	c.snapMu.Unlock()
	return s, nil
}

// invalidate makes the next snapshot list the cache again.
func (c *Client) invalidate() {
	c.snapMu.Lock()
	c.snap = nil
	c.snapMu.Unlock()
}

func (c *Client) list(ctx context.Context) (*snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ovsdb cache: %w", err)
	}
	m := c.mon
	m.mu.Lock()
	defer m.mu.Unlock()
	rc := &m.rows
	s := &snapshot{
		bridges:    make(map[string]*bridge, len(rc.bridges)),
		ports:      make(map[string]*port, len(rc.ports)),
		portByUUID: make(map[string]*port, len(rc.ports)),
		ifaces:     make(map[string]*iface, len(rc.ifaces)),
		ifaceByID:  make(map[string]*iface, len(rc.ifaces)),
		portBridge: make(map[string]*bridge, len(rc.ports)),
	}
	// The rows are shared with the cache, which replaces rows and never edits them.
	for _, r := range rc.roots {
		s.root = r
	}
	for _, b := range rc.bridges {
		s.bridges[b.Name] = b
		for _, p := range b.Ports {
			s.portBridge[p] = b
		}
	}
	for _, p := range rc.ports {
		s.ports[p.Name] = p
		s.portByUUID[p.UUID] = p
	}
	for _, i := range rc.ifaces {
		s.ifaces[i.Name] = i
		s.ifaceByID[i.UUID] = i
	}
	return s, nil
}

// bridgeIfaces lists the interfaces of a bridge's ports.
func (s *snapshot) bridgeIfaces(b *bridge) []*iface {
	var out []*iface
	for _, pu := range b.Ports {
		p := s.portByUUID[pu]
		if p == nil {
			continue
		}
		for _, iu := range p.Interfaces {
			if i := s.ifaceByID[iu]; i != nil {
				out = append(out, i)
			}
		}
	}
	return out
}

// portOf returns the port named name if it is on bridge br.
func (s *snapshot) portOn(br, name string) *port {
	p := s.ports[name]
	if p == nil {
		return nil
	}
	if b := s.portBridge[p.UUID]; b == nil || b.Name != br {
		return nil
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// hasKeys reports whether m holds every key of want with the same value.
func hasKeys(m, want map[string]string) bool {
	for k, v := range want {
		if w, ok := m[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func intPtrEqual(a, b *int) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
