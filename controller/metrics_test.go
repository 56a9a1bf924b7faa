package controller

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/store"
)

// scrape fetches /metrics from the handler lanesd serves and parses it.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series returns the metric of family name whose labels include want; nil if none.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

// TestMetricsScrape reconciles a host with a local port (firewall written) and a
// remote one, and reads the new families back from the real /metrics handler: the
// watch lag of each batch of store changes, measured from its receipt; firewall
// write times per table; learned flows per table from the flow check; conntrack
// entries per local port's zone from the sampler.
func TestMetricsScrape(t *testing.T) {
	r := newRig(t)
	ctx := r.ctx
	srv := httptest.NewServer(metricsMux(r.a.m, &health{st: r.st, last: r.a.last.Load}))
	defer srv.Close()

	n, err := r.st.CreateNetwork(ctx, store.NetworkSpec{Name: "blue", CIDR: "10.7.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []api.Host{{Name: "h1", TunnelIP: "172.31.77.1"}, {Name: "h2", TunnelIP: "172.31.77.2"}} {
		h.TunnelType = api.TunnelVXLAN
		if _, err := r.st.RegisterHost(ctx, h, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	local, err := r.st.CreatePort(ctx, api.Port{Name: "vm1", NetworkID: n.ID, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.CreatePort(ctx, api.Port{Name: "vm2", NetworkID: n.ID, Host: "h2"}); err != nil {
		t.Fatal(err)
	}
	r.sync(true)

	fams := scrape(t, srv)
	lagCount := func(fams map[string]*dto.MetricFamily) (uint64, float64) {
		m := series(fams, "lanes_watch_lag_seconds", map[string]string{"outcome": "ok"})
		if m == nil {
			return 0, 0
		}
		return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	}
	if c, _ := lagCount(fams); c != 1 {
		t.Errorf("watch lag samples after the first pass: %d, want 1", c)
	}
	for _, table := range []string{"IPv4/raw", "IPv4/filter", "IPv6/raw", "IPv6/filter", "ipset"} {
		m := series(fams, "lanes_firewall_apply_seconds", map[string]string{"table": table})
		if table == "ipset" {
			continue // no security group with a remote group: no set to write
		}
		if m == nil || m.GetHistogram().GetSampleCount() == 0 {
			t.Errorf("no firewall write of %s observed", table)
		}
	}
	if m := series(fams, "lanes_reconcile_seconds", nil); m == nil || m.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("lanes_reconcile_seconds: %v", m)
	}
	if m := series(fams, "lanes_full_passes_total", nil); m == nil || m.GetCounter().GetValue() != 1 {
		t.Errorf("lanes_full_passes_total after the first pass (a full one): %v", m)
	}

	// A pass without a store change (a retry, a resync) has no lag to record.
	if _, err := r.a.reconcile(ctx, passFull); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, srv)
	c1, sum1 := lagCount(fams)
	if c1 != 1 {
		t.Errorf("a pass without changes recorded a lag: %d samples", c1)
	}

	// The lag runs from the change's arrival, not from the start of the pass: a
	// change that waits before a pass takes it in shows the wait.
	if _, err := r.st.CreatePort(ctx, api.Port{Name: "vm3", NetworkID: n.ID, Host: "h2"}); err != nil {
		t.Fatal(err)
	}
	const held = 300 * time.Millisecond
	_, rev, err := r.st.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.a.mirror.Revision() < rev {
		if time.Now().After(deadline) {
			t.Fatal("mirror does not catch up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(held) // the change waits, as it would behind a slow pass
	before := time.Now()
	if _, err := r.a.reconcile(ctx, passChanges); err != nil {
		t.Fatal(err)
	}
	took := time.Since(before)
	c2, sum2 := lagCount(scrape(t, srv))
	t.Logf("change held %s, pass took %s, watch lag %.3fs", held, took.Round(time.Millisecond), sum2-sum1)
	if c2 != 2 || sum2-sum1 < held.Seconds() || sum2-sum1 > (held+took+5*time.Second).Seconds() {
		t.Errorf("lag of a change held %s before a %s pass: samples %d, lag %.3fs", held, took, c2, sum2-sum1)
	}

	// Learned entries of this round in table 20, as learn() would make them.
	round := r.a.flows.brTun.Round()
	cookie := uint64(round)<<48 | uint64(flows.CatLearned)<<40
	for i := range 3 {
		flow := fmt.Sprintf("cookie=%#x,table=%d,priority=1,dl_vlan=1,dl_dst=fa:16:3e:99:00:%02x,actions=output:1", cookie, flows.UcastToTun, i)
		if _, err := r.ovs.Ofctl("add-flow", api.BrTun, flow); err != nil {
			t.Fatal(err)
		}
	}
	r.a.flows.Check(ctx)
	fams = scrape(t, srv)
	m := series(fams, "lanes_learned_flows", map[string]string{"bridge": api.BrTun, "table": strconv.Itoa(flows.UcastToTun), "table_name": "UCAST_TO_TUN"})
	if m == nil || m.GetGauge().GetValue() != 3 {
		t.Errorf("lanes_learned_flows of br-tun table 20: %v, want 3", m)
	}

	// Two connections in the local port's zone, one in a zone that is not lanes'.
	zone := r.a.fw.fw.Zones()[hostwire.DeviceID(local.ID)]
	if zone == 0 {
		t.Fatalf("no zone for %s: %v", local.ID, r.a.fw.fw.Zones())
	}
	host := r.a.host.host
	for i, z := range []int{zone, zone, 9} {
		if out, err := host.Exec(ctx, nil, "conntrack", "-I", "-p", "tcp", "-s", "10.7.0.5", "-d", "10.7.0.9",
			"--sport", strconv.Itoa(40000+i), "--dport", "80", "--state", "ESTABLISHED", "-t", "120", "-w", strconv.Itoa(z)); err != nil {
			t.Fatalf("conntrack -I: %v: %s", err, out)
		}
	}
	if err := countConntrack(r.a.m, host, r.a.fw.fw); err != nil {
		t.Fatal(err)
	}
	fams = scrape(t, srv)
	if m := series(fams, "lanes_conntrack_entries", map[string]string{"zone": strconv.Itoa(zone)}); m == nil || m.GetGauge().GetValue() != 2 {
		t.Errorf("conntrack entries of zone %d: %v, want 2", zone, m)
	}
	if m := series(fams, "lanes_conntrack_entries", map[string]string{"zone": "9"}); m != nil {
		t.Errorf("zone 9 is no port's, yet counted: %v", m)
	}

	// The port goes: its zone leaves the metric.
	if err := r.st.DeletePort(ctx, local.ID); err != nil {
		t.Fatal(err)
	}
	r.sync(false)
	if err := countConntrack(r.a.m, host, r.a.fw.fw); err != nil {
		t.Fatal(err)
	}
	if m := series(scrape(t, srv), "lanes_conntrack_entries", map[string]string{"zone": strconv.Itoa(zone)}); m != nil {
		t.Errorf("zone %d of a deleted port still published: %v", zone, m)
	}
	for _, name := range []string{"lanes_routers", "lanes_build_info", "go_goroutines", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
