package controller

import (
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/sdnotify"
	"github.com/lanes-net/lanes/store"
)

// TestWatchdogFollowsProgress runs the agent loop under a fake systemd (a unixgram
// NOTIFY_SOCKET): WATCHDOG=1 arrives while the loop waits for changes, stops once a
// pass has been stuck for a watchdog period (half of WatchdogSec), and comes back
// when the pass ends.
func TestWatchdogFollowsProgress(t *testing.T) {
	r := newRig(t)
	path := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	pings := make(chan time.Time, 100)
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
	const period = 300 * time.Millisecond
	go func() { _ = r.a.loop(r.ctx) }()
	go r.a.watchdog(r.ctx, period, func() {
		if _, err := sdnotify.Notify("WATCHDOG=1"); err != nil {
			t.Errorf("notify: %v", err)
		}
	})
	next := func(within time.Duration) (time.Time, bool) {
		select {
		case at := <-pings:
			return at, true
		case <-time.After(within):
			return time.Time{}, false
		}
	}

	// Idle and responsive: pings at the period.
	for i := range 3 {
		if _, ok := next(10 * period); !ok {
			t.Fatalf("ping %d of an idle loop missing", i)
		}
	}

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
	quiet := stuckAt.Add(period + period/2)
	for {
		at, ok := next(time.Until(quiet.Add(4 * period)))
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
	resumed := time.Now()
	if _, ok := next(5 * period); !ok {
		t.Fatalf("no ping within %s of the pass ending", 5*period)
	}
	for i := range 2 {
		if _, ok := next(10 * period); !ok {
			t.Fatalf("ping %d after resuming (at %s) missing", i, resumed)
		}
	}
}
