package flows

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/lanes-net/lanes/api"
)

// Desired is everything one host's flows depend on, as the controller knows it.
// Addresses come parsed: the caller parses the store's strings once, when it computes
// its view, and Flows only checks what makes a flow wrong (ranges, missing values).
type Desired struct {
	TunnelType     string // vxlan, gre or geneve: the type of networks and tunnels that name none
	PatchIntOfport uint32 // patch-int's ofport on br-tun
	Networks       []Network
	Tunnels        []Tunnel
	LocalPorts     []LocalPort
	RemotePorts    []RemotePort
}

// Network is a network with at least one port on this host.
type Network struct {
	ID        string
	VNI       uint32 // 1..api.MaxVNI
	LocalVLAN uint16 // this host's VLAN for the network on br-int, 1..4094
	// TunnelType carries the network (its network_type); "" is Desired.TunnelType.
	TunnelType string
}

// Tunnel is a tunnel port of br-tun towards another host. A host has one tunnel per
// peer and tunnel type in use between them.
type Tunnel struct {
	RemoteIP netip.Addr // the other host's tunnel address
	Ofport   uint32
	Type     string // "" is Desired.TunnelType
}

// TunnelOwnerKey is the owner key of a tunnel's flows: its remote IP, prefixed with
// its type when that is not the host's default one.
func TunnelOwnerKey(ip netip.Addr, tunnelType, defaultType string) string {
	if tunnelType == "" || tunnelType == defaultType {
		return ip.String()
	}
	return tunnelType + "/" + ip.String()
}

// LocalPort is a VM port on this host, plugged into br-int.
type LocalPort struct {
	ID                   string
	NetworkID            string
	Ofport               uint32 // 0 = not known yet: no flows
	MAC                  net.HardwareAddr
	IPs                  []netip.Addr // fixed IPs; only IPv4 ones take part in ARP
	AllowedAddressPairs  []AddressPair
	PortSecurityDisabled bool // the zero value keeps anti-spoofing on
	// DHCP sends the port's DHCP client traffic to lanesd (its network serves DHCP),
	// through meter Ofport (see DHCPMeter).
	DHCP bool
	// DHCPv6 sends the port's DHCPv6 client traffic and router solicitations to lanesd
	// (its network has an IPv6 subnet), through the same meter.
	DHCPv6 bool
}

// AddressPair is an allowed address pair (Neutron's allowed_address_pairs): the port
// may also send from Prefix (an address is a /32), and from MAC if it is set.
type AddressPair struct {
	Prefix netip.Prefix
	MAC    net.HardwareAddr // nil: the port's own MAC
}

// RemotePort is a port of another host on one of this host's networks.
type RemotePort struct {
	ID        string
	NetworkID string
	MAC       net.HardwareAddr
	IPs       []netip.Addr // IPv4 ones get an ARP responder flow, IPv6 ones an ND responder flow
	HostIP    netip.Addr   // its host's tunnel address, the RemoteIP of a Tunnel
	// Router marks a router's port (api.DeviceOwnerRouterInterface): the ND
	// responder answers for it with the router flag, without which a guest would
	// drop it from its default routers.
	Router bool
}

// Set is a host's complete flow set: per bridge, per owner, each owner's flows in
// install order, with an index from cookie to owner. A Set is immutable once Flows
// has returned it; the zero Set is empty.
type Set struct {
	bridges map[Bridge]*bridgeSet
}

type bridgeSet struct {
	owners map[Owner][]Flow
	sorted []Owner
	// byCookie maps every round-0 cookie the bridge's flows carry or give learned
	// entries to its owner.
	byCookie map[Cookie]Owner
}

// Owners lists the owners that have flows on bridge b, sorted by category and key.
func (s Set) Owners(b Bridge) []Owner {
	if bs := s.bridges[b]; bs != nil {
		return slices.Clone(bs.sorted)
	}
	return nil
}

// Flows lists every flow of bridge b, owner by owner in Owners order.
func (s Set) Flows(b Bridge) []Flow {
	bs := s.bridges[b]
	if bs == nil {
		return nil
	}
	var fs []Flow
	for _, o := range bs.sorted {
		fs = append(fs, bs.owners[o]...)
	}
	return fs
}

// OwnerFlows lists owner o's flows on bridge b in install order.
func (s Set) OwnerFlows(b Bridge, o Owner) []Flow {
	if bs := s.bridges[b]; bs != nil {
		return slices.Clone(bs.owners[o])
	}
	return nil
}

// Owner names the owner of a flow on bridge b by its cookie, whatever the cookie's
// round: a diagnostic that reads a cookie from the switch asks the set it installed.
// The cookie learn() gives its entries answers Owner{CatLearned, ""}, an owner with
// no flows of its own. A cookie of no owner of this set answers false.
func (s Set) Owner(b Bridge, c Cookie) (Owner, bool) {
	bs := s.bridges[b]
	if bs == nil {
		return Owner{}, false
	}
	o, ok := bs.byCookie[c&^RoundMask]
	return o, ok
}

func (s *Set) add(o Owner, fs ...Flow) {
	if s.bridges == nil {
		s.bridges = map[Bridge]*bridgeSet{}
	}
	for _, f := range fs {
		bs := s.bridges[f.Bridge]
		if bs == nil {
			bs = &bridgeSet{owners: map[Owner][]Flow{}}
			s.bridges[f.Bridge] = bs
		}
		bs.owners[o] = append(bs.owners[o], f)
	}
}

// Flows computes the complete flow set of both bridges. Remote ports on networks
// this host does not have, or whose host has no tunnel port yet, get no flows (as in
// Neutron's l2pop); a network floods to the tunnels of the hosts that have a remote
// port on it, in ofport order, and gets no flood flow without any. Every flow is
// checked against the table registry.
func (d *Desired) Flows() (Set, error) {
	builders := map[string]TunBridge{}
	tbOf := func(t string) (TunBridge, error) {
		if t == "" {
			t = d.TunnelType
		}
		if b, ok := builders[t]; ok {
			return b, nil
		}
		b, err := NewTunBridge(t)
		if err == nil {
			builders[t] = b
		}
		return b, err
	}
	tb, err := tbOf("")
	if err != nil {
		return Set{}, err
	}
	if d.PatchIntOfport == 0 {
		return Set{}, fmt.Errorf("patch-int ofport not set")
	}
	var s Set
	setup := Owner{CatSetup, ""}
	s.add(setup, tb.SetupDefaultTable(setup.Cookie(), d.PatchIntOfport)...)
	s.add(setup, IntBridge{}.SetupDefaultTable(setup.Cookie())...)

	typeOf := func(t string) string {
		if t == "" {
			return d.TunnelType
		}
		return t
	}
	nets := map[string]Network{}
	for _, n := range d.Networks {
		if _, dup := nets[n.ID]; dup {
			return Set{}, fmt.Errorf("network %s listed twice", n.ID)
		}
		if n.VNI == 0 || n.VNI > api.MaxVNI || n.LocalVLAN == 0 || n.LocalVLAN >= deadVLAN {
			return Set{}, fmt.Errorf("network %s: VNI %d or local VLAN %d out of range", n.ID, n.VNI, n.LocalVLAN)
		}
		if _, err := tbOf(n.TunnelType); err != nil {
			return Set{}, fmt.Errorf("network %s: %w", n.ID, err)
		}
		nets[n.ID] = n
	}

	type tunnelKey struct {
		ip netip.Addr
		t  string
	}
	tunnels := map[tunnelKey]uint32{}
	for _, t := range d.Tunnels {
		ip := t.RemoteIP.Unmap()
		if !ip.IsValid() || t.Ofport == 0 {
			return Set{}, fmt.Errorf("tunnel to %v (ofport %d): want a remote IP and an ofport", t.RemoteIP, t.Ofport)
		}
		k := tunnelKey{ip, typeOf(t.Type)}
		if _, dup := tunnels[k]; dup {
			return Set{}, fmt.Errorf("%s tunnel %s listed twice", k.t, ip)
		}
		b, err := tbOf(t.Type)
		if err != nil {
			return Set{}, fmt.Errorf("tunnel to %s: %w", ip, err)
		}
		tunnels[k] = t.Ofport
		o := Owner{CatTunnel, TunnelOwnerKey(ip, k.t, d.TunnelType)}
		s.add(o, b.SetupTunnelPort(o.Cookie(), t.Ofport))
	}

	flood := map[string][]uint32{} // network ID -> tunnel ofports
	for _, p := range d.RemotePorts {
		n, ok := nets[p.NetworkID]
		ofport, up := tunnels[tunnelKey{p.HostIP.Unmap(), typeOf(n.TunnelType)}]
		if !ok || !up {
			continue
		}
		if err := checkAddrs(p.MAC, p.IPs); err != nil {
			return Set{}, fmt.Errorf("remote port %s: %w", p.ID, err)
		}
		o := Owner{CatRemotePort, p.ID}
		for _, ip := range uniq(p.IPs) {
			if ip.Is4() {
				s.add(o, tb.InstallARPResponder(o.Cookie(), n.LocalVLAN, ip, p.MAC))
			}
		}
		s.add(o, tb.RemotePortND(o.Cookie(), n.LocalVLAN, p)...)
		s.add(o, tb.InstallUnicastToTun(o.Cookie(), n.LocalVLAN, n.VNI, ofport, p.MAC))
		if !slices.Contains(flood[n.ID], ofport) {
			flood[n.ID] = append(flood[n.ID], ofport)
		}
	}

	for _, n := range d.Networks {
		o := Owner{CatNetwork, n.ID}
		b, _ := tbOf(n.TunnelType) // checked above
		s.add(o, b.ProvisionLocalVLAN(o.Cookie(), n.LocalVLAN, n.VNI))
		if ports := flood[n.ID]; len(ports) > 0 {
			slices.Sort(ports)
			s.add(o, tb.InstallFloodToTun(o.Cookie(), n.LocalVLAN, n.VNI, ports))
		}
	}

	for _, p := range d.LocalPorts {
		if _, ok := nets[p.NetworkID]; !ok {
			return Set{}, fmt.Errorf("local port %s: network %s has no local VLAN", p.ID, p.NetworkID)
		}
		if p.Ofport == 0 {
			continue
		}
		o := Owner{CatLocalPort, p.ID}
		if p.DHCP {
			s.add(o, IntBridge{}.SetupDHCP(o.Cookie(), p.Ofport)...)
		}
		if p.DHCPv6 {
			s.add(o, IntBridge{}.SetupDHCPv6(o.Cookie(), p.Ofport)...)
		}
		if p.PortSecurityDisabled {
			continue
		}
		if err := checkAddrs(p.MAC, p.IPs); err != nil {
			return Set{}, fmt.Errorf("local port %s: %w", p.ID, err)
		}
		var ips []netip.Prefix
		for _, a := range uniq(p.IPs) {
			ips = append(ips, netip.PrefixFrom(a, a.BitLen()))
		}
		macs := []net.HardwareAddr{p.MAC}
		for _, ap := range p.AllowedAddressPairs {
			if !ap.Prefix.IsValid() {
				return Set{}, fmt.Errorf("local port %s: allowed address pair without an address", p.ID)
			}
			if pfx := ap.Prefix.Masked(); !slices.Contains(ips, pfx) {
				ips = append(ips, pfx)
			}
			if ap.MAC != nil {
				if len(ap.MAC) != 6 {
					return Set{}, fmt.Errorf("local port %s: allowed address pair MAC %s: not an Ethernet address", p.ID, ap.MAC)
				}
				if !slices.ContainsFunc(macs, func(x net.HardwareAddr) bool { return bytes.Equal(x, ap.MAC) }) {
					macs = append(macs, ap.MAC)
				}
			}
		}
		s.add(o, IntBridge{}.SetupSpoofingProtection(o.Cookie(), p.Ofport, macs, ips)...)
		// Tagged frames, server traffic and forged neighbour advertisements (ndspoof.go).
		s.add(o, IntBridge{}.SetupPortIsolation(o.Cookie(), p.Ofport)...)
		var v6 []netip.Prefix
		for _, pfx := range ips {
			if pfx.Addr().Is6() {
				v6 = append(v6, pfx)
			}
		}
		s.add(o, IntBridge{}.SetupNDSpoofingProtection(o.Cookie(), p.Ofport, macs, v6)...)
	}
	if err := s.finish(); err != nil {
		return Set{}, err
	}
	return s, nil
}

// finish validates every flow, refuses two owners claiming one flow key (they would
// overwrite each other in the switch and fight forever in a diff) or one cookie (a
// diagnostic could not tell them apart), checks that every table has the catch-all
// the registry gives it, and builds the owner order and cookie index.
func (s *Set) finish() error {
	for b, bs := range s.bridges {
		bs.sorted = bs.sorted[:0]
		for o := range bs.owners {
			bs.sorted = append(bs.sorted, o)
		}
		slices.SortFunc(bs.sorted, func(x, y Owner) int {
			return cmp.Or(cmp.Compare(x.Category, y.Category), cmp.Compare(x.Key, y.Key))
		})
		bs.byCookie = map[Cookie]Owner{}
		claim := func(c Cookie, o Owner) error {
			if prev, ok := bs.byCookie[c]; ok && prev != o {
				return fmt.Errorf("%s: owners %s and %s share cookie %#x", b, prev, o, uint64(c))
			}
			bs.byCookie[c] = o
			return nil
		}
		seen := map[string]Owner{}
		catchAll := map[uint8]int{}
		for _, o := range bs.sorted {
			for _, f := range bs.owners[o] {
				if err := f.Validate(); err != nil {
					return fmt.Errorf("owner %s: %w", o, err)
				}
				if prev, dup := seen[f.Key()]; dup {
					return fmt.Errorf("%s flow %s claimed by both %s and %s", b, f.Key(), prev, o)
				}
				seen[f.Key()] = o
				if f.Match.Fields() == 0 {
					catchAll[f.Table]++
				}
				if err := claim(f.Cookie&^RoundMask, o); err != nil {
					return err
				}
				for _, a := range f.Actions {
					if l, ok := a.(Learn); ok {
						if err := claim(l.Cookie&^RoundMask, Owner{Category: l.Cookie.Category()}); err != nil {
							return err
						}
					}
				}
			}
		}
		for _, t := range Tables(b) {
			if want := map[bool]int{true: 0, false: 1}[t.Miss.Kind == MissNoFlow]; catchAll[t.ID] != want {
				return fmt.Errorf("%s table %d (%s): %d catch-all flows, want %d (miss: %s)", b, t.ID, t.Name, catchAll[t.ID], want, t.Miss)
			}
		}
	}
	return nil
}

// checkAddrs refuses what would make a port's flows wrong: a MAC that is not an
// Ethernet address, or an IP that is not set.
func checkAddrs(mac net.HardwareAddr, ips []netip.Addr) error {
	if len(mac) != 6 {
		return fmt.Errorf("MAC %q: not an Ethernet address", mac.String())
	}
	for i, a := range ips {
		if !a.IsValid() {
			return fmt.Errorf("IP %d not set", i)
		}
	}
	return nil
}

// uniq returns ips unmapped (an IPv4-mapped IPv6 address is the IPv4 address) and
// without repeats, in their first order.
func uniq(ips []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, a := range ips {
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
