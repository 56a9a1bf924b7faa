package controller

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/diag"
	"github.com/lanes-net/lanes/store"
)

// Every change between two reconciles is one info line naming the object by name and
// ID; a reconcile that changes nothing logs nothing.
func TestLogChanges(t *testing.T) {
	st := func(ports map[string]*api.Port, rules int) store.State {
		g := api.SecurityGroup{ID: "g1", Name: "web"}
		for i := 0; i < rules; i++ {
			g.Rules = append(g.Rules, api.Rule{ID: string(rune('a' + i)), Direction: api.Ingress, Ethertype: api.IPv4})
		}
		g.Rules[0].RemoteGroupID = "g1" // members of web admitted: an ipset of web's members

		return store.State{Revision: 1,
			Networks: map[string]api.Network{"n1": {ID: "n1", Name: "blue", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450}},
			Hosts:    map[string]api.Host{"h2": {Name: "h2", TunnelIP: "172.31.0.2", TunnelType: "vxlan", Alive: true}},
			Groups:   map[string]api.SecurityGroup{"g1": g},
			Ports:    ports,
		}
	}
	p1 := api.Port{ID: "p1", Name: "vm1", NetworkID: "n1", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}, SecurityGroups: []string{"g1"}}
	p2 := api.Port{ID: "p2", Name: "vm2", NetworkID: "n1", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2"}}
	empty := &diag.Snapshot{View: view.Compute("h1", st(nil, 1))}
	one := &diag.Snapshot{View: view.Compute("h1", st(map[string]*api.Port{"p1": &p1, "p2": &p2}, 1)),
		Ofports: map[string]int{"p1": 7}, VLANs: map[string]uint16{"n1": 1},
		Tunnels: map[string]diag.Tunnel{"vxlan-ac1f0002": {Name: "vxlan-ac1f0002", Type: "vxlan", RemoteIP: "172.31.0.2", Ofport: 3}}}
	changed := &diag.Snapshot{View: view.Compute("h1", st(map[string]*api.Port{"p1": &p1, "p2": &p2}, 2)),
		Ofports: one.Ofports, VLANs: one.VLANs, Tunnels: one.Tunnels}

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}
	logChanges(log, nil, one)
	if got := lines(); len(got) != 0 {
		t.Errorf("first snapshot logged %v", got)
	}
	logChanges(log, empty, one)
	got := lines()
	want := []string{"network joined", "port wired", "tunnel added", "security group applied"}
	if len(got) != len(want) {
		t.Fatalf("lines %v, want %v", got, want)
	}
	for i, w := range want {
		if got[i]["msg"] != w || got[i]["level"] != "INFO" {
			t.Errorf("line %d: %v, want %q", i, got[i], w)
		}
	}
	if l := got[1]; l["port"] != "vm1" || l["port_id"] != "p1" || l["network"] != "blue" || l["tap"] != api.TapName("p1") || l["ofport"] != 7.0 {
		t.Errorf("port wired: %v", l)
	}
	if l := got[2]; l["peer"] != "h2" || l["remote_ip"] != "172.31.0.2" || l["tunnel"] != "vxlan-ac1f0002" {
		t.Errorf("tunnel added: %v", l)
	}
	logChanges(log, one, one)
	if got := lines(); len(got) != 0 {
		t.Errorf("no change logged %v", got)
	}
	logChanges(log, one, changed)
	if got := lines(); len(got) != 1 || got[0]["msg"] != "security group changed" || got[0]["group"] != "web" || got[0]["rules"] != 2.0 {
		t.Errorf("group change: %v", got)
	}
	msgs := func(got []map[string]any) string {
		var out []string
		for _, l := range got {
			out = append(out, l["msg"].(string))
		}
		return strings.Join(out, ",")
	}
	// A new address of a wired port: the port and the group it is a member of.
	readdressed := p1
	readdressed.FixedIPs = []string{"10.0.0.5"}
	moved := &diag.Snapshot{View: view.Compute("h1", st(map[string]*api.Port{"p1": &readdressed, "p2": &p2}, 2)),
		Ofports: one.Ofports, VLANs: one.VLANs, Tunnels: one.Tunnels}
	logChanges(log, changed, moved)
	got = lines()
	if msgs(got) != "port updated,security group members changed" || got[0]["changed"] != "fixed_ips" || got[0]["port"] != "vm1" ||
		got[1]["group"] != "web" || got[1]["members"] != 1.0 {
		t.Errorf("readdressed port: %v", got)
	}
	ungrouped := readdressed
	ungrouped.SecurityGroups = nil
	bare := &diag.Snapshot{View: view.Compute("h1", st(map[string]*api.Port{"p1": &ungrouped, "p2": &p2}, 2)),
		Ofports: one.Ofports, VLANs: one.VLANs, Tunnels: one.Tunnels}
	logChanges(log, moved, bare)
	got = lines()
	if msgs(got) != "port updated,security group released" || got[0]["changed"] != "security_groups" || got[1]["group_id"] != "g1" {
		t.Errorf("group left: %v", got)
	}
	logChanges(log, changed, empty)
	got = lines()
	if msgs(got) != "port unwired,network left,tunnel removed,security group released" {
		t.Errorf("removal lines: %v", got)
	}
}
