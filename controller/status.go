package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/store"
)

// statusStep writes each local port's status to the store when it changed, and
// remembers what it wrote (lanesd keeps its own status writes out of its mirror, so
// they never wake it up).
type statusStep struct {
	log      *slog.Logger
	m        *Metrics
	st       *store.Store
	host     string
	statuses map[string]api.PortStatus
}

// statusInput is the outcome of the other steps for the local ports.
type statusInput struct {
	Wire    wireResult
	Ofports map[string]int
	// Ready is true when OVSDB, the firewall and the flows all went through: a wired
	// port with an ofport is then ACTIVE.
	Ready bool
}

// Load reads what this host reported before a restart, so that unchanged statuses
// are not written again. It runs once, at start.
func (s *statusStep) Load(ctx context.Context) error {
	all, err := s.st.ListPortStatus(ctx)
	if err != nil {
		return fmt.Errorf("read port statuses: %w", err)
	}
	s.statuses = map[string]api.PortStatus{}
	for _, ps := range all {
		if ps.Host == s.host {
			s.statuses[ps.PortID] = ps
		}
	}
	return nil
}

// Sync reports every local port: ERROR with the reason when its record is unusable or
// its wiring failed, ACTIVE once wired, in OVSDB with an ofport, filtered and flowed,
// BUILD otherwise. It returns the statuses it reports, whether or not the store took
// them (it refuses a status for a port whose record does not decode).
func (s *statusStep) Sync(ctx context.Context, v *view.View, in statusInput) map[string]api.PortStatus {
	counts := map[string]int{api.StatusActive: 0, api.StatusBuild: 0, api.StatusError: 0}
	local := map[string]bool{}
	reported := map[string]api.PortStatus{}
	report := func(want api.PortStatus) {
		local[want.PortID] = true
		counts[want.State]++
		reported[want.PortID] = want
		have, ok := s.statuses[want.PortID]
		if ok && have.State == want.State && have.Ofport == want.Ofport && have.Reason == want.Reason && have.Host == want.Host {
			return
		}
		want.Updated = time.Now().UTC()
		if err := s.st.SetPortStatus(ctx, want); err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				s.log.Warn("report port status", "port", want.PortID, "err", err)
			}
			return
		}
		s.statuses[want.PortID] = want
	}
	for _, p := range v.Local {
		if _, bad := v.Problems[p.ID]; bad {
			continue // reported below
		}
		want := api.PortStatus{PortID: p.ID, Host: s.host, State: api.StatusBuild}
		if err, failed := in.Wire.Failed[p.ID]; failed {
			want.State, want.Reason = api.StatusError, err.Error()
		} else if why := v.MismatchOf(p); why != "" {
			want.State, want.Reason = api.StatusError, why
		} else if in.Ready && in.Wire.Wired[p.ID] && in.Ofports[p.ID] > 0 {
			want.State, want.Ofport = api.StatusActive, in.Ofports[p.ID]
		}
		report(want)
	}
	for id, err := range v.Problems {
		reason := err.Error()
		if _, running := v.LocalPort(id); running {
			reason += "; its last good version keeps running"
		}
		report(api.PortStatus{PortID: id, Host: s.host, State: api.StatusError, Reason: reason})
	}
	for id := range s.statuses {
		if !local[id] {
			delete(s.statuses, id)
		}
	}
	for st, n := range counts {
		s.m.Ports.WithLabelValues(st).Set(float64(n))
	}
	return reported
}
