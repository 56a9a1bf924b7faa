package ovsdb

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// The cache is lanes' own monitor connection, not libovsdb's: at 1000 tunnel ports
// libovsdb's monitor spent about 130 ms of CPU per Connect on decoding (each column
// value is decoded, marshalled again and decoded again) and on reflection per row,
// five times what a plain decode costs, and it could only start after the schema
// handshake. Here the monitor request goes out at once, next to libovsdb's handshake,
// and rows are decoded straight into the model types. libovsdb stays for building
// and sending transactions, which need no cache.

// monitorColumns are the columns lanes follows. Only these: without a list the
// server sends every column, including Interface statistics rewritten every few
// seconds. They match the model in model.go.
var monitorColumns = map[string][]string{
	tableOpenvSwitch: {"bridges"},
	tableBridge:      {"name", "datapath_type", "datapath_id", "fail_mode", "protocols", "ports", "other_config", "external_ids"},
	tablePort:        {"name", "interfaces", "tag", "other_config", "external_ids"},
	tableInterface:   {"name", "type", "options", "ofport", "ofport_request", "error", "external_ids"},
}

// rowCache holds the monitored rows by UUID. Rows are never modified once stored:
// an update replaces the row, so snapshots may share them.
type rowCache struct {
	roots   map[string]*openvSwitch
	bridges map[string]*bridge
	ports   map[string]*port
	ifaces  map[string]*iface
}

func newRowCache() rowCache {
	return rowCache{roots: map[string]*openvSwitch{}, bridges: map[string]*bridge{},
		ports: map[string]*port{}, ifaces: map[string]*iface{}}
}

// monitor keeps rowCache equal to the server's tables over its own connection,
// reconnecting (and loading everything again) for as long as it lives.
type monitor struct {
	network, addr string
	log           *slog.Logger
	onChange      func() // called after each applied update, outside mu

	mu   sync.Mutex
	rows rowCache

	up     atomic.Bool
	loaded chan struct{} // closed after the first complete load
	failed chan error    // the first session's error, if it ends before loading

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	connMu sync.Mutex
	conn   net.Conn
}

// splitEndpoint turns "unix:<path>" or "tcp:<host>:<port>" into a dialer's network
// and address.
func splitEndpoint(endpoint string) (string, string, error) {
	network, addr, ok := strings.Cut(endpoint, ":")
	if !ok || addr == "" || (network != "unix" && network != "tcp") {
		return "", "", fmt.Errorf("endpoint %q: want unix:<path> or tcp:<host>:<port>", endpoint)
	}
	return network, addr, nil
}

func startMonitor(endpoint string, log *slog.Logger, onChange func()) (*monitor, error) {
	network, addr, err := splitEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitor{network: network, addr: addr, log: log, onChange: onChange, rows: newRowCache(),
		loaded: make(chan struct{}), failed: make(chan error, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	go m.run()
	return m, nil
}

// wait returns once the first load is in the cache.
func (m *monitor) wait(ctx context.Context) error {
	select {
	case <-m.loaded:
		return nil
	case err := <-m.failed:
		return err
	case <-ctx.Done():
		return fmt.Errorf("initial load: %w", ctx.Err())
	}
}

func (m *monitor) close() {
	m.cancel()
	m.connMu.Lock()
	if m.conn != nil {
		m.conn.Close()
	}
	m.connMu.Unlock()
	<-m.done
}

func (m *monitor) run() {
	defer close(m.done)
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 2 * time.Second
	bo.MaxElapsedTime = 0
	first := true
	for {
		err := m.session(bo)
		m.up.Store(false)
		if m.ctx.Err() != nil {
			return
		}
		if first {
			select {
			case <-m.loaded:
			default:
				// Connect reports it; a client that never loaded does not retry.
				m.failed <- err
				return
			}
			first = false
		}
		d := bo.NextBackOff()
		m.log.Warn("ovsdb monitor connection lost, reconnecting", "err", err, "retry_in", d)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// monitorID is the id of the monitor request and the monitor's name on the server.
const monitorID = "lanes"

type rpcMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	// Only the monitor request is ever sent on this connection, so every reply's
	// result is table-updates: decoding it in place spares a second pass over the
	// initial load.
	Result *tableUpdates   `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// session runs one connection: the monitor request, its initial rows, then updates
// until the connection fails or the monitor is closed.
func (m *monitor) session(bo backoff.BackOff) error {
	var d net.Dialer
	conn, err := d.DialContext(m.ctx, m.network, m.addr)
	if err != nil {
		return fmt.Errorf("dial %s:%s: %w", m.network, m.addr, err)
	}
	m.connMu.Lock()
	m.conn = conn
	m.connMu.Unlock()
	defer conn.Close()
	if m.ctx.Err() != nil { // closed while dialling
		return m.ctx.Err()
	}
	reqs := make(map[string]any, len(monitorColumns))
	for t, cols := range monitorColumns {
		reqs[t] = map[string]any{"columns": cols}
	}
	req := map[string]any{"id": monitorID, "method": "monitor", "params": []any{"Open_vSwitch", monitorID, reqs}}
	enc := json.NewEncoder(conn)
	if err := enc.Encode(req); err != nil {
		return fmt.Errorf("monitor request: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReaderSize(conn, 256<<10))
	for {
		var msg rpcMessage
		if err := dec.Decode(&msg); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		switch {
		case msg.Method == "echo":
			// The server's inactivity probe (tcp remotes): answer with its params.
			if err := enc.Encode(map[string]any{"id": msg.ID, "result": msg.Params, "error": nil}); err != nil {
				return fmt.Errorf("echo reply: %w", err)
			}
		case msg.Method == "update":
			var params []json.RawMessage
			if err := json.Unmarshal(msg.Params, &params); err != nil || len(params) != 2 {
				return fmt.Errorf("update notification: malformed params (%v)", err)
			}
			var tu tableUpdates
			if err := json.Unmarshal(params[1], &tu); err != nil {
				return fmt.Errorf("update notification: %w", err)
			}
			if err := m.apply(&tu, false); err != nil {
				return err
			}
		case msg.Method != "":
			m.log.Debug("ovsdb monitor: ignoring request", "method", msg.Method)
		case len(msg.Error) > 0 && string(msg.Error) != "null":
			return fmt.Errorf("monitor: server error %s", msg.Error)
		case string(msg.ID) == `"`+monitorID+`"`:
			if msg.Result == nil {
				return errors.New("monitor: reply without result")
			}
			if err := m.apply(msg.Result, true); err != nil {
				return err
			}
			m.up.Store(true)
			bo.Reset()
			select {
			case <-m.loaded:
			default:
				close(m.loaded)
			}
		}
	}
}

// apply puts an update into the cache and makes one change event. The initial load
// replaces the whole cache, so rows deleted while the connection was down go too. A
// malformed update ends the session: the load after reconnecting replaces whatever
// part of it was applied.
func (m *monitor) apply(tu *tableUpdates, initial bool) error {
	m.mu.Lock()
	var next rowCache
	if initial {
		next = newRowCache()
	} else {
		next = m.rows // maps shared: edited below under mu
	}
	err := tu.applyTo(&next)
	if err == nil || !initial {
		m.rows = next
	}
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.onChange()
	return nil
}

// tableUpdates is the <table-updates> of a monitor reply or update notification.
// Rows are keyed by UUID; "new" is absent for a delete and otherwise holds every
// monitored column (the monitor protocol sends whole rows, "old" only the changed
// columns, which lanes does not need).
type tableUpdates struct {
	OpenvSwitch map[string]rowUpdate[openvSwitchRow] `json:"Open_vSwitch"`
	Bridge      map[string]rowUpdate[bridgeRow]      `json:"Bridge"`
	Port        map[string]rowUpdate[portRow]        `json:"Port"`
	Interface   map[string]rowUpdate[ifaceRow]       `json:"Interface"`
}

type rowUpdate[T any] struct {
	New *T `json:"new"`
}

// The wire forms of the rows: scalar strings decode directly, sets and maps in
// OVSDB's JSON notation (["set", [...]], ["map", [[k, v], ...]], ["uuid", "..."])
// are decoded generically and converted by the functions below.
type openvSwitchRow struct {
	Bridges any `json:"bridges"`
}

type bridgeRow struct {
	Name         string `json:"name"`
	DatapathType string `json:"datapath_type"`
	DatapathID   any    `json:"datapath_id"`
	FailMode     any    `json:"fail_mode"`
	Protocols    any    `json:"protocols"`
	Ports        any    `json:"ports"`
	OtherConfig  any    `json:"other_config"`
	ExternalIDs  any    `json:"external_ids"`
}

type portRow struct {
	Name        string `json:"name"`
	Interfaces  any    `json:"interfaces"`
	Tag         any    `json:"tag"`
	OtherConfig any    `json:"other_config"`
	ExternalIDs any    `json:"external_ids"`
}

type ifaceRow struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Options       any    `json:"options"`
	Ofport        any    `json:"ofport"`
	OfportRequest any    `json:"ofport_request"`
	Error         any    `json:"error"`
	ExternalIDs   any    `json:"external_ids"`
}

func (tu *tableUpdates) applyTo(rc *rowCache) error {
	var errs []error
	for id, u := range tu.OpenvSwitch {
		if u.New == nil {
			delete(rc.roots, id)
			continue
		}
		var cv conv
		r := &openvSwitch{UUID: id, Bridges: cv.strSet(u.New.Bridges, "bridges")}
		if cv.err != nil {
			errs = append(errs, fmt.Errorf("table Open_vSwitch, row %s: %w", id, cv.err))
			continue
		}
		rc.roots[id] = r
	}
	for id, u := range tu.Bridge {
		if u.New == nil {
			delete(rc.bridges, id)
			continue
		}
		w := u.New
		var cv conv
		r := &bridge{UUID: id, Name: w.Name, DatapathType: w.DatapathType,
			DatapathID: cv.optString(w.DatapathID, "datapath_id"), FailMode: cv.optString(w.FailMode, "fail_mode"),
			Protocols: cv.strSet(w.Protocols, "protocols"), Ports: cv.strSet(w.Ports, "ports"),
			OtherConfig: cv.strMap(w.OtherConfig, "other_config"), ExternalIDs: cv.strMap(w.ExternalIDs, "external_ids")}
		if cv.err != nil {
			errs = append(errs, fmt.Errorf("table Bridge, row %s: %w", id, cv.err))
			continue
		}
		rc.bridges[id] = r
	}
	for id, u := range tu.Port {
		if u.New == nil {
			delete(rc.ports, id)
			continue
		}
		w := u.New
		var cv conv
		r := &port{UUID: id, Name: w.Name, Interfaces: cv.strSet(w.Interfaces, "interfaces"), Tag: cv.optInt(w.Tag, "tag"),
			OtherConfig: cv.strMap(w.OtherConfig, "other_config"), ExternalIDs: cv.strMap(w.ExternalIDs, "external_ids")}
		if cv.err != nil {
			errs = append(errs, fmt.Errorf("table Port, row %s: %w", id, cv.err))
			continue
		}
		rc.ports[id] = r
	}
	for id, u := range tu.Interface {
		if u.New == nil {
			delete(rc.ifaces, id)
			continue
		}
		w := u.New
		var cv conv
		r := &iface{UUID: id, Name: w.Name, Type: w.Type, Options: cv.strMap(w.Options, "options"),
			Ofport: cv.optInt(w.Ofport, "ofport"), OfportRequest: cv.optInt(w.OfportRequest, "ofport_request"),
			Error: cv.optString(w.Error, "error"), ExternalIDs: cv.strMap(w.ExternalIDs, "external_ids")}
		if cv.err != nil {
			errs = append(errs, fmt.Errorf("table Interface, row %s: %w", id, cv.err))
			continue
		}
		rc.ifaces[id] = r
	}
	if len(errs) > 0 {
		return fmt.Errorf("monitor update: %w", errors.Join(errs...))
	}
	return nil
}

// conv converts generically decoded OVSDB values, keeping the first error (which
// names the column). Empty sets and maps come out nil, as libovsdb made them.
type conv struct{ err error }

func (c *conv) fail(col string, v any) {
	switch {
	case c.err != nil:
	case v == nil: // the monitor sends every column of a row it sends
		c.err = fmt.Errorf("column %s: missing", col)
	default:
		c.err = fmt.Errorf("column %s: unexpected value %v", col, v)
	}
}

// elems returns a set's elements: an atom is a set of one.
func (c *conv) elems(v any, col string) []any {
	if a, ok := v.([]any); ok && len(a) == 2 && a[0] == "set" {
		es, ok := a[1].([]any)
		if !ok {
			c.fail(col, v)
		}
		return es
	}
	return []any{v}
}

// atomString reads a string or UUID atom.
func (c *conv) atomString(v any, col string) string {
	switch a := v.(type) {
	case string:
		return a
	case []any:
		if len(a) == 2 && (a[0] == "uuid" || a[0] == "named-uuid") {
			if s, ok := a[1].(string); ok {
				return s
			}
		}
	}
	c.fail(col, v)
	return ""
}

func (c *conv) atomInt(v any, col string) int {
	f, ok := v.(float64)
	if !ok || f != float64(int(f)) {
		c.fail(col, v)
	}
	return int(f)
}

func (c *conv) strSet(v any, col string) []string {
	es := c.elems(v, col)
	if len(es) == 0 {
		return nil
	}
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, c.atomString(e, col))
	}
	return out
}

func (c *conv) optString(v any, col string) *string {
	es := c.elems(v, col)
	if len(es) == 0 {
		return nil
	}
	if len(es) > 1 {
		c.fail(col, v)
	}
	s := c.atomString(es[0], col)
	return &s
}

func (c *conv) optInt(v any, col string) *int {
	es := c.elems(v, col)
	if len(es) == 0 {
		return nil
	}
	if len(es) > 1 {
		c.fail(col, v)
	}
	n := c.atomInt(es[0], col)
	return &n
}

func (c *conv) strMap(v any, col string) map[string]string {
	a, ok := v.([]any)
	if !ok || len(a) != 2 || a[0] != "map" {
		c.fail(col, v)
		return map[string]string{}
	}
	pairs, ok := a[1].([]any)
	if !ok {
		c.fail(col, v)
		return map[string]string{}
	}
	if len(pairs) == 0 {
		return nil
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		kv, ok := p.([]any)
		if !ok || len(kv) != 2 {
			c.fail(col, v)
			continue
		}
		out[c.atomString(kv[0], col)] = c.atomString(kv[1], col)
	}
	return out
}
