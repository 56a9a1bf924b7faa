package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/store"
)

// errorLog keeps the error records of a logger, which is how the reconcile reports an
// incremental result that differs from its full recompute.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (e *errorLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (e *errorLog) Handle(_ context.Context, r slog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var attrs []string
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
	e.msgs = append(e.msgs, r.Message+" "+strings.Join(attrs, " "))
	return nil
}
func (e *errorLog) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorLog) WithGroup(string) slog.Handler      { return e }

func (e *errorLog) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.msgs
	e.msgs = nil
	return m
}

// TestIncrementalEqualsFull drives a real agent (OVS, kernel, etcd) through random
// changes of remote ports, written through the store and around it, and peers that
// come and go. After each change the incremental pass must leave the bridges, the
// view and the firewall exactly as the full pass that follows it (which recomputes
// everything from scratch and says so in the log if the two differ).
func TestIncrementalEqualsFull(t *testing.T) {
	r := newRig(t)
	ctx := r.ctx
	logs := &errorLog{}
	r.a.log, r.a.flows.log = slog.New(logs), slog.New(logs)
	var nets []api.Network
	for i := range 2 {
		n, err := r.st.CreateNetwork(ctx, store.NetworkSpec{Name: fmt.Sprintf("n%d", i), CIDR: fmt.Sprintf("10.%d.0.0/24", 60+i)})
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, n)
	}
	hosts := []string{"h2", "h3", "h4"}
	register := func(name string, i int) {
		if _, err := r.st.RegisterHost(ctx, api.Host{Name: name, TunnelIP: fmt.Sprintf("172.31.77.%d", 10+i), TunnelType: api.TunnelVXLAN}, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	register("h1", -9)
	for i, h := range hosts {
		register(h, i)
	}
	for _, n := range nets {
		if _, err := r.st.CreatePort(ctx, api.Port{Name: "local-" + n.Name, NetworkID: n.ID, Host: "h1"}); err != nil {
			t.Fatal(err)
		}
	}
	r.sync(true)

	rnd := rand.New(rand.NewPCG(14, 14))
	var remote []api.Port
	raw := func(p api.Port, value string) {
		if value == "" {
			b, _ := json.Marshal(p)
			value = string(b)
		}
		if _, err := r.st.Client().Put(ctx, store.Prefix+store.KindPorts+"/"+p.ID, value); err != nil {
			t.Fatal(err)
		}
	}
	const steps = 100
	incremental := 0 // passes that took the incremental path
	for step := range steps {
		var what string
		switch k := rnd.IntN(10); {
		case k < 3 || len(remote) < 2:
			p, err := r.st.CreatePort(ctx, api.Port{Name: fmt.Sprintf("r%d", step), NetworkID: nets[rnd.IntN(2)].ID, Host: hosts[rnd.IntN(len(hosts))]})
			if err != nil {
				t.Fatal(err)
			}
			remote, what = append(remote, p), "create "+p.Name+" on "+p.Host
		case k < 6:
			i := rnd.IntN(len(remote))
			if err := r.st.DeletePort(ctx, remote[i].ID); err != nil {
				t.Fatal(err)
			}
			what = "delete " + remote[i].Name
			remote = slices.Delete(remote, i, i+1)
		case k < 8:
			i := rnd.IntN(len(remote))
			to := hosts[rnd.IntN(len(hosts))]
			p, err := r.st.UpdatePort(ctx, remote[i].ID, func(p *api.Port) error { p.Host = to; return nil })
			if err != nil {
				t.Fatal(err)
			}
			remote[i], what = p, "move "+p.Name+" to "+to
		case k < 9: // around the CLI: a copy of another port's MAC (a conflict), or garbage
			i := rnd.IntN(len(remote))
			if rnd.IntN(2) == 0 {
				dup := remote[i]
				dup.ID, dup.Name, dup.FixedIPs = store.NewUUID(), fmt.Sprintf("dup%d", step), nil
				raw(dup, "")
				what = "raw duplicate of " + remote[i].Name
			} else {
				raw(remote[i], "{not json")
				what = "garbage over " + remote[i].Name
				remote = slices.Delete(remote, i, i+1)
			}
		default: // a peer host with its ports' tunnel goes, and comes back
			h := hosts[rnd.IntN(len(hosts))]
			if err := r.st.DeleteHost(ctx, h, true); err != nil {
				t.Fatal(err)
			}
			r.sync(false)
			register(h, slices.Index(hosts, h))
			what = "host " + h + " deleted and registered again"
		}
		r.sync(false)
		inc := r.capture()
		if !inc.view.Changes.All {
			incremental++
		}
		r.sync(true)
		full := r.capture()
		if msgs := logs.take(); len(msgs) > 0 {
			t.Fatalf("step %d (%s): the full pass found the incremental one wrong:\n%s", step, what, strings.Join(msgs, "\n"))
		}
		if d := inc.diff(full); d != "" {
			t.Fatalf("step %d (%s): incremental and full passes differ: %s", step, what, d)
		}
	}
	// Creates, deletes, moves and raw writes of remote ports are all incremental.
	if incremental < steps/2 {
		t.Errorf("only %d of %d passes took the incremental path", incremental, steps)
	}
	t.Logf("%d of %d passes incremental", incremental, steps)
}

// passOutcome is what a pass leaves: both bridges' flows and the agent's view and
// firewall state.
type passOutcome struct {
	brInt, brTun []string
	view         *view.View
	firewall     any
}

func (r *rig) capture() passOutcome {
	r.t.Helper()
	dump := func(b string) []string {
		fs, err := r.ovs.DumpFlows(b)
		if err != nil {
			r.t.Fatal(err)
		}
		// Learned entries come and go with traffic, not with passes.
		fs = slices.DeleteFunc(fs, func(f string) bool { return strings.Contains(f, "hard_timeout=") })
		slices.Sort(fs)
		return fs
	}
	snap := r.a.last.Load()
	return passOutcome{brInt: dump("br-int"), brTun: dump("br-tun"), view: snap.View, firewall: snap.Firewall}
}

func (o passOutcome) diff(p passOutcome) string {
	for _, b := range []struct {
		name string
		x, y []string
	}{{"br-int", o.brInt, p.brInt}, {"br-tun", o.brTun, p.brTun}} {
		if !slices.Equal(b.x, b.y) {
			var only []string
			for _, f := range b.x {
				if !slices.Contains(b.y, f) {
					only = append(only, "incremental only: "+f)
				}
			}
			for _, f := range b.y {
				if !slices.Contains(b.x, f) {
					only = append(only, "full only: "+f)
				}
			}
			return b.name + " flows:\n" + strings.Join(only, "\n")
		}
	}
	// A registered host's heartbeat may write between the two passes: a revision
	// that moved on is not a difference.
	x, y := *o.view, *p.view
	x.Revision, y.Revision = 0, 0
	if d := view.Differences(&x, &y); d != nil {
		return fmt.Sprintf("view fields %v", d)
	}
	if !reflect.DeepEqual(o.firewall, p.firewall) {
		return "firewall state"
	}
	return ""
}
