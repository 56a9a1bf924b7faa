package ovsdb

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A monitor_cond reply in the wire form, with each shape a column can take: a set
// of one written as its atom, columns at their defaults left out or sent empty,
// maps, UUID sets.
const sampleReply = `{
 "Open_vSwitch": {"r1": {"initial": {"bridges": ["uuid", "b1"]}}},
 "Bridge": {"b1": {"initial": {"name": "br-tun", "datapath_type": "netdev", "datapath_id": ["set", []],
   "fail_mode": "secure", "protocols": ["set", ["OpenFlow13", "OpenFlow15"]],
   "ports": ["set", [["uuid", "p1"], ["uuid", "p2"]]],
   "other_config": ["map", [["datapath-id", "0000000000000002"]]], "external_ids": ["map", []]}}},
 "Port": {"p1": {"initial": {"name": "vxlan-0a000002", "interfaces": ["uuid", "i1"], "tag": 5,
   "external_ids": ["map", [["k", "v"]]]}},
   "p2": {"initial": {"name": "x"}}},
 "Interface": {"i1": {"initial": {"name": "vxlan-0a000002", "type": "vxlan",
   "options": ["map", [["remote_ip", "10.0.0.2"], ["key", "flow"]]], "ofport": 4097}}}
}`

func TestApplyConvertsAndNotifiesOnce(t *testing.T) {
	var tu tableUpdates
	if err := json.Unmarshal([]byte(sampleReply), &tu); err != nil {
		t.Fatal(err)
	}
	events := 0
	m := &monitor{log: slog.Default(), onChange: func() { events++ }, rows: newRowCache()}
	if err := m.apply(&tu, true); err != nil {
		t.Fatal(err)
	}
	// One event for the whole load, however many rows: a reader of Changes() wakes
	// once, not once per row.
	if events != 1 {
		t.Fatalf("%d change events for one load, want 1", events)
	}
	want := rowCache{
		roots: map[string]*openvSwitch{"r1": {UUID: "r1", Bridges: []string{"b1"}}},
		bridges: map[string]*bridge{"b1": {UUID: "b1", Name: "br-tun", DatapathType: "netdev", FailMode: ptr("secure"),
			Protocols: []string{"OpenFlow13", "OpenFlow15"}, Ports: []string{"p1", "p2"},
			OtherConfig: map[string]string{"datapath-id": "0000000000000002"}}},
		ports: map[string]*port{
			"p1": {UUID: "p1", Name: "vxlan-0a000002", Interfaces: []string{"i1"}, Tag: ptr(5), ExternalIDs: map[string]string{"k": "v"}},
			"p2": {UUID: "p2", Name: "x"},
		},
		ifaces: map[string]*iface{"i1": {UUID: "i1", Name: "vxlan-0a000002", Type: "vxlan",
			Options: map[string]string{"remote_ip": "10.0.0.2", "key": "flow"}, Ofport: ptr(4097)}},
	}
	if d := diffRows(m.rows, want); d != "" {
		t.Fatalf("converted rows differ from the expected ones:\n%s", d)
	}
	before := m.rows.ifaces["i1"]

	// A delete and modifications in one update: one more event. A modification
	// carries differences: a set's elements to toggle, a map's pairs to add, change
	// or (same value) remove, the new value of a scalar or optional column.
	var up tableUpdates
	if err := json.Unmarshal([]byte(`{"Port": {"p2": {"delete": null}},
		"Bridge": {"b1": {"modify": {"ports": ["uuid", "p2"], "protocols": ["set", ["OpenFlow10", "OpenFlow15"]],
			"datapath_id": "0000000000000002", "fail_mode": ["set", []]}}},
		"Interface": {"i1": {"modify": {"options": ["map", [["key", "flow"], ["remote_ip", "10.0.0.3"], ["csum", "true"]]],
			"ofport": -1, "ofport_request": 4097, "error": "could not add", "type": ""}}}}`), &up); err != nil {
		t.Fatal(err)
	}
	if err := m.apply(&up, false); err != nil {
		t.Fatal(err)
	}
	if events != 2 {
		t.Fatalf("%d change events after one update, want 2", events)
	}
	if _, ok := m.rows.ports["p2"]; ok {
		t.Error("deleted port still cached")
	}
	if got, want := m.rows.ifaces["i1"], (&iface{UUID: "i1", Name: "vxlan-0a000002", Type: "", Ofport: ptr(-1),
		Options:       map[string]string{"remote_ip": "10.0.0.3", "csum": "true"},
		OfportRequest: ptr(4097), Error: ptr("could not add")}); !reflect.DeepEqual(got, want) {
		t.Errorf("modified interface %+v, want %+v", *got, *want)
	}
	if got, want := m.rows.bridges["b1"], (&bridge{UUID: "b1", Name: "br-tun", DatapathType: "netdev",
		DatapathID: ptr("0000000000000002"), Protocols: []string{"OpenFlow13", "OpenFlow10"}, Ports: []string{"p1"},
		OtherConfig: map[string]string{"datapath-id": "0000000000000002"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("modified bridge %+v, want %+v", *got, *want)
	}
	// Rows are replaced, never edited: a snapshot holding the old one keeps it.
	if before.Ofport == nil || *before.Ofport != 4097 || before.Options["remote_ip"] != "10.0.0.2" {
		t.Errorf("the old row was edited in place: %+v", *before)
	}
}

// A value of the wrong shape is refused with the table, row and column named, and a
// bad initial load leaves the cache as it was.
func TestApplyNamesBadColumn(t *testing.T) {
	for _, tc := range []struct{ reply, want string }{
		{`{"Port": {"p1": {"initial": {"name": "a", "tag": "five"}}}}`, "table Port, row p1: column tag: unexpected value five"},
		{`{"Interface": {"i1": {"initial": {"name": "a", "options": ["set", []]}}}}`, "table Interface, row i1: column options"},
		{`{"Bridge": {"b1": {"initial": {"name": "a", "ports": ["set", [1]]}}}}`, "table Bridge, row b1: column ports"},
		{`{"Interface": {"i1": {"initial": {"name": "a", "ofport": ["set", [1, 2]]}}}}`, "table Interface, row i1: column ofport"},
		{`{"Interface": {"i1": {"modify": {"ofport": 3}}}}`, "table Interface, row i1: modification of a row not in the cache"},
		{`{"Interface": {"i1": {}}}`, "table Interface, row i1: row update with neither"},
	} {
		var tu tableUpdates
		if err := json.Unmarshal([]byte(tc.reply), &tu); err != nil {
			t.Fatal(err)
		}
		m := &monitor{onChange: func() { t.Error("change event for a refused load") }, rows: newRowCache()}
		m.rows.ports["keep"] = &port{UUID: "keep"}
		err := m.apply(&tu, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.reply, err, tc.want)
		}
		if m.rows.ports["keep"] == nil {
			t.Errorf("%s: a refused load replaced the cache", tc.reply)
		}
	}
}

func TestConnectBadEndpoint(t *testing.T) {
	for _, ep := range []string{"", "ssl:127.0.0.1:6640", "unix:", "/var/run/openvswitch/db.sock"} {
		_, err := Connect(context.Background(), ep)
		if err == nil || !strings.Contains(err.Error(), "want unix:<path> or tcp:<host>:<port>") {
			t.Errorf("Connect(%q): %v", ep, err)
		}
	}
}

// fakeServer accepts one connection per serve on a unix socket, in turn, and hands
// each to its serve.
func fakeServer(t *testing.T, serves ...func(conn net.Conn, dec *json.Decoder, enc *json.Encoder)) string {
	t.Helper()
	sock := t.TempDir() + "/db.sock"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for _, serve := range serves {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			serve(conn, json.NewDecoder(conn), json.NewEncoder(conn))
			conn.Close()
		}
	}()
	return "unix:" + sock
}

// loadedMonitor starts a monitor on ep and waits for its first load.
func loadedMonitor(t *testing.T, ep string, changed func()) (*monitor, context.Context) {
	t.Helper()
	m, err := startMonitor(ep, slog.Default(), changed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if err := m.wait(ctx); err != nil {
		t.Fatal(err)
	}
	return m, ctx
}

// The protocol around the rows: the monitor_cond request, the server's echo probe
// answered with its own params, update2 notifications, one change event each.
func TestMonitorProtocol(t *testing.T) {
	echoed := make(chan map[string]any, 1)
	ep := fakeServer(t, func(_ net.Conn, dec *json.Decoder, enc *json.Encoder) {
		var req map[string]any
		if err := dec.Decode(&req); err != nil {
			t.Errorf("request: %v", err)
			return
		}
		params, _ := req["params"].([]any)
		if req["method"] != "monitor_cond" || len(params) != 3 || params[0] != "Open_vSwitch" {
			t.Errorf("request %v, want monitor_cond of Open_vSwitch", req)
			return
		}
		_ = enc.Encode(map[string]any{"id": req["id"], "error": nil,
			"result": json.RawMessage(`{"Port": {"p1": {"initial": {"name": "a"}}}}`)})
		_ = enc.Encode(map[string]any{"id": "e1", "method": "echo", "params": []any{"x"}})
		var reply map[string]any
		if err := dec.Decode(&reply); err != nil {
			t.Errorf("echo reply: %v", err)
			return
		}
		echoed <- reply
		_ = enc.Encode(map[string]any{"id": nil, "method": "update2",
			"params": []any{"lanes", json.RawMessage(`{"Port": {"p1": {"modify": {"tag": 7}}}}`)}})
		_ = dec.Decode(&reply) // until the client hangs up
	})
	events := make(chan struct{}, 10)
	m, ctx := loadedMonitor(t, ep, func() { events <- struct{}{} })
	if !m.up.Load() || m.copyRows().ports["p1"] == nil {
		t.Fatal("loaded, but not up or without the row")
	}
	select {
	case r := <-echoed:
		if r["id"] != "e1" || !reflect.DeepEqual(r["result"], []any{"x"}) {
			t.Errorf("echo reply %v", r)
		}
	case <-ctx.Done():
		t.Fatal("no echo reply")
	}
	for range 2 { // the load, then the update
		select {
		case <-events:
		case <-ctx.Done():
			t.Fatal("missing change event")
		}
	}
	p := m.copyRows().ports["p1"]
	if p.Tag == nil || *p.Tag != 7 || p.Name != "a" {
		t.Fatalf("after update2: %+v", *p)
	}
}

// A server that refuses the monitor fails Connect's wait with its error rather
// than retrying for ever.
func TestMonitorRefused(t *testing.T) {
	ep := fakeServer(t, func(_ net.Conn, dec *json.Decoder, enc *json.Encoder) {
		var req map[string]any
		if err := dec.Decode(&req); err != nil {
			return
		}
		_ = enc.Encode(map[string]any{"id": req["id"], "result": nil,
			"error": "syntax error", "details": "no such column"})
	})
	m, err := startMonitor(ep, slog.Default(), func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.wait(ctx); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("wait: %v, want the server's error", err)
	}
}

// A stream that breaks mid-message (corrupted, truncated, or an update whose values
// do not fit their columns) ends the session: the monitor hangs up itself where it
// can tell (the server here keeps the connection open), reconnects, and the new
// connection's initial load replaces the whole cache, so nothing half-applied from
// the broken message stays.
func TestMonitorBrokenStream(t *testing.T) {
	for _, c := range []struct {
		name   string
		broken string // written raw after the first load
		close  bool   // then the server hangs up: the client cannot tell the message is cut
	}{
		{"corrupted", `{"id": null, "method": "update2", "params": ["lanes", {"Port": {"p1": {"modify": {"tag": 7}}}]]]}` + "\n", false},
		{"truncated", `{"id": null, "method": "update2", "params": ["lanes", {"Port": {"p1": {"modify": {"ta`, true},
		{"bad column value", `{"id": null, "method": "update2", "params": ["lanes", {"Port": {"p3": {"insert": {"name": "c"}}, "p1": {"modify": {"tag": "seven"}}}}]}` + "\n", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Each connection gets its initial load; the first then the broken message.
			serve := func(load string, broken bool) func(net.Conn, *json.Decoder, *json.Encoder) {
				return func(conn net.Conn, dec *json.Decoder, enc *json.Encoder) {
					var req map[string]any
					if err := dec.Decode(&req); err != nil {
						return
					}
					_ = enc.Encode(map[string]any{"id": req["id"], "error": nil, "result": json.RawMessage(load)})
					if broken {
						_, _ = conn.Write([]byte(c.broken))
						if c.close {
							return
						}
					}
					_, _ = io.Copy(io.Discard, conn) // until the client hangs up
				}
			}
			ep := fakeServer(t, serve(`{"Port": {"p1": {"initial": {"name": "a"}}}}`, true),
				serve(`{"Port": {"p2": {"initial": {"name": "b"}}}}`, false))
			m, ctx := loadedMonitor(t, ep, func() {})
			for m.loads.Load() < 2 || !m.up.Load() {
				if ctx.Err() != nil {
					t.Fatalf("no second load after the broken stream (loads %d)", m.loads.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
			rows := m.copyRows().ports
			if len(rows) != 1 || rows["p2"] == nil || rows["p2"].Name != "b" {
				t.Fatalf("ports after reconnecting: %v, want only the second load's p2", rows)
			}
		})
	}
}
