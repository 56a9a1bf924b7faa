package flows

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/lanes-net/lanes/api"
)

// Desired is everything one host's flows depend on, as the controller knows it.
type Desired struct {
	TunnelType     string // vxlan, gre or geneve
	PatchIntOfport uint32 // patch-int's ofport on br-tun
	Networks       []Network
	Tunnels        []Tunnel
	LocalPorts     []LocalPort
	RemotePorts    []RemotePort
}

// Network is a network with at least one port on this host.
type Network struct {
	ID        string
	VNI       uint32
	LocalVLAN uint16 // this host's VLAN for the network on br-int, 1..4094
}

// Tunnel is a tunnel port of br-tun towards another host.
type Tunnel struct {
	RemoteIP string // the other host's tunnel IPv4 address
	Ofport   uint32
}

// LocalPort is a VM port on this host, plugged into br-int.
type LocalPort struct {
	ID                   string
	NetworkID            string
	Ofport               uint32 // 0 = not known yet: no flows
	MAC                  string
	IPs                  []string
	AllowedAddressPairs  []api.AddressPair
	PortSecurityDisabled bool // the zero value keeps anti-spoofing on
}

// RemotePort is a port of another host on one of this host's networks.
type RemotePort struct {
	ID        string
	NetworkID string
	MAC       string
	IPs       []string
	HostIP    string // its host's tunnel IP, the RemoteIP of a Tunnel
}

// Set is a host's complete flow set: per bridge, per owner, each owner's flows in
// install order.
type Set map[Bridge]map[Owner][]Flow

// Owners lists the owners that have flows on bridge b, sorted.
func (s Set) Owners(b Bridge) []Owner {
	var owners []Owner
	for o := range s[b] {
		owners = append(owners, o)
	}
	slices.SortFunc(owners, func(x, y Owner) int {
		return cmp.Or(cmp.Compare(x.Category, y.Category), cmp.Compare(x.Key, y.Key))
	})
	return owners
}

// Flows lists every flow of bridge b, owner by owner in Owners order.
func (s Set) Flows(b Bridge) []Flow {
	var fs []Flow
	for _, o := range s.Owners(b) {
		fs = append(fs, s[b][o]...)
	}
	return fs
}

func (s Set) add(o Owner, fs ...Flow) {
	for _, f := range fs {
		if s[f.Bridge] == nil {
			s[f.Bridge] = map[Owner][]Flow{}
		}
		s[f.Bridge][o] = append(s[f.Bridge][o], f)
	}
}

// Flows computes the complete flow set of both bridges. Remote ports on networks
// this host does not have, or whose host has no tunnel port yet, get no flows (as in
// Neutron's l2pop); a network floods to the tunnels of the hosts that have a remote
// port on it, in ofport order, and gets no flood flow without any. Every flow is
// checked against the table registry.
func (d *Desired) Flows() (Set, error) {
	tb, err := NewTunBridge(d.TunnelType)
	if err != nil {
		return nil, err
	}
	if d.PatchIntOfport == 0 {
		return nil, fmt.Errorf("patch-int ofport not set")
	}
	s := Set{}
	setup := Owner{CatSetup, ""}
	s.add(setup, tb.SetupDefaultTable(setup.Cookie(), d.PatchIntOfport)...)
	s.add(setup, IntBridge{}.SetupDefaultTable(setup.Cookie())...)

	nets := map[string]Network{}
	for _, n := range d.Networks {
		if _, dup := nets[n.ID]; dup {
			return nil, fmt.Errorf("network %s listed twice", n.ID)
		}
		if n.VNI == 0 || n.VNI > api.MaxVNI || n.LocalVLAN == 0 || n.LocalVLAN >= deadVLAN {
			return nil, fmt.Errorf("network %s: VNI %d or local VLAN %d out of range", n.ID, n.VNI, n.LocalVLAN)
		}
		nets[n.ID] = n
	}

	tunnels := map[netip.Addr]uint32{}
	for _, t := range d.Tunnels {
		ip, err := netip.ParseAddr(t.RemoteIP)
		if err != nil || t.Ofport == 0 {
			return nil, fmt.Errorf("tunnel %q ofport %d: want an IP and an ofport", t.RemoteIP, t.Ofport)
		}
		tunnels[ip] = t.Ofport
		o := Owner{CatTunnel, ip.String()}
		s.add(o, tb.SetupTunnelPort(o.Cookie(), t.Ofport))
	}

	flood := map[string][]uint32{} // network ID -> tunnel ofports
	for _, p := range d.RemotePorts {
		n, ok := nets[p.NetworkID]
		host, err := netip.ParseAddr(p.HostIP)
		if err != nil {
			return nil, fmt.Errorf("remote port %s: host IP %q: %w", p.ID, p.HostIP, err)
		}
		ofport, up := tunnels[host]
		if !ok || !up {
			continue
		}
		mac, ips, err := parseAddrs(p.MAC, p.IPs)
		if err != nil {
			return nil, fmt.Errorf("remote port %s: %w", p.ID, err)
		}
		o := Owner{CatRemotePort, p.ID}
		for _, ip := range ips {
			s.add(o, tb.InstallARPResponder(o.Cookie(), n.LocalVLAN, ip.Addr(), mac))
		}
		s.add(o, tb.InstallUnicastToTun(o.Cookie(), n.LocalVLAN, n.VNI, ofport, mac))
		if !slices.Contains(flood[n.ID], ofport) {
			flood[n.ID] = append(flood[n.ID], ofport)
		}
	}

	for _, n := range d.Networks {
		o := Owner{CatNetwork, n.ID}
		s.add(o, tb.ProvisionLocalVLAN(o.Cookie(), n.LocalVLAN, n.VNI))
		if ports := flood[n.ID]; len(ports) > 0 {
			slices.Sort(ports)
			s.add(o, tb.InstallFloodToTun(o.Cookie(), n.LocalVLAN, n.VNI, ports))
		}
	}

	for _, p := range d.LocalPorts {
		if _, ok := nets[p.NetworkID]; !ok {
			return nil, fmt.Errorf("local port %s: network %s has no local VLAN", p.ID, p.NetworkID)
		}
		if p.Ofport == 0 || p.PortSecurityDisabled {
			continue
		}
		mac, ips, err := parseAddrs(p.MAC, p.IPs)
		if err != nil {
			return nil, fmt.Errorf("local port %s: %w", p.ID, err)
		}
		macs := []net.HardwareAddr{mac}
		for _, ap := range p.AllowedAddressPairs {
			pfx, err := api.ParseIPOrCIDR(ap.IP)
			if err != nil {
				return nil, fmt.Errorf("local port %s: allowed address pair: %w", p.ID, err)
			}
			ips = appendNew(ips, pfx)
			if ap.MAC != "" {
				m, err := net.ParseMAC(ap.MAC)
				if err != nil {
					return nil, fmt.Errorf("local port %s: allowed address pair: %w", p.ID, err)
				}
				if !slices.ContainsFunc(macs, func(x net.HardwareAddr) bool { return x.String() == m.String() }) {
					macs = append(macs, m)
				}
			}
		}
		o := Owner{CatLocalPort, p.ID}
		s.add(o, IntBridge{}.SetupSpoofingProtection(o.Cookie(), p.Ofport, macs, ips)...)
		// Tagged frames, server traffic and forged neighbour advertisements (ndspoof.go).
		s.add(o, IntBridge{}.SetupPortIsolation(o.Cookie(), p.Ofport)...)
		s.add(o, IntBridge{}.SetupNDSpoofingProtection(o.Cookie(), p.Ofport, macs, nil)...)
	}
	return s, s.check()
}

// check validates every flow and refuses two owners claiming one flow key: they
// would overwrite each other in the switch and fight forever in a diff.
func (s Set) check() error {
	for b := range s {
		seen := map[string]Owner{}
		for _, o := range s.Owners(b) {
			for _, f := range s[b][o] {
				if err := f.Validate(); err != nil {
					return fmt.Errorf("owner %s: %w", o, err)
				}
				if prev, dup := seen[f.Key()]; dup {
					return fmt.Errorf("%s flow %s claimed by both %s and %s", b, f.Key(), prev, o)
				}
				seen[f.Key()] = o
			}
		}
	}
	return nil
}

// parseAddrs parses a port's MAC and IPv4 addresses (as /32 prefixes).
func parseAddrs(mac string, ips []string) (net.HardwareAddr, []netip.Prefix, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil, nil, fmt.Errorf("MAC %q: not an Ethernet address", mac)
	}
	var ps []netip.Prefix
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, nil, fmt.Errorf("IP %q: not an IPv4 address", s)
		}
		ps = appendNew(ps, netip.PrefixFrom(a, 32))
	}
	return hw, ps, nil
}

func appendNew(ps []netip.Prefix, p netip.Prefix) []netip.Prefix {
	if slices.Contains(ps, p) {
		return ps
	}
	return append(ps, p)
}
