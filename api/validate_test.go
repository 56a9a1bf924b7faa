package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func ip(v int) *int { return &v }

// TestNumericBounds holds every numeric (or prefix length) input validation refuses or
// accepts at its bounds: field, value and the error expected.
func TestNumericBounds(t *testing.T) {
	okNet := func(mod func(*Network)) error {
		n := Network{Name: "n", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450}
		mod(&n)
		return ValidateNetwork(&n, false)
	}
	rule := func(mod func(*Rule)) error {
		r := Rule{Direction: Ingress, Ethertype: IPv4}
		mod(&r)
		return ValidateRule(&r)
	}
	tcp := func(lo, hi int) error {
		return rule(func(r *Rule) { r.Protocol = "tcp"; r.PortMin, r.PortMax = lo, hi })
	}
	icmp := func(typ, code *int) error {
		return rule(func(r *Rule) { r.Protocol = "icmp"; r.ICMPType, r.ICMPCode = typ, code })
	}
	net := &Network{Name: "n", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450}
	port := func(mod func(*Port)) error {
		p := Port{Name: "p", NetworkID: "n", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.5"}}
		mod(&p)
		return ValidatePort(&p, net, false)
	}
	pair := func(ip string) error {
		return port(func(p *Port) { p.AllowedAddressPairs = []AddressPair{{IP: ip}} })
	}
	host := func(tip string) error { return ValidateHost(&Host{Name: "h1", TunnelIP: tip, TunnelType: TunnelVXLAN}) }
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	off := false

	for _, c := range []struct {
		name  string
		err   error
		field string // "" when the input must be accepted
		msg   string // a substring of the error
	}{
		// Rule ports: both zero is "any port"; anything else is 1..65535, min <= max.
		{"port any", tcp(0, 0), "", ""},
		{"port 1", tcp(1, 1), "", ""},
		{"port 65535", tcp(65535, 65535), "", ""},
		{"port range", tcp(1, 65535), "", ""},
		{"port 0-80", tcp(0, 80), "rule.port_range", `"0-80": must be within 1..65535`},
		{"port 22-0", tcp(22, 0), "rule.port_range", `"22-0": must be within 1..65535`},
		{"port -1", tcp(-1, -1), "rule.port_range", "must be within 1..65535"},
		{"port -1-22", tcp(-1, 22), "rule.port_range", "must be within 1..65535"},
		{"port 65536", tcp(65536, 65536), "rule.port_range", "must be within 1..65535"},
		{"port 22-65536", tcp(22, 65536), "rule.port_range", "must be within 1..65535"},
		{"port reversed", tcp(90, 80), "rule.port_range", "min <= max"},
		{"port on any", rule(func(r *Rule) { r.PortMin, r.PortMax = 22, 22 }), "rule.port_range", "need protocol tcp"},
		{"port on icmp", rule(func(r *Rule) { r.Protocol = "icmp"; r.PortMin, r.PortMax = 1, 1 }), "rule.port_range", "need protocol tcp"},
		{"port on udp", rule(func(r *Rule) { r.Protocol = "udp"; r.PortMin, r.PortMax = 53, 53 }), "", ""},
		{"port on sctp", rule(func(r *Rule) { r.Protocol = "sctp"; r.PortMin, r.PortMax = 9, 9 }), "", ""},
		{"port on 6", rule(func(r *Rule) { r.Protocol = "6"; r.PortMin, r.PortMax = 22, 22 }), "", ""},

		// ICMP type and code: 0..255, a code needs a type.
		{"icmp any", icmp(nil, nil), "", ""},
		{"icmp type 0", icmp(ip(0), nil), "", ""},
		{"icmp type 255 code 255", icmp(ip(255), ip(255)), "", ""},
		{"icmp type -1", icmp(ip(-1), nil), "rule.icmp_type", `"-1": must be within 0..255`},
		{"icmp type 256", icmp(ip(256), nil), "rule.icmp_type", `"256": must be within 0..255`},
		{"icmp code -1", icmp(ip(8), ip(-1)), "rule.icmp_code", `"-1": must be within 0..255`},
		{"icmp code 256", icmp(ip(8), ip(256)), "rule.icmp_code", `"256": must be within 0..255`},
		{"icmp code alone", icmp(nil, ip(0)), "rule.icmp_code", "needs an ICMP type"},
		{"icmp type on tcp", rule(func(r *Rule) { r.Protocol = "tcp"; r.ICMPType = ip(0) }), "rule.icmp_type", "need protocol icmp"},
		{"icmp type on any", rule(func(r *Rule) { r.ICMPType = ip(8) }), "rule.icmp_type", "need protocol icmp"},
		{"icmpv6 type", rule(func(r *Rule) { r.Ethertype = IPv6; r.Protocol = "icmpv6"; r.ICMPType = ip(135) }), "", ""},
		{"icmpv6 over IPv4", rule(func(r *Rule) { r.Protocol = "icmpv6" }), "rule.protocol", "needs ethertype IPv6"},
		{"58 over IPv4", rule(func(r *Rule) { r.Protocol = "58" }), "rule.protocol", "needs ethertype IPv6"},

		// Protocol numbers: 1..255, decimal.
		{"protocol 1", rule(func(r *Rule) { r.Protocol = "1" }), "", ""},
		{"protocol 255", rule(func(r *Rule) { r.Protocol = "255" }), "", ""},
		{"protocol any", rule(func(r *Rule) { r.Protocol = "any" }), "", ""},
		{"protocol 0", rule(func(r *Rule) { r.Protocol = "0" }), "rule.protocol", `"0": not tcp, udp, sctp, icmp, icmpv6, any or a number 1..255`},
		{"protocol 256", rule(func(r *Rule) { r.Protocol = "256" }), "rule.protocol", "a number 1..255"},
		{"protocol -1", rule(func(r *Rule) { r.Protocol = "-1" }), "rule.protocol", "a number 1..255"},
		{"protocol +6", rule(func(r *Rule) { r.Protocol = "+6" }), "rule.protocol", "a number 1..255"},
		{"protocol 006", rule(func(r *Rule) { r.Protocol = "006" }), "rule.protocol", "a number 1..255"},
		{"protocol name", rule(func(r *Rule) { r.Protocol = "gre" }), "rule.protocol", "a number 1..255"},

		// Remote CIDRs: any prefix length of the rule's family.
		{"remote /0", rule(func(r *Rule) { r.RemoteCIDR = "0.0.0.0/0" }), "", ""},
		{"remote /32", rule(func(r *Rule) { r.RemoteCIDR = "10.1.2.3/32" }), "", ""},
		{"remote /33", rule(func(r *Rule) { r.RemoteCIDR = "10.1.2.3/33" }), "rule.remote_cidr", "prefix length 0..32"},
		{"remote /-1", rule(func(r *Rule) { r.RemoteCIDR = "10.1.2.3/-1" }), "rule.remote_cidr", "not a CIDR"},
		{"remote no length", rule(func(r *Rule) { r.RemoteCIDR = "10.1.2.3" }), "rule.remote_cidr", "not a CIDR"},
		{"remote v6 /128", rule(func(r *Rule) { r.Ethertype = IPv6; r.RemoteCIDR = "2001:db8::1/128" }), "", ""},
		{"remote v6 /129", rule(func(r *Rule) { r.Ethertype = IPv6; r.RemoteCIDR = "2001:db8::/129" }), "rule.remote_cidr", "0..128 for IPv6"},
		{"remote v6 zone", rule(func(r *Rule) { r.Ethertype = IPv6; r.RemoteCIDR = "fe80::1%eth0/64" }), "rule.remote_cidr", "not a CIDR"},
		{"remote family", rule(func(r *Rule) { r.RemoteCIDR = "2001:db8::/32" }), "rule.remote_cidr", "does not match ethertype IPv4"},

		// VNI: 1..2^24-1.
		{"vni 1", okNet(func(n *Network) { n.VNI = 1 }), "", ""},
		{"vni max", okNet(func(n *Network) { n.VNI = MaxVNI }), "", ""},
		{"vni 0", okNet(func(n *Network) { n.VNI = 0 }), "network.vni", `"0": must be within 1..16777215`},
		{"vni 2^24", okNet(func(n *Network) { n.VNI = MaxVNI + 1 }), "network.vni", `"16777216": must be within 1..16777215`},
		{"vni 2^32-1", okNet(func(n *Network) { n.VNI = 1<<32 - 1 }), "network.vni", "must be within 1..16777215"},

		// MTU: 576..65535 (the store also caps it at underlay minus overhead).
		{"mtu 576", okNet(func(n *Network) { n.MTU = 576 }), "", ""},
		{"mtu 65535", okNet(func(n *Network) { n.MTU = 65535 }), "", ""},
		{"mtu 575", okNet(func(n *Network) { n.MTU = 575 }), "network.mtu", `"575": must be within 576..65535`},
		{"mtu 65536", okNet(func(n *Network) { n.MTU = 65536 }), "network.mtu", "must be within 576..65535"},
		{"mtu -1", okNet(func(n *Network) { n.MTU = -1 }), "network.mtu", "must be within 576..65535"},
		{"mtu 0", okNet(func(n *Network) { n.MTU = 0 }), "network.mtu", "must be set"},

		// Network CIDR: IPv4, /8../30, no host bits, not reserved.
		{"cidr /8", okNet(func(n *Network) { n.CIDR = "10.0.0.0/8" }), "", ""},
		{"cidr /30", okNet(func(n *Network) { n.CIDR = "10.0.0.0/30" }), "", ""},
		{"cidr /31", okNet(func(n *Network) { n.CIDR = "10.0.0.0/31" }), "network.cidr", "at least a /30"},
		{"cidr /32", okNet(func(n *Network) { n.CIDR = "10.0.0.0/32" }), "network.cidr", "at least a /30"},
		{"cidr /7", okNet(func(n *Network) { n.CIDR = "10.0.0.0/7" }), "network.cidr", "at most a /8"},
		{"cidr /0", okNet(func(n *Network) { n.CIDR = "0.0.0.0/0" }), "network.cidr", "at most a /8"},
		{"cidr /33", okNet(func(n *Network) { n.CIDR = "10.0.0.0/33" }), "network.cidr", "not an IPv4 CIDR"},
		{"cidr v6", okNet(func(n *Network) { n.CIDR = "2001:db8::/64" }), "network.cidr", "not an IPv4 CIDR"},
		{"cidr host bits", okNet(func(n *Network) { n.CIDR = "10.0.0.1/24" }), "network.cidr", "did you mean 10.0.0.0/24"},
		{"cidr loopback", okNet(func(n *Network) { n.CIDR = "127.0.0.0/24" }), "network.cidr", "reserved range 127.0.0.0/8"},
		{"cidr link-local", okNet(func(n *Network) { n.CIDR = "169.254.0.0/24" }), "network.cidr", "reserved range 169.254.0.0/16"},
		{"cidr over link-local", okNet(func(n *Network) { n.CIDR = "169.0.0.0/8" }), "network.cidr", "reserved range 169.254.0.0/16"},
		{"cidr multicast", okNet(func(n *Network) { n.CIDR = "224.0.0.0/24" }), "network.cidr", "reserved range 224.0.0.0/4"},
		{"cidr class E", okNet(func(n *Network) { n.CIDR = "255.255.255.0/24" }), "network.cidr", "reserved range 240.0.0.0/4"},
		{"cidr zero net", okNet(func(n *Network) { n.CIDR = "0.0.0.0/24" }), "network.cidr", "reserved range 0.0.0.0/8"},

		// Allowed address pairs: IPv4 address or CIDR /0../32.
		{"pair ip", pair("10.0.0.9"), "", ""},
		{"pair /0", pair("0.0.0.0/0"), "", ""},
		{"pair /32", pair("10.0.0.9/32"), "", ""},
		{"pair /33", pair("10.0.0.9/33"), "port.allowed_address_pairs.ip", "prefix length 0..32"},
		{"pair v6", pair("2001:db8::1"), "", ""},
		{"pair empty", pair(""), "port.allowed_address_pairs.ip", "not an IP address or CIDR"},
		{"pair mac", port(func(p *Port) { p.AllowedAddressPairs = []AddressPair{{IP: "10.0.0.9", MAC: "ff:ff:ff:ff:ff:ff"}} }), "port.allowed_address_pairs.mac", "multicast"},
		{"pairs max", port(func(p *Port) {
			for i := range MaxAddressPairs {
				p.AllowedAddressPairs = append(p.AllowedAddressPairs, AddressPair{IP: fmt.Sprintf("10.9.0.%d", i)})
			}
		}), "", ""},
		{"pairs too many", port(func(p *Port) {
			for i := range MaxAddressPairs + 1 {
				p.AllowedAddressPairs = append(p.AllowedAddressPairs, AddressPair{IP: fmt.Sprintf("10.9.0.%d", i)})
			}
		}), "port.allowed_address_pairs", "at most 16"},

		// Per-port and per-group counts.
		{"two IPv4", port(func(p *Port) { p.FixedIPs = []string{"10.0.0.5", "10.0.0.6"} }), "port.fixed_ips", "at most one IPv4 address"},
		{"ips too many", port(func(p *Port) {
			p.FixedIPs = many(MaxFixedIPs+1, func(i int) string { return fmt.Sprintf("10.0.0.%d", 10+i) })
		}), "port.fixed_ips", "at most 16"},
		{"groups too many", port(func(p *Port) {
			p.SecurityGroups = many(MaxPortGroups+1, func(i int) string { return fmt.Sprint("g", i) })
		}), "port.security_groups", "at most 16"},
		{"groups without port security", port(func(p *Port) { p.PortSecurity = &off; p.SecurityGroups = []string{"g"} }), "port.security_groups", "port security is disabled"},
		{"host name", port(func(p *Port) { p.Host = "h 1" }), "port.host", "only letters"},
		{"rules too many", ValidateSecurityGroup(&SecurityGroup{Name: "g", Rules: make([]Rule, MaxRules+1)}), "sg.rules", "at most 1000"},

		// Host tunnel IPs: a unicast IPv4 address (IPv6: TestTunnelIPv6).
		{"tunnel ip", host("192.168.1.1"), "", ""},
		{"tunnel ip 0", host("0.0.0.0"), "host.tunnel_ip", "not a unicast address"},
		{"tunnel ip loopback", host("127.0.0.1"), "host.tunnel_ip", "not a unicast address"},
		{"tunnel ip multicast", host("239.1.1.1"), "host.tunnel_ip", "not a unicast address"},
		{"tunnel ip broadcast", host("255.255.255.255"), "host.tunnel_ip", "not a unicast address"},
	} {
		var fe *FieldError
		switch {
		case c.field == "" && c.err != nil:
			t.Errorf("%s: refused: %v", c.name, c.err)
		case c.field == "":
		case c.err == nil:
			t.Errorf("%s: accepted, want an error naming %s", c.name, c.field)
		case !errors.Is(c.err, ErrInvalid) || !errors.As(c.err, &fe) || fe.Field != c.field || !strings.Contains(c.err.Error(), c.msg):
			t.Errorf("%s: %v, want an invalid-input error naming %s and saying %q", c.name, c.err, c.field, c.msg)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string][2]int{"22": {22, 22}, "1-65535": {1, 65535}, "80-80": {80, 80}} {
		lo, hi, err := ParsePortRange(in)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("%q: %d-%d %v", in, lo, hi, err)
		}
	}
	for _, in := range []string{"0", "0-0", "0-22", "22-0", "65536", "1-65536", "-1", "22-", "-22", "+22", "2 2", "a", "", "1-2-3", "30-20"} {
		if _, _, err := ParsePortRange(in); err == nil || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "rule.port_range") {
			t.Errorf("%q: %v, want a rule.port_range error", in, err)
		}
	}
}

// A refused value can be megabytes long; the error must not repeat all of it.
func TestFieldErrorBoundsValue(t *testing.T) {
	err := ValidateName("port.name", strings.Repeat("x", 1<<20))
	if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "(1048576 bytes)") {
		t.Fatalf("%d bytes: %.300s", len(err.Error()), err)
	}
	// Cutting must not leave half a rune behind.
	err = ValidateName("port.name", strings.Repeat("é", 100))
	if s := err.Error(); !strings.Contains(s, `"`+strings.Repeat("é", 40)+`"...`) {
		t.Fatalf("%s", s)
	}
}
