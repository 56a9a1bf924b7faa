package controller

import (
	"context"
	"sync/atomic"
	"time"
)

// progress is what the watchdog knows of the agent loop: whether it is at work (a
// reconcile or a flow check) and since when, and a channel the loop's wait answers.
// A process that merely runs is not enough for systemd's watchdog: a reconcile stuck
// on a hung ovsdb-server or iptables lock must stop the pings so that systemd
// restarts lanesd.
type progress struct {
	looping   atomic.Bool  // the loop has started waiting for changes at least once
	busySince atomic.Int64 // unix nanoseconds when the current work began; 0 while waiting
	poke      chan struct{}
}

func newProgress() *progress { return &progress{poke: make(chan struct{})} }

// busy marks the start (true) and end (false) of a piece of the loop's work.
func (p *progress) busy(on bool) {
	if on {
		p.busySince.Store(time.Now().UnixNano())
		return
	}
	p.busySince.Store(0)
	p.looping.Store(true)
}

// moving reports whether the loop makes progress: it is at work for less than
// stuckAfter, or it waits and answers a poke within wait.
func (p *progress) moving(ctx context.Context, stuckAfter, wait time.Duration) bool {
	fresh := func() (bool, bool) {
		since := p.busySince.Load()
		if since == 0 {
			return false, false
		}
		return true, time.Since(time.Unix(0, since)) < stuckAfter
	}
	if !p.looping.Load() {
		// Before the first pass ends: the start is bounded by the unit's
		// TimeoutStartSec (READY=1 comes after the first convergence), not by pings.
		return true
	}
	if busy, ok := fresh(); busy {
		return ok
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case p.poke <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		// It may have started work just after the first look.
		_, ok := fresh()
		return ok
	}
}

// watchdog calls ping every period while the loop makes progress, as
// sd_watchdog_enabled(3) wants WATCHDOG=1 at half of WatchdogSec (period): work
// that has run longer than period stops the pings, and systemd, missing them for
// WatchdogSec, restarts lanesd.
func (a *agent) watchdog(ctx context.Context, period time.Duration, ping func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	wait := min(period/4, time.Second)
	stuck := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.prog.moving(ctx, period, wait) {
			if stuck {
				a.log.Info("watchdog: agent loop moving again; pinging")
			}
			stuck = false
			ping()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if !stuck {
			attrs := []any{"watchdog_period", period}
			if since := a.prog.busySince.Load(); since != 0 {
				attrs = append(attrs, "busy_for", time.Since(time.Unix(0, since)).Round(time.Millisecond))
			}
			a.log.Error("watchdog: agent loop stuck; no more pings, systemd will restart lanesd", attrs...)
		}
		stuck = true
	}
}
