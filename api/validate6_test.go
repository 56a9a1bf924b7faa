package api

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// TestIPv6Validation holds every IPv6 input validation refuses or accepts: networks
// with an IPv6 subnet (alone or next to an IPv4 one), ports' IPv6 fixed IPs, address
// pairs and rules. Field and a substring of the reason are checked.
func TestIPv6Validation(t *testing.T) {
	const mac = "fa:16:3e:00:00:01"
	slaacIP := EUI64(netip.MustParsePrefix("fd00:1::/64"), mustMAC(mac)).String() // fd00:1::f816:3eff:fe00:1
	v6net := func(mod func(*Network)) *Network {
		n := &Network{Name: "n", VNI: 100, MTU: 1450, IPv6: &Subnet6{CIDR: "fd00:1::/64"}}
		mod(n)
		return n
	}
	netErr := func(mod func(*Network)) error { return ValidateNetwork(v6net(mod), false) }
	sub := func(mod func(*Subnet6)) error { return netErr(func(n *Network) { mod(n.IPv6) }) }
	stateful := func(cidr string) error {
		return sub(func(s *Subnet6) { s.AddressMode = IPv6DHCPStateful; s.CIDR = cidr })
	}
	dual := func(mod func(*Network)) *Network {
		return v6net(func(n *Network) { n.CIDR = "10.0.0.0/24"; mod(n) })
	}
	port := func(n *Network, mod func(*Port)) error {
		p := Port{Name: "p", NetworkID: "n", Host: "h1", MAC: mac}
		mod(&p)
		return ValidatePort(&p, n, false)
	}
	ips := func(n *Network, ips ...string) error { return port(n, func(p *Port) { p.FixedIPs = ips }) }
	statefulNet := v6net(func(n *Network) {
		n.IPv6.AddressMode, n.IPv6.CIDR, n.IPv6.Gateway = IPv6DHCPStateful, "fd00:2::/120", "fd00:2::1"
	})
	v4net := &Network{Name: "n4", VNI: 100, MTU: 1450, CIDR: "10.0.0.0/24"}
	rule := func(mod func(*Rule)) error {
		r := Rule{Direction: Ingress, Ethertype: IPv6}
		mod(&r)
		return ValidateRule(&r)
	}

	for _, c := range []struct {
		name  string
		err   error
		field string // "" when the input must be accepted
		msg   string
	}{
		// Subnets: at least one of the two families.
		{"ipv6 only", netErr(func(*Network) {}), "", ""},
		{"dual stack", ValidateNetwork(dual(func(*Network) {}), false), "", ""},
		{"neither", netErr(func(n *Network) { n.IPv6 = nil }), "network.cidr", "needs an IPv4 subnet (cidr), an IPv6 subnet (ipv6.cidr) or both"},
		{"v6 in cidr", netErr(func(n *Network) { n.CIDR = "fd00:9::/64" }), "network.cidr", "not an IPv4 CIDR"},

		// The prefix.
		{"prefix v4", sub(func(s *Subnet6) { s.CIDR = "10.0.0.0/24" }), "network.ipv6.cidr", "not an IPv6 prefix"},
		{"prefix garbage", sub(func(s *Subnet6) { s.CIDR = "fd00::/x" }), "network.ipv6.cidr", "not an IPv6 prefix"},
		{"prefix empty", sub(func(s *Subnet6) { s.CIDR = "" }), "network.ipv6.cidr", "not an IPv6 prefix"},
		{"prefix host bits", sub(func(s *Subnet6) { s.CIDR = "fd00:1::5/64" }), "network.ipv6.cidr", "did you mean fd00:1::/64"},
		{"prefix link-local", sub(func(s *Subnet6) { s.CIDR = "fe80::/64" }), "network.ipv6.cidr", "link-local"},
		{"prefix multicast", sub(func(s *Subnet6) { s.CIDR = "ff02::/64" }), "network.ipv6.cidr", "multicast"},
		{"prefix loopback", sub(func(s *Subnet6) { s.CIDR = "::/64" }), "network.ipv6.cidr", "unspecified, loopback"},
		{"prefix v4-mapped", stateful("::ffff:10.0.0.0/120"), "network.ipv6.cidr", "IPv4-mapped"},
		{"prefix global", sub(func(s *Subnet6) { s.CIDR = "2001:db8:1:2::/64" }), "", ""},

		// Prefix length by mode.
		{"slaac /63", sub(func(s *Subnet6) { s.CIDR = "fd00:1::/63" }), "network.ipv6.cidr", "address mode slaac needs a /64"},
		{"slaac /80", sub(func(s *Subnet6) { s.CIDR = "fd00:1::/80" }), "network.ipv6.cidr", "EUI-64"},
		{"stateless /64", sub(func(s *Subnet6) { s.AddressMode = IPv6DHCPStateless }), "", ""},
		{"stateless /96", sub(func(s *Subnet6) { s.AddressMode = IPv6DHCPStateless; s.CIDR = "fd00:1::/96" }), "network.ipv6.cidr", "dhcpv6-stateless needs a /64"},
		{"stateful /48", stateful("fd00:1::/48"), "", ""},
		{"stateful /64", stateful("fd00:1::/64"), "", ""},
		{"stateful /120", stateful("fd00:1::/120"), "", ""},
		{"stateful /47", stateful("fd00::/47"), "network.ipv6.cidr", "takes /48../120: a /48 is a whole site"},
		{"stateful /121", stateful("fd00:1::/121"), "network.ipv6.cidr", "too few addresses are left"},
		{"mode", sub(func(s *Subnet6) { s.AddressMode = "dhcpv6" }), "network.ipv6.address_mode", "must be one of slaac, dhcpv6-stateful, dhcpv6-stateless"},
		{"mode slaac", sub(func(s *Subnet6) { s.AddressMode = IPv6SLAAC }), "", ""},

		// Gateway.
		{"gateway", sub(func(s *Subnet6) { s.Gateway = "fd00:1::1" }), "", ""},
		{"gateway outside", sub(func(s *Subnet6) { s.Gateway = "fd00:2::1" }), "network.ipv6.gateway", "outside the network's IPv6 subnet fd00:1::/64"},
		{"gateway anycast", sub(func(s *Subnet6) { s.Gateway = "fd00:1::" }), "network.ipv6.gateway", "subnet-router anycast"},
		{"gateway v4", sub(func(s *Subnet6) { s.Gateway = "10.0.0.1" }), "network.ipv6.gateway", "not an IPv6 address"},
		{"gateway zone", sub(func(s *Subnet6) { s.Gateway = "fd00:1::1%eth0" }), "network.ipv6.gateway", "not an IPv6 address"},
		{"gateway spelling", sub(func(s *Subnet6) { s.Gateway = "FD00:1:0::1" }), "network.ipv6.gateway", "write it as fd00:1::1"},

		// DNS servers.
		{"dns", sub(func(s *Subnet6) { s.DNSServers = []string{"2001:4860:4860::8888", "fd00:1::53"} }), "", ""},
		{"dns v4", sub(func(s *Subnet6) { s.DNSServers = []string{"8.8.8.8"} }), "network.ipv6.dns_servers", "not an IPv6 address"},
		{"dns mapped", sub(func(s *Subnet6) { s.DNSServers = []string{"::ffff:8.8.8.8"} }), "network.ipv6.dns_servers", "IPv4-mapped"},
		{"dns multicast", sub(func(s *Subnet6) { s.DNSServers = []string{"ff02::1"} }), "network.ipv6.dns_servers", "not a unicast address"},
		{"dns loopback", sub(func(s *Subnet6) { s.DNSServers = []string{"::1"} }), "network.ipv6.dns_servers", "not a unicast address"},
		{"dns twice", sub(func(s *Subnet6) { s.DNSServers = []string{"fd00:1::53", "fd00:1::53"} }), "network.ipv6.dns_servers", "listed twice"},
		{"dns too many", sub(func(s *Subnet6) {
			s.DNSServers = []string{"fd00::1", "fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::6"}
		}), "network.ipv6.dns_servers", "at most 5"},

		// MTU: IPv6 needs 1280.
		{"mtu 1280", netErr(func(n *Network) { n.MTU = 1280 }), "", ""},
		{"mtu 1279", netErr(func(n *Network) { n.MTU = 1279 }), "network.mtu", "at least 1280"},

		// IPv4-only settings without an IPv4 subnet.
		{"v4 gateway alone", netErr(func(n *Network) { n.Gateway = "10.0.0.1" }), "network.gateway", "needs an IPv4 subnet"},
		{"dhcp dns alone", netErr(func(n *Network) { n.DHCP.DNSServers = []string{"10.0.0.53"} }), "network.dhcp.dns_servers", "network.ipv6.dns_servers"},
		{"host routes alone", netErr(func(n *Network) {
			n.DHCP.HostRoutes = []HostRoute{{Destination: "192.168.0.0/16", NextHop: "10.0.0.254"}}
		}), "network.dhcp.host_routes", "DHCPv4 needs an IPv4 subnet"},
		{"lease alone", netErr(func(n *Network) { n.DHCP.LeaseSeconds = 600 }), "network.dhcp.lease_seconds", "DHCPv4 needs an IPv4 subnet"},
		{"pools alone", netErr(func(n *Network) { n.AllocationPools = []IPRange{{Start: "10.0.0.5", End: "10.0.0.9"}} }), "network.allocation_pools", "needs an IPv4 subnet"},
		{"provider alone", netErr(func(n *Network) { n.Provider = &Provider{Type: ProviderFlat, Physnet: "p"} }), "network.provider", "only external networks"},
		{"domain alone", netErr(func(n *Network) { n.DHCP.Domain = "example.org" }), "network.dhcp.domain", "DHCPv4 needs an IPv4 subnet"},
		{"search alone", netErr(func(n *Network) { n.DHCP.SearchDomains = []string{"example.org"} }), "network.dhcp.search_domains", "DHCPv4 needs an IPv4 subnet"},
		{"no-dhcp alone", netErr(func(n *Network) { n.DHCP.Disabled = true }), "network.dhcp.disabled", "no DHCPv4 to turn off"},
		{"v4 settings dual", ValidateNetwork(dual(func(n *Network) { n.Gateway = "10.0.0.1"; n.DHCP.DNSServers = []string{"10.0.0.53"} }), false), "", ""},

		// External networks stay IPv4.
		{"external v6", netErr(func(n *Network) {
			n.External, n.VNI, n.CIDR, n.Gateway = true, 0, "192.0.2.0/24", "192.0.2.1"
			n.Provider = &Provider{Type: ProviderFlat, Physnet: "ext"}
		}), "network.ipv6", "external networks are IPv4 only"},

		// Ports on an IPv6-only slaac network.
		{"slaac port", ips(v6net(func(*Network) {}), slaacIP), "", ""},
		{"slaac other address", ips(v6net(func(*Network) {}), "fd00:1::5"), "port.fixed_ips", "on a slaac subnet a port's IPv6 address is the EUI-64 of its MAC fa:16:3e:00:00:01, " + slaacIP},
		{"stateless other address", ips(v6net(func(n *Network) { n.IPv6.AddressMode = IPv6DHCPStateless }), "fd00:1::5"), "port.fixed_ips", "on a dhcpv6-stateless subnet"},
		{"slaac v4 address", ips(v6net(func(*Network) {}), "10.0.0.5"), "port.fixed_ips", "has no IPv4 subnet"},
		{"slaac outside", ips(v6net(func(*Network) {}), "fd00:2::5"), "port.fixed_ips", "outside the network's IPv6 subnet fd00:1::/64"},
		{"slaac no MAC", ValidatePort(&Port{Name: "p", NetworkID: "n", Host: "h1", FixedIPs: []string{slaacIP}}, v6net(func(*Network) {}), true), "port.fixed_ips", "give the MAC too"},
		{"slaac allocate", ValidatePort(&Port{Name: "p", NetworkID: "n", Host: "h1"}, v6net(func(*Network) {}), true), "", ""},

		// Ports on a stateful network.
		{"stateful port", ips(statefulNet, "fd00:2::2"), "", ""},
		{"stateful top", ips(statefulNet, "fd00:2::ff"), "", ""},
		{"stateful anycast", ips(statefulNet, "fd00:2::"), "port.fixed_ips", "subnet-router anycast"},
		{"stateful gateway", ips(statefulNet, "fd00:2::1"), "port.fixed_ips", "is the IPv6 subnet's gateway"},
		{"stateful outside", ips(statefulNet, "fd00:2::100"), "port.fixed_ips", "outside the network's IPv6 subnet"},
		{"two IPv6", ips(statefulNet, "fd00:2::2", "fd00:2::3"), "port.fixed_ips", "at most one IPv6 address"},
		{"v6 spelling", ips(statefulNet, "FD00:2::2"), "port.fixed_ips", "write it as fd00:2::2"},
		{"v6 zone", ips(statefulNet, "fd00:2::2%eth0"), "port.fixed_ips", "not an IPv4 or IPv6 address"},
		{"v4-mapped", ips(v4net, "::ffff:10.0.0.5"), "port.fixed_ips", "write it as 10.0.0.5"},
		{"v6 on v4 network", ips(v4net, "fd00:2::2"), "port.fixed_ips", "network n4 has no IPv6 subnet"},

		// Dual stack: one of each, in any order.
		{"dual port", ips(dual(func(*Network) {}), "10.0.0.5", slaacIP), "", ""},
		{"dual port v6 first", ips(dual(func(*Network) {}), slaacIP, "10.0.0.5"), "", ""},
		{"dual v4 rules", ips(dual(func(*Network) {}), "10.0.0.0", slaacIP), "port.fixed_ips", "network or broadcast address"},

		// Address pairs: IPv6 addresses and CIDRs /0../128.
		{"pair v6", port(v4net, func(p *Port) {
			p.FixedIPs = []string{"10.0.0.5"}
			p.AllowedAddressPairs = []AddressPair{{IP: "fd00::9"}}
		}), "", ""},
		{"pair v6 /0", port(v4net, func(p *Port) { p.FixedIPs = []string{"10.0.0.5"}; p.AllowedAddressPairs = []AddressPair{{IP: "::/0"}} }), "", ""},
		{"pair v6 /128", port(v4net, func(p *Port) {
			p.FixedIPs = []string{"10.0.0.5"}
			p.AllowedAddressPairs = []AddressPair{{IP: "fd00::9/128"}}
		}), "", ""},
		{"pair v6 /129", port(v4net, func(p *Port) {
			p.FixedIPs = []string{"10.0.0.5"}
			p.AllowedAddressPairs = []AddressPair{{IP: "fd00::/129"}}
		}), "port.allowed_address_pairs.ip", "0..128 for IPv6"},
		{"pair zone", port(v4net, func(p *Port) {
			p.FixedIPs = []string{"10.0.0.5"}
			p.AllowedAddressPairs = []AddressPair{{IP: "fe80::1%eth0"}}
		}), "port.allowed_address_pairs.ip", "not an IP address"},
		{"pair mapped", port(v4net, func(p *Port) {
			p.FixedIPs = []string{"10.0.0.5"}
			p.AllowedAddressPairs = []AddressPair{{IP: "::ffff:10.0.0.9"}}
		}), "port.allowed_address_pairs.ip", "not an IP address"},

		// Rules.
		{"icmpv6 remote v6", rule(func(r *Rule) { r.Protocol = "icmpv6"; r.RemoteCIDR = "fd00::/8" }), "", ""},
		{"ipv6-icmp type", rule(func(r *Rule) { r.Protocol = "ipv6-icmp"; r.ICMPType = ip(128); r.ICMPCode = ip(0) }), "", ""},
		{"tcp remote v6 /0", rule(func(r *Rule) { r.Protocol = "tcp"; r.PortMin, r.PortMax = 22, 22; r.RemoteCIDR = "::/0" }), "", ""},
		{"v4 cidr on v6 rule", rule(func(r *Rule) { r.RemoteCIDR = "10.0.0.0/8" }), "rule.remote_cidr", "does not match ethertype IPv6"},
		{"mapped cidr", rule(func(r *Rule) { r.RemoteCIDR = "::ffff:10.0.0.0/104" }), "rule.remote_cidr", "IPv4-mapped"},
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

func TestParseIPOrCIDR(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5": "10.0.0.5/32", "10.0.0.7/24": "10.0.0.0/24", "0.0.0.0/0": "0.0.0.0/0",
		"fd00::5": "fd00::5/128", "fd00::5/64": "fd00::/64", "::/0": "::/0",
	} {
		if p, err := ParseIPOrCIDR(in); err != nil || p.String() != want {
			t.Errorf("%q: %v %v, want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"", "x", "10.0.0.5/33", "fd00::/129", "fe80::1%eth0", "::ffff:10.0.0.5", "::ffff:10.0.0.0/104"} {
		if p, err := ParseIPOrCIDR(in); err == nil {
			t.Errorf("%q: accepted as %v", in, p)
		}
	}
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}
