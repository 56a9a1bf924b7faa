package flows

import (
	"bytes"
	"fmt"
	"maps"
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
	// Tunnels: a Builder keeps the slice of its last pass, so a caller that hands
	// it the very slice again, unmodified, spares it comparing every tunnel.
	Tunnels     []Tunnel
	LocalPorts  []LocalPort
	RemotePorts []RemotePort
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

// Flows computes the complete flow set of both bridges from scratch: a Builder with
// nothing to reuse. Remote ports on networks this host does not have, or whose host
// has no tunnel port yet, get no flows (as in Neutron's l2pop); a network floods to
// the tunnels of the hosts that have a remote port on it, in ofport order, and gets
// no flood flow without any. Every flow is checked against the table registry.
func (d *Desired) Flows() (Set, error) { return new(Builder).Build(d) }

// The flows of each owner are a pure function of that owner's input: the functions
// below, one per kind of owner, are all that builds flows, and Builder.Build calls
// them only for owners whose input changed. A flow that depends on another owner
// (a network's flood flow on the tunnels of its remote ports) takes that as part of
// its own input.

// setupIn is the input of the bridges' skeleton (Owner{CatSetup, ""}).
type setupIn struct {
	tunnelType string
	patchInt   uint32
}

func (a setupIn) equal(b setupIn) bool { return a == b }

func setupFlows(in setupIn) ([]Flow, error) {
	tb, err := NewTunBridge(in.tunnelType)
	if err != nil {
		return nil, err
	}
	c := Owner{CatSetup, ""}.Cookie()
	return append(tb.SetupDefaultTable(c, in.patchInt), IntBridge{}.SetupDefaultTable(c)...), nil
}

// tunnelIn is the input of a tunnel's flows.
type tunnelIn struct {
	owner      Owner
	remoteIP   netip.Addr
	tunnelType string // resolved: never ""
	ofport     uint32
}

func (a tunnelIn) equal(b tunnelIn) bool { return a == b }

func tunnelFlows(in tunnelIn) ([]Flow, error) {
	b, err := NewTunBridge(in.tunnelType)
	if err != nil {
		return nil, fmt.Errorf("tunnel to %s: %w", in.remoteIP, err)
	}
	return []Flow{b.SetupTunnelPort(in.owner.Cookie(), in.ofport)}, nil
}

// networkIn is the input of a network's flows: the network, and the tunnel ofports
// of the hosts that have a remote port on it (sorted), for its flood flow.
type networkIn struct {
	owner      Owner
	net        Network
	tunnelType string // resolved: never ""
	flood      []uint32
}

func (a networkIn) equal(b networkIn) bool {
	return a.owner == b.owner && a.net == b.net && a.tunnelType == b.tunnelType && slices.Equal(a.flood, b.flood)
}

func networkFlows(in networkIn) ([]Flow, error) {
	b, err := NewTunBridge(in.tunnelType)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", in.net.ID, err)
	}
	c := in.owner.Cookie()
	fs := []Flow{b.ProvisionLocalVLAN(c, in.net.LocalVLAN, in.net.VNI)}
	if len(in.flood) > 0 {
		fs = append(fs, b.InstallFloodToTun(c, in.net.LocalVLAN, in.net.VNI, in.flood))
	}
	return fs, nil
}

// remoteIn is the input of a remote port's l2pop flows: the port, its network's
// VLAN and VNI, and the tunnel to its host.
type remoteIn struct {
	owner  Owner
	vlan   uint16
	vni    uint32
	ofport uint32
	mac    net.HardwareAddr
	ips    []netip.Addr
	router bool // a router's port: its ND answers carry the router flag
}

func (a remoteIn) equal(b remoteIn) bool {
	return a.owner == b.owner && a.vlan == b.vlan && a.vni == b.vni && a.ofport == b.ofport &&
		bytes.Equal(a.mac, b.mac) && slices.Equal(a.ips, b.ips) && a.router == b.router
}

func remotePortFlows(in remoteIn) ([]Flow, error) {
	if err := checkAddrs(in.mac, in.ips); err != nil {
		return nil, fmt.Errorf("remote port %s: %w", in.owner.Key, err)
	}
	var tb TunBridge // l2pop flows are the same for every tunnel type
	c := in.owner.Cookie()
	var fs []Flow
	for _, ip := range uniq(in.ips) {
		if ip.Is4() {
			fs = append(fs, tb.InstallARPResponder(c, in.vlan, ip, in.mac))
		}
	}
	fs = append(fs, tb.RemotePortND(c, in.vlan, RemotePort{MAC: in.mac, IPs: in.ips, Router: in.router})...)
	return append(fs, tb.InstallUnicastToTun(c, in.vlan, in.vni, in.ofport, in.mac)), nil
}

// localIn is the input of a local port's br-int flows.
type localIn struct {
	owner Owner
	port  LocalPort
}

func (a localIn) equal(b localIn) bool {
	p, q := a.port, b.port
	return a.owner == b.owner && p.ID == q.ID && p.NetworkID == q.NetworkID && p.Ofport == q.Ofport &&
		p.PortSecurityDisabled == q.PortSecurityDisabled && p.DHCP == q.DHCP && p.DHCPv6 == q.DHCPv6 &&
		bytes.Equal(p.MAC, q.MAC) && slices.Equal(p.IPs, q.IPs) &&
		slices.EqualFunc(p.AllowedAddressPairs, q.AllowedAddressPairs, func(x, y AddressPair) bool {
			return x.Prefix == y.Prefix && bytes.Equal(x.MAC, y.MAC)
		})
}

func localPortFlows(in localIn) ([]Flow, error) {
	p, c := in.port, in.owner.Cookie()
	var fs []Flow
	if p.DHCP {
		fs = append(fs, IntBridge{}.SetupDHCP(c, p.Ofport)...)
	}
	if p.DHCPv6 {
		fs = append(fs, IntBridge{}.SetupDHCPv6(c, p.Ofport)...)
	}
	if p.PortSecurityDisabled {
		return fs, nil
	}
	if err := checkAddrs(p.MAC, p.IPs); err != nil {
		return nil, fmt.Errorf("local port %s: %w", p.ID, err)
	}
	var ips []netip.Prefix
	for _, a := range uniq(p.IPs) {
		ips = append(ips, netip.PrefixFrom(a, a.BitLen()))
	}
	macs := []net.HardwareAddr{p.MAC}
	for _, ap := range p.AllowedAddressPairs {
		if !ap.Prefix.IsValid() {
			return nil, fmt.Errorf("local port %s: allowed address pair without an address", p.ID)
		}
		if pfx := ap.Prefix.Masked(); !slices.Contains(ips, pfx) {
			ips = append(ips, pfx)
		}
		if ap.MAC != nil {
			if len(ap.MAC) != 6 {
				return nil, fmt.Errorf("local port %s: allowed address pair MAC %s: not an Ethernet address", p.ID, ap.MAC)
			}
			if !slices.ContainsFunc(macs, func(x net.HardwareAddr) bool { return bytes.Equal(x, ap.MAC) }) {
				macs = append(macs, ap.MAC)
			}
		}
	}
	fs = append(fs, IntBridge{}.SetupSpoofingProtection(c, p.Ofport, macs, ips)...)
	// Tagged frames, server traffic and forged neighbour advertisements (ndspoof.go).
	fs = append(fs, IntBridge{}.SetupPortIsolation(c, p.Ofport)...)
	var v6 []netip.Prefix
	for _, pfx := range ips {
		if pfx.Addr().Is6() {
			v6 = append(v6, pfx)
		}
	}
	return append(fs, IntBridge{}.SetupNDSpoofingProtection(c, p.Ofport, macs, v6)...), nil
}

// Build computes the flow set of d like Desired.Flows, reusing the flows of every
// owner whose input is the same as in the previous pass: they are neither built,
// validated nor keyed again, and the Set hands out the very same slices, so a diff
// sees them unchanged by identity. The checks across owners (one owner per flow key
// and cookie, the registry's catch-alls) are kept up to date for the owners that
// changed. Its cost follows the host's size; Update's follows the change. An error
// leaves the Builder as if it had never built anything.
func (b *Builder) Build(d *Desired) (Set, error) {
	return b.pass(d, nil, true)
}

// Update is Build for a change of a few remote ports: d is complete but for its
// RemotePorts, which list only the ports whose IDs are in changed and that exist now
// (a changed ID not listed is a port that left; a port listed is taken as changed
// too). The other remote ports are those the Builder already has. Networks,
// tunnels and local ports are few and compared whole, as in Build; the remote ports
// a changed network or tunnel touches are redone from what the Builder kept of them.
// The result equals Build of the complete Desired. Update on a Builder that holds
// nothing is an error: it has no remote ports to start from.
func (b *Builder) Update(d *Desired, changed map[string]bool) (Set, error) {
	if b.owners == nil {
		return Set{}, fmt.Errorf("incremental flow update without a previous build")
	}
	return b.pass(d, changed, false)
}

// inputs is what the Builder keeps of the Desired it last built, so that Update
// needs only what changed: the networks and tunnels, every remote port (with flows
// or not: a tunnel that comes gives flows to those waiting for it), which remote
// ports each network and host has, and each network's flood list as counts.
type inputs struct {
	tunnelType string
	nets       map[string]Network
	tunnels    map[tunnelKey]*tunnelAt
	given      []Tunnel // the Desired.Tunnels tunnels were taken from
	remote     map[string]*remoteEntry
	pass       uint64                         // numbers the passes, for the marks of remoteEntry and tunnelAt
	onNet      map[string]map[string]bool     // network ID -> its remote ports' IDs
	onHost     map[netip.Addr]map[string]bool // host tunnel IP -> its remote ports' IDs
	// flood counts, per network and tunnel ofport, the remote ports with flows
	// through that tunnel: a network floods to the ofports counted; floodOf says
	// where each remote port with flows is counted.
	flood   map[string]map[uint32]int
	floodOf map[string]floodRef
	// tunnelOwners and locals are the last pass's owners of those kinds.
	tunnelOwners map[Owner]bool
	locals       map[Owner]bool
}

// sameTunnels reports whether ts are the tunnels of the last pass, in any order:
// a host has a tunnel per peer, and they rarely change, so a pass that finds them
// the same redoes none of them.
func (in *inputs) sameTunnels(ts []Tunnel, typeOf func(string) string) bool {
	if len(ts) != len(in.tunnels) {
		return false
	}
	if len(ts) > 0 && len(ts) == len(in.given) && &ts[0] == &in.given[0] {
		return true // the very slice of the last pass (see Desired)
	}
	in.pass++ // a repeat finds its entry marked
	for _, t := range ts {
		k := tunnelKey{t.RemoteIP.Unmap(), typeOf(t.Type)}
		at := in.tunnels[k]
		if at == nil || at.ofport != t.Ofport || at.mark == in.pass {
			return false
		}
		at.mark = in.pass
	}
	return true
}

// remoteEntry is a remote port as the last pass that listed it had it; mark is that
// pass's number, so that a complete pass finds the ports it no longer lists, and
// repeats, without a set of its own.
type remoteEntry struct {
	port RemotePort
	mark uint64
}

type tunnelKey struct {
	ip netip.Addr
	t  string
}

// tunnelAt is a tunnel's ofport; mark is the last pass that found it listed (see
// remoteEntry).
type tunnelAt struct {
	ofport uint32
	mark   uint64
}

type floodRef struct {
	net    string
	ofport uint32
}

func addTo[K comparable](m map[K]map[string]bool, k K, id string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][id] = true
}

func delFrom[K comparable](m map[K]map[string]bool, k K, id string) {
	if delete(m[k], id); len(m[k]) == 0 {
		delete(m, k)
	}
}

// pass builds d's owners: all of them (all: d is complete), or those the changed
// remote ports and the few other owners touch (Update).
func (b *Builder) pass(d *Desired, changed map[string]bool, all bool) (Set, error) {
	set, err := b.collect(d, changed, all)
	if err != nil {
		*b = Builder{}
	}
	return set, err
}

func (b *Builder) collect(d *Desired, changed map[string]bool, all bool) (Set, error) {
	if d.PatchIntOfport == 0 {
		return Set{}, fmt.Errorf("patch-int ofport not set")
	}
	if _, err := NewTunBridge(d.TunnelType); err != nil {
		return Set{}, err
	}
	typeOf := func(t string) string {
		if t == "" {
			return d.TunnelType
		}
		return t
	}
	in := &b.inputs
	// complete: d lists every remote port. redo: every remote port is redone, as
	// when the host's tunnel type changes every network and tunnel without a type
	// of its own.
	complete, redo := all, in.tunnelType != d.TunnelType
	ps := newPass()
	if err := take(b, ps, Owner{CatSetup, ""}, setupIn{d.TunnelType, d.PatchIntOfport}, setupFlows); err != nil {
		return Set{}, err
	}

	nets := make(map[string]Network, len(d.Networks))
	for _, n := range d.Networks {
		if _, dup := nets[n.ID]; dup {
			return Set{}, fmt.Errorf("network %s listed twice", n.ID)
		}
		if n.VNI == 0 || n.VNI > api.MaxVNI || n.LocalVLAN == 0 || n.LocalVLAN >= deadVLAN {
			return Set{}, fmt.Errorf("network %s: VNI %d or local VLAN %d out of range", n.ID, n.VNI, n.LocalVLAN)
		}
		if _, err := NewTunBridge(n.TunnelType); n.TunnelType != "" && err != nil {
			return Set{}, fmt.Errorf("network %s: %w", n.ID, err)
		}
		nets[n.ID] = n
	}
	tunnels := in.tunnels
	sameTunnels := in.tunnelType == d.TunnelType && in.sameTunnels(d.Tunnels, typeOf)
	if !sameTunnels {
		tunnels = make(map[tunnelKey]*tunnelAt, len(d.Tunnels))
		owners := make(map[Owner]bool, len(d.Tunnels))
		for _, t := range d.Tunnels {
			ip := t.RemoteIP.Unmap()
			if !ip.IsValid() || t.Ofport == 0 {
				return Set{}, fmt.Errorf("tunnel to %v (ofport %d): want a remote IP and an ofport", t.RemoteIP, t.Ofport)
			}
			k := tunnelKey{ip, typeOf(t.Type)}
			if _, dup := tunnels[k]; dup {
				return Set{}, fmt.Errorf("%s tunnel %s listed twice", k.t, ip)
			}
			tunnels[k] = &tunnelAt{ofport: t.Ofport}
			o := Owner{CatTunnel, TunnelOwnerKey(ip, k.t, d.TunnelType)}
			owners[o] = true
			if err := take(b, ps, o, tunnelIn{o, ip, k.t, t.Ofport}, tunnelFlows); err != nil {
				return Set{}, err
			}
		}
		for o := range in.tunnelOwners {
			if !owners[o] {
				b.drop(ps, o)
			}
		}
		in.tunnelOwners = owners
	}

	// The remote ports to redo: those that came, changed or left, and those of the
	// networks and hosts whose network or tunnel changed.
	dirty := map[string]bool{}
	if in.remote == nil {
		in.remote = make(map[string]*remoteEntry, len(d.RemotePorts))
		in.onNet, in.onHost = map[string]map[string]bool{}, map[netip.Addr]map[string]bool{}
	}
	in.pass++
	had, kept := len(in.remote), 0
	for _, p := range d.RemotePorts {
		e := in.remote[p.ID]
		switch {
		case e == nil:
			e = &remoteEntry{port: p}
			in.put(e)
			dirty[p.ID] = true
		case e.mark == in.pass:
			return Set{}, fmt.Errorf("%s listed twice", Owner{CatRemotePort, p.ID})
		default:
			kept++
			if !e.port.same(p) || changed[p.ID] {
				in.take(p.ID)
				e = &remoteEntry{port: p}
				in.put(e)
				dirty[p.ID] = true
			}
		}
		e.mark = in.pass
	}
	if complete && kept < had { // some left: those this pass did not mark
		for id, e := range in.remote {
			if e.mark != in.pass {
				in.take(id)
				dirty[id] = true
			}
		}
	}
	for id := range changed {
		if e := in.remote[id]; !complete && e != nil && e.mark != in.pass {
			in.take(id) // changed and not listed: it left
			dirty[id] = true
		}
	}
	for id, n := range nets {
		if old, ok := in.nets[id]; !ok || old != n {
			maps.Copy(dirty, in.onNet[id])
		}
	}
	for id := range in.nets {
		if _, ok := nets[id]; !ok {
			maps.Copy(dirty, in.onNet[id])
		}
	}
	if !sameTunnels {
		for k, at := range tunnels {
			if old, ok := in.tunnels[k]; !ok || old.ofport != at.ofport {
				maps.Copy(dirty, in.onHost[k.ip])
			}
		}
		for k := range in.tunnels {
			if _, ok := tunnels[k]; !ok {
				maps.Copy(dirty, in.onHost[k.ip])
			}
		}
	}
	if redo {
		for id := range in.remote {
			dirty[id] = true
		}
	}
	for id := range changed {
		if in.remote[id] == nil {
			dirty[id] = true // left, or never had flows: its owner goes if it has one
		}
	}
	if in.flood == nil {
		in.flood, in.floodOf = map[string]map[uint32]int{}, map[string]floodRef{}
	}
	floodChanged := map[string]bool{}
	for id := range dirty {
		o := Owner{CatRemotePort, id}
		if ref, ok := in.floodOf[id]; ok {
			delete(in.floodOf, id)
			if in.flood[ref.net][ref.ofport]--; in.flood[ref.net][ref.ofport] == 0 {
				delete(in.flood[ref.net], ref.ofport)
				floodChanged[ref.net] = true
			}
		}
		e, ok := in.remote[id]
		var p RemotePort
		if ok {
			p = e.port
		}
		n, known := nets[p.NetworkID]
		at, up := tunnels[tunnelKey{p.HostIP.Unmap(), typeOf(n.TunnelType)}]
		if !ok || !known || !up {
			b.drop(ps, o) // no flows until its network and tunnel are there
			continue
		}
		ofport := at.ofport
		if err := take(b, ps, o, remoteIn{o, n.LocalVLAN, n.VNI, ofport, p.MAC, p.IPs, p.Router}, remotePortFlows); err != nil {
			return Set{}, err
		}
		in.floodOf[id] = floodRef{n.ID, ofport}
		if in.flood[n.ID] == nil {
			in.flood[n.ID] = map[uint32]int{}
		}
		if in.flood[n.ID][ofport]++; in.flood[n.ID][ofport] == 1 {
			floodChanged[n.ID] = true
		}
	}

	for _, n := range d.Networks {
		o := Owner{CatNetwork, n.ID}
		if old := b.owners[o]; old != nil && !redo && !floodChanged[n.ID] {
			// Its flood list is as before: the input differs only if the network does.
			prev := old.in.(networkIn)
			if prev.net == n && prev.tunnelType == typeOf(n.TunnelType) {
				continue
			}
		}
		ports := slices.Sorted(maps.Keys(in.flood[n.ID]))
		if err := take(b, ps, o, networkIn{o, n, typeOf(n.TunnelType), ports}, networkFlows); err != nil {
			return Set{}, err
		}
	}
	for id := range in.flood {
		if _, ok := nets[id]; !ok && len(in.flood[id]) == 0 {
			delete(in.flood, id)
		}
	}

	for id := range in.nets {
		if _, ok := nets[id]; !ok {
			b.drop(ps, Owner{CatNetwork, id})
		}
	}

	locals := make(map[Owner]bool, len(d.LocalPorts))
	for _, p := range d.LocalPorts {
		if _, ok := nets[p.NetworkID]; !ok {
			return Set{}, fmt.Errorf("local port %s: network %s has no local VLAN", p.ID, p.NetworkID)
		}
		if p.Ofport == 0 {
			continue
		}
		o := Owner{CatLocalPort, p.ID}
		if locals[o] {
			return Set{}, fmt.Errorf("%s listed twice", o)
		}
		locals[o] = true
		if err := take(b, ps, o, localIn{o, p}, localPortFlows); err != nil {
			return Set{}, err
		}
	}
	for o := range in.locals {
		if !locals[o] {
			b.drop(ps, o)
		}
	}
	in.tunnelType, in.nets, in.tunnels, in.locals, in.given = d.TunnelType, nets, tunnels, locals, d.Tunnels
	return b.commit(ps)
}

// put records remote port e and where it is.
func (in *inputs) put(e *remoteEntry) {
	p := e.port
	in.remote[p.ID] = e
	addTo(in.onNet, p.NetworkID, p.ID)
	addTo(in.onHost, p.HostIP.Unmap(), p.ID)
}

// take forgets remote port id, if it was there.
func (in *inputs) take(id string) {
	if e, ok := in.remote[id]; ok {
		delete(in.remote, id)
		delFrom(in.onNet, e.port.NetworkID, id)
		delFrom(in.onHost, e.port.HostIP.Unmap(), id)
	}
}

// same reports whether p and q are the same port, field by field.
func (p RemotePort) same(q RemotePort) bool {
	return p.ID == q.ID && p.NetworkID == q.NetworkID && bytes.Equal(p.MAC, q.MAC) && slices.Equal(p.IPs, q.IPs) &&
		p.HostIP == q.HostIP && p.Router == q.Router
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
