package ovsdb

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// PatchOfport is the ofport_request of both patch ports (patch-tun on br-int and
// patch-int on br-tun), as a Neutron host usually shows them, so flows and traces
// read the same on every host and across restarts.
const PatchOfport = 1

// EnsurePatchPair links two bridges with a pair of patch ports: intPort on brInt
// (normally patch-tun) and tunPort on brTun (normally patch-int), both with
// ofport_request PatchOfport. Both bridges must exist (or be ensured earlier in
// the same batch). Result.Ofports holds both ports' ofports.
func (b *Batch) EnsurePatchPair(brInt, brTun, intPort, tunPort string) *Batch {
	b.add(intPort, func(p *planner) error {
		return p.ensurePort(&portSpec{bridge: brInt, name: intPort, ifType: "patch",
			options: map[string]string{"peer": tunPort}, ofportRequest: ptr(PatchOfport), readback: true})
	})
	return b.add(tunPort, func(p *planner) error {
		return p.ensurePort(&portSpec{bridge: brTun, name: tunPort, ifType: "patch",
			options: map[string]string{"peer": intPort}, ofportRequest: ptr(PatchOfport), readback: true})
	})
}

// EnsurePatchPair applies the patch pair in one transaction and returns the ofports
// of intPort (on brInt) and tunPort (on brTun).
func (c *Client) EnsurePatchPair(ctx context.Context, brInt, brTun, intPort, tunPort string) (intOfport, tunOfport int, err error) {
	r, err := c.NewBatch().EnsurePatchPair(brInt, brTun, intPort, tunPort).Commit(ctx)
	return r.Ofports[intPort], r.Ofports[tunPort], err
}

// Tunnel ofport_request numbers. A tunnel port asks for TunnelOfportBase plus the
// low 14 bits of its remote address (vxlan-ac1f0002 -> 0x4002 = 16386; fd00:31::2 ->
// 0x4002 too), so the number is stable across vswitchd restarts, unique for all
// remotes within one IPv4 /18 (IPv6 /114), and for IPv4 readable from the port name. If that number is taken on the bridge (by any
// interface's ofport or ofport_request, or by another port of the same batch), the
// next free number upwards is used, wrapping within [TunnelOfportBase,
// TunnelOfportMax]. An existing tunnel port keeps whatever number it already has.
const (
	TunnelOfportBase = 0x4000
	TunnelOfportMax  = 65279 // largest ofport_request the schema allows
)

// TunnelPort is a tunnel port on br-tun.
type TunnelPort struct {
	Name          string
	Type          string // vxlan, gre, geneve
	RemoteIP      string
	LocalIP       string
	Ofport        int // 0 while vswitchd has not numbered it yet (cache)
	OfportRequest int
}

func tunnelOptions(localIP, remoteIP string) map[string]string {
	o := map[string]string{"remote_ip": remoteIP, "key": "flow", "df_default": "true"}
	if localIP != "" {
		o["local_ip"] = localIP
	}
	return o
}

func isTunnelType(t string) bool {
	return t == api.TunnelVXLAN || t == api.TunnelGRE || t == api.TunnelGeneve
}

// EnsureTunnelPort adds or converges the tunnel port to remoteIP on the bridge,
// named api.TunnelPortName(tunnelType, remoteIP), with options remote_ip,
// local_ip (if given), key=flow and df_default=true. Result.Ofports is keyed by
// the port name.
func (b *Batch) EnsureTunnelPort(bridgeName, tunnelType, localIP, remoteIP string) *Batch {
	if err := api.ValidateTunnelType("tunnel type", tunnelType); err != nil {
		b.err = fmt.Errorf("tunnel to %s: %w", remoteIP, err)
		return b
	}
	name, err := api.TunnelPortName(tunnelType, remoteIP)
	if err != nil {
		b.err = fmt.Errorf("tunnel port: %w", err)
		return b
	}
	remote := netip.MustParseAddr(remoteIP) // validated by TunnelPortName
	if localIP != "" {
		// A tunnel's outer header has one family: OVS would accept the row and never
		// send a packet through it.
		if a, err := netip.ParseAddr(localIP); err != nil || a.Zone() != "" || a.Is4In6() {
			b.err = fmt.Errorf("tunnel port %s: local_ip %q: not an IPv4 or IPv6 address", name, localIP)
			return b
		} else if a.Is4() != remote.Is4() {
			b.err = fmt.Errorf("tunnel port %s: local_ip %s and remote_ip %s are of different IP versions", name, localIP, remoteIP)
			return b
		}
	}
	return b.add(name, func(p *planner) error {
		if !p.bridgeExists(bridgeName) {
			return fmt.Errorf("tunnel port %s: bridge %s: %w", name, bridgeName, ErrNotFound)
		}
		req := p.tunnelOfportRequest(bridgeName, name, remote)
		return p.ensurePort(&portSpec{bridge: bridgeName, name: name, ifType: tunnelType,
			options: tunnelOptions(localIP, remoteIP), ofportRequest: ptr(req), readback: true})
	})
}

// tunnelOfportRequest picks the tunnel's ofport_request (see TunnelOfportBase).
func (p *planner) tunnelOfportRequest(bridgeName, name string, remote netip.Addr) int {
	if i := p.s.ifaces[name]; i != nil && i.OfportRequest != nil && p.s.portOn(bridgeName, name) != nil {
		return *i.OfportRequest
	}
	used := map[int]bool{}
	if b := p.s.bridges[bridgeName]; b != nil {
		for _, i := range p.s.bridgeIfaces(b) {
			if i.Name == name {
				continue
			}
			if i.Ofport != nil {
				used[*i.Ofport] = true
			}
			if i.OfportRequest != nil {
				used[*i.OfportRequest] = true
			}
		}
	}
	res := p.reserved[bridgeName]
	if res == nil {
		res = map[int]bool{}
		p.reserved[bridgeName] = res
	}
	a := remote.As16() // an IPv4 address's last 4 bytes are its own
	low := (int(a[14])<<8 | int(a[15])) & 0x3fff
	span := TunnelOfportMax - TunnelOfportBase + 1
	for k := range span {
		cand := TunnelOfportBase + (low+k)%span
		if !used[cand] && !res[cand] {
			res[cand] = true
			return cand
		}
	}
	// 49k tunnel ports on one bridge: let OVS pick.
	return TunnelOfportBase + low
}

// EnsureTunnelPort applies one tunnel port in one transaction and returns it.
func (c *Client) EnsureTunnelPort(ctx context.Context, bridgeName, tunnelType, localIP, remoteIP string) (TunnelPort, error) {
	name, err := api.TunnelPortName(tunnelType, remoteIP)
	if err != nil {
		return TunnelPort{}, fmt.Errorf("tunnel port: %w", err)
	}
	r, err := c.NewBatch().EnsureTunnelPort(bridgeName, tunnelType, localIP, remoteIP).Commit(ctx)
	if err != nil {
		return TunnelPort{}, err
	}
	tp := TunnelPort{Name: name, Type: tunnelType, RemoteIP: remoteIP, LocalIP: localIP, Ofport: r.Ofports[name]}
	if s, err := c.snapshot(ctx); err == nil {
		if i := s.ifaces[name]; i != nil && i.OfportRequest != nil {
			tp.OfportRequest = *i.OfportRequest
		}
	}
	return tp, nil
}

// DeleteTunnelPort removes the tunnel port to remoteIP; a missing one is no error.
func (b *Batch) DeleteTunnelPort(bridgeName, tunnelType, remoteIP string) *Batch {
	name, err := api.TunnelPortName(tunnelType, remoteIP)
	if err != nil {
		b.err = fmt.Errorf("tunnel port: %w", err)
		return b
	}
	return b.DeletePort(bridgeName, name)
}

// DeleteTunnelPort removes the tunnel port to remoteIP in one transaction.
func (c *Client) DeleteTunnelPort(ctx context.Context, bridgeName, tunnelType, remoteIP string) error {
	_, err := c.NewBatch().DeleteTunnelPort(bridgeName, tunnelType, remoteIP).Commit(ctx)
	return err
}

// ListTunnelPorts lists the bridge's vxlan, gre and geneve ports (from the cache),
// sorted by name.
func (c *Client) ListTunnelPorts(ctx context.Context, bridgeName string) ([]TunnelPort, error) {
	s, b, err := c.bridgeSnapshot(ctx, bridgeName)
	if err != nil {
		return nil, err
	}
	var out []TunnelPort
	for _, i := range s.bridgeIfaces(b) {
		if !isTunnelType(i.Type) {
			continue
		}
		tp := TunnelPort{Name: i.Name, Type: i.Type, RemoteIP: i.Options["remote_ip"], LocalIP: i.Options["local_ip"]}
		if i.Ofport != nil && *i.Ofport > 0 {
			tp.Ofport = *i.Ofport
		}
		if i.OfportRequest != nil {
			tp.OfportRequest = *i.OfportRequest
		}
		out = append(out, tp)
	}
	slices.SortFunc(out, func(a, b TunnelPort) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Neutron's keys on a VM port, written as Nova and Neutron's OVS agent write them so
// that operators and their tools read a lanes host like a Neutron one. They are
// spelled here only: callers use VMPortSpec's fields.
const (
	// Interface external_ids
	keyIfaceID     = "iface-id"
	keyAttachedMAC = "attached-mac"
	keyIfaceStatus = "iface-status"
	// Port other_config
	keyNetUUID        = "net_uuid"
	keyNetworkType    = "network_type"
	keySegmentationID = "segmentation_id"
	keyTag            = "tag"
)

// IfaceActive is the iface-status of a port whose VM is attached.
const IfaceActive = "active"

// VMPortSpec is the desired state of a VM's port on br-int (the qvo end of its veth
// pair), laid out as Neutron's OVS agent does. Empty string fields and a zero
// SegmentationID are left out; the keys lanes writes replace the columns exactly.
type VMPortSpec struct {
	// Bridge defaults to br-int.
	Bridge string
	// Name is the device, e.g. api.QvoName(portID); it must exist in vswitchd's
	// network namespace before the port is added, or the ofport is -1.
	Name string
	// Tag is the network's local VLAN (1..4094; 4095 is Neutron's dead VLAN), set as
	// Port.tag and as other_config:tag. 0 leaves the port untagged.
	Tag int

	// Interface external_ids.
	IfaceID     string // iface-id: the port's UUID
	AttachedMAC string // attached-mac: the VM's MAC
	IfaceStatus string // iface-status, e.g. IfaceActive

	// Port other_config. After a restart the controller recovers each network's local
	// VLAN from NetUUID and Tag.
	NetUUID        string // net_uuid: the network's UUID
	NetworkType    string // network_type: vxlan, gre or geneve
	SegmentationID uint32 // segmentation_id: the network's VNI
}

func putNonEmpty(m map[string]string, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// externalIDs renders the Interface external_ids.
func (s VMPortSpec) externalIDs() map[string]string {
	m := map[string]string{}
	putNonEmpty(m, keyIfaceID, s.IfaceID)
	putNonEmpty(m, keyAttachedMAC, s.AttachedMAC)
	putNonEmpty(m, keyIfaceStatus, s.IfaceStatus)
	return m
}

// otherConfig renders the Port other_config.
func (s VMPortSpec) otherConfig() map[string]string {
	m := map[string]string{}
	putNonEmpty(m, keyNetUUID, s.NetUUID)
	putNonEmpty(m, keyNetworkType, s.NetworkType)
	if s.SegmentationID != 0 {
		m[keySegmentationID] = strconv.FormatUint(uint64(s.SegmentationID), 10)
	}
	if s.Tag != 0 {
		m[keyTag] = strconv.Itoa(s.Tag)
	}
	return m
}

// EnsureVMPort adds or converges a VM port; a changed tag, external_ids or
// other_config is updated in place (the ofport stays). Result.Ofports is keyed by
// the port name.
func (b *Batch) EnsureVMPort(spec VMPortSpec) *Batch {
	if spec.Bridge == "" {
		spec.Bridge = api.BrInt
	}
	if spec.Name == "" {
		b.err = fmt.Errorf("vm port: empty name")
		return b
	}
	if spec.Tag < 0 || spec.Tag > 4095 {
		b.err = fmt.Errorf("vm port %s: tag %d: want 0..4095", spec.Name, spec.Tag)
		return b
	}
	var tag *int
	if spec.Tag != 0 {
		tag = ptr(spec.Tag)
	}
	ps := &portSpec{bridge: spec.Bridge, name: spec.Name, ifType: "", manageTag: true, tag: tag,
		portOther: spec.otherConfig(), ifaceExt: spec.externalIDs(), readback: true}
	return b.add(spec.Name, func(p *planner) error { return p.ensurePort(ps) })
}

// EnsureVMPort applies one VM port in one transaction and returns its ofport.
func (c *Client) EnsureVMPort(ctx context.Context, spec VMPortSpec) (int, error) {
	r, err := c.NewBatch().EnsureVMPort(spec).Commit(ctx)
	return r.Ofports[spec.Name], err
}

// VMPort is a VM port as found in OVSDB: its spec read back from the columns
// EnsureVMPort writes (Bridge is the bridge it was listed from), and vswitchd's state.
type VMPort struct {
	VMPortSpec
	Ofport int // 0 while not numbered yet, -1 when vswitchd failed (see Error)
	Error  string
	// exact is false when external_ids or other_config hold anything but what
	// VMPortSpec renders (a foreign key, an unparsable segmentation_id).
	exact bool
}

// Matches reports whether the port is in OVSDB exactly as EnsureVMPort(spec) would
// leave it, so that applying spec would send nothing.
func (p VMPort) Matches(spec VMPortSpec) bool {
	if spec.Bridge == "" {
		spec.Bridge = api.BrInt
	}
	return p.exact && p.VMPortSpec == spec
}

// vmPortOf reads a VM port's spec back from its rows.
func vmPortOf(bridge string, pt *port, i *iface) VMPort {
	ext, other := nonNil(i.ExternalIDs), nonNil(pt.OtherConfig)
	vp := VMPort{VMPortSpec: VMPortSpec{
		Bridge: bridge, Name: pt.Name,
		IfaceID: ext[keyIfaceID], AttachedMAC: ext[keyAttachedMAC], IfaceStatus: ext[keyIfaceStatus],
		NetUUID: other[keyNetUUID], NetworkType: other[keyNetworkType],
	}}
	if pt.Tag != nil {
		vp.Tag = *pt.Tag
	}
	segOK := true
	if v, ok := other[keySegmentationID]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		vp.SegmentationID, segOK = uint32(n), err == nil && n != 0
	}
	vp.exact = segOK && mapsEqual(ext, vp.externalIDs()) && mapsEqual(other, vp.otherConfig())
	if i.Ofport != nil {
		vp.Ofport = *i.Ofport
	}
	if i.Error != nil {
		vp.Error = *i.Error
	}
	return vp
}

// ListVMPorts lists the bridge's ports backed by kernel devices (type "" or
// "system"), i.e. everything but the bridge's own, patch and tunnel ports, sorted by
// name (from the cache).
func (c *Client) ListVMPorts(ctx context.Context, bridgeName string) ([]VMPort, error) {
	s, b, err := c.bridgeSnapshot(ctx, bridgeName)
	if err != nil {
		return nil, err
	}
	var out []VMPort
	for _, pu := range b.Ports {
		pt := s.portByUUID[pu]
		if pt == nil || len(pt.Interfaces) != 1 {
			continue
		}
		i := s.ifaceByID[pt.Interfaces[0]]
		if i == nil || normType(i.Type) != "" {
			continue
		}
		out = append(out, vmPortOf(bridgeName, pt, i))
	}
	slices.SortFunc(out, func(a, b VMPort) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
