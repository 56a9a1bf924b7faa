package controller

import (
	"fmt"
	"sort"
)

// Local VLAN IDs usable on br-int; 4095 is the dead VLAN.
const (
	minVLAN = 1
	maxVLAN = 4094
)

// vlanMap assigns each network with local ports a VLAN on this host's br-int. It is
// seeded from OVSDB (the qvo ports' other_config) at start, so a restarted lanesd keeps
// every VLAN and the tags on the wire do not change.
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
