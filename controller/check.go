package controller

import (
	"time"

	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
)

// The periodic resync checks that what lanesd derives incrementally (the mirror's
// patched State, the view, the flow set) equals what it would compute from scratch.
// Computing from scratch is most of a resync's cost at scale (at 10k remote ports,
// a third of a second of CPU), and a store event that arrived meanwhile would wait
// for it; so it runs beside the loop, over the inputs and results of the resync's
// pass, which nothing changes once handed out (a store.State, a view.View, a
// flows.Set, the steps' result maps), while the loop goes on with the next changes.
// A difference is a bug of the incremental path: it is logged and counted, and the
// loop runs a full pass, which computes everything from scratch in the pass and
// installs that.

// checkInput is what one pass derived incrementally, with what it derived it from.
type checkInput struct {
	View  *view.View
	Flows flowInput
	Set   flows.Set
}

// startCheck checks in beside the loop, unless a check is still running (the next
// resync checks again).
func (a *agent) startCheck(in checkInput) {
	if !a.checkingState.CompareAndSwap(false, true) {
		return
	}
	a.checks.Add(1)
	go func() {
		defer a.checks.Done()
		defer a.checkingState.Store(false)
		if a.checkHook != nil {
			a.checkHook()
		}
		if !a.check(in) {
			select {
			case a.fullDue <- struct{}{}:
			default: // a full pass is already due
			}
		}
		// The state computed from scratch is garbage now, as big as the state itself:
		// returned at once, as after a burst (agent.go), lanesd's RSS at rest stays
		// what its state needs.
		if len(in.View.Remote)+len(in.View.Local) >= returnMemoryAfter {
			a.returnMemory()
		}
	}()
}

// check computes in's state from scratch, logs what differs, and reports whether
// nothing did.
func (a *agent) check(in checkInput) bool {
	start := time.Now()
	same := true
	if err := a.mirror.Verify(); err != nil {
		a.log.Error("store mirror: patched state differs from a full build", "err", err)
		a.m.StateChecks.WithLabelValues("store").Inc()
		same = false
	}
	if !in.View.Changes.All { // else the view was computed from scratch
		if diff := view.Differences(in.View, view.Compute(a.cfg.Host, in.View.State)); diff != nil {
			a.log.Error("incremental view differs from a full recompute: a full pass follows", "fields", diff)
			a.m.StateChecks.WithLabelValues("view").Inc()
			same = false
		}
	}
	if err := a.flows.Verify(in.View, in.Flows, in.Set); err != nil {
		a.flows.log.Error("incremental flows differ from a full recompute: a full pass follows", "err", err)
		a.m.StateChecks.WithLabelValues("flows").Inc()
		same = false
	}
	if same {
		a.m.StateChecks.WithLabelValues("same").Inc()
	}
	took := time.Since(start)
	a.m.StateCheckSeconds.Observe(took.Seconds())
	a.log.Debug("state checked", "revision", in.View.Revision, "same", same, "took", took)
	return same
}
