package tests

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
)

// TestReadiness stops etcd and deletes br-tun under a running lanesd: /readyz must say
// so within 5 s, name the failed check, and turn ready again once repaired; lanesctl
// status must warn about a network MTU above the underlay's, a peer with another
// tunnel type and a lost lease.
func TestReadiness(t *testing.T) {
	l := newLab(t, 2, withEtcdCluster(1))
	h1 := l.Host("h1")
	readyz := func() (string, error) { return getIn(h1.Netns, "http://"+h1.MetricsAddr()+"/readyz") }
	healthz := func() error { _, err := getIn(h1.Netns, "http://"+h1.MetricsAddr()+"/healthz"); return err }

	ctl(t, l, h1, "network", "create", "blue", "--cidr", "10.0.0.0/24")
	// MTU 8950 is right for the network's own --underlay-mtu, not for the lab's 1500.
	ctl(t, l, h1, "network", "create", "jumbo", "--cidr", "10.9.0.0/24", "--underlay-mtu", "9000", "--mtu", "8950")
	vm(t, l, "h1", "a1", "blue", "10.0.0.11")
	vm(t, l, "h2", "a2", "blue", "10.0.0.12")
	ctl(t, l, h1, "port", "create", "j1", "--network", "jumbo", "--host", "h1", "--wait")
	// A peer that speaks GRE, sharing network blue with h1.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := l.OpenStore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg, err := st.RegisterHost(ctx, api.Host{Name: "gre1", TunnelIP: "172.31.0.99", TunnelType: api.TunnelGRE}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctl(t, l, h1, "port", "create", "g1", "--network", "blue", "--host", "gre1")

	// Each change lanesd made is one info line with names and IDs.
	eventually(t, 10*time.Second, "h1's log records its changes", func() error {
		b, err := os.ReadFile(h1.LogFile())
		if err != nil {
			return err
		}
		for _, want := range []string{`msg="port wired" port=a1 `, `msg="network joined" network=blue `, `msg="tunnel added" `, `peer=h2`} {
			if !strings.Contains(string(b), want) {
				return fmt.Errorf("no %s in h1's log", want)
			}
		}
		return nil
	})
	eventually(t, 20*time.Second, "h1 ready", func() error { _, err := readyz(); return err })
	if err := healthz(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "status warns about MTU and tunnel type", func() error {
		var r api.StatusReport
		localCtl(t, l, "h1", &r, "status")
		return wantWarnings(r, "network jumbo", "MTU 8950", "peer host gre1", "peer host gre1 does not accept vxlan tunnels")
	})
	table := ctl(t, l, h1, "status")
	if !strings.Contains(table, "WARNINGS") || strings.Contains(table, ": no errors\n") {
		t.Errorf("status with warnings says:\n%s", table)
	}

	t.Run("etcd stopped", func(t *testing.T) {
		m := l.Members[0]
		if err := l.KillEtcd(m); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		eventually(t, 5*time.Second, "readyz unready", func() error { return unready(readyz, "store") })
		t.Logf("unready %s after etcd stopped", time.Since(stopped).Round(time.Millisecond))
		if err := healthz(); err != nil {
			t.Errorf("healthz during the outage: %v", err)
		}
		// The lease runs out after its TTL: status says so, and never "no errors".
		eventually(t, 20*time.Second, "status warns about the lease", func() error {
			var r api.StatusReport
			localCtl(t, l, "h1", &r, "status")
			return wantWarnings(r, "lease lost", "not ready: store")
		})
		if out := ctl(t, l, h1, "status"); strings.Contains(out, ": no errors\n") {
			t.Errorf("status during an etcd outage:\n%s", out)
		}
		if err := l.StartEtcd(m); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "ready again after etcd is back", func() error { _, err := readyz(); return err })
	})

	t.Run("br-tun deleted", func(t *testing.T) {
		if out, err := l.OVS(h1).Vsctl("del-br", api.BrTun); err != nil {
			t.Fatalf("del-br: %v: %s", err, out)
		}
		deleted := time.Now()
		eventually(t, 5*time.Second, "readyz unready", func() error { return unready(readyz, "") })
		t.Logf("unready %s after br-tun was deleted", time.Since(deleted).Round(time.Millisecond))
		// lanesd puts br-tun back by itself (the next full reconcile at the latest).
		eventually(t, 60*time.Second, "ready again with br-tun back", func() error { _, err := readyz(); return err })
	})
}

// unready is nil once /readyz answers 503 (naming the check, when given).
func unready(readyz func() (string, error), check string) error {
	body, err := readyz()
	if err == nil {
		return fmt.Errorf("still ready: %s", body)
	}
	if !strings.Contains(err.Error(), "503") {
		return err
	}
	if check != "" && !strings.Contains(err.Error(), `"name":"`+check+`","ok":false`) {
		return fmt.Errorf("unready, but not for %s: %v", check, err)
	}
	return nil
}

func wantWarnings(r api.StatusReport, subs ...string) error {
	all := strings.Join(r.Warnings, "\n")
	for _, s := range subs {
		if !strings.Contains(all, s) {
			return fmt.Errorf("warnings %q lack %q", r.Warnings, s)
		}
	}
	return nil
}
