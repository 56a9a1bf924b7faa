package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

// Every refused write must name the field and leave the store exactly as it was.
func TestValidationLeavesStoreUnchanged(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	n := mustNet(t, s, "net", "10.0.0.0/24")
	mustNet(t, s, "other", "10.5.0.0/24")
	web, err := s.CreateSecurityGroup(ctx, DefaultSecurityGroup("web"))
	if err != nil {
		t.Fatal(err)
	}
	p1 := mustPort(t, s, api.Port{Name: "p1", NetworkID: "net", Host: "h1", MAC: "fa:16:3e:00:00:10", FixedIPs: []string{"10.0.0.10"}, SecurityGroups: []string{"web"}})
	holder := mustPort(t, s, api.Port{Name: "holder", NetworkID: "net", Host: "h1", FixedIPs: []string{"10.0.0.11"}})
	off := false
	long := strings.Repeat("x", api.MaxNameLen+1)
	port := func(mod func(*api.Port)) func(context.Context) error {
		return func(ctx context.Context) error {
			p := api.Port{Name: "new", NetworkID: "net", Host: "h1"}
			mod(&p)
			_, err := s.CreatePort(ctx, p)
			return err
		}
	}
	network := func(spec NetworkSpec) func(context.Context) error {
		return func(ctx context.Context) error { _, err := s.CreateNetwork(ctx, spec); return err }
	}
	group := func(g api.SecurityGroup) func(context.Context) error {
		return func(ctx context.Context) error { _, err := s.CreateSecurityGroup(ctx, g); return err }
	}
	update := func(mod func(*api.Port)) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := s.UpdatePort(ctx, "p1", func(p *api.Port) error { mod(p); return nil })
			return err
		}
	}
	addRule := func(r api.Rule, groupRef ...string) func(context.Context) error {
		return func(ctx context.Context) error {
			g := "web"
			if len(groupRef) > 0 {
				g = groupRef[0]
			}
			_, err := s.AddRule(ctx, g, r)
			return err
		}
	}
	full := api.SecurityGroup{Name: "full"}
	for i := range api.MaxRules {
		full.Rules = append(full.Rules, api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: i + 1, PortMax: i + 1})
	}
	if _, err := s.CreateSecurityGroup(ctx, full); err != nil {
		t.Fatal(err)
	}
	minus1, zero := -1, 0
	cases := []struct {
		name  string
		do    func(context.Context) error
		field string
		msg   string // a substring of the error text
	}{
		{"vni zero given", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", VNI: u32(0)}), "network.vni", `network.vni "0": must be within 1..16777215`},
		{"vni too big", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", VNI: u32(api.MaxVNI + 1)}), "network.vni", `"16777216": must be within 1..16777215`},
		{"vni taken", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", VNI: u32(n.VNI)}), "network.vni", "already used by network " + n.ID},
		{"network name taken", network(NetworkSpec{Name: "net", CIDR: "10.1.0.0/24"}), "network.name", `network.name "net": already used by network ` + n.ID},
		{"network name too long", network(NetworkSpec{Name: long, CIDR: "10.1.0.0/24"}), "network.name", "longer than 64"},
		{"network name odd", network(NetworkSpec{Name: "a b", CIDR: "10.1.0.0/24"}), "network.name", "only letters"},
		{"network name empty", network(NetworkSpec{CIDR: "10.1.0.0/24"}), "network.name", "must not be empty"},
		{"bad cidr", network(NetworkSpec{Name: "x", CIDR: "10.1.0.1/24"}), "network.cidr", "host bits set"},
		{"mtu above underlay", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", MTU: 1500}), "network.mtu", "underlay MTU 1500"},
		{"bad tunnel type", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", TunnelType: "ipip"}), "network.network_type", "must be one of"},
		{"network id not uuid", network(NetworkSpec{ID: "abc", Name: "x", CIDR: "10.1.0.0/24"}), "network.id", "UUID"},
		{"network id taken", network(NetworkSpec{ID: n.ID, Name: "x", CIDR: "10.1.0.0/24"}), "network.id", "already used"},

		{"bad mac", port(func(p *api.Port) { p.MAC = "fa:16:3e:zz:00:01" }), "port.mac", "not a MAC address"},
		{"multicast mac", port(func(p *api.Port) { p.MAC = "01:00:5e:00:00:01" }), "port.mac", "multicast"},
		{"ip outside cidr", port(func(p *api.Port) { p.FixedIPs = []string{"10.0.1.5"} }), "port.fixed_ips", `port.fixed_ips "10.0.1.5": outside the network's CIDR 10.0.0.0/24`},
		{"broadcast ip", port(func(p *api.Port) { p.FixedIPs = []string{"10.0.0.255"} }), "port.fixed_ips", "broadcast"},
		{"not an ip", port(func(p *api.Port) { p.FixedIPs = []string{"ten"} }), "port.fixed_ips", "not an IPv4 or IPv6 address"},
		{"unknown network", port(func(p *api.Port) { p.NetworkID = "nope" }), "port.network", `port.network "nope": unknown network`},
		{"no network", port(func(p *api.Port) { p.NetworkID = "" }), "port.network", "must be set"},
		{"unknown group", port(func(p *api.Port) { p.SecurityGroups = []string{"web", "nope"} }), "port.security_groups", `port.security_groups "nope": unknown security group`},
		{"unknown host", port(func(p *api.Port) { p.Host = "h9" }), "port.host", `port.host "h9": unknown host`},
		{"no host", port(func(p *api.Port) { p.Host = "" }), "port.host", "must be set"},
		{"duplicate ip", port(func(p *api.Port) { p.FixedIPs = []string{"10.0.0.10"} }), "port.fixed_ips", `port.fixed_ips "10.0.0.10": already used by port ` + p1.ID},
		{"duplicate mac", port(func(p *api.Port) { p.MAC = "FA:16:3E:00:00:10" }), "port.mac", `port.mac "fa:16:3e:00:00:10": already used by port ` + p1.ID},
		{"duplicate port name", port(func(p *api.Port) { p.Name = "p1" }), "port.name", "already used by port " + p1.ID},
		{"port name too long", port(func(p *api.Port) { p.Name = long }), "port.name", "longer than"},
		{"port name odd", port(func(p *api.Port) { p.Name = "-x" }), "port.name", "starting with a letter or digit"},
		{"ip listed twice", port(func(p *api.Port) { p.FixedIPs = []string{"10.0.0.7", "10.0.0.7"} }), "port.fixed_ips", "listed twice"},
		{"too many ips", port(func(p *api.Port) {
			for i := range MaxFixedIPs + 1 {
				p.FixedIPs = append(p.FixedIPs, fmt.Sprintf("10.0.0.%d", 100+i))
			}
		}), "port.fixed_ips", "at most 16"},
		{"bad pair", port(func(p *api.Port) { p.AllowedAddressPairs = []api.AddressPair{{IP: "x"}} }), "port.allowed_address_pairs.ip", "not an IP address or CIDR"},
		{"groups without port security", port(func(p *api.Port) { p.PortSecurity = &off; p.SecurityGroups = []string{"web"} }), "port.security_groups", "port security is disabled"},
		{"port id not uuid", port(func(p *api.Port) { p.ID = "x" }), "port.id", "UUID"},
		{"port id taken", port(func(p *api.Port) { p.ID = p1.ID }), "port.id", "already used"},
		{"port id prefix taken", port(func(p *api.Port) { p.ID = p1.ID[:11] + NewUUID()[11:] }), "port.id", "device names"},

		// Also renames: the name must not change either.
		{"update duplicate ip", update(func(p *api.Port) { p.FixedIPs = []string{"10.0.0.11"}; p.Name = "renamed" }), "port.fixed_ips", `"10.0.0.11": already used by port ` + holder.ID},
		{"update ip outside", update(func(p *api.Port) { p.FixedIPs = []string{"10.5.0.9"} }), "port.fixed_ips", "outside"},
		{"update unknown host", update(func(p *api.Port) { p.Host = "h9" }), "port.host", "unknown host"},
		{"update network", update(func(p *api.Port) { p.NetworkID = "other" }), "port.network", "cannot change"},
		{"update unknown group", update(func(p *api.Port) { p.SecurityGroups = []string{"nope"} }), "port.security_groups", "unknown"},

		{"group name taken", group(api.SecurityGroup{Name: "web"}), "sg.name", "already used by security group " + web.ID},
		{"group name odd", group(api.SecurityGroup{Name: "w/b"}), "sg.name", "only letters"},
		{"bad rule", group(api.SecurityGroup{Name: "g", Rules: []api.Rule{{Direction: "in", Ethertype: api.IPv4}}}), "rule.direction", "ingress or egress"},
		{"unknown remote group", group(api.SecurityGroup{Name: "g", Rules: []api.Rule{{Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: "nope"}}}), "rule.remote_group", "unknown security group"},
		{"duplicate rule", group(api.SecurityGroup{Name: "g", Rules: []api.Rule{
			{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
			{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "6", PortMin: 22, PortMax: 22}}}), "rule", "duplicate of rule"},
		{"add duplicate rule", func(ctx context.Context) error {
			_, err := s.AddRule(ctx, "web", api.Rule{Direction: api.Egress, Ethertype: api.IPv4})
			return err
		}, "rule", "duplicate of rule " + web.Rules[0].ID},
		{"add bad rule", func(ctx context.Context) error {
			_, err := s.AddRule(ctx, "web", api.Rule{Direction: api.Egress, Ethertype: api.IPv4, Protocol: "icmp", PortMin: 1})
			return err
		}, "rule.port_range", "need protocol"},
		{"add port 0-80", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMax: 80}), "rule.port_range", `"0-80": must be within 1..65535`},
		{"add port 22-0", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22}), "rule.port_range", "must be within 1..65535"},
		{"add port 70000", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 70000, PortMax: 70000}), "rule.port_range", "must be within 1..65535"},
		{"add port -1", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: -1, PortMax: -1}), "rule.port_range", "must be within 1..65535"},
		{"add protocol 0", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "0"}), "rule.protocol", "a number 1..255"},
		{"add protocol 256", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "256"}), "rule.protocol", "a number 1..255"},
		{"add icmp type -1", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: &minus1}), "rule.icmp_type", "within 0..255"},
		{"add icmp code alone", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPCode: &zero}), "rule.icmp_code", "needs an ICMP type"},
		{"add icmpv6 on IPv4", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmpv6"}), "rule.protocol", "needs ethertype IPv6"},
		{"add remote /33", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, RemoteCIDR: "10.0.0.0/33"}), "rule.remote_cidr", "prefix length"},
		{"add rule beyond the limit", addRule(api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 5000, PortMax: 5000}, "full"), "sg.rules", "at most 1000"},
		{"group with a bad rule", group(api.SecurityGroup{Name: "g", Rules: []api.Rule{
			{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
			{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 0, PortMax: 443}}}), "rule.port_range", "must be within 1..65535"},
		{"mtu negative", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", MTU: -1}), "network.mtu", "must be within 576..65535"},
		{"mtu too small", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", MTU: 575}), "network.mtu", "must be within 576..65535"},
		{"underlay negative", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", UnderlayMTU: -1}), "network.underlay_mtu", "must be within 626..65535"},
		{"underlay too small", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", UnderlayMTU: 625}), "network.underlay_mtu", "must be within 626..65535"},
		{"underlay too big", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/24", UnderlayMTU: 65536}), "network.underlay_mtu", "must be within 626..65535"},
		{"cidr /31", network(NetworkSpec{Name: "x", CIDR: "10.1.0.0/31"}), "network.cidr", "at least a /30"},
		{"cidr /7", network(NetworkSpec{Name: "x", CIDR: "10.0.0.0/7"}), "network.cidr", "at most a /8"},
		{"cidr reserved", network(NetworkSpec{Name: "x", CIDR: "169.254.0.0/16"}), "network.cidr", "reserved range"},
		{"too many pairs", port(func(p *api.Port) {
			for i := range api.MaxAddressPairs + 1 {
				p.AllowedAddressPairs = append(p.AllowedAddressPairs, api.AddressPair{IP: fmt.Sprintf("10.0.1.%d", i)})
			}
		}), "port.allowed_address_pairs", "at most 16"},
		{"pair /33", port(func(p *api.Port) { p.AllowedAddressPairs = []api.AddressPair{{IP: "10.0.0.0/33"}} }), "port.allowed_address_pairs.ip", "prefix length 0..32"},
		{"bad host", func(ctx context.Context) error {
			_, err := s.RegisterHost(ctx, api.Host{Name: "h2", TunnelIP: "nope", TunnelType: api.TunnelVXLAN}, 0)
			return err
		}, "host.tunnel_ip", "not an IPv4"},
		{"bad status", func(ctx context.Context) error {
			return s.SetPortStatus(ctx, api.PortStatus{PortID: p1.ID, Host: "h1", State: "UP"})
		}, "status.state", "must be BUILD"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := dump(t, s)
			err := c.do(ctx)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !errors.Is(err, api.ErrInvalid) {
				t.Fatalf("error does not wrap api.ErrInvalid: %v", err)
			}
			if got := fieldOf(err); got != c.field {
				t.Fatalf("field %q, want %q (%v)", got, c.field, err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not contain %q", err, c.msg)
			}
			mustEqualDump(t, before, dump(t, s))
		})
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	for what, err := range map[string]error{
		"network":      func() error { _, err := s.GetNetwork(ctx, "x"); return err }(),
		"port":         func() error { _, err := s.GetPort(ctx, "x"); return err }(),
		"group":        func() error { _, err := s.GetSecurityGroup(ctx, "x"); return err }(),
		"host":         func() error { _, err := s.GetHost(ctx, "x"); return err }(),
		"status":       func() error { _, err := s.GetPortStatus(ctx, NewUUID()); return err }(),
		"del network":  s.DeleteNetwork(ctx, "x"),
		"del port":     s.DeletePort(ctx, "x"),
		"del group":    s.DeleteSecurityGroup(ctx, "x"),
		"del rule":     s.DeleteRule(ctx, "x", "y"),
		"update port":  func() error { _, err := s.UpdatePort(ctx, "x", func(*api.Port) error { return nil }); return err }(),
		"set status":   s.SetPortStatus(ctx, api.PortStatus{PortID: NewUUID(), Host: "h", State: api.StatusActive}),
		"wait":         func() error { _, err := s.WaitPortActive(ctx, "x"); return err }(),
		"slash in ref": func() error { _, err := s.GetNetwork(ctx, "a/b"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) || errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
	}
}
