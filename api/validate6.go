package api

import (
	"net"
	"net/netip"
	"strings"
)

// Prefix lengths of a dhcpv6-stateful subnet. A /48 is a whole site's prefix, more
// than one segment ever needs; a /120 still leaves 254 addresses for ports once the
// subnet-router anycast address and the gateway are taken. slaac and
// dhcpv6-stateless subnets are /64 exactly: EUI-64 interface identifiers are 64 bits.
const (
	MinStatefulPrefix = 48
	MaxStatefulPrefix = 120
)

// reservedV6 are ranges an IPv6 subnet cannot use: the unspecified and loopback
// addresses (with the deprecated IPv4-compatible block around them), IPv4-mapped
// addresses (they are IPv4: give those as network.cidr), link-local (every port holds
// its fe80:: address anyway, and it is not routed) and multicast.
var reservedV6 = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("::/96"), "unspecified, loopback and IPv4-compatible"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped (give an IPv4 subnet as network.cidr)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// ValidateSubnet6 checks a network's IPv6 subnet: its mode, a prefix fit for the mode,
// the gateway and the DNS servers. Fields are named network.ipv6.*.
func ValidateSubnet6(s *Subnet6) error {
	switch s.AddressMode {
	case "", IPv6SLAAC, IPv6DHCPStateful, IPv6DHCPStateless:
	default:
		return fieldErr("network.ipv6.address_mode", s.AddressMode, "must be one of %s, %s, %s", IPv6SLAAC, IPv6DHCPStateful, IPv6DHCPStateless)
	}
	p, err := ParseSubnet6(s.CIDR)
	if err != nil {
		return err
	}
	if s.AutoAddress() && p.Bits() != 64 {
		return fieldErr("network.ipv6.cidr", s.CIDR, "address mode %s needs a /64: guests form their addresses from the /64 prefix and the 64-bit EUI-64 of their MAC (use %s for other prefix lengths)",
			s.Mode(), IPv6DHCPStateful)
	}
	if !s.AutoAddress() && (p.Bits() < MinStatefulPrefix || p.Bits() > MaxStatefulPrefix) {
		return fieldErr("network.ipv6.cidr", s.CIDR, "address mode %s takes /%d../%d: a /%d is a whole site, and past a /%d too few addresses are left for ports",
			s.Mode(), MinStatefulPrefix, MaxStatefulPrefix, MinStatefulPrefix, MaxStatefulPrefix)
	}
	if s.Gateway != "" {
		a, err := parseAddr6("network.ipv6.gateway", s.Gateway)
		if err != nil {
			return err
		}
		if !p.Contains(a) {
			return fieldErr("network.ipv6.gateway", s.Gateway, "outside the network's IPv6 subnet %s", p)
		}
		if a == p.Addr() {
			return fieldErr("network.ipv6.gateway", s.Gateway, "is the subnet-router anycast address of %s (take %s, say)", p, p.Addr().Next())
		}
	}
	if len(s.DNSServers) > MaxDNSServers {
		return fieldErr("network.ipv6.dns_servers", strings.Join(s.DNSServers, ","), "at most %d servers", MaxDNSServers)
	}
	seen := map[netip.Addr]bool{}
	for _, d := range s.DNSServers {
		a, err := parseAddr6("network.ipv6.dns_servers", d)
		if err != nil {
			return err
		}
		if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() {
			return fieldErr("network.ipv6.dns_servers", d, "not a unicast address a guest can reach")
		}
		if seen[a] {
			return fieldErr("network.ipv6.dns_servers", d, "listed twice")
		}
		seen[a] = true
	}
	return nil
}

// ParseSubnet6 parses an IPv6 subnet's prefix: IPv6, no host bits, outside the
// reserved ranges. The prefix length is checked against the mode by ValidateSubnet6.
func ParseSubnet6(cidr string) (netip.Prefix, error) {
	const field = "network.ipv6.cidr"
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is6() {
		return netip.Prefix{}, fieldErr(field, cidr, "not an IPv6 prefix like fd00:1::/64")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fieldErr(field, cidr, "has host bits set (did you mean %s?)", p.Masked())
	}
	for _, r := range reservedV6 {
		if p.Overlaps(r.p) {
			return netip.Prefix{}, fieldErr(field, cidr, "overlaps %s, reserved (%s)", r.p, r.what)
		}
	}
	return p, nil
}

// parseAddr6 parses a plain IPv6 address, written as lanes writes it.
func parseAddr6(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return netip.Addr{}, fieldErr(field, s, "not an IPv6 address (no zone)")
	}
	if a.Is4In6() {
		return netip.Addr{}, fieldErr(field, s, "is an IPv4-mapped address")
	}
	if a.String() != s {
		return netip.Addr{}, fieldErr(field, s, "write it as %s", a)
	}
	return a, nil
}

// validateFixedIP6 checks a port's IPv6 fixed IP a (parsed from s) against the network's
// IPv6 subnet: inside it, not the subnet-router anycast address or the gateway, and on
// an auto-address subnet the EUI-64 of the port's MAC.
func validateFixedIP6(p *Port, n *Network, s string, a netip.Addr) error {
	if n.IPv6 == nil {
		return fieldErr("port.fixed_ips", s, "network %s has no IPv6 subnet", n.Name)
	}
	pfx, err := netip.ParsePrefix(n.IPv6.CIDR)
	if err != nil {
		return fieldErr("network.ipv6.cidr", n.IPv6.CIDR, "not a CIDR")
	}
	if !pfx.Contains(a) {
		return fieldErr("port.fixed_ips", s, "outside the network's IPv6 subnet %s", n.IPv6.CIDR)
	}
	if a == pfx.Addr() {
		return fieldErr("port.fixed_ips", s, "is the subnet-router anycast address of %s", n.IPv6.CIDR)
	}
	if s == n.IPv6.Gateway {
		return fieldErr("port.fixed_ips", s, "is the IPv6 subnet's gateway")
	}
	if !n.IPv6.AutoAddress() {
		return nil
	}
	mac, err := net.ParseMAC(p.MAC)
	if err != nil || len(mac) != 6 {
		return fieldErr("port.fixed_ips", s, "on a %s subnet a port's IPv6 address is the EUI-64 of its MAC: give the MAC too, or no IPv6 address", n.IPv6.Mode())
	}
	if want := EUI64(pfx, mac); a != want {
		return fieldErr("port.fixed_ips", s, "on a %s subnet a port's IPv6 address is the EUI-64 of its MAC %s, %s (use %s to choose addresses)",
			n.IPv6.Mode(), p.MAC, want, IPv6DHCPStateful)
	}
	return nil
}
