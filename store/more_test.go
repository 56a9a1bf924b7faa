package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
)

func TestSecurityGroups(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	base := dump(t, s)
	def, err := s.EnsureDefaultSecurityGroup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.EnsureDefaultSecurityGroup(ctx)
	if err != nil || again.ID != def.ID {
		t.Fatalf("EnsureDefaultSecurityGroup not idempotent: %+v %v", again, err)
	}
	if len(def.Rules) != 4 {
		t.Fatalf("default rules: %+v", def.Rules)
	}
	var self, egress int
	for _, r := range def.Rules {
		if r.ID == "" {
			t.Fatal("rule without ID")
		}
		if r.Direction == api.Ingress && r.RemoteGroupID == def.ID {
			self++
		}
		if r.Direction == api.Egress && r.RemoteGroupID == "" && r.RemoteCIDR == "" {
			egress++
		}
	}
	if self != 2 || egress != 2 {
		t.Fatalf("default rules not Neutron's: %+v", def.Rules)
	}

	// A group naming itself by name, and one naming another as remote.
	db, err := s.CreateSecurityGroup(ctx, api.SecurityGroup{Name: "db", Rules: []api.Rule{
		{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 5432, PortMax: 5432, RemoteGroupID: "db"},
	}})
	if err != nil || db.Rules[0].RemoteGroupID != db.ID {
		t.Fatalf("self reference by name: %+v %v", db, err)
	}
	web, err := s.CreateSecurityGroup(ctx, api.SecurityGroup{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.AddRule(ctx, "db", api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 5432, PortMax: 5432, RemoteGroupID: "web"})
	if err != nil || r.ID == "" || r.RemoteGroupID != web.ID {
		t.Fatalf("add rule: %+v %v", r, err)
	}
	err = s.DeleteSecurityGroup(ctx, "web")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "group "+db.Name+" ("+db.ID+")") {
		t.Fatalf("delete a remote group in use: %v", err)
	}
	if err := s.DeleteRule(ctx, db.ID, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRule(ctx, db.ID, r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete a deleted rule: %v", err)
	}
	if err := s.DeleteSecurityGroup(ctx, "web"); err != nil {
		t.Fatalf("delete a group no longer referenced: %v", err)
	}
	// A group referencing only itself can be deleted.
	if err := s.DeleteSecurityGroup(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	gs, err := s.ListSecurityGroups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != DefaultGroupName {
		t.Fatalf("list: %+v %v", gs, err)
	}
	if err := s.DeleteSecurityGroup(ctx, def.ID); err != nil {
		t.Fatal(err)
	}
	mustEqualDump(t, base, dump(t, s))
}

func TestHostLeaseExpiry(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	h := api.Host{Name: "h1", TunnelIP: "192.168.1.1", TunnelType: api.TunnelVXLAN}
	reg, err := s.RegisterHost(ctx, h, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hctx, cancel := context.WithCancel(ctx)
	_, err = s.RegisterHost(hctx, api.Host{Name: "h2", TunnelIP: "192.168.1.2", TunnelType: api.TunnelGRE}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := s.ListHosts(ctx)
	if err != nil || len(hosts) != 2 || !hosts[0].Alive || hosts[1].TunnelType != api.TunnelGRE {
		t.Fatalf("hosts: %+v %v", hosts, err)
	}
	// The keep-alive holds the key well past the TTL.
	start := time.Now()
	eventually(t, 10*time.Second, "two TTLs to pass", func() bool {
		if _, err := s.GetHost(ctx, "h1"); err != nil {
			t.Fatalf("host expired while kept alive: %v", err)
		}
		return time.Since(start) > 4*time.Second
	})
	// Stopping by Close and by cancelling the context: both leases expire, and the
	// hosts stay registered, shown down (liveness is not placement).
	reg.Close()
	cancel()
	eventually(t, 15*time.Second, "hosts to be shown down", func() bool {
		hosts, err := s.ListHosts(ctx)
		return err == nil && len(hosts) == 2 && !hosts[0].Alive && !hosts[1].Alive
	})
	if h, err := s.GetHost(ctx, "h1"); err != nil || h.Alive || h.TunnelIP != "192.168.1.1" {
		t.Fatalf("expired host: %+v %v", h, err)
	}
	// Revoke removes the key at once; re-registering takes over a live name.
	r1, err := s.RegisterHost(ctx, h, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.RegisterHost(ctx, h, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := s.GetHost(ctx, "h1"); err != nil || !h.Alive {
		t.Fatalf("re-registered host: %+v %v", h, err)
	}
	r1.Close()
	if err := r2.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err := s.GetHost(ctx, "h1"); err != nil || h.Alive {
		t.Fatalf("revoked host: %+v %v", h, err)
	}
	// Deleting a host with a port bound is refused unless forced; then it is gone.
	mustNet(t, s, "net", "10.0.0.0/24")
	mustPort(t, s, api.Port{Name: "p", NetworkID: "net", Host: "h1"})
	if err := s.DeleteHost(ctx, "h1", false); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "1 ports are bound") {
		t.Fatalf("delete of a host with a port: %v", err)
	}
	if err := s.DeleteHost(ctx, "h1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetHost(ctx, "h1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted host: %v", err)
	}
	if err := s.DeleteHost(ctx, "h1", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestHostReRegistersAfterLeaseLoss(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	reg, err := s.RegisterHost(ctx, api.Host{Name: "h1", TunnelIP: "192.168.1.1", TunnelType: api.TunnelVXLAN}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	old := reg.Lease()
	// Losing the lease (here revoked behind the registration's back) makes it register again.
	if _, err := s.Client().Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "re-registration", func() bool {
		_, err := s.GetHost(ctx, "h1")
		return err == nil && reg.Lease() != old
	})
}

func TestPortStatus(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	registerHost(t, s, "h2", "192.168.1.2")
	mustNet(t, s, "net", "10.0.0.0/24")
	p := mustPort(t, s, api.Port{Name: "p", NetworkID: "net", Host: "h1"})
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: "h1", State: api.StatusActive, Ofport: 7}); err != nil {
		t.Fatal(err)
	}
	st, err := s.GetPortStatus(ctx, p.ID)
	if err != nil || st.State != api.StatusActive || st.Ofport != 7 || st.Updated.IsZero() {
		t.Fatalf("status: %+v %v", st, err)
	}
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: "h2", State: api.StatusDown}); !errors.Is(err, ErrNotBound) {
		t.Fatalf("status from a host the port is not bound to: %v", err)
	}
	// Moving the port drops the old host's status.
	if _, err := s.UpdatePort(ctx, p.ID, func(p *api.Port) error { p.Host = "h2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPortStatus(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status after a move: %v", err)
	}
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: "h1", State: api.StatusActive}); !errors.Is(err, ErrNotBound) {
		t.Fatalf("old host's status after a move: %v", err)
	}
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: "h2", State: api.StatusBuild}); err != nil {
		t.Fatal(err)
	}
	sts, err := s.ListPortStatus(ctx)
	if err != nil || len(sts) != 1 || sts[0].Host != "h2" {
		t.Fatalf("list: %+v %v", sts, err)
	}
	if err := s.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if sts, _ := s.ListPortStatus(ctx); len(sts) != 0 {
		t.Fatalf("status outlived its port: %+v", sts)
	}

	// Status writes racing port deletes never leave a status behind.
	for i := range 20 {
		q := mustPort(t, s, api.Port{Name: "q" + string(rune('a'+i)), NetworkID: "net", Host: "h1"})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				err := s.SetPortStatus(ctx, api.PortStatus{PortID: q.ID, Host: "h1", State: api.StatusActive})
				if errors.Is(err, ErrNotFound) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			if err := s.DeletePort(ctx, q.ID); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if _, err := s.GetPortStatus(ctx, q.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("status of deleted port %s: %v", q.ID, err)
		}
	}
}

func TestWaitPortActive(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	mustNet(t, s, "net", "10.0.0.0/24")

	type result struct {
		st  api.PortStatus
		err error
	}
	wait := func(ref string) chan result {
		ch := make(chan result, 1)
		go func() {
			st, err := s.WaitPortActive(ctx, ref)
			ch <- result{st, err}
		}()
		return ch
	}
	// Active after BUILD.
	p := mustPort(t, s, api.Port{Name: "a", NetworkID: "net", Host: "h1"})
	ch := wait("a")
	for _, state := range []string{api.StatusBuild, api.StatusDown, api.StatusActive} {
		if err := s.SetPortStatus(ctx, api.PortStatus{PortID: p.ID, Host: "h1", State: state}); err != nil {
			t.Fatal(err)
		}
	}
	if r := <-ch; r.err != nil || r.st.State != api.StatusActive {
		t.Fatalf("wait: %+v", r)
	}
	// Already active: returns at once.
	if st, err := s.WaitPortActive(ctx, p.ID); err != nil || st.State != api.StatusActive {
		t.Fatalf("wait on an active port: %+v %v", st, err)
	}
	// ERROR carries the host's reason.
	q := mustPort(t, s, api.Port{Name: "b", NetworkID: "net", Host: "h1"})
	ch = wait(q.ID)
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: q.ID, Host: "h1", State: api.StatusError, Reason: "tap missing"}); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; !errors.Is(r.err, ErrPortFailed) || !strings.Contains(r.err.Error(), "tap missing") || r.st.State != api.StatusError {
		t.Fatalf("wait on a failing port: %+v", r)
	}
	// Deleting the port ends the wait.
	w := mustPort(t, s, api.Port{Name: "c", NetworkID: "net", Host: "h1"})
	ch = wait(w.ID)
	if err := s.SetPortStatus(ctx, api.PortStatus{PortID: w.ID, Host: "h1", State: api.StatusBuild}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePort(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; !errors.Is(r.err, ErrNotFound) {
		t.Fatalf("wait on a deleted port: %+v", r)
	}
	// The caller's deadline ends the wait.
	x := mustPort(t, s, api.Port{Name: "d", NetworkID: "net", Host: "h1"})
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.WaitPortActive(dctx, x.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past the deadline: %v", err)
	}
}
