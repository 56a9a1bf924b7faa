package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/etcdembed"
	"github.com/lanes-net/lanes/internal/pki"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// securePKI is a CA with the certificates of a small cluster: the server, root, two
// hosts, an operator and a reader.
type securePKI struct {
	dir string
	ca  *pki.CA
}

func newPKI(t *testing.T) *securePKI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.Init(dir, "lanes test CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &securePKI{dir: dir, ca: ca}
	for _, r := range []pki.Request{
		{Kind: pki.Server, CN: "server", SANs: []string{"127.0.0.1", "localhost"}},
		{Kind: pki.Admin, CN: RootUser},
		{Kind: pki.Host, CN: "h1"}, {Kind: pki.Host, CN: "h2"},
		{Kind: pki.Operator, CN: "op"}, {Kind: pki.Reader, CN: "mon"},
	} {
		if _, err := ca.Write(dir, r, false); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *securePKI) creds(kind pki.Kind, cn string) ClientTLS {
	base := filepath.Join(p.dir, pki.Base(kind, cn))
	return ClientTLS{CACert: filepath.Join(p.dir, pki.CACert), Cert: base + ".crt", Key: base + ".key"}
}

// startSecureEtcd runs an embedded member with TLS on both URLs and client
// certificate authentication.
func startSecureEtcd(t *testing.T, p *securePKI) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "etcd")
	srv := filepath.Join(p.dir, "server")
	var lastErr error
	for range 5 {
		e, err := etcdembed.Start(dir,
			fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
			fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
			etcdembed.WithTLS(etcdembed.ServerTLS{CACert: filepath.Join(p.dir, pki.CACert), Cert: srv + ".crt", Key: srv + ".key"}))
		if err == nil {
			t.Cleanup(e.Close)
			return e.Endpoints()
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("embedded etcd: %v", lastErr)
	return nil
}

func openAs(t *testing.T, eps []string, c ClientTLS) (*Store, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, eps, WithTLS(c))
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

func mustOpenAs(t *testing.T, eps []string, c ClientTLS) *Store {
	t.Helper()
	s, err := openAs(t, eps, c)
	if err != nil {
		t.Fatalf("open as %s: %v", c.Cert, err)
	}
	return s
}

func denied(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("%s: want etcd's permission denied, got %v", what, err)
	}
}

// TestAccess sets up lanes' roles on a TLS member and checks, with each identity's
// own certificate, what etcd lets it write.
func TestAccess(t *testing.T) {
	p := newPKI(t)
	eps := startSecureEtcd(t, p)
	ctx := tctx(t)

	root := mustOpenAs(t, eps, p.creds(pki.Admin, RootUser))
	access := Access{Hosts: []string{"h1", "h2"}, Operators: []string{"op"}, Readers: []string{"mon"}}
	changes, err := root.SetupAccess(ctx, access)
	if err != nil {
		t.Fatalf("setup access: %v", err)
	}
	if !strings.Contains(strings.Join(changes, "\n"), "authentication enabled") {
		t.Errorf("first setup did not enable auth: %q", changes)
	}
	if again, err := root.SetupAccess(ctx, access); err != nil || len(again) != 0 {
		t.Errorf("second setup: changes %q, err %v; want none", again, err)
	}

	h1 := mustOpenAs(t, eps, p.creds(pki.Host, "h1"))
	h1Reg := registerHost(t, h1, "h1", "192.0.2.1")
	h2 := mustOpenAs(t, eps, p.creds(pki.Host, "h2"))
	h2Reg := registerHost(t, h2, "h2", "192.0.2.2")

	op := mustOpenAs(t, eps, p.creds(pki.Operator, "op"))
	n := mustNet(t, op, "blue", "10.0.0.0/24")
	p1 := mustPort(t, op, api.Port{Name: "p1", NetworkID: n.ID, Host: "h1"})
	p2 := mustPort(t, op, api.Port{Name: "p2", NetworkID: n.ID, Host: "h2"})
	if _, err := op.CreateSecurityGroup(ctx, api.SecurityGroup{Name: "web"}); err != nil {
		t.Errorf("operator creates a group: %v", err)
	}
	if err := op.SetPortStatus(ctx, api.PortStatus{PortID: p2.ID, Host: "h2", State: api.StatusBuild}); err != nil {
		t.Errorf("operator writes a status: %v", err)
	}

	if err := h1.SetPortStatus(ctx, api.PortStatus{PortID: p1.ID, Host: "h1", State: api.StatusActive}); err != nil {
		t.Errorf("h1 reports its own port: %v", err)
	}
	if st, err := h1.ListPortStatus(ctx); err != nil || len(st) != 2 {
		t.Errorf("h1 reads statuses: %v %v", st, err)
	}

	raw := h1.Client()
	if err := rawPut(ctx, raw, pSeen+"h1", time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		t.Errorf("h1 writes its heartbeat: %v", err)
	}
	for what, err := range map[string]error{
		"h1 writes h2's heartbeat": rawPut(ctx, raw, pSeen+"h2", time.Now().UTC().Format(time.RFC3339Nano)),
		"h1 writes h2's status":    h1.SetPortStatus(ctx, api.PortStatus{PortID: p2.ID, Host: "h2", State: api.StatusError}),
		"h1 puts h2's status key":  rawPut(ctx, raw, statusKey("h2", p2.ID), `{}`),
		"h1 puts a legacy status":  rawPut(ctx, raw, pStatus+p2.ID, `{}`),
		"h1 deletes h2's status":   del(ctx, raw, statusKey("h2", p2.ID)),
		"h1 registers as h2": func() error {
			_, err := h1.RegisterHost(ctx, api.Host{Name: "h2", TunnelIP: "192.0.2.9", TunnelType: api.TunnelVXLAN}, time.Second)
			return err
		}(),
		"h1 deletes h2's host key":  del(ctx, raw, pHosts+"h2"),
		"h1 puts h2's liveness key": rawPut(ctx, raw, Prefix+"alive/h2", ""),
		"h1 revokes h2's lease":     func() error { _, err := raw.Revoke(ctx, h2Reg.Lease()); return err }(),
		"h1 writes h10's status":    rawPut(ctx, raw, statusKey("h10", p2.ID), `{}`),
		"h1 creates a network": func() error {
			_, err := h1.CreateNetwork(ctx, NetworkSpec{Name: "red", CIDR: "10.1.0.0/24"})
			return err
		}(),
		"h1 puts a network": rawPut(ctx, raw, pNetworks+n.ID, `{}`),
		"h1 puts a port":    rawPut(ctx, raw, pPorts+p2.ID, `{}`),
		"h1 moves a port to itself": func() error {
			_, err := h1.UpdatePort(ctx, "p2", func(p *api.Port) error { p.Host = "h1"; return nil })
			return err
		}(),
		"h1 puts a group":         rawPut(ctx, raw, pGroups+NewUUID(), `{}`),
		"h1 deletes a port":       h1.DeletePort(ctx, "p2"),
		"h1 takes an address":     rawPut(ctx, raw, pAllocIP+n.ID+"/10.0.0.99", p1.ID),
		"h1 writes outside lanes": rawPut(ctx, raw, "/other", "x"),
	} {
		denied(t, what, err)
	}
	if err := rawPut(ctx, raw, pHosts+"h1", `{"name":"h1","tunnel_ip":"192.0.2.1"}`); err != nil {
		t.Errorf("h1 writes its own host key: %v", err)
	}
	if err := rawPut(ctx, raw, Prefix+"alive/h1", ""); err != nil {
		t.Errorf("h1 writes its own liveness key: %v", err)
	}
	if _, err := raw.Revoke(ctx, h1Reg.Lease()); err != nil {
		t.Errorf("h1 revokes its own lease: %v", err)
	}

	mon := mustOpenAs(t, eps, p.creds(pki.Reader, "mon"))
	if ns, err := mon.ListNetworks(ctx); err != nil || len(ns) != 1 {
		t.Errorf("reader lists networks: %v %v", ns, err)
	}
	denied(t, "reader creates a network", func() error {
		_, err := mon.CreateNetwork(ctx, NetworkSpec{Name: "x", CIDR: "10.2.0.0/24"})
		return err
	}())
	denied(t, "reader deletes a status", del(ctx, mon.Client(), statusKey("h1", p1.ID)))

	// The operator may do what the hosts may not.
	for what, err := range map[string]error{
		"operator moves a port": func() error {
			_, err := op.UpdatePort(ctx, "p2", func(p *api.Port) error { p.Host = "h1"; return nil })
			return err
		}(),
		"operator deletes a port": op.DeletePort(ctx, "p1"),
		"operator creates a network": func() error {
			_, err := op.CreateNetwork(ctx, NetworkSpec{Name: "red", CIDR: "10.1.0.0/24"})
			return err
		}(),
	} {
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	if _, err := op.SetupAccess(ctx, access); !errors.Is(err, ErrNotRoot) {
		t.Errorf("operator runs setup: want ErrNotRoot, got %v", err)
	}

	users, err := root.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(users)
	if want := "[{h1 [lanes-host-h1]} {h2 [lanes-host-h2]} {mon [lanes-reader]} {op [lanes-operator]} {root [root]}]"; got != want {
		t.Errorf("users %s, want %s", got, want)
	}
	// A retired host's certificate authenticates no one any more.
	if err := root.RemoveUser(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.ListNetworks(ctx); err == nil {
		t.Error("h2 still reads after its user was removed")
	}
	// Moving a user to another role takes the old one away.
	if _, err := root.SetupAccess(ctx, Access{Hosts: []string{"h1"}, Operators: []string{"mon"}}); err != nil {
		t.Fatal(err)
	}
	if u, _ := root.Client().Auth.UserGet(ctx, "mon"); fmt.Sprint(u.Roles) != "[lanes-operator]" {
		t.Errorf("mon's roles after becoming an operator: %v", u.Roles)
	}
}

func rawPut(ctx context.Context, cli *clientv3.Client, k, v string) error {
	_, err := cli.Put(ctx, k, v)
	return err
}

func del(ctx context.Context, cli *clientv3.Client, k string) error {
	_, err := cli.Delete(ctx, k)
	return err
}

// TestRefusedCertificates: a client without a certificate, with one from another CA,
// with an expired one, or not trusting the server is refused at once, wrapping ErrTLS
// and saying what is wrong.
func TestRefusedCertificates(t *testing.T) {
	p := newPKI(t)
	eps := startSecureEtcd(t, p)

	other := newPKI(t)
	expiredCA := p.ca
	old := time.Now().Add(-48 * time.Hour)
	if _, err := expiredCA.Write(p.dir, pki.Request{Kind: pki.Operator, CN: "late", NotBefore: old, NotAfter: old.Add(time.Hour)}, false); err != nil {
		t.Fatal(err)
	}
	good := p.creds(pki.Operator, "op")
	for _, c := range []struct {
		name  string
		creds ClientTLS
		want  string
	}{
		{"no certificate", ClientTLS{CACert: good.CACert}, "requires a client certificate"},
		{"another CA", ClientTLS{CACert: good.CACert, Cert: other.creds(pki.Operator, "op").Cert, Key: other.creds(pki.Operator, "op").Key}, "not signed by a CA etcd trusts"},
		{"expired", p.creds(pki.Operator, "late"), "expired at"},
		{"server not trusted", other.creds(pki.Operator, "op"), "server certificate is not signed by a CA in etcd-cacert"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := openAs(t, eps, c.creds)
			if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want ErrTLS saying %q, got %v", c.want, err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("refusal took %s", took)
			}
			t.Log(err)
		})
	}
	if _, err := openAs(t, eps, good); err != nil {
		t.Errorf("the operator's certificate: %v", err)
	}
}

func TestCheckEndpoints(t *testing.T) {
	for _, c := range []struct {
		eps           []string
		tls, insecure bool
		want          string // "" for accepted
	}{
		{[]string{"http://127.0.0.1:2379"}, false, false, ""},
		{[]string{"http://localhost:2379", "http://[::1]:2379"}, false, false, ""},
		{[]string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, true, false, ""},
		{[]string{"http://10.0.0.1:2379"}, false, true, ""},
		{[]string{"unix:///run/etcd.sock"}, false, false, ""},
		{[]string{"http://10.0.0.1:2379"}, false, false, "plain http to a non-loopback address"},
		{[]string{"https://10.0.0.1:2379", "http://10.0.0.2:2379"}, false, true, "mixes plain and TLS"},
		{[]string{"http://127.0.0.1:2379"}, true, false, "use https://"},
		{[]string{"10.0.0.1:2379"}, false, false, "want a URL"},
		{[]string{"ftp://10.0.0.1:2379"}, false, false, "scheme must be"},
		{nil, false, false, "no endpoint"},
	} {
		err := CheckEndpoints(c.eps, c.tls, c.insecure)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.eps, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || fieldOf(err) != "etcd"):
			t.Errorf("%v: want an etcd field error saying %q, got %v", c.eps, c.want, err)
		}
	}
}

// TestApplied: the check that decides whether a commit of unknown outcome went
// through sees every put and delete of the transaction.
func TestApplied(t *testing.T) {
	s := newStore(t)
	ctx := tctx(t)
	if err := rawPut(ctx, s.Client(), Prefix+"gone", "x"); err != nil {
		t.Fatal(err)
	}
	ops := []clientv3.Op{
		clientv3.OpPut(Prefix+"a", "1"),
		clientv3.OpDelete(Prefix + "gone"),
		clientv3.OpDelete(Prefix+"range/", clientv3.WithPrefix()),
	}
	if ok, err := s.applied(ctx, ops); err != nil || ok {
		t.Fatalf("before the commit: applied %v, %v", ok, err)
	}
	if _, err := s.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.applied(ctx, ops); err != nil || !ok {
		t.Fatalf("after the commit: applied %v, %v", ok, err)
	}
	for _, change := range []clientv3.Op{clientv3.OpPut(Prefix+"a", "2"), clientv3.OpPut(Prefix+"range/x", "")} {
		if _, err := s.Client().Txn(ctx).Then(change).Commit(); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.applied(ctx, ops); ok {
			t.Errorf("after %s: still applied", change.KeyBytes())
		}
	}
	if !transient(rpctypes.ErrNoLeader) || !transient(fmt.Errorf("get: %w", rpctypes.ErrLeaderChanged)) || transient(rpctypes.ErrPermissionDenied) || transient(context.DeadlineExceeded) {
		t.Error("transient misclassifies etcd's errors")
	}
}
