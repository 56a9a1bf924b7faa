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
// and sending transactions, which need no cache. Updates and transaction replies
// now travel on different connections, so a reply can overtake the update of what
// it did: every write waits until the cache shows its effect (awaitCache).

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
	loads  atomic.Uint64 // complete loads: one per connection
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
	// result is table-updates2: decoding it in place spares a second pass over the
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
		reqs[t] = []any{map[string]any{"columns": cols}}
	}
	// monitor_cond (update2) rather than monitor: its rows leave out columns at
	// their defaults and its modifications carry only the changes, so the initial
	// load is a fifth smaller and costs the server less (about 60 against 77 ms of
	// its CPU at 1000 tunnels).
	req := map[string]any{"id": monitorID, "method": "monitor_cond", "params": []any{"Open_vSwitch", monitorID, reqs}}
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
		case msg.Method == "update2":
			var params []json.RawMessage
			if err := json.Unmarshal(msg.Params, &params); err != nil || len(params) != 2 {
				return fmt.Errorf("update2 notification: malformed params (%v)", err)
			}
			var tu tableUpdates
			if err := json.Unmarshal(params[1], &tu); err != nil {
				return fmt.Errorf("update2 notification: %w", err)
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
			m.loads.Add(1)
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

// tableUpdates is the <table-updates2> of a monitor_cond reply or update2
// notification, rows keyed by UUID.
type tableUpdates struct {
	OpenvSwitch map[string]rowUpdate[openvSwitchRow] `json:"Open_vSwitch"`
	Bridge      map[string]rowUpdate[bridgeRow]      `json:"Bridge"`
	Port        map[string]rowUpdate[portRow]        `json:"Port"`
	Interface   map[string]rowUpdate[ifaceRow]       `json:"Interface"`
}

// rowUpdate is one <row-update2>: "initial" and "insert" hold the row's columns
// that are not at their defaults, "modify" the changed columns as differences
// (below), "delete" is null.
type rowUpdate[T any] struct {
	Initial *T              `json:"initial"`
	Insert  *T              `json:"insert"`
	Modify  *T              `json:"modify"`
	Delete  json.RawMessage `json:"delete"`
}

// row returns the update's columns and whether they are a modification; nil
// columns mean a delete.
func (u *rowUpdate[T]) row() (*T, bool, error) {
	switch {
	case u.Initial != nil:
		return u.Initial, false, nil
	case u.Insert != nil:
		return u.Insert, false, nil
	case u.Modify != nil:
		return u.Modify, true, nil
	case len(u.Delete) > 0:
		return nil, false, nil
	}
	return nil, false, errors.New("row update with neither initial, insert, modify nor delete")
}

// The wire forms of the rows. A field is nil when its column is absent (at its
// default, or unchanged in a modification). Sets and maps in OVSDB's JSON notation
// (["set", [...]], ["map", [[k, v], ...]], ["uuid", "..."]) are decoded generically
// and converted by conv.
type openvSwitchRow struct {
	Bridges any `json:"bridges"`
}

type bridgeRow struct {
	Name         *string `json:"name"`
	DatapathType *string `json:"datapath_type"`
	DatapathID   any     `json:"datapath_id"`
	FailMode     any     `json:"fail_mode"`
	Protocols    any     `json:"protocols"`
	Ports        any     `json:"ports"`
	OtherConfig  any     `json:"other_config"`
	ExternalIDs  any     `json:"external_ids"`
}

type portRow struct {
	Name        *string `json:"name"`
	Interfaces  any     `json:"interfaces"`
	Tag         any     `json:"tag"`
	OtherConfig any     `json:"other_config"`
	ExternalIDs any     `json:"external_ids"`
}

type ifaceRow struct {
	Name          *string `json:"name"`
	Type          *string `json:"type"`
	Options       any     `json:"options"`
	Ofport        any     `json:"ofport"`
	OfportRequest any     `json:"ofport_request"`
	Error         any     `json:"error"`
	ExternalIDs   any     `json:"external_ids"`
}

// applyTable applies one table's updates to rows. Each new row starts as a copy of
// the old one (zero for an insert), and fill sets its UUID and the update's columns:
// old rows are never edited, snapshots share them.
func applyTable[W, R any](table string, rows map[string]*R, ups map[string]rowUpdate[W],
	fill func(id string, r *R, w *W, modify bool, cv *conv)) []error {
	var errs []error
	for id, u := range ups {
		w, modify, err := u.row()
		if err != nil {
			errs = append(errs, fmt.Errorf("table %s, row %s: %w", table, id, err))
			continue
		}
		if w == nil {
			delete(rows, id)
			continue
		}
		old := rows[id]
		if modify && old == nil {
			errs = append(errs, fmt.Errorf("table %s, row %s: modification of a row not in the cache", table, id))
			continue
		}
		if !modify {
			old = nil
		}
		r := new(R)
		if old != nil {
			*r = *old
		}
		var cv conv
		fill(id, r, w, modify, &cv)
		if cv.err != nil {
			errs = append(errs, fmt.Errorf("table %s, row %s: %w", table, id, cv.err))
			continue
		}
		rows[id] = r
	}
	return errs
}

func (tu *tableUpdates) applyTo(rc *rowCache) error {
	var errs []error
	errs = append(errs, applyTable(tableOpenvSwitch, rc.roots, tu.OpenvSwitch,
		func(id string, r *openvSwitch, w *openvSwitchRow, mod bool, cv *conv) {
			r.UUID = id
			r.Bridges = cv.setCol(r.Bridges, w.Bridges, mod, "bridges")
		})...)
	errs = append(errs, applyTable(tableBridge, rc.bridges, tu.Bridge,
		func(id string, r *bridge, w *bridgeRow, mod bool, cv *conv) {
			r.UUID = id
			scalar(&r.Name, w.Name)
			scalar(&r.DatapathType, w.DatapathType)
			r.DatapathID = cv.optStringCol(r.DatapathID, w.DatapathID, "datapath_id")
			r.FailMode = cv.optStringCol(r.FailMode, w.FailMode, "fail_mode")
			r.Protocols = cv.setCol(r.Protocols, w.Protocols, mod, "protocols")
			r.Ports = cv.setCol(r.Ports, w.Ports, mod, "ports")
			r.OtherConfig = cv.mapCol(r.OtherConfig, w.OtherConfig, mod, "other_config")
			r.ExternalIDs = cv.mapCol(r.ExternalIDs, w.ExternalIDs, mod, "external_ids")
		})...)
	errs = append(errs, applyTable(tablePort, rc.ports, tu.Port,
		func(id string, r *port, w *portRow, mod bool, cv *conv) {
			r.UUID = id
			scalar(&r.Name, w.Name)
			r.Interfaces = cv.setCol(r.Interfaces, w.Interfaces, mod, "interfaces")
			r.Tag = cv.optIntCol(r.Tag, w.Tag, "tag")
			r.OtherConfig = cv.mapCol(r.OtherConfig, w.OtherConfig, mod, "other_config")
			r.ExternalIDs = cv.mapCol(r.ExternalIDs, w.ExternalIDs, mod, "external_ids")
		})...)
	errs = append(errs, applyTable(tableInterface, rc.ifaces, tu.Interface,
		func(id string, r *iface, w *ifaceRow, mod bool, cv *conv) {
			r.UUID = id
			scalar(&r.Name, w.Name)
			scalar(&r.Type, w.Type)
			r.Options = cv.mapCol(r.Options, w.Options, mod, "options")
			r.Ofport = cv.optIntCol(r.Ofport, w.Ofport, "ofport")
			r.OfportRequest = cv.optIntCol(r.OfportRequest, w.OfportRequest, "ofport_request")
			r.Error = cv.optStringCol(r.Error, w.Error, "error")
			r.ExternalIDs = cv.mapCol(r.ExternalIDs, w.ExternalIDs, mod, "external_ids")
		})...)
	if len(errs) > 0 {
		return fmt.Errorf("monitor update: %w", errors.Join(errs...))
	}
	return nil
}

func scalar(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

// setCol is a set column after an update: absent keeps cur; in a modification the
// value is the symmetric difference with the old set, otherwise the set itself.
func (c *conv) setCol(cur []string, v any, modify bool, col string) []string {
	if v == nil {
		return cur
	}
	elems := c.strSet(v, col)
	if !modify {
		return elems
	}
	toggled := make(map[string]bool, len(elems))
	for _, e := range elems {
		toggled[e] = true
	}
	var out []string
	for _, e := range cur {
		if toggled[e] {
			delete(toggled, e)
			continue
		}
		out = append(out, e)
	}
	for _, e := range elems { // in the server's order
		if toggled[e] {
			out = append(out, e)
		}
	}
	return out
}

// mapCol is a map column after an update: absent keeps cur; in a modification each
// pair of the value adds its key, changes its value, or (same value) removes it.
func (c *conv) mapCol(cur map[string]string, v any, modify bool, col string) map[string]string {
	if v == nil {
		return cur
	}
	m := c.strMap(v, col)
	if !modify {
		return m
	}
	out := make(map[string]string, len(cur)+len(m))
	for k, v := range cur {
		out[k] = v
	}
	for k, v := range m {
		if old, ok := out[k]; ok && old == v {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// optStringCol and optIntCol are columns of at most one value; a modification
// carries their new value, as for a scalar.
func (c *conv) optStringCol(cur *string, v any, col string) *string {
	if v == nil {
		return cur
	}
	return c.optString(v, col)
}

func (c *conv) optIntCol(cur *int, v any, col string) *int {
	if v == nil {
		return cur
	}
	return c.optInt(v, col)
}

// conv converts generically decoded OVSDB values, keeping the first error (which
// names the column). Empty sets and maps come out nil, as libovsdb made them.
type conv struct{ err error }

func (c *conv) fail(col string, v any) {
	if c.err == nil {
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
