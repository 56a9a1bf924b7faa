package ovsdb

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

// A monitor reply in the wire form, with each shape a column can take: a set of one
// written as its atom, empty optionals and maps, a UUID set.
const sampleReply = `{
 "Open_vSwitch": {"r1": {"new": {"bridges": ["uuid", "b1"]}}},
 "Bridge": {"b1": {"new": {"name": "br-tun", "datapath_type": "netdev", "datapath_id": ["set", []],
   "fail_mode": "secure", "protocols": ["set", ["OpenFlow13", "OpenFlow15"]],
   "ports": ["set", [["uuid", "p1"], ["uuid", "p2"]]],
   "other_config": ["map", [["datapath-id", "0000000000000002"]]], "external_ids": ["map", []]}}},
 "Port": {"p1": {"new": {"name": "vxlan-0a000002", "interfaces": ["uuid", "i1"], "tag": 5,
   "other_config": ["map", []], "external_ids": ["map", [["k", "v"]]]}},
   "p2": {"new": {"name": "x", "interfaces": ["set", []], "tag": ["set", []],
   "other_config": ["map", []], "external_ids": ["map", []]}}},
 "Interface": {"i1": {"new": {"name": "vxlan-0a000002", "type": "vxlan",
   "options": ["map", [["remote_ip", "10.0.0.2"], ["key", "flow"]]], "ofport": 4097,
   "ofport_request": ["set", []], "error": ["set", []], "external_ids": ["map", []]}}}
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

	// A delete and a modify in one update: one more event.
	var up tableUpdates
	if err := json.Unmarshal([]byte(`{"Port": {"p2": {"old": {"name": "x"}}},
		"Interface": {"i1": {"old": {"ofport": 4097}, "new": {"name": "vxlan-0a000002", "type": "vxlan",
		"options": ["map", []], "ofport": -1, "ofport_request": 4097, "error": "could not add", "external_ids": ["map", []]}}}}`), &up); err != nil {
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
	if got, want := m.rows.ifaces["i1"], (&iface{UUID: "i1", Name: "vxlan-0a000002", Type: "vxlan", Ofport: ptr(-1),
		OfportRequest: ptr(4097), Error: ptr("could not add")}); !reflect.DeepEqual(got, want) {
		t.Errorf("modified interface %+v, want %+v", *got, *want)
	}
}

// A value of the wrong shape is refused with the table, row and column named, and a
// bad initial load leaves the cache as it was.
func TestApplyNamesBadColumn(t *testing.T) {
	const (
		br  = `"name": "a", "datapath_type": "", "datapath_id": ["set", []], "fail_mode": ["set", []], "protocols": ["set", []], "other_config": ["map", []], "external_ids": ["map", []]`
		pt  = `"name": "a", "interfaces": ["set", []], "other_config": ["map", []], "external_ids": ["map", []]`
		ifc = `"name": "a", "type": "", "ofport_request": ["set", []], "error": ["set", []], "external_ids": ["map", []]`
	)
	for _, tc := range []struct{ reply, want string }{
		{`{"Port": {"p1": {"new": {` + pt + `, "tag": "five"}}}}`, "table Port, row p1: column tag: unexpected value five"},
		{`{"Interface": {"i1": {"new": {` + ifc + `, "ofport": 1, "options": ["set", []]}}}}`, "table Interface, row i1: column options"},
		{`{"Bridge": {"b1": {"new": {` + br + `, "ports": ["set", [1]]}}}}`, "table Bridge, row b1: column ports"},
		{`{"Interface": {"i1": {"new": {` + ifc + `, "options": ["map", []], "ofport": ["set", [1, 2]]}}}}`, "table Interface, row i1: column ofport"},
		{`{"Interface": {"i1": {"new": {` + ifc + `, "options": ["map", []]}}}}`, "table Interface, row i1: column ofport: missing"},
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
