package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// Reconcile pacing.
const (
	// resyncEvery re-checks everything, including kernel devices and OVSDB rows that
	// nothing in the store changed (someone deleted a tap by hand).
	resyncEvery = 30 * time.Second
	retryMin    = 200 * time.Millisecond
	retryMax    = 30 * time.Second
)

// agent is the state of one lanesd: what it realised, and the clients it realises with.
type agent struct {
	cfg    Config
	log    *slog.Logger
	m      *Metrics
	st     *store.Store
	mirror *store.Mirror
	db     *ovsdb.Client
	host   *hostwire.Host
	fw     *hostwire.Firewall
	brInt  *ofsync.Bridge
	brTun  *ofsync.Bridge

	patchInt int
	vlans    *vlanMap
	// realized holds the kernel plumbing done per port, so a reconcile only touches
	// ports whose plumbing changed; resyncs clear it.
	realized map[string]realizedPort
	// failures tracks per-port errors and their backoff.
	failures  map[string]*failure
	mtuWarned map[string]bool // networks already warned about
	// remoteMACs are the remote ports' MACs of the last flow sync.
	remoteMACs map[string]bool
	// statuses is what this host last wrote for its ports.
	statuses map[string]api.PortStatus

	mu   sync.Mutex // guards last and view for the local API
	last reconcileReport
	view view
	// tunnels are br-tun's tunnel ports by remote IP, as of the last reconcile.
	tunnels map[string]ovsdb.TunnelPort
	ofports map[string]int    // local port ID -> qvo ofport
	vlanOf  map[string]uint16 // network ID -> local VLAN
	// statusView is statuses as of the last reconcile, for the local API.
	statusView map[string]api.PortStatus
}

type realizedPort struct {
	spec hostwire.PortSpec
}

type failure struct {
	err   error
	tries int
	next  time.Time
}

// reconcileReport is what lanesctl status shows about the last reconcile.
type reconcileReport struct {
	Started   time.Time // when this lanesd started
	Converged time.Time // end of the first reconcile without errors
	At        time.Time
	Revision  int64
	Took      time.Duration
	Errors    []string
}

// loop reconciles whenever the store changes, a retry is due, or resyncEvery passed.
func (a *agent) loop(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.mirror.Synced():
	}
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	full := true
	for {
		seen := time.Now()
		next, err := a.reconcile(ctx, full)
		full = false
		if err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile incomplete", "err", err)
		}
		a.m.WatchLagSeconds.Set(time.Since(seen).Seconds())
		if !next.IsZero() {
			retry.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.mirror.Changed():
		case <-retry.C:
		case <-resync.C:
			full = true
		}
	}
}

// reconcile makes the host match the store once. It returns when it wants to run again
// (zero: only on change). Ports fail one by one: a port that cannot be wired is
// reported ERROR and retried with backoff while the others go ahead.
func (a *agent) reconcile(ctx context.Context, full bool) (time.Time, error) {
	start := time.Now()
	st := a.mirror.Snapshot()
	v := computeView(a.cfg.Host, st)
	if full {
		clear(a.realized)
	}
	var errs []error
	fail := func(kind string, err error) {
		a.m.ReconcileErrors.WithLabelValues(kind).Inc()
		errs = append(errs, err)
	}

	for id, n := range v.nets {
		if n.MTU > a.cfg.VMMTU() && !a.mtuWarned[id] {
			a.log.Warn("network MTU too large for this host's underlay: bigger packets will be dropped",
				"network", n.Name, "mtu", n.MTU, "underlay_mtu", a.cfg.UnderlayMTU, "max", a.cfg.VMMTU())
			a.mtuWarned[id] = true
		}
	}

	// Local VLANs: one per network with a local port, kept while the network has one.
	keep := map[string]bool{}
	for id := range v.nets {
		keep[id] = true
	}
	a.vlans.retain(keep)
	vlanOf := map[string]uint16{}
	for id := range v.nets {
		vlan, err := a.vlans.get(id)
		if err != nil {
			fail("network", err)
			continue
		}
		vlanOf[id] = vlan
	}

	// Kernel plumbing of local ports (tap, qbr, veth), only where it changed, in one
	// pass over the host's links.
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
	if len(todo) > 0 {
		failed, err := a.host.EnsurePorts(todo)
		if err != nil {
			fail("port", err)
		}
		for _, spec := range todo {
			switch perr, bad := failed[spec.ID]; {
			case err != nil:
			case bad:
				a.portFailed(spec.ID, fmt.Errorf("wire %s: %w", api.TapName(spec.ID), perr))
				fail("port", perr)
			default:
				a.realized[spec.ID] = realizedPort{spec: spec}
				wired[spec.ID] = true
			}
		}
	}

	tWire := time.Now()
	// The firewall (iptables, by device name) and OVSDB do not depend on each other:
	// apply the firewall for every wired local port, in bulk, while OVSDB takes tunnel
	// ports to the peers, qvo ports with their tags and removals in one transaction.
	fwDone := make(chan error, 1)
	go func() { fwDone <- a.applyFirewall(ctx, v, wired) }()
	ofports, tunnels, removed, err := a.applyOVSDB(ctx, v, vlanOf, wired, full)
	tOVSDB := time.Now()
	if err != nil {
		fail("ovsdb", err)
	}
	fwErr := <-fwDone
	if fwErr != nil {
		fail("firewall", fwErr)
	}

	tFW := time.Now()
	// Flows of both bridges.
	flowErr := a.applyFlows(v, vlanOf, ofports, tunnels)
	tFlows := time.Now()
	if flowErr != nil && !errors.Is(flowErr, ofsync.ErrNotConnected) {
		fail("flows", flowErr)
	}

	// Kernel devices of ports that left this host, after their qvo left br-int.
	a.removeStalePlumbing(v, removed, full)

	// Status: ACTIVE once wired, in OVSDB with an ofport, filtered and flowed.
	ready := err == nil && fwErr == nil && flowErr == nil
	a.reportStatuses(ctx, v, ofports, ready)

	took := time.Since(start)
	a.log.Debug("reconciled", "revision", st.Revision, "took", took, "wire", tWire.Sub(start), "ovsdb", tOVSDB.Sub(tWire),
		"firewall_after_ovsdb", tFW.Sub(tOVSDB), "flows", tFlows.Sub(tFW), "status", time.Since(tFlows))
	a.m.ReconcileSeconds.Observe(took.Seconds())
	a.m.StoreRevision.Set(float64(st.Revision))
	a.m.TunnelPorts.Set(float64(len(tunnels)))
	a.mu.Lock()
	a.view, a.tunnels, a.ofports, a.vlanOf = v, tunnels, ofports, vlanOf
	a.statusView = maps.Clone(a.statuses)
	a.last = reconcileReport{Started: a.last.Started, Converged: a.last.Converged, At: start, Revision: st.Revision, Took: took}
	if a.last.Converged.IsZero() && len(errs) == 0 && flowErr == nil {
		a.last.Converged = time.Now()
		a.log.Info("converged", "since_start", a.last.Converged.Sub(a.last.Started).Round(time.Millisecond), "ports", len(v.local), "peers", len(v.peers))
	}
	for _, e := range errs {
		a.last.Errors = append(a.last.Errors, e.Error())
	}
	a.mu.Unlock()

	next := a.nextRetry()
	if len(errs) > 0 || errors.Is(flowErr, ofsync.ErrNotConnected) {
		if soon := time.Now().Add(retryMin); next.IsZero() || soon.Before(next) {
			next = soon
		}
	}
	return next, errors.Join(errs...)
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
	fs := hostwire.FirewallState{Groups: map[string]*api.SecurityGroup{}, Members: map[string][]string{}}
	for id, g := range v.groups {
		fs.Groups[id] = &g
	}
	for id, ips := range v.members {
		for _, ip := range ips {
			fs.Members[id] = append(fs.Members[id], ip.String())
		}
	}
	for _, p := range v.local {
		if !wired[p.ID] {
			continue
		}
		fs.Ports = append(fs.Ports, hostwire.FirewallPort{
			ID: p.ID, MAC: p.MAC, FixedIPs: p.FixedIPs, AllowedAddressPairs: p.AllowedAddressPairs,
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
	var gone []net.HardwareAddr
	for mac := range a.remoteMACs {
		if !now[mac] {
			if hw, err := net.ParseMAC(mac); err == nil {
				gone = append(gone, hw)
			}
		}
	}
	if err := a.brTun.Forget(gone); err != nil {
		return fmt.Errorf("forget learned MACs: %w", err)
	}
	a.remoteMACs = map[string]bool{}
	for _, p := range v.remote {
		a.remoteMACs[p.MAC] = true
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

func (a *agent) portFailed(id string, err error) {
	f := a.failures[id]
	if f == nil {
		f = &failure{}
		a.failures[id] = f
	}
	f.err = err
	f.tries++
	d := retryMin << min(f.tries, 8)
	f.next = time.Now().Add(min(d, retryMax))
	a.log.Warn("port failed; will retry", "port", id, "tries", f.tries, "in", time.Until(f.next).Round(time.Millisecond), "err", err)
}

func (a *agent) nextRetry() time.Time {
	var next time.Time
	for _, f := range a.failures {
		if next.IsZero() || f.next.Before(next) {
			next = f.next
		}
	}
	return next
}

// loadStatuses reads what this host reported before a restart, so that unchanged
// statuses are not written again.
func (a *agent) loadStatuses(ctx context.Context) error {
	all, err := a.st.ListPortStatus(ctx)
	if err != nil {
		return fmt.Errorf("read port statuses: %w", err)
	}
	for _, s := range all {
		if s.Host == a.cfg.Host {
			a.statuses[s.PortID] = s
		}
	}
	return nil
}

// reportStatuses writes each local port's status when it changed.
func (a *agent) reportStatuses(ctx context.Context, v view, ofports map[string]int, ready bool) {
	counts := map[string]int{api.StatusActive: 0, api.StatusBuild: 0, api.StatusError: 0}
	for _, p := range v.local {
		want := api.PortStatus{PortID: p.ID, Host: a.cfg.Host, State: api.StatusBuild}
		switch f := a.failures[p.ID]; {
		case f != nil && a.realized[p.ID] == (realizedPort{}):
			want.State, want.Reason = api.StatusError, f.err.Error()
		case ready && ofports[p.ID] > 0:
			want.State, want.Ofport = api.StatusActive, ofports[p.ID]
			delete(a.failures, p.ID)
		}
		counts[want.State]++
		have, ok := a.statuses[p.ID]
		if ok && have.State == want.State && have.Ofport == want.Ofport && have.Reason == want.Reason && have.Host == want.Host {
			a.statuses[p.ID] = have
			continue
		}
		want.Updated = time.Now().UTC()
		if err := a.st.SetPortStatus(ctx, want); err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				a.log.Warn("report port status", "port", p.ID, "err", err)
			}
			continue
		}
		a.statuses[p.ID] = want
	}
	local := map[string]bool{}
	for _, p := range v.local {
		local[p.ID] = true
	}
	for id := range a.statuses {
		if !local[id] {
			delete(a.statuses, id)
		}
	}
	for s, n := range counts {
		a.m.Ports.WithLabelValues(s).Set(float64(n))
	}
}

// countFlows publishes installed flows per bridge and table.
func (a *agent) countFlows() {
	for _, b := range []*ofsync.Bridge{a.brInt, a.brTun} {
		st := b.Status()
		for _, t := range flows.Tables(flows.Bridge(b.Name)) {
			a.m.Flows.WithLabelValues(b.Name, strconv.Itoa(int(t.ID))).Set(float64(st.FlowsPerTable[t.ID]))
		}
	}
}

// Bundle and Connected make the agent the ofsync observer (metrics).
func (a *agent) Bundle(bridge string, n int, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	a.m.Bundles.WithLabelValues(bridge, result).Inc()
	a.m.BundleSeconds.WithLabelValues(bridge).Observe(d.Seconds())
}

func (a *agent) Connected(bridge string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	a.m.OpenFlowConnected.WithLabelValues(bridge).Set(v)
}
