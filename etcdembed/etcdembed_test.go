package etcdembed

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
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

func loopback(t *testing.T) string { return fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) }

// start runs a server in dir on free loopback ports; a free port can be taken by
// someone else between the probe and etcd's bind, so that is retried.
func start(t *testing.T, dir string, opts ...Option) (*Server, string) {
	t.Helper()
	var lastErr error
	for range 5 {
		peer := loopback(t)
		e, err := Start(dir, loopback(t), peer, opts...)
		if err == nil {
			t.Cleanup(e.Close)
			return e, peer
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("embedded etcd: %v", lastErr)
	return nil, ""
}

func client(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "etcd")
	e, peer := start(t, dir)
	eps := e.Endpoints()
	cli := client(t, eps)
	if _, err := cli.Put(tctx(t), "/k", "v"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	e.Close()
	e.Close() // harmless
	e2, err := Start(dir, eps[0], peer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e2.Close)
	resp, err := client(t, e2.Endpoints()).Get(tctx(t), "/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %+v %v", resp, err)
	}
}

func TestSeveralClientURLs(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "etcd")
	a, b := loopback(t), loopback(t)
	e, err := Start(dir, a+","+b, loopback(t))
	if err != nil {
		t.Skipf("ports taken meanwhile: %v", err)
	}
	t.Cleanup(e.Close)
	if eps := e.Endpoints(); len(eps) != 2 || eps[0] != a || eps[1] != b {
		t.Fatalf("endpoints %v, want [%s %s]", eps, a, b)
	}
	if _, err := client(t, []string{b}).Put(tctx(t), "/k", "v"); err != nil {
		t.Fatalf("put through the second client URL: %v", err)
	}
}

func TestBadURLs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ client, peer string }{
		{"127.0.0.1:1", "http://127.0.0.1:2"},         // no scheme
		{"http://127.0.0.1:1,", "http://127.0.0.1:2"}, // empty second URL
	} {
		if _, err := Start(t.TempDir(), c.client, c.peer); err == nil || !strings.Contains(err.Error(), "client URL") {
			t.Errorf("Start(%q, %q) = %v, want a client URL error", c.client, c.peer, err)
		}
	}
}

// TestTLSNeedsHTTPSEverywhere: with a server certificate no URL may stay plain, or
// the store would be served without one there.
func TestTLSNeedsHTTPSEverywhere(t *testing.T) {
	tlsOpt := WithTLS(ServerTLS{CACert: "ca.crt", Cert: "s.crt", Key: "s.key"})
	for _, c := range []struct{ client, peer string }{
		{"https://127.0.0.1:1,http://127.0.0.1:2", "https://127.0.0.1:3"},
		{"https://127.0.0.1:1", "http://127.0.0.1:3"},
	} {
		_, err := Start(filepath.Join(t.TempDir(), "etcd"), c.client, c.peer, tlsOpt)
		if err == nil || !strings.Contains(err.Error(), "must be https") {
			t.Errorf("%s + %s: %v", c.client, c.peer, err)
		}
	}
}

// TestDBStaysBounded: over load/purge cycles (every key written twice, then all
// deleted) the db file does not grow from cycle to cycle: compaction drops the old
// revisions and the periodic defrag gives their pages back. Without compaction each
// cycle's revisions stay, and the fourth cycle's peak is about four times the first.
func TestDBStaysBounded(t *testing.T) {
	t.Parallel()
	e, _ := start(t, filepath.Join(t.TempDir(), "etcd"), WithCompaction("periodic", "1s"), WithDefrag(200*time.Millisecond, 1))
	cli := client(t, e.Endpoints())
	value := strings.Repeat("x", 1024)
	var peaks []int64
	for cycle := range 4 {
		for round := range 2 {
			for i := range 1500 {
				if _, err := cli.Put(tctx(t), fmt.Sprintf("/load/%d", i), fmt.Sprintf("%d%s", round, value)); err != nil {
					t.Fatal(err)
				}
			}
		}
		peak, _ := e.DBSize()
		peaks = append(peaks, peak)
		if _, err := cli.Delete(tctx(t), "/load/", clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
		// Compaction (within about a second) and then a defrag shrink the file.
		deadline := time.Now().Add(30 * time.Second)
		for {
			size, _ := e.DBSize()
			if size < peak/2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: db still %d bytes after the purge (peak %d)", cycle, size, peak)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("db peaks per cycle: %v", peaks)
	for i, p := range peaks {
		if p > 2*peaks[0] {
			t.Errorf("cycle %d: db peak %d bytes, more than twice the first cycle's %d", i, p, peaks[0])
		}
	}
}

func TestBadCompactionMode(t *testing.T) {
	_, err := Start(filepath.Join(t.TempDir(), "etcd"), loopback(t), loopback(t), WithCompaction("hourly", "1"))
	if err == nil || !strings.Contains(err.Error(), "compaction mode") {
		t.Fatalf("Start with compaction mode hourly: %v, want an error naming the mode", err)
	}
}
