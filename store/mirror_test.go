package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
)

func runMirror(t *testing.T, m *Mirror) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	})
	select {
	case <-m.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("mirror never synced")
	}
}

// waitState waits, through Changed, until the mirror's state satisfies cond.
func waitState(t *testing.T, m *Mirror, what string, cond func(State) bool) State {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		st := m.Snapshot()
		if cond(st) {
			return st
		}
		select {
		case <-m.Changed():
		case <-deadline:
			t.Fatalf("mirror never showed %s; state at revision %d: %+v", what, st.Revision, st)
		}
	}
}

func TestMirrorFollows(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	n0 := mustNet(t, s, "before", "10.9.0.0/24")
	m := s.NewMirror(MirrorOptions{})
	runMirror(t, m)
	if st := m.Snapshot(); st.Networks[n0.ID].Name != "before" || st.Revision == 0 {
		t.Fatalf("initial list: %+v", st)
	}

	h1 := registerHost(t, s, "h1", "192.168.1.1")
	registerHost(t, s, "h2", "192.168.1.2")
	n := mustNet(t, s, "net", "10.0.0.0/24")
	g, err := s.CreateSecurityGroup(ctx, DefaultSecurityGroup("web"))
	if err != nil {
		t.Fatal(err)
	}
	p := mustPort(t, s, api.Port{Name: "p", NetworkID: "net", Host: "h1", SecurityGroups: []string{"web"}})
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: "h1", State: api.StatusActive}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, "the creates", func(st State) bool {
		return st.Networks[n.ID].VNI == n.VNI && st.Groups[g.ID].Name == "web" && st.Ports[p.ID].MAC == p.MAC &&
			st.Hosts["h1"].Alive && st.Hosts["h2"].TunnelIP == "192.168.1.2" && st.Statuses[p.ID].State == api.StatusActive
	})
	_, rev, _ := s.Dump(ctx)
	if st.Revision != rev || m.Revision() != rev {
		t.Fatalf("mirror at revision %d/%d, store at %d", st.Revision, m.Revision(), rev)
	}
	// A snapshot is the caller's to change.
	st.Ports[p.ID].FixedIPs[0] = "scribbled"
	st.Groups[g.ID].Rules[0].Direction = "scribbled"
	delete(st.Networks, n.ID)
	if again := m.Snapshot(); again.Ports[p.ID].FixedIPs[0] == "scribbled" || again.Groups[g.ID].Rules[0].Direction == "scribbled" || again.Networks[n.ID].ID == "" {
		t.Fatal("snapshot shares memory with the mirror")
	}

	// Updates and deletes.
	if _, err := s.UpdatePort(ctx, p.ID, func(p *api.Port) error { p.Host = "h2"; return nil }); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "the move", func(st State) bool {
		_, hasStatus := st.Statuses[p.ID]
		return st.Ports[p.ID].Host == "h2" && !hasStatus
	})
	if _, err := s.AddRule(ctx, "web", api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 80, PortMax: 80}); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "the new rule", func(st State) bool { return len(st.Groups[g.ID].Rules) == 5 })
	if err := s.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNetwork(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if err := h1.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "the deletes", func(st State) bool {
		_, port := st.Ports[p.ID]
		_, net := st.Networks[n.ID]
		// A revoked lease shows the host down; the host stays until deleted.
		return !port && !net && !st.Hosts["h1"].Alive && st.Hosts["h2"].Alive
	})
	if err := s.DeleteHost(ctx, "h1", false); err != nil {
		t.Fatal(err)
	}
	waitState(t, m, "the host delete", func(st State) bool {
		_, host := st.Hosts["h1"]
		return !host && len(st.Hosts) == 1
	})
	if m.Relists() != 0 {
		t.Fatalf("relisted %d times without a reason", m.Relists())
	}
}

// A watch that starts below the compacted revision fails; the mirror must list again
// and end up with the changes it could not watch, deletes included.
func TestMirrorSurvivesCompaction(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	old := mustNet(t, s, "old", "10.9.0.0/24")
	m := s.NewMirror(MirrorOptions{})
	var gap api.Network
	first := true
	hooked := make(chan struct{})
	m.afterList = func(rev int64) {
		if !first {
			return
		}
		first = false
		defer close(hooked)
		// Between the list and the watch: change things, then compact them away.
		var err error
		if gap, err = s.CreateNetwork(ctx, NetworkSpec{Name: "gap", CIDR: "10.8.0.0/24"}); err != nil {
			t.Error(err)
		}
		if err := s.DeleteNetwork(ctx, old.ID); err != nil {
			t.Error(err)
		}
		_, now, err := s.Dump(ctx)
		if err != nil {
			t.Error(err)
		}
		if _, err := s.Client().Compact(ctx, now); err != nil {
			t.Error(err)
		}
	}
	runMirror(t, m)
	<-hooked
	st := waitState(t, m, "the changes made during the gap", func(st State) bool {
		_, hasOld := st.Networks[old.ID]
		return st.Networks[gap.ID].Name == "gap" && !hasOld
	})
	if m.Relists() < 1 {
		t.Fatalf("no re-list after compaction (state %+v)", st)
	}
	// And it keeps following afterwards.
	later := mustNet(t, s, "later", "10.7.0.0/24")
	waitState(t, m, "a create after the re-list", func(st State) bool { return st.Networks[later.ID].Name == "later" })
}

func TestMirrorStatusFilter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	registerHost(t, s, "h2", "192.168.1.2")
	mustNet(t, s, "net", "10.0.0.0/24")
	mine := mustPort(t, s, api.Port{Name: "mine", NetworkID: "net", Host: "h1"})
	theirs := mustPort(t, s, api.Port{Name: "theirs", NetworkID: "net", Host: "h2"})
	m := s.NewMirror(MirrorOptions{KeepStatus: func(st api.PortStatus) bool { return st.Host == "h1" }})
	runMirror(t, m)
	for _, p := range []api.Port{theirs, mine} {
		if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: p.Host, State: api.StatusActive}); err != nil {
			t.Fatal(err)
		}
	}
	st := waitState(t, m, "h1's status", func(st State) bool { return st.Statuses[mine.ID].State == api.StatusActive })
	if _, ok := st.Statuses[theirs.ID]; ok || len(st.Ports) != 2 {
		t.Fatalf("filter: %+v", st)
	}
}

// waitShared waits, through Changed, until the mirror's shared state satisfies cond.
func waitShared(t *testing.T, m *Mirror, what string, cond func(State) bool) State {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		st := m.Shared()
		if cond(st) {
			return st
		}
		select {
		case <-m.Changed():
		case <-deadline:
			t.Fatalf("mirror never showed %s; state at revision %d: %+v", what, st.Revision, st)
		}
	}
}

// SharedSince follows real writes: port changes give exact Deltas across builds,
// including the ports whose verdict changes with another's (a conflict resolved), and
// anything else, or a reader too far behind, gets All.
func TestMirrorSharedSince(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	registerHost(t, s, "h2", "192.168.1.2")
	mustNet(t, s, "net", "10.0.0.0/24")
	p1 := mustPort(t, s, api.Port{Name: "p1", NetworkID: "net", Host: "h1"})
	m := s.NewMirror(MirrorOptions{})
	runMirror(t, m)
	st0, d := m.SharedSince(0)
	if !d.All || st0.Gen == 0 {
		t.Fatalf("first read: gen %d, delta %+v", st0.Gen, d)
	}
	if again, d := m.SharedSince(st0.Gen); again.Gen != st0.Gen || !d.Empty() {
		t.Fatalf("nothing changed: gen %d, delta %+v", again.Gen, d)
	}
	wantPorts := func(from State, ids ...string) State {
		t.Helper()
		st, d := m.SharedSince(from.Gen)
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		if d.All || !maps.Equal(d.Ports, want) {
			t.Fatalf("from gen %d to %d: delta %+v, want the ports %v", from.Gen, st.Gen, d, ids)
		}
		return st
	}

	p2 := mustPort(t, s, api.Port{Name: "p2", NetworkID: "net", Host: "h2"})
	waitShared(t, m, "p2", func(st State) bool { _, ok := st.Ports[p2.ID]; return ok })
	st1 := wantPorts(st0, p2.ID)

	// Two changes, read in several builds or one: one Delta.
	if _, err := s.UpdatePort(ctx, p1.ID, func(p *api.Port) error { p.Host = "h2"; return nil }); err != nil {
		t.Fatal(err)
	}
	waitShared(t, m, "p1 on h2", func(st State) bool { return st.Ports[p1.ID].Host == "h2" })
	if err := s.DeletePort(ctx, p2.ID); err != nil {
		t.Fatal(err)
	}
	waitShared(t, m, "p2 gone", func(st State) bool { _, ok := st.Ports[p2.ID]; return !ok })
	st2 := wantPorts(st1, p1.ID, p2.ID)

	// A newer port with p1's MAC, written around the CLI, is left out; deleting p1
	// lets it in, so both are in the Delta.
	twin := api.Port{ID: NewUUID(), Name: "twin", NetworkID: p1.NetworkID, Host: "h1", MAC: p1.MAC, FixedIPs: []string{"10.0.0.99"}}
	if _, err := s.Client().Put(ctx, pPorts+twin.ID, jsonOf(t, twin)); err != nil {
		t.Fatal(err)
	}
	waitShared(t, m, "the twin's conflict", func(st State) bool {
		pr := st.ProblemsOf(KindPorts, twin.ID)
		return len(pr) == 1 && pr[0].Class == ProblemConflict
	})
	st3 := wantPorts(st2, twin.ID)
	if err := s.DeletePort(ctx, p1.ID); err != nil {
		t.Fatal(err)
	}
	waitShared(t, m, "the twin in", func(st State) bool { _, ok := st.Ports[twin.ID]; return ok && len(st.Problems) == 0 })
	st4 := wantPorts(st3, p1.ID, twin.ID)

	// Anything but a port: All.
	mustNet(t, s, "other", "10.1.0.0/24")
	waitShared(t, m, "the other network", func(st State) bool { return len(st.Networks) == 2 })
	if _, d := m.SharedSince(st4.Gen); !d.All {
		t.Fatalf("after a network create: delta %+v", d)
	}

	// A reader more builds behind than the mirror remembers: All.
	behind, _ := m.SharedSince(0)
	for i := range maxDeltas + 1 {
		name := fmt.Sprint("twin", i)
		if _, err := s.UpdatePort(ctx, twin.ID, func(p *api.Port) error { p.Name = name; return nil }); err != nil {
			t.Fatal(err)
		}
		waitShared(t, m, name, func(st State) bool { return st.Ports[twin.ID].Name == name })
	}
	if st, d := m.SharedSince(behind.Gen); !d.All || st.Gen < behind.Gen+maxDeltas+1 {
		t.Fatalf("%d builds behind: delta %+v", st.Gen-behind.Gen, d)
	}
	if m.Relists() != 0 {
		t.Fatalf("relisted %d times", m.Relists())
	}
}
