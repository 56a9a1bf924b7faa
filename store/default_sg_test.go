package store

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/lanes-net/lanes/api"
)

// modRev is the revision that last wrote key.
func modRev(t *testing.T, s *Store, key string) int64 {
	t.Helper()
	resp, err := s.cli.Get(tctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		t.Fatalf("%s missing", key)
	}
	return resp.Kvs[0].ModRevision
}

// defaultGroups lists the groups named DefaultGroupName (the name index allows at
// most one, so this also proves no other group took over the name's meaning).
func defaultGroups(t *testing.T, s *Store) []api.SecurityGroup {
	t.Helper()
	gs, err := s.ListSecurityGroups(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []api.SecurityGroup
	for _, g := range gs {
		if g.Name == DefaultGroupName {
			out = append(out, g)
		}
	}
	return out
}

func TestDefaultSecurityGroup(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	if gs := defaultGroups(t, s); len(gs) != 0 {
		t.Fatalf("default group before any network: %+v", gs)
	}

	// The first network makes it, in the network's own transaction.
	n := mustNet(t, s, "net", "10.0.0.0/24")
	gs := defaultGroups(t, s)
	if len(gs) != 1 {
		t.Fatalf("default groups after the first network: %+v", gs)
	}
	def := gs[0]
	if len(def.Rules) != 4 {
		t.Fatalf("default rules: %+v", def.Rules)
	}
	if a, b := modRev(t, s, pNetworks+n.ID), modRev(t, s, pGroups+def.ID); a != b {
		t.Fatalf("network written at revision %d, default group at %d: not one transaction", a, b)
	}
	mustNet(t, s, "net2", "10.1.0.0/24")
	if gs := defaultGroups(t, s); len(gs) != 1 || gs[0].ID != def.ID {
		t.Fatalf("default groups after the second network: %+v", gs)
	}

	// Without groups a port gets the default group; NoSecurityGroups gives none.
	p := mustPort(t, s, api.Port{Name: "plain", NetworkID: "net", Host: "h1"})
	if !slices.Equal(p.SecurityGroups, []string{def.ID}) {
		t.Fatalf("port without groups has %v, want [%s]", p.SecurityGroups, def.ID)
	}
	if got, _ := s.GetPort(ctx, p.ID); !slices.Equal(got.SecurityGroups, []string{def.ID}) {
		t.Fatalf("stored port has %v", got.SecurityGroups)
	}
	if _, ok := dump(t, s)[pRefsSG+def.ID+"/port/"+p.ID]; !ok {
		t.Fatal("no reference from the default group to the port: it could be deleted under it")
	}
	none, err := s.CreatePort(ctx, api.Port{Name: "none", NetworkID: "net", Host: "h1"}, NoSecurityGroups)
	if err != nil || len(none.SecurityGroups) != 0 {
		t.Fatalf("NoSecurityGroups: %v %v", none.SecurityGroups, err)
	}
	if got, _ := s.GetPort(ctx, none.ID); len(got.SecurityGroups) != 0 {
		t.Fatalf("stored NoSecurityGroups port has %v", got.SecurityGroups)
	}
	off := false
	if p, err := s.CreatePort(ctx, api.Port{Name: "nosec", NetworkID: "net", Host: "h1", PortSecurity: &off}); err != nil || len(p.SecurityGroups) != 0 {
		t.Fatalf("port security off: %v %v", p.SecurityGroups, err)
	}
	web, err := s.CreateSecurityGroup(ctx, api.SecurityGroup{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if p := mustPort(t, s, api.Port{Name: "web", NetworkID: "net", Host: "h1", SecurityGroups: []string{"web"}}); !slices.Equal(p.SecurityGroups, []string{web.ID}) {
		t.Fatalf("explicit group: %v", p.SecurityGroups)
	}
	before := dump(t, s)
	_, err = s.CreatePort(ctx, api.Port{Name: "both", NetworkID: "net", Host: "h1", SecurityGroups: []string{"web"}}, NoSecurityGroups)
	if fieldOf(err) != "port.security_groups" {
		t.Fatalf("groups with NoSecurityGroups: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))

	// Deleted (once no port uses it), the default group comes back with the next port
	// that needs it, in that port's transaction; a refused port brings nothing back.
	if err := s.DeletePort(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecurityGroup(ctx, DefaultGroupName); err != nil {
		t.Fatal(err)
	}
	before = dump(t, s)
	if _, err := s.CreatePort(ctx, api.Port{Name: "bad", NetworkID: "net", Host: "h1", FixedIPs: []string{"10.9.9.9"}}); fieldOf(err) != "port.fixed_ips" {
		t.Fatalf("address outside the network: %v", err)
	}
	mustEqualDump(t, before, dump(t, s))
	p2 := mustPort(t, s, api.Port{Name: "again", NetworkID: "net", Host: "h1"})
	gs = defaultGroups(t, s)
	if len(gs) != 1 || gs[0].ID == def.ID || !slices.Equal(p2.SecurityGroups, []string{gs[0].ID}) {
		t.Fatalf("default group after re-creation: %+v, port has %v", gs, p2.SecurityGroups)
	}
	if a, b := modRev(t, s, pPorts+p2.ID), modRev(t, s, pGroups+gs[0].ID); a != b {
		t.Fatalf("port written at revision %d, default group at %d: not one transaction", a, b)
	}

	// A group an operator made under the name is used as it is.
	if err := s.DeletePort(ctx, p2.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecurityGroup(ctx, DefaultGroupName); err != nil {
		t.Fatal(err)
	}
	own, err := s.CreateSecurityGroup(ctx, api.SecurityGroup{Name: DefaultGroupName})
	if err != nil {
		t.Fatal(err)
	}
	mustNet(t, s, "net3", "10.2.0.0/24")
	if p := mustPort(t, s, api.Port{Name: "own", NetworkID: "net3", Host: "h1"}); !slices.Equal(p.SecurityGroups, []string{own.ID}) {
		t.Fatalf("port got %v, want the operator's default %s", p.SecurityGroups, own.ID)
	}
	if g, err := s.GetSecurityGroup(ctx, own.ID); err != nil || len(g.Rules) != 0 {
		t.Fatalf("the operator's default group was changed: %+v %v", g, err)
	}
}

// Concurrent creators, each through its own client, agree on one default group.
func TestDefaultSecurityGroupConcurrent(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	clients := []*Store{openStore(t, e), openStore(t, e), openStore(t, e)}
	ctx := tctx(t)
	registerHost(t, clients[0], "h1", "192.168.1.1")
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = clients[i%len(clients)].CreateNetwork(ctx, NetworkSpec{Name: fmt.Sprintf("n%d", i), CIDR: "10.0.0.0/24"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("network %d: %v", i, err)
		}
	}
	s := clients[0]
	gs, err := s.ListSecurityGroups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != DefaultGroupName {
		t.Fatalf("groups after %d concurrent networks: %+v %v", n, gs, err)
	}

	// The same for ports that all need a default group that does not exist yet.
	if err := s.DeleteSecurityGroup(ctx, DefaultGroupName); err != nil {
		t.Fatal(err)
	}
	ports := make([]api.Port, n)
	for i := range n {
		wg.Go(func() {
			ports[i], errs[i] = clients[i%len(clients)].CreatePort(ctx, api.Port{Name: fmt.Sprintf("p%d", i), NetworkID: "n0", Host: "h1"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("port %d: %v", i, err)
		}
	}
	gs, err = s.ListSecurityGroups(ctx)
	if err != nil || len(gs) != 1 || gs[0].Name != DefaultGroupName {
		t.Fatalf("groups after %d concurrent ports: %+v %v", n, gs, err)
	}
	for _, p := range ports {
		if !slices.Equal(p.SecurityGroups, []string{gs[0].ID}) {
			t.Fatalf("port %s has %v, want [%s]", p.Name, p.SecurityGroups, gs[0].ID)
		}
	}
}
