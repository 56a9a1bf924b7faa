package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
)

// l3Step serves, on an L3 host, the routers api.RouterHost places here while this
// host's lease is held: a qrouter-<id> namespace per router with its qr- and qg-
// devices, the veth peers on br-int (tagged with the network's local VLAN) and br-ex,
// and the NAT rules. Routers that leave (moved, deleted, or the lease is no longer
// held) are torn down: namespace, devices and OVS ports.
type l3Step struct {
	log  *slog.Logger
	db   *ovsdb.Client
	self string
	// held reports whether this host's lease is surely alive; without it another
	// host may already serve the same routers.
	held func() bool
	// bridges maps physical networks to their bridge (--bridge-mapping).
	bridges map[string]string
	// realized is, by router ID, what was last applied.
	realized map[string]routerApplied
	// datapath is the type of the external bridges lanesd makes when missing.
	datapath    string
	bridgesMade bool
	m           *Metrics // nil in unit tests
}

type routerApplied struct {
	name  string // for the logs
	spec  hostwire.RouterSpec
	ports []ovsdb.VMPortSpec
}

func newL3Step(log *slog.Logger, db *ovsdb.Client, self, mappings, datapath string, held func() bool) (*l3Step, error) {
	bridges, err := parseBridgeMappings(mappings)
	if err != nil {
		return nil, err
	}
	return &l3Step{log: log, db: db, self: self, held: held, bridges: bridges, datapath: datapath, realized: map[string]routerApplied{}}, nil
}

// ensureBridges makes the mapped external bridges (standalone: a plain learning
// switch between the NIC and the routers' qg- peers, as Neutron's br-ex without
// flows) unless they exist; the operator adds the NIC.
func (s *l3Step) ensureBridges(ctx context.Context) error {
	if s.bridgesMade {
		return nil
	}
	have, err := s.db.Bridges(ctx)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	for _, br := range s.bridges {
		if !slices.Contains(have, br) {
			b.EnsureBridge(ovsdb.BridgeSpec{Name: br, DatapathType: s.datapath, FailMode: ovsdb.FailStandalone})
		}
	}
	if _, err := b.Commit(ctx); err != nil {
		return fmt.Errorf("external bridges: %w", err)
	}
	s.bridgesMade = true
	return nil
}

// parseBridgeMappings reads "physnet1:br-ex,physnet2:br-ex2"; "" means physnet1:br-ex.
func parseBridgeMappings(s string) (map[string]string, error) {
	if s == "" {
		s = "physnet1:" + api.BrEx
	}
	out := map[string]string{}
	for _, m := range strings.Split(s, ",") {
		phys, br, ok := strings.Cut(m, ":")
		if !ok || api.ValidateName("bridge-mapping", phys) != nil || api.ValidateName("bridge-mapping", br) != nil {
			return nil, &api.FieldError{Field: "bridge-mapping", Value: m, Reason: "want PHYSNET:BRIDGE"}
		}
		out[phys] = br
	}
	return out, nil
}

// routerMAC is the qg- device's MAC, stable per router (there is no port record
// behind it to hold one).
func routerMAC(id string) net.HardwareAddr {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return net.HardwareAddr{0xfa, 0x16, 0x3e, byte(h >> 16), byte(h >> 8), byte(h)}
}

// peerName is the OVS-side veth end of a router device: "tap" and the same suffix,
// as Neutron's L3 agent names it with ovs_use_veth.
func peerName(dev string) string { return "tap" + dev[3:] }

// desired computes the routers this host serves, by ID.
func (s *l3Step) desired(v *view.View, vlans map[string]uint16) (map[string]routerApplied, []error) {
	out := map[string]routerApplied{}
	if s.held != nil && !s.held() {
		return out, nil
	}
	ports := map[string]view.Port{}
	for _, p := range v.RouterPorts {
		ports[p.ID] = p
	}
	var errs []error
	for id, r := range v.State.Routers {
		if api.RouterHost(&r, v.State.Hosts) != s.self {
			continue
		}
		ra := routerApplied{name: r.Name, spec: hostwire.RouterSpec{Namespace: api.QRouterNamespace(id)}}
		for _, in := range r.Interfaces {
			p, ok := ports[in.PortID]
			vlan, tagged := vlans[in.NetworkID]
			if !ok || !tagged || len(p.Addrs) == 0 {
				continue // not in this host's view yet: next pass
			}
			cidr := netip.MustParsePrefix(in.CIDR)
			dev := api.QrName(p.ID)
			ra.spec.Interfaces = append(ra.spec.Interfaces, hostwire.RouterDevice{Dev: dev, Peer: peerName(dev), MAC: p.HW,
				Addr: netip.PrefixFrom(p.Addrs[0], cidr.Bits()), MTU: v.Networks[in.NetworkID].MTU})
			n := v.Networks[in.NetworkID]
			ra.ports = append(ra.ports, ovsdb.VMPortSpec{Bridge: api.BrInt, Name: peerName(dev), Tag: int(vlan),
				IfaceID: p.ID, AttachedMAC: p.MAC, IfaceStatus: ovsdb.IfaceActive, NetUUID: n.ID, SegmentationID: n.VNI})
		}
		if g := r.Gateway; g != nil {
			ext, ok := v.State.Networks[g.NetworkID]
			br := ""
			if ok && ext.Provider != nil {
				br = s.bridges[ext.Provider.Physnet]
			}
			if br == "" {
				errs = append(errs, fmt.Errorf("router %s: external network %s: no --bridge-mapping for its physnet", r.Name, g.NetworkID))
			} else {
				cidr := netip.MustParsePrefix(ext.CIDR)
				dev := api.QgName(id)
				ra.spec.Gateway = &hostwire.RouterDevice{Dev: dev, Peer: peerName(dev), MAC: routerMAC(id),
					Addr: netip.PrefixFrom(netip.MustParseAddr(g.IP), cidr.Bits()), MTU: ext.MTU}
				ra.spec.NextHop = netip.MustParseAddr(ext.Gateway)
				ra.spec.SNAT = g.SNAT
				ra.ports = append(ra.ports, ovsdb.VMPortSpec{Bridge: br, Name: peerName(dev), Tag: ext.Provider.VLAN,
					IfaceID: id, AttachedMAC: routerMAC(id).String(), IfaceStatus: ovsdb.IfaceActive, NetUUID: ext.ID})
				for _, f := range v.State.FloatingIPs {
					if f.RouterID == id && f.PortID != "" {
						ra.spec.FloatingIPs = append(ra.spec.FloatingIPs, hostwire.FloatingIP{FIP: netip.MustParseAddr(f.IP), Fixed: netip.MustParseAddr(f.FixedIP)})
					}
				}
				sort.Slice(ra.spec.FloatingIPs, func(i, j int) bool { return ra.spec.FloatingIPs[i].FIP.Less(ra.spec.FloatingIPs[j].FIP) })
			}
		}
		sort.Slice(ra.spec.Interfaces, func(i, j int) bool { return ra.spec.Interfaces[i].Dev < ra.spec.Interfaces[j].Dev })
		sort.Slice(ra.ports, func(i, j int) bool { return ra.ports[i].Name < ra.ports[j].Name })
		out[id] = ra
	}
	return out, errs
}

// Sync makes the served routers match the view; a nil step (not an L3 host) does
// nothing. On a full pass every served router is applied again.
func (s *l3Step) Sync(ctx context.Context, v *view.View, vlans map[string]uint16, full bool) error {
	if s == nil {
		return nil
	}
	want, errs := s.desired(v, vlans)
	if full {
		// Namespaces of routers a previous lanesd served and that moved or went
		// while no lanesd ran here.
		nss, err := hostwire.RouterNamespaces()
		if err != nil {
			errs = append(errs, err)
		}
		for _, ns := range nss {
			id := strings.TrimPrefix(ns, "qrouter-")
			if _, keep := want[id]; keep {
				continue
			}
			if _, known := s.realized[id]; known {
				continue // torn down below, with its OVS ports
			}
			if err := hostwire.DeleteRouter(ns); err != nil {
				errs = append(errs, err)
				continue
			}
			s.log.Info("stale router namespace removed", "namespace", ns)
		}
	}
	if len(want) > 0 {
		if err := s.ensureBridges(ctx); err != nil {
			return err
		}
	}
	for id, old := range s.realized {
		if _, keep := want[id]; keep {
			continue
		}
		if err := s.teardown(ctx, old); err != nil {
			s.count("remove", err)
			errs = append(errs, fmt.Errorf("router %s: %w", id, err))
			continue
		}
		s.count("remove", nil)
		s.log.Info("router removed", "router", old.name, "router_id", id, "namespace", old.spec.Namespace)
		delete(s.realized, id)
	}
	for id, ra := range want {
		old, had := s.realized[id]
		if had && !full && reflect.DeepEqual(old, ra) {
			continue
		}
		if err := hostwire.EnsureRouter(ra.spec); err != nil {
			s.count("apply", err)
			errs = append(errs, fmt.Errorf("router %s: %w", id, err))
			continue
		}
		b := s.db.NewBatch()
		for _, p := range ra.ports {
			b.EnsureVMPort(p)
		}
		for _, p := range old.ports {
			if !containsPort(ra.ports, p.Name) {
				b.DeletePort(p.Bridge, p.Name)
			}
		}
		if _, err := b.Commit(ctx); err != nil {
			s.count("apply", err)
			errs = append(errs, fmt.Errorf("router %s: ovsdb: %w", id, err))
			continue
		}
		s.count("apply", nil)
		switch {
		case !had:
			s.log.Info("router serving", "router", ra.name, "router_id", id, "namespace", ra.spec.Namespace,
				"interfaces", len(ra.spec.Interfaces), "gateway", ra.spec.Gateway != nil, "floating_ips", len(ra.spec.FloatingIPs))
		case !reflect.DeepEqual(old, ra):
			s.log.Info("router changed", "router", ra.name, "router_id", id, "namespace", ra.spec.Namespace,
				"interfaces", len(ra.spec.Interfaces), "gateway", ra.spec.Gateway != nil, "floating_ips", len(ra.spec.FloatingIPs))
		}
		s.realized[id] = ra
	}
	if s.m != nil {
		s.m.Routers.Set(float64(len(s.realized)))
	}
	return errors.Join(errs...)
}

// count records one router set-up (apply) or teardown (remove).
func (s *l3Step) count(action string, err error) {
	if s.m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.m.RouterApplies.WithLabelValues(action, result).Inc()
}

// Next is when the step must run again although nothing changed: while it serves
// routers, soon enough to notice that the lease is no longer held.
func (s *l3Step) Next() time.Time {
	if s == nil || len(s.realized) == 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Second)
}

func containsPort(ps []ovsdb.VMPortSpec, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (s *l3Step) teardown(ctx context.Context, ra routerApplied) error {
	b := s.db.NewBatch()
	for _, p := range ra.ports {
		b.DeletePort(p.Bridge, p.Name)
	}
	if len(ra.ports) > 0 {
		if _, err := b.Commit(ctx); err != nil {
			return fmt.Errorf("ovsdb: %w", err)
		}
	}
	return hostwire.DeleteRouter(ra.spec.Namespace)
}
