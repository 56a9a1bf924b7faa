package controller

import (
	"net"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/sdnotify"
	"github.com/lanes-net/lanes/store"
)

// watchdogPeriod is the test's half WatchdogSec.
const watchdogPeriod = 300 * time.Millisecond

// fakeSystemd listens on a NOTIFY_SOCKET of its own and reports each WATCHDOG=1, then
// starts the rig's agent loop and watchdog as lanesd does under systemd.
func fakeSystemd(t *testing.T, r *rig) <-chan time.Time {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	pings := make(chan time.Time, 1000)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "WATCHDOG=1" {
				pings <- time.Now()
			}
		}
	}()
	go func() { _ = r.a.loop(r.ctx) }()
	go r.a.watchdog(r.ctx, watchdogPeriod, func() {
		if _, err := sdnotify.Notify("WATCHDOG=1"); err != nil {
			t.Errorf("notify: %v", err)
		}
	})
	return pings
}

// nextPing waits for a ping, up to within.
func nextPing(pings <-chan time.Time, within time.Duration) (time.Time, bool) {
	select {
	case at := <-pings:
		return at, true
	case <-time.After(within):
		return time.Time{}, false
	}
}

// expectPings fails unless n pings arrive, each within a few periods of the last.
func expectPings(t *testing.T, pings <-chan time.Time, n int, what string) {
	t.Helper()
	for i := range n {
		if _, ok := nextPing(pings, 5*watchdogPeriod); !ok {
			t.Fatalf("%s: ping %d missing", what, i)
		}
	}
}

// TestWatchdogFollowsProgress runs the agent loop under a fake systemd: WATCHDOG=1
// arrives while the loop waits for changes, stops once a pass has been stuck for a
// watchdog period (half of WatchdogSec), and comes back when the pass ends.
func TestWatchdogFollowsProgress(t *testing.T) {
	r := newRig(t)
	var block atomic.Bool
	entered, release := make(chan time.Time, 1), make(chan struct{})
	r.a.passHook = func() {
		if block.Load() {
			entered <- time.Now()
			select {
			case <-release:
			case <-r.ctx.Done():
			}
		}
	}
	pings := fakeSystemd(t, r)
	expectPings(t, pings, 3, "idle loop")

	// A store change starts a pass that blocks.
	block.Store(true)
	if _, err := r.st.CreateNetwork(r.ctx, store.NetworkSpec{Name: "blue", CIDR: "10.7.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	var stuckAt time.Time
	select {
	case stuckAt = <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the store change started no pass")
	}
	// While the pass is younger than a period a ping may still come; after that none.
	quiet := stuckAt.Add(watchdogPeriod + watchdogPeriod/2)
	for {
		at, ok := nextPing(pings, time.Until(quiet.Add(4*watchdogPeriod)))
		if !ok {
			break // four periods of silence after the grace: systemd would restart lanesd
		}
		if at.After(quiet) {
			t.Fatalf("ping %s after the pass got stuck", at.Sub(stuckAt).Round(time.Millisecond))
		}
	}

	// The pass ends: pings resume.
	block.Store(false)
	close(release)
	expectPings(t, pings, 3, "after the pass ended")
}

// TestWatchdogStuckOnOVSDB: the same with nothing faked in lanesd: ovsdb-server
// stops answering (SIGSTOP) while a new local port needs its qvo port, the pass
// hangs in the OVSDB transaction, and the pings stop until ovsdb-server continues.
func TestWatchdogStuckOnOVSDB(t *testing.T) {
	r := newRig(t)
	pid := r.ovs.PID("ovsdb-server")
	if pid == 0 {
		t.Fatal("no ovsdb-server pid")
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	n, err := r.st.CreateNetwork(r.ctx, store.NetworkSpec{Name: "blue", CIDR: "10.7.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.RegisterHost(r.ctx, api.Host{Name: "h1", TunnelIP: "172.31.77.1", TunnelType: api.TunnelVXLAN}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pings := fakeSystemd(t, r)
	expectPings(t, pings, 3, "idle loop")

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.CreatePort(r.ctx, api.Port{Name: "vm1", NetworkID: n.ID, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	// Pings stop within a few periods and stay away while the pass hangs.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := nextPing(pings, 4*watchdogPeriod); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pings go on while ovsdb-server is stopped")
		}
	}
	since := r.a.prog.busySince.Load()
	if since == 0 || time.Since(time.Unix(0, since)) < watchdogPeriod {
		t.Fatalf("pings stopped, yet the loop is not stuck in a pass (busy since %d)", since)
	}

	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	expectPings(t, pings, 3, "after ovsdb-server continued")
	if r.a.prog.busySince.Load() != 0 && time.Since(time.Unix(0, r.a.prog.busySince.Load())) > 5*time.Second {
		t.Error("the pass is still stuck")
	}
}
