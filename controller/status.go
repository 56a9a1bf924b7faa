package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/store"
)

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
