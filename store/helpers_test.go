package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/etcdembed"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs an embedded etcd in a temp dir on free loopback ports.
func startEtcd(t *testing.T) *etcdembed.Server {
	t.Helper()
	// A fresh subdirectory: etcd creates it with the 0700 it wants.
	dir := filepath.Join(t.TempDir(), "etcd")
	var lastErr error
	// A free port can be taken by someone else between the probe and etcd's bind.
	for range 5 {
		e, err := etcdembed.Start(dir,
			fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
		if err == nil {
			t.Cleanup(e.Close)
			return e
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("embedded etcd: %v", lastErr)
	return nil
}

func openStore(t *testing.T, e *etcdembed.Server) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, e.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newStore(t *testing.T) *Store { return openStore(t, startEtcd(t)) }

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dump(t *testing.T, s *Store) map[string]string {
	t.Helper()
	d, _, err := s.Dump(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func diffDump(a, b map[string]string) string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "- "+k)
		} else if v != w {
			out = append(out, "~ "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "+ "+k)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func mustEqualDump(t *testing.T, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		t.Fatalf("store changed:\n%s", diffDump(before, after))
	}
}

func fieldOf(err error) string {
	var fe *api.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

func u32(v uint32) *uint32 { return &v }

// registerHost registers a host for the test's lifetime.
func registerHost(t *testing.T, s *Store, name, ip string) *HostRegistration {
	t.Helper()
	r, err := s.RegisterHost(tctx(t), api.Host{Name: name, TunnelIP: ip, TunnelType: api.TunnelVXLAN}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func mustNet(t *testing.T, s *Store, name, cidr string) api.Network {
	t.Helper()
	n, err := s.CreateNetwork(tctx(t), NetworkSpec{Name: name, CIDR: cidr})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustPort(t *testing.T, s *Store, p api.Port) api.Port {
	t.Helper()
	out, err := s.CreatePort(tctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
