package api

import (
	"net/netip"
	"strconv"
)

// Provider network types of external networks (Neutron's provider:network_type).
const (
	ProviderFlat = "flat"
	ProviderVLAN = "vlan"
)

// Provider says how an external network reaches the L3 hosts: untagged (flat) or on
// a VLAN of the physical network Physnet, which each L3 host maps to a bridge (br-ex)
// with --bridge-mapping.
type Provider struct {
	Type    string `json:"type"`
	Physnet string `json:"physnet"`
	VLAN    int    `json:"vlan,omitempty"`
}

// IPRange is an inclusive range of addresses (Neutron's allocation_pools entry).
type IPRange struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Contains reports whether a is within the range; the range must be valid.
func (r IPRange) Contains(a netip.Addr) bool {
	s, e := netip.MustParseAddr(r.Start), netip.MustParseAddr(r.End)
	return !a.Less(s) && !e.Less(a)
}

// DeviceOwnerRouterInterface marks the port a router holds on a tenant network (its
// qr- device), as Neutron's device_owner does. Such a port belongs to its router: it is
// made and removed by router add-interface and remove-interface only.
const DeviceOwnerRouterInterface = "network:router_interface"

// Router connects tenant networks with each other and with one external network, on
// one L3 host (a host whose lanesd runs with --l3).
type Router struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Host is the L3 host the router was scheduled to. Where it runs is Host while
	// Host's agent is alive and otherwise the choice of RouterHost among the alive L3
	// hosts, so that a router moves without anyone writing to the store.
	Host string `json:"host"`
	// Gateway is the router's leg on an external network; nil means none.
	Gateway    *RouterGateway    `json:"external_gateway,omitempty"`
	Interfaces []RouterInterface `json:"interfaces,omitempty"`
}

// RouterGateway is a router's address on an external network.
type RouterGateway struct {
	NetworkID string `json:"network_id"`
	IP        string `json:"ip"`
	// SNAT translates the attached networks' traffic to IP (Neutron's enable_snat).
	SNAT bool `json:"enable_snat"`
}

// RouterInterface is a router's leg on a tenant network: a port of that network
// (DeviceOwnerRouterInterface) holding the network's gateway address.
type RouterInterface struct {
	NetworkID string `json:"network_id"`
	PortID    string `json:"port_id"`
	IP        string `json:"ip"`
	CIDR      string `json:"cidr"`
}

// FloatingIP is an address of an external network that a router translates to a
// port's fixed IP (DNAT in, SNAT out). PortID empty means unassociated.
type FloatingIP struct {
	ID        string `json:"id"`
	NetworkID string `json:"network_id"`
	IP        string `json:"ip"`
	PortID    string `json:"port_id,omitempty"`
	FixedIP   string `json:"fixed_ip,omitempty"`
	// RouterID is the router that reaches the port's network from NetworkID; set with
	// PortID.
	RouterID string `json:"router_id,omitempty"`
}

// QRouterNamespace is the network namespace of a router on its L3 host.
func QRouterNamespace(routerID string) string { return "qrouter-" + routerID }

// QrName is a router interface's device, an OVS internal port of br-int.
func QrName(portID string) string { return "qr-" + devSuffix(portID) }

// QgName is a router gateway's device on br-ex, named after the router (there is no
// port record behind it).
func QgName(routerID string) string { return "qg-" + devSuffix(routerID) }

// BrEx is the usual bridge of the external physical network on L3 hosts.
const BrEx = "br-ex"

// validateExternal checks what only external networks have. An external network has no
// VNI (it is not carried by the overlay) and at least the provider.
func validateExternal(n *Network, cidr netip.Prefix) error {
	if !n.External {
		if n.Provider != nil {
			return fieldErr("network.provider", n.Provider.Type, "only external networks have a provider")
		}
		if len(n.AllocationPools) > 0 {
			return fieldErr("network.allocation_pools", n.AllocationPools[0].Start, "only external networks have allocation pools")
		}
		return nil
	}
	if n.VNI != 0 {
		return fieldErr("network.vni", strconv.FormatUint(uint64(n.VNI), 10), "an external network has no VNI")
	}
	p := n.Provider
	if p == nil {
		return fieldErr("network.provider", "", "an external network needs one (flat or vlan, with a physnet)")
	}
	switch p.Type {
	case ProviderFlat:
		if p.VLAN != 0 {
			return fieldErr("network.provider.vlan", strconv.Itoa(p.VLAN), "a flat network has no VLAN")
		}
	case ProviderVLAN:
		if p.VLAN < 1 || p.VLAN > 4094 {
			return fieldErr("network.provider.vlan", strconv.Itoa(p.VLAN), "must be within 1..4094")
		}
	default:
		return fieldErr("network.provider.type", p.Type, "must be flat or vlan")
	}
	if err := ValidateName("network.provider.physnet", p.Physnet); err != nil {
		return err
	}
	if n.Gateway == "" {
		return fieldErr("network.gateway", "", "an external network needs its upstream router's address")
	}
	if len(n.AllocationPools) > 8 {
		return fieldErr("network.allocation_pools", "", "at most 8 pools")
	}
	gw := netip.MustParseAddr(n.Gateway) // checked by validateDHCP
	for i, r := range n.AllocationPools {
		s, err1 := netip.ParseAddr(r.Start)
		e, err2 := netip.ParseAddr(r.End)
		if err1 != nil || err2 != nil || !s.Is4() || !e.Is4() || s.String() != r.Start || e.String() != r.End {
			return fieldErr("network.allocation_pools", r.Start+"-"+r.End, "not two IPv4 addresses START-END")
		}
		if e.Less(s) {
			return fieldErr("network.allocation_pools", r.Start+"-"+r.End, "ends before it starts")
		}
		if !cidr.Contains(s) || !cidr.Contains(e) || s == cidr.Addr() || e == LastAddr(cidr) {
			return fieldErr("network.allocation_pools", r.Start+"-"+r.End, "not inside the usable addresses of %s", cidr)
		}
		if r.Contains(gw) {
			return fieldErr("network.allocation_pools", r.Start+"-"+r.End, "holds the gateway %s", n.Gateway)
		}
		for _, o := range n.AllocationPools[:i] {
			if o.Contains(s) || o.Contains(e) || r.Contains(netip.MustParseAddr(o.Start)) {
				return fieldErr("network.allocation_pools", r.Start+"-"+r.End, "overlaps %s-%s", o.Start, o.End)
			}
		}
	}
	return nil
}

// Pools are the allocation pools of an external network, or by default every usable
// address but the gateway's (the first one, in the usual layout, is skipped as a whole).
func (n *Network) Pools() []IPRange {
	if len(n.AllocationPools) > 0 {
		return n.AllocationPools
	}
	c, err := netip.ParsePrefix(n.CIDR)
	if err != nil || !c.Addr().Is4() { // no IPv4 subnet: nothing to hand out
		return nil
	}
	return []IPRange{{Start: c.Addr().Next().Next().String(), End: LastAddr(c).Prev().String()}}
}

// ValidateRouter checks a router's own fields.
func ValidateRouter(r *Router) error {
	if err := ValidateName("router.name", r.Name); err != nil {
		return err
	}
	if r.Host != "" {
		if err := ValidateName("router.host", r.Host); err != nil {
			return err
		}
	}
	if g := r.Gateway; g != nil {
		if g.NetworkID == "" {
			return fieldErr("router.external_gateway.network_id", "", "must be set")
		}
		if a, err := netip.ParseAddr(g.IP); err != nil || !a.Is4() {
			return fieldErr("router.external_gateway.ip", g.IP, "not an IPv4 address")
		}
	}
	var cidrs []netip.Prefix
	for _, i := range r.Interfaces {
		c, err := netip.ParsePrefix(i.CIDR)
		if err != nil {
			return fieldErr("router.interfaces.cidr", i.CIDR, "not a CIDR")
		}
		if a, err := netip.ParseAddr(i.IP); err != nil || !c.Contains(a) {
			return fieldErr("router.interfaces.ip", i.IP, "not an address of %s", i.CIDR)
		}
		for _, o := range cidrs {
			if o.Overlaps(c) {
				return fieldErr("router.interfaces.cidr", i.CIDR, "overlaps %s, also attached to the router", o)
			}
		}
		cidrs = append(cidrs, c)
	}
	return nil
}

// ValidateFloatingIP checks a floating IP's own fields.
func ValidateFloatingIP(f *FloatingIP) error {
	if a, err := netip.ParseAddr(f.IP); err != nil || !a.Is4() {
		return fieldErr("floatingip.ip", f.IP, "not an IPv4 address")
	}
	if f.NetworkID == "" {
		return fieldErr("floatingip.network_id", "", "must be set")
	}
	if (f.PortID == "") != (f.FixedIP == "") || (f.PortID == "") != (f.RouterID == "") {
		return fieldErr("floatingip.port_id", f.PortID, "port, fixed IP and router are set together or not at all")
	}
	if f.FixedIP != "" {
		if a, err := netip.ParseAddr(f.FixedIP); err != nil || !a.Is4() {
			return fieldErr("floatingip.fixed_ip", f.FixedIP, "not an IPv4 address")
		}
	}
	return nil
}

// RouterHost is where a router runs: its scheduled host while that host is an alive
// L3 host, otherwise the alive L3 host that rendezvous hashing picks for the router's
// ID. Every agent computes the same answer from the same hosts, so a router moves
// when its host's lease expires without a write, and an agent serves a router only
// while RouterHost names it. "" means no L3 host is alive.
func RouterHost(r *Router, hosts map[string]Host) string {
	if h, ok := hosts[r.Host]; ok && h.Alive && h.L3 {
		return r.Host
	}
	best, bestScore := "", uint64(0)
	for name, h := range hosts {
		if !h.Alive || !h.L3 {
			continue
		}
		s := fnv64(r.ID + "/" + name)
		if best == "" || s > bestScore || (s == bestScore && name < best) {
			best, bestScore = name, s
		}
	}
	return best
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
