package api

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DHCP is a network's DHCPv4 settings. Each host's lanesd answers its own ports'
// DHCP requests from them, with the port's fixed IPv4 address; nothing is answered
// on a network with DHCP disabled. The zero value is DHCP on with lanes' defaults, so
// networks created before DHCP existed serve it too.
type DHCP struct {
	// Disabled turns the responder off: the network's DHCP traffic is then ordinary
	// broadcast, for a DHCP server of the tenant's own.
	Disabled bool `json:"disabled,omitempty"`
	// DNSServers are IPv4 addresses (option 6), in order of preference.
	DNSServers []string `json:"dns_servers,omitempty"`
	// Domain is the DNS domain (option 15) and, unless SearchDomains is set, the
	// only search domain.
	Domain string `json:"domain,omitempty"`
	// SearchDomains is the DNS search list (option 119).
	SearchDomains []string `json:"search_domains,omitempty"`
	// HostRoutes are extra routes handed out as classless static routes (option 121).
	HostRoutes []HostRoute `json:"host_routes,omitempty"`
	// LeaseSeconds is the lease time (option 51); 0 means DefaultLeaseSeconds.
	LeaseSeconds int `json:"lease_seconds,omitempty"`
}

// HostRoute is a route to Destination (an IPv4 CIDR) via NextHop, an address on the
// network.
type HostRoute struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}

// DHCP limits, in the spirit of Neutron's (max_dns_nameservers 5, max_subnet_host_routes
// 20, dhcp_lease_duration 86400).
const (
	DefaultLeaseSeconds = 86400
	MinLeaseSeconds     = 60
	MaxLeaseSeconds     = 365 * 86400
	MaxDNSServers       = 5
	MaxSearchDomains    = 6
	MaxHostRoutes       = 20
)

// Lease is the lease time in seconds the network hands out.
func (d DHCP) Lease() int {
	if d.LeaseSeconds == 0 {
		return DefaultLeaseSeconds
	}
	return d.LeaseSeconds
}

// Search is the DNS search list the network hands out: SearchDomains, or Domain.
func (d DHCP) Search() []string {
	if len(d.SearchDomains) > 0 || d.Domain == "" {
		return d.SearchDomains
	}
	return []string{d.Domain}
}

// validateNoIPv4 refuses the IPv4-only settings on a network without an IPv4 subnet:
// they would be stored and never used. All of DHCP is DHCPv4's (the IPv6 subnet
// carries its own DNS servers), so only its zero value passes.
func validateNoIPv4(n *Network) error {
	const why = "needs an IPv4 subnet (network.cidr); this network has only an IPv6 one"
	d := &n.DHCP
	switch {
	case n.Gateway != "":
		return fieldErr("network.gateway", n.Gateway, "%s (its IPv6 gateway is network.ipv6.gateway)", why)
	case len(d.DNSServers) > 0:
		return fieldErr("network.dhcp.dns_servers", strings.Join(d.DNSServers, ","), "DHCPv4 %s (IPv6 DNS servers are network.ipv6.dns_servers)", why)
	case len(d.HostRoutes) > 0:
		return fieldErr("network.dhcp.host_routes", d.HostRoutes[0].String(), "DHCPv4 %s", why)
	case d.LeaseSeconds != 0:
		return fieldErr("network.dhcp.lease_seconds", strconv.Itoa(d.LeaseSeconds), "DHCPv4 %s", why)
	case d.Domain != "":
		return fieldErr("network.dhcp.domain", d.Domain, "DHCPv4 %s", why)
	case len(d.SearchDomains) > 0:
		return fieldErr("network.dhcp.search_domains", strings.Join(d.SearchDomains, ","), "DHCPv4 %s", why)
	case d.Disabled:
		return fieldErr("network.dhcp.disabled", "true", "DHCPv4 %s: there is no DHCPv4 to turn off", why)
	case len(n.AllocationPools) > 0:
		return fieldErr("network.allocation_pools", n.AllocationPools[0].Start, "%s", why)
	}
	return validateExternal(n, netip.Prefix{}) // l3.go: refuses a provider
}

// validateDHCP checks a network's gateway and DHCP settings against its CIDR (cidr is
// the parsed, valid network.cidr).
func validateDHCP(n *Network, cidr netip.Prefix) error {
	onLink := func(field, s string) error {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return fieldErr(field, s, "not an IPv4 address")
		}
		if !cidr.Contains(a) {
			return fieldErr(field, s, "outside the network's CIDR %s", cidr)
		}
		if a == cidr.Addr() || a == LastAddr(cidr) {
			return fieldErr(field, s, "is the network or broadcast address of %s", cidr)
		}
		if a.String() != s {
			return fieldErr(field, s, "write it as %s", a)
		}
		return nil
	}
	if n.Gateway != "" {
		if err := onLink("network.gateway", n.Gateway); err != nil {
			return err
		}
	}
	d := &n.DHCP
	if len(d.DNSServers) > MaxDNSServers {
		return fieldErr("network.dhcp.dns_servers", strings.Join(d.DNSServers, ","), "at most %d servers", MaxDNSServers)
	}
	seen := map[string]bool{}
	for _, s := range d.DNSServers {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return fieldErr("network.dhcp.dns_servers", s, "not a unicast IPv4 address")
		}
		if seen[a.String()] {
			return fieldErr("network.dhcp.dns_servers", s, "listed twice")
		}
		seen[a.String()] = true
	}
	if err := validateDomains(d); err != nil {
		return err
	}
	if len(d.HostRoutes) > MaxHostRoutes {
		return fieldErr("network.dhcp.host_routes", strconv.Itoa(len(d.HostRoutes)), "at most %d routes", MaxHostRoutes)
	}
	seen = map[string]bool{}
	for _, r := range d.HostRoutes {
		dst, err := netip.ParsePrefix(r.Destination)
		if err != nil || !dst.Addr().Is4() {
			return fieldErr("network.dhcp.host_routes.destination", r.Destination, "not an IPv4 CIDR like 192.168.0.0/16")
		}
		if dst.Masked() != dst {
			return fieldErr("network.dhcp.host_routes.destination", r.Destination, "has host bits set (did you mean %s?)", dst.Masked())
		}
		if dst.Bits() == 0 && n.Gateway != "" {
			return fieldErr("network.dhcp.host_routes.destination", r.Destination, "the default route is the network's gateway %s", n.Gateway)
		}
		if seen[dst.String()] {
			return fieldErr("network.dhcp.host_routes.destination", r.Destination, "listed twice")
		}
		seen[dst.String()] = true
		if err := onLink("network.dhcp.host_routes.nexthop", r.NextHop); err != nil {
			return err
		}
	}
	if l := d.LeaseSeconds; l != 0 && (l < MinLeaseSeconds || l > MaxLeaseSeconds) {
		return fieldErr("network.dhcp.lease_seconds", strconv.Itoa(l), "must be within %d..%d (0: %d)", MinLeaseSeconds, MaxLeaseSeconds, DefaultLeaseSeconds)
	}
	return nil
}

// validateDomains checks the DNS domain and search list.
func validateDomains(d *DHCP) error {
	if d.Domain != "" {
		if err := ValidateDomain("network.dhcp.domain", d.Domain); err != nil {
			return err
		}
	}
	if len(d.SearchDomains) > MaxSearchDomains {
		return fieldErr("network.dhcp.search_domains", strings.Join(d.SearchDomains, ","), "at most %d domains", MaxSearchDomains)
	}
	seen := map[string]bool{}
	for _, s := range d.SearchDomains {
		if err := ValidateDomain("network.dhcp.search_domains", s); err != nil {
			return err
		}
		if seen[s] {
			return fieldErr("network.dhcp.search_domains", s, "listed twice")
		}
		seen[s] = true
	}
	return nil
}

// ValidateDomain checks a DNS domain name: dot-separated labels of 1..63 letters,
// digits and '-', not starting or ending with '-', 253 characters at most, no
// trailing dot.
func ValidateDomain(field, s string) error {
	if s == "" || len(s) > 253 {
		return fieldErr(field, s, "must be 1..253 characters")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fieldErr(field, s, "each dot-separated label must be 1..63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fieldErr(field, s, "a label may not start or end with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fieldErr(field, s, "only letters, digits and '-' are allowed in a label")
			}
		}
	}
	return nil
}

// Hostname is the host name DHCP hands a port's guest (option 12): the port's name
// with every character a host name may not hold replaced by '-', at most 63
// characters.
func Hostname(portName string) string {
	b := []byte(portName)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	s := strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" {
		return "vm"
	}
	return s
}

// ParseHostRoute reads "DESTINATION,NEXTHOP" (the form lanesctl takes).
func ParseHostRoute(s string) (HostRoute, error) {
	dst, hop, ok := strings.Cut(s, ",")
	if !ok {
		return HostRoute{}, fieldErr("network.dhcp.host_routes", s, "want DESTINATION_CIDR,NEXTHOP like 192.168.0.0/16,10.0.0.254")
	}
	return HostRoute{Destination: strings.TrimSpace(dst), NextHop: strings.TrimSpace(hop)}, nil
}

func (r HostRoute) String() string { return fmt.Sprintf("%s via %s", r.Destination, r.NextHop) }
