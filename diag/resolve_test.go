package diag

import (
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/store"
)

func intp(i int) *int { return &i }

// TestResolveVerdicts: trace's firewall verdicts come from hostwire's model, the one
// the kernel agreement test holds to iptables; an echo request is not admitted by a
// rule for echo replies only (type 0), which the old trace-private evaluation got
// wrong.
func TestResolveVerdicts(t *testing.T) {
	st := store.State{
		Revision: 1,
		Networks: map[string]api.Network{"n": {ID: "n", Name: "blue", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450}},
		Hosts:    map[string]api.Host{"h2": {Name: "h2", TunnelIP: "172.31.0.2", Alive: true}},
		Groups: map[string]api.SecurityGroup{
			"out":   {ID: "out", Name: "out", Rules: []api.Rule{{ID: "e", Direction: api.Egress, Ethertype: api.IPv4}}},
			"reply": {ID: "reply", Name: "reply", Rules: []api.Rule{{ID: "r0", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: intp(0)}}},
			"echo":  {ID: "echo", Name: "echo", Rules: []api.Rule{{ID: "r8", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: intp(8)}}},
			"ssh":   {ID: "ssh", Name: "ssh", Rules: []api.Rule{{ID: "s", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22}}},
		},
		Ports: map[string]api.Port{
			"p1": {ID: "p1", Name: "vm1", NetworkID: "n", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}, SecurityGroups: []string{"out"}},
			"p2": {ID: "p2", Name: "vm2", NetworkID: "n", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2"}, SecurityGroups: []string{"reply"}},
			"p3": {ID: "p3", Name: "vm3", NetworkID: "n", Host: "h2", MAC: "fa:16:3e:00:00:03", FixedIPs: []string{"10.0.0.3"}, SecurityGroups: []string{"echo", "ssh"}},
		},
	}
	snap := &Snapshot{View: view.Compute("h1", st), Ofports: map[string]int{"p1": 5}, VLANs: map[string]uint16{"n": 1}}
	for _, c := range []struct {
		dst, proto string
		port       int
		allowed    bool
		why        string
	}{
		{"10.0.0.2", "icmp", 0, false, "no rule"},
		{"10.0.0.3", "icmp", 0, true, "rule r8"},
		{"10.0.0.3", "tcp", 22, true, "rule s"},
		{"10.0.0.3", "tcp", 23, false, "no rule"},
	} {
		tc, err := resolve(snap, api.TraceRequest{FromPort: "vm1", DstIP: c.dst, Proto: c.proto, DstPort: c.port})
		if err != nil {
			t.Fatal(err)
		}
		if !tc.egress.Allowed {
			t.Errorf("%s %s: egress %s", c.dst, c.proto, tc.egress)
		}
		if tc.ingress.Allowed != c.allowed || !strings.Contains(tc.ingress.String(), c.why) {
			t.Errorf("%s %s/%d: ingress %q (allowed %v), want allowed=%v, %q", c.dst, c.proto, c.port, tc.ingress, tc.ingress.Allowed, c.allowed, c.why)
		}
	}
	for _, bad := range []api.TraceRequest{
		{FromPort: "vm2", DstIP: "10.0.0.1", Proto: "icmp"}, // not local
		{FromPort: "vm1", DstIP: "10.0.0.300", Proto: "icmp"},
		{FromPort: "vm1", DstIP: "10.0.0.2", Proto: "gre"},
		{FromPort: "vm1", DstIP: "10.0.0.2", Proto: "tcp", DstPort: 0},
	} {
		if _, err := resolve(snap, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
