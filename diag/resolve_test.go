package diag

import (
	"errors"
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
		Ports: map[string]*api.Port{
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

// IPv6 destinations: the source is the port's address of the destination's family
// (its link-local one for a link-local destination), "icmp" means ICMPv6 echo, and
// the verdicts come from the ip6tables model; what cannot be traced is refused with
// the field named.
func TestResolveIPv6(t *testing.T) {
	st := store.State{
		Revision: 1,
		Networks: map[string]api.Network{
			"n": {ID: "n", Name: "blue", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450, IPv6: &api.Subnet6{CIDR: "fd00:1::/64"}},
			"o": {ID: "o", Name: "v4only", VNI: 101, CIDR: "10.1.0.0/24", MTU: 1450},
		},
		Hosts: map[string]api.Host{"h2": {Name: "h2", TunnelIP: "172.31.0.2", Alive: true}},
		Groups: map[string]api.SecurityGroup{
			"out":  {ID: "out", Name: "out", Rules: []api.Rule{{ID: "e6", Direction: api.Egress, Ethertype: api.IPv6}}},
			"ping": {ID: "ping", Name: "ping", Rules: []api.Rule{{ID: "p6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "icmpv6"}}},
		},
		Ports: map[string]*api.Port{
			"p1": {ID: "p1", Name: "vm1", NetworkID: "n", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1", "fd00:1::f816:3eff:fe00:1"}, SecurityGroups: []string{"out"}},
			"p2": {ID: "p2", Name: "vm2", NetworkID: "n", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2", "fd00:1::f816:3eff:fe00:2"}, SecurityGroups: []string{"ping"}},
			"p4": {ID: "p4", Name: "vm4", NetworkID: "o", Host: "h1", MAC: "fa:16:3e:00:00:04", FixedIPs: []string{"10.1.0.4"}},
		},
	}
	snap := &Snapshot{View: view.Compute("h1", st), Ofports: map[string]int{"p1": 5, "p4": 6}, VLANs: map[string]uint16{"n": 1, "o": 2}}
	for _, c := range []struct {
		dst, proto, src, spec string
		port                  int
		allowed               bool
	}{
		{"fd00:1::f816:3eff:fe00:2", "icmp", "fd00:1::f816:3eff:fe00:1", "icmp6,in_port=5,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,ipv6_src=fd00:1::f816:3eff:fe00:1,ipv6_dst=fd00:1::f816:3eff:fe00:2,icmpv6_type=128", 0, true},
		{"fe80::f816:3eff:fe00:2", "icmpv6", "fe80::f816:3eff:fe00:1", "", 0, true},
		{"fd00:1::f816:3eff:fe00:2", "tcp", "fd00:1::f816:3eff:fe00:1", "tcp6,", 22, false},
	} {
		tc, err := resolve(snap, api.TraceRequest{FromPort: "vm1", DstIP: c.dst, Proto: c.proto, DstPort: c.port})
		if err != nil {
			t.Fatalf("%s %s: %v", c.dst, c.proto, err)
		}
		if tc.srcIP.String() != c.src || tc.dstPort == nil || tc.dstPort.Name != "vm2" || tc.ingress.Allowed != c.allowed || !tc.egress.Allowed {
			t.Errorf("%s %s: source %s, destination %v, egress %s, ingress %s", c.dst, c.proto, tc.srcIP, tc.dstPort, tc.egress, tc.ingress)
		}
		if !strings.HasPrefix(tc.spec(), c.spec) {
			t.Errorf("%s %s: spec %s", c.dst, c.proto, tc.spec())
		}
	}
	// No port holds it: traced to the solicited-node group, as the VM's NS goes.
	if tc, err := resolve(snap, api.TraceRequest{FromPort: "vm1", DstIP: "fd00:1::99", Proto: "icmp"}); err != nil || tc.dstMAC() != "33:33:ff:00:00:99" {
		t.Errorf("unknown IPv6 destination: %v %v", tc.dstMAC(), err)
	}
	for _, bad := range []struct {
		req   api.TraceRequest
		field string
	}{
		{api.TraceRequest{FromPort: "vm1", DstIP: "fe80::1%eth0", Proto: "icmp"}, "dst-ip"},
		{api.TraceRequest{FromPort: "vm1", DstIP: "::ffff:10.0.0.2", Proto: "icmp"}, "dst-ip"},
		{api.TraceRequest{FromPort: "vm1", DstIP: "10.0.0.2", Proto: "icmpv6"}, "proto"},
		{api.TraceRequest{FromPort: "vm4", DstIP: "fd00:1::f816:3eff:fe00:2", Proto: "icmp"}, "from-port"},
	} {
		_, err := resolve(snap, bad.req)
		var fe *api.FieldError
		if !errors.As(err, &fe) || fe.Field != bad.field {
			t.Errorf("%+v: %v, want an error on %s", bad.req, err, bad.field)
		}
	}
}
