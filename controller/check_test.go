package controller

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/store"
)

// TestStateCheckBesideTheLoop runs the agent's loop with a resync every few hundred
// milliseconds. A state check that blocks does not hold up the loop: remote ports
// created meanwhile get their flows. Once released it finds nothing wrong. Then the
// loop's view is corrupted (a remote port dropped from it, as a bug of the
// incremental path would): the next check finds it, says so in the log and the
// metrics, and the full pass it asks for puts the port back. Under the race
// detector (make test-race), the checks overlap passes that serve changes.
func TestStateCheckBesideTheLoop(t *testing.T) {
	r := newRig(t)
	ctx := r.ctx
	logs := &errorLog{}
	r.a.log, r.a.flows.log = slog.New(logs), slog.New(logs)
	n, err := r.st.CreateNetwork(ctx, store.NetworkSpec{Name: "n", CIDR: "10.61.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []string{"h1", "h2"} {
		if _, err := r.st.RegisterHost(ctx, api.Host{Name: h, TunnelIP: fmt.Sprintf("172.31.77.%d", 1+i), TunnelType: api.TunnelVXLAN}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.st.CreatePort(ctx, api.Port{Name: "local", NetworkID: n.ID, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	remote := func(name string) api.Port {
		t.Helper()
		p, err := r.st.CreatePort(ctx, api.Port{Name: name, NetworkID: n.ID, Host: "h2"})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	hasFlowTo := func(p api.Port) func() bool {
		return func() bool { return strings.Contains(r.flows("br-tun"), "dl_dst="+p.MAC) }
	}
	first := remote("r0")

	var block, corrupt atomic.Bool
	block.Store(true)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	r.a.checkHook = func() {
		if block.Load() {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done(): // the test failed: its cleanup waits for the checks
			}
		}
	}
	// Runs on the loop's goroutine at the start of a pass: the view that pass updates
	// lacks first, and so do the views after it until a full pass.
	r.a.passHook = func() {
		if corrupt.CompareAndSwap(true, false) && r.a.view != nil {
			v := *r.a.view
			v.Remote = slices.DeleteFunc(slices.Clone(v.Remote), func(p *view.RemotePort) bool { return p.ID == first.ID })
			r.a.view = &v
		}
	}
	r.a.resyncEvery = 300 * time.Millisecond
	go func() { _ = r.a.loop(ctx) }()
	within(t, 10*time.Second, "flows to "+first.Name, hasFlowTo(first))

	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no state check within 10 s of resyncs every 300 ms")
	}
	// The check is held: the loop goes on serving the store.
	var during []api.Port
	for i := range 3 {
		during = append(during, remote(fmt.Sprintf("during%d", i)))
	}
	for _, p := range during {
		within(t, 10*time.Second, "flows to "+p.Name+" while a check is held", hasFlowTo(p))
	}
	block.Store(false)
	close(release)
	same := func() float64 { return testutil.ToFloat64(r.a.m.StateChecks.WithLabelValues("same")) }
	within(t, 10*time.Second, "a state check that found the state the same", func() bool { return same() > 0 })
	// Checks overlapping passes that serve changes (for the race detector).
	for i := range 10 {
		p := remote(fmt.Sprintf("burst%d", i))
		within(t, 10*time.Second, "flows to "+p.Name, hasFlowTo(p))
	}
	if msgs := logs.take(); len(msgs) > 0 {
		t.Fatalf("errors before anything was corrupted:\n%s", strings.Join(msgs, "\n"))
	}

	differed := func() float64 { return testutil.ToFloat64(r.a.m.StateChecks.WithLabelValues("view")) }
	corrupt.Store(true)
	within(t, 10*time.Second, "a state check that found the view different", func() bool { return differed() > 0 })
	within(t, 10*time.Second, "a full pass that put "+first.Name+" back in the view", func() bool {
		snap := r.a.last.Load()
		_, ok := snap.View.RemoteByID(first.ID)
		return ok && view.Differences(snap.View, view.Compute("h1", snap.View.State)) == nil
	})
	if !hasFlowTo(first)() {
		t.Errorf("br-tun lost the flows to %s", first.Name)
	}
	msgs := strings.Join(logs.take(), "\n")
	if !strings.Contains(msgs, "incremental view differs from a full recompute") {
		t.Errorf("the log does not say the view differed:\n%s", msgs)
	}
}

// within polls cond until it holds, failing the test after d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}
