package controller

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/diag"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// Loop pacing.
const (
	// resyncEvery re-checks everything, including kernel devices and OVSDB rows that
	// nothing in the store changed (someone deleted a tap by hand), and checks the
	// incremental state against one computed from scratch (check.go).
	resyncEvery = 30 * time.Second
	// canaryEvery is how often both bridges' flow counts are compared with what
	// lanesd installed (two ovs-ofctl per bridge).
	canaryEvery = 2 * time.Second
)

// pass says how much a reconcile does besides applying what changed since the last.
type pass uint8

const (
	// passChanges applies what changed.
	passChanges pass = iota
	// passRepair, the periodic resync, also repairs what may have drifted without a
	// change in the store: kernel devices, OVSDB rows and firewall rules are checked
	// whole. Whether the incremental state (the mirror's patched State, the view, the
	// flows) equals one computed from scratch is checked beside the loop (check.go).
	passRepair
	// passFull repairs too, and computes that state from scratch in the pass and uses
	// it: start, and a check beside the loop that found a difference.
	passFull
)

// agent is one lanesd: the loop that paces reconciles, and the steps a reconcile is
// composed of. Each step owns its own state; they talk only through the values
// reconcile passes between them.
type agent struct {
	cfg    Config
	log    *slog.Logger
	m      *Metrics
	mirror *store.Mirror
	// links reports ports whose kernel devices changed, ovsChanges any OVSDB row
	// change: both wake the loop, so hand deletions are repaired at once.
	links      <-chan string
	ovsChanges func() <-chan struct{}
	// canaryEvery and resyncEvery override the flow check's and the resync's periods
	// (tests).
	canaryEvery, resyncEvery time.Duration
	// prog tells the watchdog (watchdog.go) whether the loop moves; passHook and
	// checkHook, set by tests, run at the start of each pass and of each check
	// beside the loop (one that blocks).
	prog      *progress
	passHook  func()
	checkHook func()

	guard   *recordGuard
	host    *hostStep
	nets    *networkStep
	wire    *wireStep
	ovs     *ovsStep
	fw      *firewallStep
	flows   *flowStep
	prune   *pruneStep
	reports *statusStep
	dhcp    *dhcpStep // dhcp.go
	l3      *l3Step   // l3.go; nil unless --l3

	// gen and view are the mirror build and the view the last reconcile derived:
	// the next one updates the view for what changed since (view.Update).
	gen  uint64
	view *view.View
	// firewallOK and ofports are the last pass's firewall outcome and local ofports:
	// whether the next pass's flows may go in before its firewall (reconcile).
	firewallOK bool
	ofports    map[string]int
	// tunnelsFrom are the OVSDB rows the last snapshot listed its tunnels from.
	tunnelsFrom map[view.TunnelKey]ovsdb.TunnelPort
	// churn counts the owners changed since memory was last returned (loop).
	churn int
	// checking is set while a flow check (flowStep.Check) runs beside the loop,
	// returning while memory is being returned after a burst, checkingState while the
	// state check of a resync does (check.go).
	checking, returning, checkingState atomic.Bool
	// returnAgain asks the running returnMemory for one more round.
	returnAgain atomic.Bool
	// fullDue wakes the loop for a full pass when a state check found a
	// difference; checks counts the checks running (wait).
	fullDue chan struct{}
	checks  sync.WaitGroup

	started   time.Time
	converged time.Time
	// last is the outcome of the last reconcile, for the local API.
	last atomic.Pointer[diag.Snapshot]
}

// loop reconciles whenever the store changes, a retry is due, or resyncEvery passed;
// in between it checks that the bridges still hold their flows.
func (a *agent) loop(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.mirror.Synced():
	}
	resync := time.NewTicker(cmp.Or(a.resyncEvery, resyncEvery))
	defer resync.Stop()
	canary := time.NewTicker(cmp.Or(a.canaryEvery, canaryEvery))
	defer canary.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	settled := time.NewTimer(time.Hour)
	settled.Stop()
	defer settled.Stop()
	p := passFull
	for {
		a.drainLinks()
		ovsChanged := a.ovsChanges()
		a.prog.busy(true)
		if a.passHook != nil {
			a.passHook()
		}
		churnBefore := a.churn
		next, err := a.reconcile(ctx, p)
		if a.churn >= returnMemoryAfter && a.churn != churnBefore {
			settled.Reset(settledAfter) // from the last pass of the burst
		}
		a.prog.busy(false)
		p = passChanges
		if err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile incomplete", "err", err)
		}
		if !next.IsZero() {
			retry.Reset(time.Until(next))
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-a.mirror.Changed():
				break wait
			case <-retry.C:
				break wait
			case <-resync.C:
				p = passRepair
				break wait
			case <-a.fullDue: // a state check found a difference
				p = passFull
				break wait
			case <-settled.C:
				a.churn = 0
				go a.returnMemory()
			case <-canary.C:
				// Four ovs-ofctl runs: beside the loop, so that a store event
				// never waits for them.
				if a.checking.CompareAndSwap(false, true) {
					go func() {
						defer a.checking.Store(false)
						a.flows.Check(ctx)
					}()
				}
			case <-a.prog.poke: // the watchdog asks: waiting and responsive
			case id, ok := <-a.links:
				if !ok {
					a.links = nil // subscription ended: the resync still repairs
					continue
				}
				a.wire.Invalidate(id)
				break wait
			case <-ovsChanged:
				break wait
			}
		}
	}
}

// A burst of changes (a bulk load, a purge, a full pass over a big cluster) leaves
// the heap as large as the burst needed, and Go returns the freed part to the system
// only slowly; lanesd then sits at the peak's RSS. Once a burst of returnMemoryAfter
// changed owners has settled (no pass for settledAfter), lanesd collects and returns
// the free memory at once: one forced GC per burst, off the loop.
const (
	returnMemoryAfter = 1000
	settledAfter      = time.Second
)

// returnMemory returns free memory to the system, once at a time. A call while one
// runs has it run again when it ends: the garbage of the caller's burst may have
// been made after that one collected.
func (a *agent) returnMemory() {
	a.returnAgain.Store(true)
	for a.returning.CompareAndSwap(false, true) {
		for a.returnAgain.Swap(false) {
			debug.FreeOSMemory()
		}
		a.returning.Store(false)
		if !a.returnAgain.Load() {
			return
		}
	}
}

// drainLinks takes the link changes already reported, so that a burst of them (a
// port's four devices) costs one pass.
func (a *agent) drainLinks() {
	for {
		select {
		case id, ok := <-a.links:
			if !ok {
				a.links = nil
				return
			}
			a.wire.Invalidate(id)
		default:
			return
		}
	}
}

// reconcile makes the host match the store once, step by step over one view, and
// publishes the outcome. It returns when it wants to run again (zero: only on
// change). Ports fail one by one: a port that cannot be wired is reported ERROR and
// retried with backoff while the others go ahead.
func (a *agent) reconcile(ctx context.Context, p pass) (time.Time, error) {
	start := time.Now()
	full := p >= passRepair             // the steps repair drift
	received := a.mirror.TakeReceived() // before Shared: see Snapshot
	v := a.deriveView(p == passFull)
	a.countProblems(v)
	var errs []error
	fail := func(kind string, err error) {
		if err != nil {
			a.m.ReconcileErrors.WithLabelValues(kind).Inc()
			errs = append(errs, err)
		}
	}

	patchInt, err := a.host.Sync(ctx, full)
	fail("host", err)
	vlans, err := a.nets.Sync(v)
	fail("network", err)
	// Ports that fail to wire are retried on their own backoff (wired.Next), not at
	// the pace of the other errors.
	wired, portErr := a.wire.Sync(v, vlans, full)
	retrySoon := len(errs) > 0
	fail("port", portErr)
	tWire := time.Now()

	// The firewall (iptables, by device name) and OVSDB do not depend on each other:
	// the firewall of every wired port is applied in bulk while OVSDB takes tunnel
	// ports, qvo ports with their tags and removals in one transaction.
	type fwOutcome struct {
		applied hostwire.FirewallState
		err     error
	}
	fwDone := make(chan fwOutcome, 1)
	go func() {
		st, err := a.fw.Sync(ctx, v, wired.Wired, full)
		fwDone <- fwOutcome{st, err}
	}()
	ovs, ovsErr := a.ovs.Sync(ctx, v, vlans, wired.Wired, full)
	fail("ovsdb", ovsErr)
	fail("l3", a.l3.Sync(ctx, v, vlans, full)) // l3.go: routers served here
	tOVSDB := time.Now()
	// A pass that changed remote ports only (the view says so, and no local port's
	// ofport moved) puts their flows in without waiting for the firewall's restore
	// processes: a remote port's flows need nothing of the firewall, whose remote-group
	// sets only widen or narrow what local ports admit from it. Otherwise the flows
	// wait, so that no local port forwards before it is filtered.
	flowsFirst := !v.Changes.All && a.firewallOK && maps.Equal(ovs.Ofports, a.ofports)
	var fw fwOutcome
	if !flowsFirst {
		fw = <-fwDone
		fail("firewall", fw.err)
	}
	tFW := time.Now()

	// The responder learns the ports' ofports before their DHCP flows go in.
	if err := a.dhcp.Sync(v, ovs.Ofports); !errors.Is(err, ofsync.ErrNotConnected) {
		fail("dhcp", err)
	}
	fin := flowInput{PatchInt: patchInt, VLANs: vlans, OVS: ovs, Full: p == passFull}
	set, flowErr := a.flows.Sync(v, fin)
	disconnected := errors.Is(flowErr, ofsync.ErrNotConnected)
	if !disconnected {
		fail("flows", flowErr)
	}
	tFlows := time.Now()
	if p == passRepair && (flowErr == nil || disconnected) {
		a.startCheck(checkInput{View: v, Flows: fin, Set: set}) // check.go
	}
	if flowsFirst {
		fw = <-fwDone
		fail("firewall", fw.err)
	}
	a.firewallOK, a.ofports = fw.err == nil, ovs.Ofports

	// Kernel devices of ports that left this host, after their qvo left br-int.
	a.prune.Sync(v, append(wired.Left, ovs.Removed...), full)

	ready := ovsErr == nil && fw.err == nil && flowErr == nil
	statuses := a.reports.Sync(ctx, v, statusInput{Wire: wired, Ofports: ovs.Ofports, Ready: ready})

	took := time.Since(start)
	a.log.Debug("reconciled", "revision", v.Revision, "took", took, "wire", tWire.Sub(start), "ovsdb", tOVSDB.Sub(tWire),
		"firewall_after_ovsdb", tFW.Sub(tOVSDB), "flows", tFlows.Sub(tFW), "status", time.Since(tFlows))
	a.m.ReconcileSeconds.Observe(took.Seconds())
	if full {
		a.m.FullPasses.Inc()
	}
	a.m.StoreRevision.Set(float64(v.Revision))
	a.m.TunnelPorts.Set(float64(len(ovs.Tunnels)))
	if a.converged.IsZero() && len(errs) == 0 && flowErr == nil {
		a.converged = time.Now()
		a.log.Info("converged", "since_start", a.converged.Sub(a.started).Round(time.Millisecond), "ports", len(v.Local), "peers", len(v.Peers))
		if a.cfg.OnConverged != nil {
			a.cfg.OnConverged()
		}
	}
	snap := &diag.Snapshot{
		Host: a.hostInfo(), View: v, VLANs: vlans, Ofports: ovs.Ofports, Tunnels: map[string]diag.Tunnel{},
		Statuses: statuses, Firewall: fw.applied, Flows: set, DHCP: a.dhcp,
		Started: a.started, Converged: a.converged, At: start, Took: took, Warnings: a.fw.Warnings(),
	}
	if last := a.last.Load(); last != nil && sameMap(ovs.Tunnels, a.tunnelsFrom) {
		// OVSDB's tunnels are the rows of the last pass: so is their listing (and
		// logChanges, seeing the one map, skips comparing a thousand tunnels).
		snap.Tunnels = last.Tunnels
	} else {
		for _, t := range ovs.Tunnels {
			snap.Tunnels[t.Name] = diag.Tunnel{Name: t.Name, Type: t.Type, RemoteIP: t.RemoteIP, Ofport: t.Ofport}
		}
	}
	a.tunnelsFrom = ovs.Tunnels
	for _, e := range errs {
		snap.Errors = append(snap.Errors, e.Error())
	}
	logChanges(a.log, a.last.Load(), snap) // changelog.go
	a.last.Store(snap)
	a.m.observeLag(received, len(errs) == 0)

	next := wired.Next
	if n := a.l3.Next(); !n.IsZero() && (next.IsZero() || n.Before(next)) {
		next = n // l3.go
	}
	if retrySoon || ovsErr != nil || fw.err != nil || flowErr != nil {
		if soon := time.Now().Add(retryMin); next.IsZero() || soon.Before(next) {
			next = soon
		}
	}
	return next, errors.Join(errs...)
}

// deriveView updates the last view for what changed in the store since; with
// scratch it also computes it from scratch and checks that both agree. They always
// should: a difference is a bug in the incremental path, logged, and the full view is
// used.
func (a *agent) deriveView(scratch bool) *view.View {
	if scratch && a.view != nil { // the first pass reads a state built from scratch anyway
		// The store's patched State against a build from scratch; a difference is
		// logged, and the next read below is a full build.
		if err := a.mirror.Verify(); err != nil {
			a.log.Error("store mirror: patched state differs from a full build", "err", err)
		}
	}
	st, d := a.mirror.SharedSince(a.gen)
	a.gen = st.Gen
	st, d = a.guard.Apply(st, d)
	v := view.Update(a.view, a.cfg.Host, st, d)
	if scratch && !v.Changes.All {
		want := view.Compute(a.cfg.Host, st)
		if diff := view.Differences(v, want); diff != nil {
			a.log.Error("incremental view differs from a full recompute: using the full view", "fields", diff)
			v = want
		}
	}
	a.view = v
	if v.Changes.All {
		a.churn += len(v.Remote) + len(v.Local)
	} else {
		a.churn += len(v.Changes.Remote)
	}
	return v
}

func (a *agent) hostInfo() diag.Host {
	addr, _ := a.cfg.TunnelAddr()
	return diag.Host{Name: a.cfg.Host, TunnelIP: addr.String(), TunnelType: a.cfg.TunnelType, Datapath: a.cfg.DatapathType, VMMTU: a.cfg.VMMTU()}
}

// countProblems publishes the store records left out that concern this host, and the
// peers whose agent is down.
func (a *agent) countProblems(v *view.View) {
	a.m.StoreProblems.Reset()
	for _, p := range v.StoreProblems {
		a.m.StoreProblems.WithLabelValues(p.Kind, p.Class).Inc()
	}
	down := 0
	for _, h := range v.Peers {
		if !h.Alive {
			down++
		}
	}
	a.m.PeersDown.Set(float64(down))
}
