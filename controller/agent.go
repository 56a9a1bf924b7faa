package controller

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// Reconcile pacing.
const (
	// resyncEvery re-checks everything, including kernel devices and OVSDB rows that
	// nothing in the store changed (someone deleted a tap by hand).
	resyncEvery = 30 * time.Second
	// canaryEvery is how often both bridges' flow counts are compared with what
	// lanesd installed.
	canaryEvery = 5 * time.Second
	retryMin    = 200 * time.Millisecond
	// forgetFor is how long the learned entries of a MAC that left are deleted again.
	forgetFor = 3 * time.Second
	retryMax  = 30 * time.Second
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
	// leftAt holds remote MACs that left recently, to forget their learned entries
	// again (see forgetLearned).
	leftAt map[string]time.Time
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

// loop reconciles whenever the store changes, a retry is due, or resyncEvery passed;
// in between it checks that the bridges still hold their flows.
func (a *agent) loop(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a.mirror.Synced():
	}
	resync := time.NewTicker(resyncEvery)
	defer resync.Stop()
	canary := time.NewTicker(canaryEvery)
	defer canary.Stop()
	reforget := time.NewTicker(forgetFor / 4)
	defer reforget.Stop()
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
				full = true
				break wait
			case <-canary.C:
				a.checkFlowsPresent(ctx)
			case <-reforget.C:
				if len(a.leftAt) > 0 {
					if err := a.forgetRecent(); err != nil {
						a.log.Warn("forget learned MACs", "err", err)
					}
				}
			}
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

	if full {
		// Things nothing in the store changes can drift too: sysctls reset, br-phy
		// touched by hand. All of these are no-ops when in place.
		if err := a.setupHost(ctx); err != nil {
			fail("host", err)
		}
	}
	a.warnMTU(v)
	vlanOf, err := a.allocateVLANs(v)
	if err != nil {
		fail("network", err)
	}
	wired := a.wirePorts(v, vlanOf, fail)

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
