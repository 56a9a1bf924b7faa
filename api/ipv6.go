package api

import (
	"net"
	"net/netip"
)

// IPv6 address modes of a network's IPv6 subnet: Neutron's ipv6_address_mode, with
// ipv6_ra_mode always the same (lanesd sends the router advertisements itself).
const (
	// IPv6SLAAC: ports take the RA's prefix with the EUI-64 of their MAC; the store
	// records that address as the port's fixed IP. RA flags: A.
	IPv6SLAAC = "slaac"
	// IPv6DHCPStateful: the store allocates each port's address, lanesd hands it out
	// by DHCPv6 (IA_NA). RA flags: M (and O); the prefix is on-link, not autonomous.
	IPv6DHCPStateful = "dhcpv6-stateful"
	// IPv6DHCPStateless: addresses as with slaac, other options (DNS) by DHCPv6
	// information-request. RA flags: A and O.
	IPv6DHCPStateless = "dhcpv6-stateless"
)

// Subnet6 is a network's IPv6 subnet. A network has at most one IPv4 subnet
// (Network.CIDR) and at most one IPv6 subnet, and at least one of the two.
type Subnet6 struct {
	// CIDR is the subnet's prefix; slaac and dhcpv6-stateless need a /64.
	CIDR string `json:"cidr"`
	// AddressMode is one of the IPv6* modes; "" means slaac.
	AddressMode string `json:"address_mode,omitempty"`
	// Gateway is the router's address on the subnet ("" none). lanes routers do not
	// route IPv6 yet, so lanesd's RAs always carry router lifetime 0: the guests get
	// the prefix and no default route.
	Gateway string `json:"gateway,omitempty"`
	// DNSServers are handed out by DHCPv6 (stateful and stateless) and in the RA's
	// RDNSS option.
	DNSServers []string `json:"dns_servers,omitempty"`
}

// Mode is the subnet's address mode, slaac when unset.
func (s Subnet6) Mode() string {
	if s.AddressMode == "" {
		return IPv6SLAAC
	}
	return s.AddressMode
}

// AutoAddress reports whether ports derive their address from their MAC (slaac and
// dhcpv6-stateless), so that the store may not choose another one.
func (s Subnet6) AutoAddress() bool { return s.Mode() != IPv6DHCPStateful }

// EUI64 is the address a guest forms by SLAAC from prefix (a /64) and its MAC
// (RFC 4291 appendix A): the prefix, then the MAC with the universal/local bit
// flipped and ff:fe in the middle.
func EUI64(prefix netip.Prefix, mac net.HardwareAddr) netip.Addr {
	b := prefix.Masked().Addr().As16()
	b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15] = mac[0]^2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// LinkLocal is the fe80::/64 EUI-64 address of mac, the link-local address every
// guest holds (and Neutron allows for every MAC of a port).
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	return EUI64(netip.MustParsePrefix("fe80::/64"), mac)
}
