package main

import (
	"fmt"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/spf13/pflag"
)

// ipv6Flags are the IPv6 subnet flags of network create and update. They are handed
// on as typed; the store validates the subnet (mode, prefix length, gateway inside).
type ipv6Flags struct {
	fs                  *pflag.FlagSet
	cidr, mode, gateway string
	dns                 list
}

func newIPv6Flags(fs *pflag.FlagSet) *ipv6Flags {
	f := &ipv6Flags{fs: fs}
	fs.StringVar(&f.cidr, "ipv6-cidr", "", "IPv6 subnet `CIDR` of the network, e.g. 2001:db8:1::/64 (slaac and dhcpv6-stateless need a /64)")
	fs.StringVar(&f.mode, "ipv6-address-mode", "", "`MODE` in which guests get their IPv6 address: slaac, dhcpv6-stateful or dhcpv6-stateless (default slaac)")
	fs.StringVar(&f.gateway, "ipv6-gateway", "", "router address `IP` on the IPv6 subnet, announced in router advertisements (\"\": none, no default route)")
	fs.Var(&f.dns, "ipv6-dns", "IPv6 DNS server `IP` handed out by DHCPv6 and in router advertisements (repeatable or comma-separated)")
	return f
}

// apply writes the flags given into n's IPv6 subnet, making the subnet when
// --ipv6-cidr is given; the other flags change an existing subnet (update) or one
// being made.
func (f *ipv6Flags) apply(n *api.Network) error {
	set := func(name string) bool { return f.fs.Changed(name) }
	if !set("ipv6-cidr") && !set("ipv6-address-mode") && !set("ipv6-gateway") && !set("ipv6-dns") {
		return nil
	}
	if n.IPv6 == nil && !set("ipv6-cidr") {
		flag := "--ipv6-gateway"
		switch {
		case set("ipv6-address-mode"):
			flag = "--ipv6-address-mode"
		case set("ipv6-dns"):
			flag = "--ipv6-dns"
		}
		return &api.FieldError{Field: "network.ipv6.cidr", Reason: fmt.Sprintf("%s needs --ipv6-cidr: network %s has no IPv6 subnet", flag, orDash(n.Name))}
	}
	s := api.Subnet6{}
	if n.IPv6 != nil {
		s = *n.IPv6
		s.DNSServers = append([]string(nil), n.IPv6.DNSServers...)
	}
	if set("ipv6-cidr") {
		s.CIDR = f.cidr
	}
	if set("ipv6-address-mode") {
		s.AddressMode = f.mode
	}
	if set("ipv6-gateway") {
		s.Gateway = f.gateway
	}
	if set("ipv6-dns") {
		s.DNSServers = splitList(f.dns)
	}
	n.IPv6 = &s
	return nil
}

// splitList flattens repeatable, comma-separated values; "" clears.
func splitList(l list) []string {
	var out []string
	for _, v := range l {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// ipv6Summary is the IPV6 column of network list and show.
func ipv6Summary(s *api.Subnet6) string {
	if s == nil {
		return "-"
	}
	parts := []string{s.CIDR, s.Mode()}
	if s.Gateway != "" {
		parts = append(parts, "gw "+s.Gateway)
	}
	if len(s.DNSServers) > 0 {
		parts = append(parts, "dns "+strings.Join(s.DNSServers, ","))
	}
	return strings.Join(parts, " ")
}
