package main

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// Numbers typed on the command line must reach validation as they are: a zero or
// negative value is refused with the field's name, never mapped to "any" or "default".
func TestFlagsRefuseBadNumbers(t *testing.T) {
	rule := func(args ...string) error {
		_, _, err := (&globals{}).ruleFromArgs(append([]string{"G", "--direction", "ingress"}, args...))
		return err
	}
	network := func(args ...string) error {
		_, err := (&globals{}).networkSpec(append([]string{"n", "--cidr", "10.0.0.0/24"}, args...))
		return err
	}
	for _, c := range []struct {
		name  string
		err   error
		field string
		msg   string
	}{
		{"port 0", rule("--protocol", "tcp", "--port", "0"), "rule.port_range", `"0": ports must be within 1..65535`},
		{"port 70000", rule("--protocol", "tcp", "--port", "70000"), "rule.port_range", "within 1..65535"},
		{"port range from 0", rule("--protocol", "tcp", "--port", "0-80"), "rule.port_range", "within 1..65535"},
		{"port range to 0", rule("--protocol", "udp", "--port", "80-0"), "rule.port_range", "within 1..65535"},
		{"port range reversed", rule("--protocol", "tcp", "--port", "90-80"), "rule.port_range", "must not be above"},
		{"port negative", rule("--protocol", "tcp", "--port", "-1"), "rule.port_range", "want N or N-M"},
		{"port signed", rule("--protocol", "tcp", "--port", "+22"), "rule.port_range", "want N or N-M"},
		{"port empty", rule("--protocol", "tcp", "--port", ""), "rule.port_range", "want N or N-M"},
		{"port huge", rule("--protocol", "tcp", "--port", "99999999999999999999"), "rule.port_range", "want N or N-M"},
		{"port on icmp", rule("--protocol", "icmp", "--port", "22"), "rule.port_range", "need protocol tcp"},
		{"protocol 0", rule("--protocol", "0"), "rule.protocol", "number 1..255"},
		{"protocol 256", rule("--protocol", "256"), "rule.protocol", "number 1..255"},
		{"protocol -6", rule("--protocol", "-6"), "rule.protocol", "number 1..255"},
		{"icmp type -1", rule("--protocol", "icmp", "--icmp-type", "-1"), "rule.icmp_type", "within 0..255"},
		{"icmp type 256", rule("--protocol", "icmp", "--icmp-type", "256"), "rule.icmp_type", "within 0..255"},
		{"icmp code -1", rule("--protocol", "icmp", "--icmp-type", "8", "--icmp-code", "-1"), "rule.icmp_code", "within 0..255"},
		{"icmp code without type", rule("--protocol", "icmp", "--icmp-code", "0"), "rule.icmp_code", "needs an ICMP type"},
		{"icmp type on tcp", rule("--protocol", "tcp", "--icmp-type", "0"), "rule.icmp_type", "need protocol icmp"},
		{"remote cidr /33", rule("--remote-cidr", "10.0.0.0/33"), "rule.remote_cidr", "prefix length 0..32"},

		{"vni 0", network("--vni", "0"), "", ""}, // refused by the store, see TestValidationLeavesStoreUnchanged
		{"vni -1", network("--vni", "-1"), "network.vni", "within 1..16777215"},
		{"vni wraps", network("--vni", "4294967297"), "network.vni", "within 1..16777215"},
		{"mtu 0", network("--mtu", "0"), "network.mtu", "omit --mtu"},
		{"underlay 0", network("--underlay-mtu", "0"), "network.underlay_mtu", "omit --underlay-mtu"},
		{"mtu -1", network("--mtu", "-1"), "", ""},               // reaches the store, which refuses it
		{"underlay -1", network("--underlay-mtu", "-1"), "", ""}, // as above

		{"ok rule", rule("--protocol", "tcp", "--port", "22"), "", ""},
		{"ok icmp 0", rule("--protocol", "icmp", "--icmp-type", "0", "--icmp-code", "0"), "", ""},
		{"ok range", rule("--protocol", "udp", "--port", "1-65535"), "", ""},
	} {
		switch {
		case c.field == "" && c.err != nil:
			t.Errorf("%s: refused: %v", c.name, c.err)
		case c.field == "":
		case c.err == nil:
			t.Errorf("%s: accepted", c.name)
		case !errors.Is(c.err, api.ErrInvalid) || fieldOf(c.err) != c.field || !strings.Contains(c.err.Error(), c.msg):
			t.Errorf("%s: %v, want an invalid-input error naming %s and saying %q", c.name, c.err, c.field, c.msg)
		}
	}

	// What the parsers hand on for values that must reach the store's validation.
	spec, err := (&globals{}).networkSpec([]string{"n", "--cidr", "10.0.0.0/24", "--vni", "0", "--mtu", "-1", "--underlay-mtu", "-1"})
	if err != nil || spec.VNI == nil || *spec.VNI != 0 || spec.MTU != -1 || spec.UnderlayMTU != -1 {
		t.Errorf("network create hands on %+v, %v", spec, err)
	}
	spec, err = (&globals{}).networkSpec([]string{"n", "--cidr", "10.0.0.0/24"})
	if err != nil || spec.VNI != nil || spec.MTU != 0 || spec.UnderlayMTU != 1500 {
		t.Errorf("network create defaults: %+v, %v", spec, err)
	}
	_, r, err := (&globals{}).ruleFromArgs([]string{"G", "--direction", "ingress", "--protocol", "icmp", "--icmp-type", "0"})
	if err != nil || r.ICMPType == nil || *r.ICMPType != 0 || r.ICMPCode != nil {
		t.Errorf("icmp type 0 parsed as %+v, %v", r, err)
	}
	g, r, err := (&globals{}).ruleFromArgs([]string{"G", "--direction", "ingress", "--protocol", "tcp", "--port", "8000-8080"})
	if err != nil || g != "G" || r.PortMin != 8000 || r.PortMax != 8080 {
		t.Errorf("port range parsed as %q %+v, %v", g, r, err)
	}
}

func fieldOf(err error) string {
	var fe *api.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

// st opens a store client on etcd, closed at the end of the test.
func st(t *testing.T, etcd string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, []string{etcd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The IPv6 flags reach the network record as typed; the store validates them.
func TestIPv6Flags(t *testing.T) {
	g := &globals{}
	spec, err := g.networkSpec([]string{"v6", "--ipv6-cidr", "2001:db8:1::/64", "--ipv6-address-mode", "dhcpv6-stateful",
		"--ipv6-gateway", "2001:db8:1::1", "--ipv6-dns", "2001:db8::53", "--ipv6-dns", "2001:db8::54,2001:db8::55"})
	want := api.Subnet6{CIDR: "2001:db8:1::/64", AddressMode: api.IPv6DHCPStateful, Gateway: "2001:db8:1::1",
		DNSServers: []string{"2001:db8::53", "2001:db8::54", "2001:db8::55"}}
	if err != nil || spec.CIDR != "" || spec.IPv6 == nil || !reflect.DeepEqual(*spec.IPv6, want) {
		t.Errorf("network create --ipv6-*: %+v %+v, %v", spec, spec.IPv6, err)
	}
	if spec, err := g.networkSpec([]string{"v4", "--cidr", "10.0.0.0/24"}); err != nil || spec.IPv6 != nil {
		t.Errorf("no IPv6 flags: %+v, %v", spec.IPv6, err)
	}
	if _, err := g.networkSpec([]string{"x", "--cidr", "10.0.0.0/24", "--ipv6-gateway", "2001:db8::1"}); fieldOf(err) != "network.ipv6.cidr" ||
		!strings.Contains(err.Error(), "--ipv6-gateway needs --ipv6-cidr") {
		t.Errorf("--ipv6-gateway alone: %v", err)
	}

	// Through the store: the records carry the subnet, network update adds one and
	// changes only what is given, list and show print it.
	etcd := startEtcd(t)
	var ns []api.Network
	run := func(args ...string) {
		t.Helper()
		out, _, err := call(append([]string{"--etcd", etcd, "-o", "json"}, args...)...)
		if err != nil {
			t.Fatalf("lanesctl %v: %v", args, err)
		}
		ns = nil
		if err := json.Unmarshal([]byte(out), &ns); err != nil || len(ns) != 1 {
			t.Fatalf("lanesctl %v: %v in %s", args, err, out)
		}
	}
	run("network", "create", "dual", "--cidr", "10.9.0.0/24", "--ipv6-cidr", "2001:db8:9::/64", "--ipv6-gateway", "2001:db8:9::1")
	if s := ns[0].IPv6; s == nil || s.CIDR != "2001:db8:9::/64" || s.Gateway != "2001:db8:9::1" || s.Mode() != api.IPv6SLAAC || ns[0].CIDR != "10.9.0.0/24" {
		t.Errorf("network create dual: %+v", ns[0])
	}
	run("network", "create", "blue", "--cidr", "10.8.0.0/24")
	run("network", "update", "blue", "--ipv6-cidr", "2001:db8:8::/64", "--ipv6-address-mode", "dhcpv6-stateless")
	if s := ns[0].IPv6; s == nil || s.CIDR != "2001:db8:8::/64" || s.AddressMode != api.IPv6DHCPStateless {
		t.Errorf("network update --ipv6-cidr: %+v", s)
	}
	run("network", "update", "blue", "--ipv6-dns", "2001:db8::53")
	if s := ns[0].IPv6; s == nil || s.CIDR != "2001:db8:8::/64" || s.AddressMode != api.IPv6DHCPStateless || !reflect.DeepEqual(s.DNSServers, []string{"2001:db8::53"}) {
		t.Errorf("network update --ipv6-dns: %+v", s)
	}
	out, _, err := call("--etcd", etcd, "network", "show", "blue")
	if err != nil || !strings.Contains(out, "2001:db8:8::/64 dhcpv6-stateless dns 2001:db8::53") {
		t.Errorf("network show: %q, %v", out, err)
	}
	// port create --ip takes an IPv4 and an IPv6 address and hands both to the store:
	// the port carries both, or the store's refusal names the IPv6 one (the store
	// decides which IPv6 addresses a port may hold).
	if _, err := st(t, etcd).RegisterHost(context.Background(), api.Host{Name: "cmp1", TunnelIP: "192.0.2.1", TunnelType: "vxlan"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	run("network", "create", "dual6", "--cidr", "10.7.0.0/24", "--ipv6-cidr", "2001:db8:7::/64", "--ipv6-address-mode", "dhcpv6-stateful")
	out, _, err = call("--etcd", etcd, "-o", "json", "port", "create", "p6", "--network", "dual6", "--host", "cmp1", "--ip", "10.7.0.20", "--ip", "2001:db8:7::20")
	var p api.Port
	switch {
	case err != nil && !strings.Contains(err.Error(), "2001:db8:7::20"):
		t.Errorf("port create --ip v4 --ip v6: %v", err)
	case err == nil && (json.Unmarshal([]byte(out), &p) != nil || !reflect.DeepEqual(p.FixedIPs, []string{"10.7.0.20", "2001:db8:7::20"})):
		t.Errorf("port create --ip v4 --ip v6: %s", out)
	}
	if _, code, err := call("--etcd", etcd, "network", "update", "dual", "--ipv6-dns", "x", "--ipv6-cidr"); code != exitUsage {
		t.Errorf("--ipv6-cidr without a value: exit %d, %v", code, err)
	}
}
