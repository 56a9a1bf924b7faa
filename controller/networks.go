package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/ovsdb"
)

// networkStep gives every network with a local port a local VLAN on br-int, kept while
// the network has one, and warns (once per network) about a network whose MTU this
// host's underlay cannot carry.
type networkStep struct {
	log       *slog.Logger
	vmMTU     int // the largest MTU this host's underlay carries
	vlans     *vlanMap
	mtuWarned map[string]bool
}

func newNetworkStep(log *slog.Logger, vmMTU int) *networkStep {
	return &networkStep{log: log, vmMTU: vmMTU, vlans: newVLANMap(), mtuWarned: map[string]bool{}}
}

// Recover reads back the local VLAN of every network from the qvo ports, so a
// restarted lanesd keeps the tags (and so the flows) it had. It runs once, at start.
func (s *networkStep) Recover(ctx context.Context, db *ovsdb.Client) error {
	ports, err := db.ListVMPorts(ctx, api.BrInt)
	if err != nil {
		return fmt.Errorf("recover local VLANs: %w", err)
	}
	for _, p := range ports {
		if p.NetUUID != "" && p.Tag > 0 {
			s.vlans.restore(p.NetUUID, uint16(p.Tag))
		}
	}
	if n := len(s.vlans.byNet); n > 0 {
		s.log.Info("recovered local VLANs", "networks", n)
	}
	return nil
}

// Sync returns the local VLAN of each of the view's networks; a network that cannot
// get one is left out (its ports are not wired) and named in the error.
func (s *networkStep) Sync(v *view.View) (map[string]uint16, error) {
	keep := map[string]bool{}
	for id, n := range v.Networks {
		keep[id] = true
		if n.MTU > s.vmMTU && !s.mtuWarned[id] {
			s.log.Warn("network MTU too large for this host's underlay: bigger packets will be dropped",
				"network", n.Name, "mtu", n.MTU, "max", s.vmMTU)
			s.mtuWarned[id] = true
		}
	}
	for id := range s.mtuWarned {
		if !keep[id] {
			delete(s.mtuWarned, id)
		}
	}
	s.vlans.retain(keep)
	vlanOf := map[string]uint16{}
	var errs []error
	for id := range v.Networks {
		vlan, err := s.vlans.get(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vlanOf[id] = vlan
	}
	return vlanOf, errors.Join(errs...)
}

// Local VLAN IDs usable on br-int; 4095 is the dead VLAN.
const (
	minVLAN = 1
	maxVLAN = 4094
)

// vlanMap assigns each network with local ports a VLAN on this host's br-int.
type vlanMap struct {
	byNet map[string]uint16
	used  map[uint16]string
}

func newVLANMap() *vlanMap { return &vlanMap{byNet: map[string]uint16{}, used: map[uint16]string{}} }

// restore records a VLAN found in OVSDB; a conflicting second claim is ignored (the
// port is re-tagged by the next reconcile).
func (m *vlanMap) restore(netID string, vlan uint16) {
	if vlan < minVLAN || vlan > maxVLAN {
		return
	}
	if _, taken := m.used[vlan]; taken {
		return
	}
	if _, has := m.byNet[netID]; has {
		return
	}
	m.byNet[netID] = vlan
	m.used[vlan] = netID
}

// get returns the network's VLAN, allocating the lowest free one.
func (m *vlanMap) get(netID string) (uint16, error) {
	if v, ok := m.byNet[netID]; ok {
		return v, nil
	}
	for v := uint16(minVLAN); v <= maxVLAN; v++ {
		if _, taken := m.used[v]; !taken {
			m.byNet[netID] = v
			m.used[v] = netID
			return v, nil
		}
	}
	return 0, fmt.Errorf("network %s: all %d local VLANs are in use on this host", netID, maxVLAN)
}

// retain releases the VLANs of networks not in keep.
func (m *vlanMap) retain(keep map[string]bool) {
	for net, v := range m.byNet {
		if !keep[net] {
			delete(m.byNet, net)
			delete(m.used, v)
		}
	}
}

// networks lists the networks that hold a VLAN, sorted.
func (m *vlanMap) networks() []string {
	out := make([]string, 0, len(m.byNet))
	for n := range m.byNet {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
