// Package api holds lanes' resource types, their validation and the names of the
// kernel and OVS devices derived from them. It imports nothing but the standard library.
package api

import "time"

// Tunnel types. The tunnel type decides br-tun's ingress table (3, 4 or 6) and the
// OVS interface type of the tunnel ports.
const (
	TunnelVXLAN  = "vxlan"
	TunnelGRE    = "gre"
	TunnelGeneve = "geneve"
)

// Network is a tenant network: one L2 segment carried between hosts under one VNI.
type Network struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// VNI is the tunnel ID (segmentation ID), 1..16777215. Zero at create time means
	// "allocate one".
	VNI uint32 `json:"vni"`
	// CIDR is the network's IPv4 subnet; "" when it has only an IPv6 one.
	CIDR string `json:"cidr"`
	// IPv6 is the network's IPv6 subnet (ipv6.go); nil means none.
	IPv6 *Subnet6 `json:"ipv6,omitempty"`
	// MTU of the VM-facing devices. Zero at create time means "underlay MTU minus the
	// tunnel overhead".
	MTU int `json:"mtu"`
	// NetworkType is the tunnel type that carries the network between hosts (Neutron's
	// network_type): vxlan, gre or geneve; empty (records made before it existed)
	// means vxlan.
	NetworkType string `json:"network_type,omitempty"`
	// Gateway is the network's router address, handed out by DHCP; "" means none.
	Gateway string `json:"gateway,omitempty"`
	// DHCP is what the hosts' DHCP responders hand out on this network (see dhcp.go).
	DHCP DHCP `json:"dhcp,omitzero"`
	// External networks (l3.go) are provider networks the L3 hosts reach through
	// br-ex, for router gateways and floating IPs; they have no VNI and no VM ports.
	External        bool      `json:"external,omitempty"`
	Provider        *Provider `json:"provider,omitempty"`
	AllocationPools []IPRange `json:"allocation_pools,omitempty"`
}

// AddressPair is an extra IP (or CIDR) and optional MAC a port may send from
// (Neutron's allowed_address_pairs).
type AddressPair struct {
	IP  string `json:"ip"`
	MAC string `json:"mac,omitempty"`
}

// Port is a VM's interface on a network, bound to one host.
type Port struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	NetworkID string `json:"network_id"`
	Host      string `json:"host"`
	// MAC empty at create time means "allocate one" (fa:16:3e:xx:xx:xx).
	MAC string `json:"mac"`
	// FixedIPs are plain addresses: at most one inside the network's IPv4 CIDR and one
	// inside its IPv6 subnet. Empty at create time means "allocate one per subnet"; on
	// a slaac or dhcpv6-stateless subnet the IPv6 one is the EUI-64 of MAC.
	FixedIPs            []string      `json:"fixed_ips"`
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs,omitempty"`
	SecurityGroups      []string      `json:"security_groups,omitempty"`
	// PortSecurity nil means enabled (the default, as in Neutron).
	PortSecurity *bool `json:"port_security,omitempty"`
	// DeviceOwner is "" for a VM's port, DeviceOwnerRouterInterface for a router's;
	// DeviceID is then the router's ID.
	DeviceOwner string `json:"device_owner,omitempty"`
	DeviceID    string `json:"device_id,omitempty"`
}

// IsRouterInterface reports whether the port is a router's qr- port, realised by the
// router's L3 host in the router's namespace rather than as a VM's tap.
func (p *Port) IsRouterInterface() bool { return p.DeviceOwner == DeviceOwnerRouterInterface }

// PortSecurityEnabled reports whether anti-spoofing and security groups apply.
func (p *Port) PortSecurityEnabled() bool { return p.PortSecurity == nil || *p.PortSecurity }

// Port states reported by the agent of the port's host.
const (
	StatusBuild  = "BUILD"
	StatusActive = "ACTIVE"
	StatusError  = "ERROR"
	StatusDown   = "DOWN"
)

// PortStatus is what the agent of the port's host reports about it.
type PortStatus struct {
	PortID  string    `json:"port_id"`
	Host    string    `json:"host"`
	State   string    `json:"state"`
	Ofport  int       `json:"ofport,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Updated time.Time `json:"updated"`
}

// Host is a compute host running lanesd. Hosts register themselves under a lease.
type Host struct {
	Name       string `json:"name"`
	TunnelIP   string `json:"tunnel_ip"`
	TunnelType string `json:"tunnel_type"`
	// TunnelTypes are the tunnel types the host accepts; empty means TunnelType only.
	TunnelTypes []string `json:"tunnel_types,omitempty"`
	// L3 is set by a lanesd started with --l3: routers may be scheduled to it.
	L3 bool `json:"l3,omitempty"`
	// Alive is true while the host's lease is held; it is derived, not stored.
	Alive bool `json:"alive"`
	// LastSeen is the host's last heartbeat (every minute while its agent runs, and
	// when it stops); derived from a key of its own, not stored in the record.
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// Rule directions and ethertypes.
const (
	Ingress = "ingress"
	Egress  = "egress"
	IPv4    = "IPv4"
	IPv6    = "IPv6"
)

// SecurityGroup is a named set of allow rules; traffic not allowed is dropped.
type SecurityGroup struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Rules []Rule `json:"rules"`
}

// Rule allows traffic in one direction. Protocol is "tcp", "udp", "icmp", "icmpv6",
// "any" (or empty) or an IP protocol number. For tcp/udp PortMin..PortMax is the
// destination port range (0 means any). For icmp/icmpv6 ICMPType/ICMPCode narrow the
// match (nil means any). At most one of RemoteCIDR and RemoteGroupID is set; neither
// means any remote.
type Rule struct {
	ID            string `json:"id"`
	Direction     string `json:"direction"`
	Ethertype     string `json:"ethertype"`
	Protocol      string `json:"protocol,omitempty"`
	PortMin       int    `json:"port_min,omitempty"`
	PortMax       int    `json:"port_max,omitempty"`
	ICMPType      *int   `json:"icmp_type,omitempty"`
	ICMPCode      *int   `json:"icmp_code,omitempty"`
	RemoteCIDR    string `json:"remote_cidr,omitempty"`
	RemoteGroupID string `json:"remote_group_id,omitempty"`
}

// Type is the network's tunnel type (vxlan when the record predates NetworkType).
func (n Network) Type() string {
	if n.NetworkType == "" {
		return TunnelVXLAN
	}
	return n.NetworkType
}

// Accepts reports whether the host takes tunnels of type t.
func (h Host) Accepts(t string) bool {
	if len(h.TunnelTypes) == 0 {
		return t == h.TunnelType || (h.TunnelType == "" && t == TunnelVXLAN)
	}
	for _, x := range h.TunnelTypes {
		if x == t {
			return true
		}
	}
	return false
}
