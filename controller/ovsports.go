package controller

import (
	"context"
	"maps"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/ovsdb"
)

// ovsStep converges br-tun's tunnel ports and br-int's VM ports in one OVSDB
// transaction. Rows already as wanted stay out of the transaction (all of them go in
// on a full pass, to repair drift), so a port add costs one small transaction however
// many ports the host has.
type ovsStep struct {
	db         *ovsdb.Client
	tunnelType string // this host's default type, what the qvo rows name
	localIP    string
	// rows are the OVSDB rows the last pass read, kept while the client's
	// generation stays gen: a store event elsewhere leaves OVSDB as it was, and
	// listing and indexing a thousand tunnel rows again was most of the step.
	rows *ovsRows
	gen  uint64
	// settled are the rows whose tunnels the last pass found as its view wanted
	// them. While the rows and the view's tunnels stay as they were, there is
	// nothing to compare: at 1000 peers the comparison was a tenth of a store
	// event's CPU.
	settled *ovsRows
}

// ovsRows are br-tun's tunnel ports by peer and type, and br-int's VM ports. They
// are shared with the results of passes (read-only).
type ovsRows struct {
	tunnels map[view.TunnelKey]ovsdb.TunnelPort
	vmPorts []ovsdb.VMPort
}

// read returns the rows as of now, listing them only when OVSDB changed.
func (s *ovsStep) read(ctx context.Context, full bool) (*ovsRows, error) {
	// Read before listing: a change during the listing makes the next pass list again.
	g := s.db.Generation()
	if s.rows != nil && !full && g == s.gen {
		return s.rows, nil
	}
	tps, err := s.db.ListTunnelPorts(ctx, api.BrTun)
	if err != nil {
		return nil, err
	}
	vmPorts, err := s.db.ListVMPorts(ctx, api.BrInt)
	if err != nil {
		return nil, err
	}
	r := &ovsRows{tunnels: make(map[view.TunnelKey]ovsdb.TunnelPort, len(tps)), vmPorts: vmPorts}
	for _, t := range tps {
		r.tunnels[view.TunnelKey{IP: t.RemoteIP, Type: t.Type}] = t
	}
	s.rows, s.gen = r, g
	return r, nil
}

// ovsResult is what OVSDB holds after the step.
type ovsResult struct {
	Ofports map[string]int                      // local port ID -> qvo ofport
	Tunnels map[view.TunnelKey]ovsdb.TunnelPort // by peer and type
	Removed []string                            // local ports whose qvo this step removed
}

// Sync makes OVSDB hold a tunnel port per peer and a tagged qvo per wired local port.
func (s *ovsStep) Sync(ctx context.Context, v *view.View, vlans map[string]uint16, wired map[string]bool, full bool) (ovsResult, error) {
	res := ovsResult{Ofports: map[string]int{}, Tunnels: map[view.TunnelKey]ovsdb.TunnelPort{}}
	rows, err := s.read(ctx, full)
	if err != nil {
		return res, err
	}
	vmPorts := rows.vmPorts
	// The tunnels as they are, shared unless some go.
	res.Tunnels = rows.tunnels
	b := s.db.NewBatch()
	changes := 0
	if full || v.Changes.All || v.Changes.Tunnels || rows != s.settled {
		changes = s.tunnels(b, v, rows, &res, full)
	}
	tunnelsChanged := changes > 0
	// Settled only by a pass that found nothing to do: one that changed tunnels
	// compares again next time, whether its transaction went through or not.
	s.settled = nil
	if !tunnelsChanged {
		s.settled = rows
	}
	have := map[string]ovsdb.VMPort{}
	for _, vp := range vmPorts {
		have[vp.Name] = vp
	}
	desired := map[string]bool{}
	for _, p := range v.Local {
		if !wired[p.ID] {
			continue
		}
		spec := s.vmPortSpec(p, v.Networks[p.NetworkID], vlans[p.NetworkID])
		desired[spec.Name] = true
		if vp, ok := have[spec.Name]; ok && !full && vp.Ofport > 0 && vp.Matches(spec) {
			res.Ofports[p.ID] = vp.Ofport
			continue
		}
		b.EnsureVMPort(spec)
		changes++
	}
	for _, vp := range vmPorts {
		id := vp.IfaceID
		if id == "" || desired[vp.Name] || vp.Name != api.QvoName(id) {
			continue
		}
		b.DeletePort(api.BrInt, vp.Name)
		res.Removed = append(res.Removed, id)
		changes++
	}
	if changes == 0 {
		return res, nil
	}
	committed, err := b.Commit(ctx)
	if err != nil {
		return ovsResult{Ofports: map[string]int{}, Tunnels: map[view.TunnelKey]ovsdb.TunnelPort{}}, err
	}
	for _, p := range v.Local {
		if n := committed.Ofports[api.QvoName(p.ID)]; n > 0 {
			res.Ofports[p.ID] = n
		}
	}
	if tunnelsChanged {
		tps, err := s.db.ListTunnelPorts(ctx, api.BrTun)
		if err != nil {
			return res, err
		}
		res.Tunnels = make(map[view.TunnelKey]ovsdb.TunnelPort, len(tps))
		for _, t := range tps {
			res.Tunnels[view.TunnelKey{IP: t.RemoteIP, Type: t.Type}] = t
		}
	}
	return res, nil
}

// vmPortSpec is a qvo port as Neutron's agent leaves it, so tools that read Neutron's
// OVSDB keys find what they expect.
func (s *ovsStep) vmPortSpec(p view.Port, n api.Network, vlan uint16) ovsdb.VMPortSpec {
	return ovsdb.VMPortSpec{
		Bridge: api.BrInt, Name: api.QvoName(p.ID), Tag: int(vlan),
		IfaceID: p.ID, AttachedMAC: p.MAC, IfaceStatus: ovsdb.IfaceActive,
		NetUUID: n.ID, NetworkType: n.Type(), SegmentationID: n.VNI,
	}
}

// tunnels adds to b what makes br-tun's tunnel ports those of v (with full, every
// one of them, to repair drift), and returns how many rows it changes; res.Tunnels is
// what stays of rows'.
func (s *ovsStep) tunnels(b *ovsdb.Batch, v *view.View, rows *ovsRows, res *ovsResult, full bool) int {
	changes := 0
	for k, t := range rows.tunnels {
		if _, ok := v.Tunnels[k]; !ok {
			if changes == 0 {
				res.Tunnels = maps.Clone(rows.tunnels)
			}
			b.DeleteTunnelPort(api.BrTun, t.Type, t.RemoteIP)
			delete(res.Tunnels, k)
			changes++
		}
	}
	for k := range v.Tunnels {
		if t, ok := res.Tunnels[k]; full || !ok || t.LocalIP != s.localIP {
			b.EnsureTunnelPort(api.BrTun, k.Type, s.localIP, k.IP)
			changes++
		}
	}
	return changes
}
