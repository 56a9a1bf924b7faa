package tests

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
)

// BenchmarkPortCreateWait measures what a user waits for: `lanesctl port create --wait`
// until the host reports the port ACTIVE (store write, watch, tap/qbr/veth, OVSDB,
// firewall, flows, status), over 200 ports on one host, each in a security group.
func BenchmarkPortCreateWait(b *testing.B) {
	const ports = 200
	l := newLab(b, 1)
	h := l.Host("h1")
	ctl(b, l, h, "network", "create", "net-a", "--cidr", "10.1.0.0/16")
	ctl(b, l, h, "sg", "create", "web")
	ctl(b, l, h, "sg", "rule", "add", "web", "--direction", "ingress", "--protocol", "tcp", "--port", "22")
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		var took []time.Duration
		for i := 0; i < ports; i++ {
			start := time.Now()
			ctl(b, l, h, "port", "create", fmt.Sprintf("p%d-%d", n, i), "--network", "net-a", "--host", "h1", "--sg", "web", "--wait")
			took = append(took, time.Since(start))
		}
		p50, p99 := percentile(took, 50), percentile(took, 99)
		b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
		b.Logf("port create --wait to ACTIVE over %d ports: p50 %s, p99 %s, max %s", ports, p50.Round(time.Millisecond), p99.Round(time.Millisecond), percentile(took, 100).Round(time.Millisecond))
	}
}

// BenchmarkConverge500 measures a restarted lanesd with 500 ports: from its start to
// the end of its first complete reconcile (every flow re-added with the new round,
// the old round swept, firewall and ports checked).
func BenchmarkConverge500(b *testing.B) {
	const ports = 500
	l := newLab(b, 1)
	h := l.Host("h1")
	ctl(b, l, h, "network", "create", "net-a", "--cidr", "10.2.0.0/16")
	ctl(b, l, h, "sg", "create", "web")
	ctl(b, l, h, "sg", "rule", "add", "web", "--direction", "ingress", "--protocol", "icmp")
	created := time.Now()
	for i := 0; i < ports; i++ {
		ctl(b, l, h, "port", "create", fmt.Sprintf("c%d", i), "--network", "net-a", "--host", "h1", "--sg", "web")
	}
	eventually(b, 10*time.Minute, "all ports ACTIVE", func() error { return allActive(l, h, ports) })
	b.Logf("%d ports created one by one and ACTIVE after %s", ports, time.Since(created).Round(time.Millisecond))
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if err := l.StopLanesd(h); err != nil {
			b.Fatal(err)
		}
		restart := time.Now()
		if err := l.StartLanesd(h); err != nil {
			b.Fatal(err)
		}
		var st api.StatusReport
		eventually(b, 5*time.Minute, "converged", func() error {
			out, err := l.Ctl(h, "-o", "json", "status")
			if err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return err
			}
			if st.Converged.IsZero() || st.Started.Before(restart) {
				return fmt.Errorf("not converged")
			}
			return nil
		})
		conv := st.Converged.Sub(st.Started)
		b.ReportMetric(conv.Seconds(), "converge-s")
		b.Logf("restarted lanesd with %d ports converged %s after its start (%s after the restart command)", ports, conv.Round(time.Millisecond), st.Converged.Sub(restart).Round(time.Millisecond))
	}
}

func allActive(l *lab.Lab, h *lab.Host, n int) error {
	out, err := l.Ctl(h, "-o", "json", "status")
	if err != nil {
		return err
	}
	var st api.StatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return err
	}
	active := 0
	for _, p := range st.Ports {
		if p.State == "ACTIVE" {
			active++
		}
	}
	if active != n {
		return fmt.Errorf("%d of %d ports ACTIVE", active, n)
	}
	return nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}
