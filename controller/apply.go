package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
)

// warnMTU logs, once per network, a network whose MTU this host's underlay cannot carry.
func (a *agent) warnMTU(v view) {
	for id, n := range v.nets {
		if n.MTU > a.cfg.VMMTU() && !a.mtuWarned[id] {
			a.log.Warn("network MTU too large for this host's underlay: bigger packets will be dropped",
				"network", n.Name, "mtu", n.MTU, "underlay_mtu", a.cfg.UnderlayMTU, "max", a.cfg.VMMTU())
			a.mtuWarned[id] = true
		}
	}
}

// allocateVLANs gives every network with a local port a local VLAN, kept while the
// network has one, and releases the others.
func (a *agent) allocateVLANs(v view) (map[string]uint16, error) {
	keep := map[string]bool{}
	for id := range v.nets {
		keep[id] = true
	}
	a.vlans.retain(keep)
	vlanOf := map[string]uint16{}
	var errs []error
	for id := range v.nets {
		vlan, err := a.vlans.get(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vlanOf[id] = vlan
	}
	return vlanOf, errors.Join(errs...)
}

// wirePorts makes the kernel plumbing of local ports (tap, qbr, veth) where it changed,
// in one pass over the host's links, and returns the ports that are wired. A port
// that fails is retried with backoff; the others go ahead.
func (a *agent) wirePorts(v view, vlanOf map[string]uint16, fail func(string, error)) map[string]bool {
	wired := map[string]bool{}
	now := time.Now()
	var todo []hostwire.PortSpec
	for _, p := range v.local {
		if _, ok := vlanOf[p.NetworkID]; !ok {
			continue
		}
		spec := hostwire.PortSpec{ID: p.ID, MAC: p.MAC, MTU: v.nets[p.NetworkID].MTU, TapOwner: uint32(a.cfg.TapUID), TapGroup: uint32(a.cfg.TapGID)}
		if r, ok := a.realized[p.ID]; ok && r.spec == spec {
			wired[p.ID] = true
			continue
		}
		if f := a.failures[p.ID]; f != nil && now.Before(f.next) {
			continue
		}
		todo = append(todo, spec)
	}
	if len(todo) == 0 {
		return wired
	}
	failed, err := a.host.EnsurePorts(todo)
	if err != nil {
		fail("port", err)
		return wired
	}
	for _, spec := range todo {
		if perr, bad := failed[spec.ID]; bad {
			a.portFailed(spec.ID, fmt.Errorf("wire %s: %w", api.TapName(spec.ID), perr))
			fail("port", perr)
			continue
		}
		a.realized[spec.ID] = realizedPort{spec: spec}
		wired[spec.ID] = true
	}
	return wired
}

// applyOVSDB converges br-tun's tunnel ports and br-int's VM ports in one transaction
// and returns the ofports of local ports (by port ID) and the tunnel ports (by remote
// IP), plus the IDs of local ports whose qvo it removed. Rows already as wanted stay
// out of the transaction (all of them go in on a full pass, to repair drift), so a
// port add costs one small transaction however many ports the host has.
func (a *agent) applyOVSDB(ctx context.Context, v view, vlanOf map[string]uint16, wired map[string]bool, full bool) (map[string]int, map[string]ovsdb.TunnelPort, []string, error) {
	localIP, _ := a.cfg.TunnelAddr()
	existingTun, err := a.db.ListTunnelPorts(ctx, BrTun)
	if err != nil {
		return nil, nil, nil, err
	}
	vmPorts, err := a.db.ListVMPorts(ctx, BrInt)
	if err != nil {
		return nil, nil, nil, err
	}
	b := a.db.NewBatch()
	changes := 0
	tunnels := map[string]ovsdb.TunnelPort{}
	for _, t := range existingTun {
		tunnels[t.RemoteIP] = t
		if _, ok := v.peers[t.RemoteIP]; !ok || t.Type != a.cfg.TunnelType {
			b.DeleteTunnelPort(BrTun, t.Type, t.RemoteIP)
			delete(tunnels, t.RemoteIP)
			changes++
		}
	}
	tunnelsChanged := changes > 0
	for ip := range v.peers {
		if t, ok := tunnels[ip]; full || !ok || t.LocalIP != localIP.String() {
			b.EnsureTunnelPort(BrTun, a.cfg.TunnelType, localIP.String(), ip)
			changes++
			tunnelsChanged = true
		}
	}
	have := map[string]ovsdb.VMPort{}
	for _, vp := range vmPorts {
		have[vp.Name] = vp
	}
	ofports := map[string]int{}
	desired := map[string]bool{}
	for _, p := range v.local {
		if !wired[p.ID] {
			continue
		}
		vlan := vlanOf[p.NetworkID]
		n := v.nets[p.NetworkID]
		spec := ovsdb.VMPortSpec{
			Bridge: BrInt,
			Name:   api.QvoName(p.ID),
			Tag:    int(vlan),
			ExternalIDs: map[string]string{
				"iface-id": p.ID, "attached-mac": p.MAC, "iface-status": "active",
			},
			OtherConfig: map[string]string{
				"net_uuid": n.ID, "network_type": a.cfg.TunnelType,
				"segmentation_id": strconv.FormatUint(uint64(n.VNI), 10), "tag": strconv.Itoa(int(vlan)),
			},
		}
		desired[spec.Name] = true
		if vp, ok := have[spec.Name]; ok && !full && vp.Ofport > 0 && vp.Tag == spec.Tag &&
			maps.Equal(vp.ExternalIDs, spec.ExternalIDs) && maps.Equal(vp.OtherConfig, spec.OtherConfig) {
			ofports[p.ID] = vp.Ofport
			continue
		}
		b.EnsureVMPort(spec)
		changes++
	}
	var removed []string
	for _, vp := range vmPorts {
		id, ours := vp.ExternalIDs["iface-id"]
		if !ours || desired[vp.Name] || vp.Name != api.QvoName(id) {
			continue
		}
		b.DeletePort(BrInt, vp.Name)
		removed = append(removed, id)
		changes++
	}
	if changes == 0 {
		return ofports, tunnels, removed, nil
	}
	res, err := b.Commit(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, p := range v.local {
		if n := res.Ofports[api.QvoName(p.ID)]; n > 0 {
			ofports[p.ID] = n
		}
	}
	if tunnelsChanged {
		tps, err := a.db.ListTunnelPorts(ctx, BrTun)
		if err != nil {
			return nil, nil, nil, err
		}
		clear(tunnels)
		for _, t := range tps {
			tunnels[t.RemoteIP] = t
		}
	}
	return ofports, tunnels, removed, nil
}

func (a *agent) applyFirewall(ctx context.Context, v view, wired map[string]bool) error {
	fs := hostwire.FirewallState{Groups: map[string]*api.SecurityGroup{}, Members: map[string]map[string][]string{}}
	for id, g := range v.groups {
		fs.Groups[id] = &g
	}
	for id, byNet := range v.members {
		fs.Members[id] = map[string][]string{}
		for net, ips := range byNet {
			for _, ip := range ips {
				fs.Members[id][net] = append(fs.Members[id][net], ip.String())
			}
		}
	}
	for _, p := range v.local {
		if !wired[p.ID] {
			continue
		}
		fs.Ports = append(fs.Ports, hostwire.FirewallPort{
			ID: p.ID, NetworkID: p.NetworkID, MAC: p.MAC, FixedIPs: p.FixedIPs, AllowedAddressPairs: p.AllowedAddressPairs,
			PortSecurity: p.PortSecurityEnabled(), SecurityGroups: p.SecurityGroups,
		})
	}
	_, err := a.fw.Apply(ctx, fs)
	return err
}

// applyFlows computes both bridges' flows and syncs them.
func (a *agent) applyFlows(v view, vlanOf map[string]uint16, ofports map[string]int, tunnels map[string]ovsdb.TunnelPort) error {
	d := flows.Desired{TunnelType: a.cfg.TunnelType, PatchIntOfport: uint32(a.patchInt)}
	for _, id := range a.vlans.networks() {
		n, ok := v.nets[id]
		if !ok {
			continue
		}
		d.Networks = append(d.Networks, flows.Network{ID: n.ID, VNI: n.VNI, LocalVLAN: vlanOf[id]})
	}
	for ip, t := range tunnels {
		if _, ok := v.peers[ip]; ok && t.Ofport > 0 {
			d.Tunnels = append(d.Tunnels, flows.Tunnel{RemoteIP: ip, Ofport: uint32(t.Ofport)})
		}
	}
	slices.SortFunc(d.Tunnels, func(x, y flows.Tunnel) int { return int(x.Ofport) - int(y.Ofport) })
	for _, p := range v.local {
		if _, ok := vlanOf[p.NetworkID]; !ok {
			continue
		}
		d.LocalPorts = append(d.LocalPorts, flows.LocalPort{
			ID: p.ID, NetworkID: p.NetworkID, Ofport: uint32(ofports[p.ID]), MAC: p.MAC, IPs: p.FixedIPs,
			AllowedAddressPairs: p.AllowedAddressPairs, PortSecurityDisabled: !p.PortSecurityEnabled(),
		})
	}
	for _, r := range v.remote {
		d.RemotePorts = append(d.RemotePorts, flows.RemotePort{ID: r.ID, NetworkID: r.NetworkID, MAC: r.MAC, IPs: r.FixedIPs, HostIP: r.HostIP})
	}
	set, err := d.Flows()
	if err != nil {
		return fmt.Errorf("compute flows: %w", err)
	}
	tunErr := a.brTun.Sync(set.Flows(flows.BrTun))
	if tunErr == nil {
		tunErr = a.forgetLearned(v)
	}
	intErr := a.brInt.Sync(set.Flows(flows.BrInt))
	a.countFlows()
	return errors.Join(tunErr, intErr)
}

// forgetLearned removes the learned entries of remote MACs that no longer belong to
// any port of this host's networks, so they stop pointing at the host they left.
func (a *agent) forgetLearned(v view) error {
	now := map[string]bool{}
	for _, p := range v.remote {
		now[p.MAC] = true
	}
	for _, p := range v.local {
		now[p.MAC] = true
	}
	t := time.Now()
	for mac := range a.remoteMACs {
		if !now[mac] {
			a.leftAt[mac] = t
		}
	}
	for mac := range a.leftAt {
		if now[mac] {
			delete(a.leftAt, mac) // back: its l2pop entry wins anyway
		}
	}
	if err := a.forgetRecent(); err != nil {
		return err
	}
	a.remoteMACs = map[string]bool{}
	for _, p := range v.remote {
		a.remoteMACs[p.MAC] = true
	}
	return nil
}

// forgetRecent deletes the learned entries of MACs that left within forgetFor. The
// loop calls it again in between reconciles: OVS's revalidators replay learn() for
// datapath flows that carried packets before the delete, and would bring an entry
// back once.
func (a *agent) forgetRecent() error {
	var gone []net.HardwareAddr
	for mac, at := range a.leftAt {
		if time.Since(at) > forgetFor {
			delete(a.leftAt, mac)
			continue
		}
		if hw, err := net.ParseMAC(mac); err == nil {
			gone = append(gone, hw)
		}
	}
	if err := a.brTun.Forget(gone); err != nil {
		return fmt.Errorf("forget learned MACs: %w", err)
	}
	return nil
}

// removeStalePlumbing deletes kernel devices of ports that are no longer bound here.
// On a full pass it also looks for leftovers in the kernel (a port deleted while
// lanesd was down).
func (a *agent) removeStalePlumbing(v view, removed []string, full bool) {
	local := map[string]bool{}
	for _, p := range v.local {
		local[hostwire.DeviceID(p.ID)] = true
	}
	for id := range a.realized {
		if !local[hostwire.DeviceID(id)] {
			removed = append(removed, id)
			delete(a.realized, id)
		}
	}
	for _, id := range removed {
		if local[hostwire.DeviceID(id)] {
			continue
		}
		if err := a.host.DeletePort(id); err != nil {
			a.log.Warn("unwire port", "port", id, "err", err)
		}
		delete(a.failures, id)
	}
	if !full {
		return
	}
	present, err := a.host.ListPorts()
	if err != nil {
		a.log.Warn("list kernel ports", "err", err)
		return
	}
	for _, ps := range present {
		if !local[ps.DeviceID] {
			if err := a.host.DeletePort(ps.DeviceID); err != nil {
				a.log.Warn("remove leftover port", "device", ps.DeviceID, "err", err)
			}
		}
	}
}
