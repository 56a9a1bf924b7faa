package controller

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/internal/version"
)

// Metrics are lanesd's Prometheus metrics, on a registry of their own so that tests
// can run several controllers in one process.
type Metrics struct {
	Registry          *prometheus.Registry
	Ports             *prometheus.GaugeVec     // by status
	Flows             *prometheus.GaugeVec     // by bridge, table
	Bundles           *prometheus.CounterVec   // by bridge, result
	BundleSeconds     *prometheus.HistogramVec // by bridge
	ReconcileSeconds  prometheus.Histogram
	FullPasses        prometheus.Counter
	StateChecks       *prometheus.CounterVec // by result
	StateCheckSeconds prometheus.Histogram
	ReconcileErrors   *prometheus.CounterVec   // by object kind
	WatchLagSeconds   *prometheus.HistogramVec // by outcome
	StoreRevision     prometheus.Gauge
	TunnelPorts       prometheus.Gauge
	OpenFlowConnected *prometheus.GaugeVec // by bridge
	StoreProblems     *prometheus.GaugeVec // by kind, class
	PeersDown         prometheus.Gauge
	LearnedFlows      *prometheus.GaugeVec     // by bridge, table
	ConntrackEntries  *prometheus.GaugeVec     // by zone
	FirewallSeconds   *prometheus.HistogramVec // by table ("IPv4/filter", ..., "ipset")
	Routers           prometheus.Gauge
	RouterApplies     *prometheus.CounterVec // by action, result
}

// NewMetrics registers lanesd's metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Ports: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanes_ports", Help: "Local ports by status (ACTIVE, BUILD, ERROR).",
		}, []string{"status"}),
		Flows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanes_flows", Help: "OpenFlow flows installed by lanesd, by bridge and table (number and name).",
		}, []string{"bridge", "table", "table_name"}),
		Bundles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_openflow_bundles_total", Help: "OpenFlow bundles sent, by bridge and result.",
		}, []string{"bridge", "result"}),
		BundleSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lanes_openflow_bundle_seconds", Help: "Time from bundle open to commit reply.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"bridge"}),
		ReconcileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lanes_reconcile_seconds", Help: "Duration of one reconcile pass.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		FullPasses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lanes_full_passes_total", Help: "Reconcile passes that checked kernel devices, OVSDB rows and firewall rules whole (start, the periodic resync).",
		}),
		StateChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_state_checks_total", Help: "Checks of the incremental state against one computed from scratch, beside the loop after each periodic resync, by result: same, or what differed (store, view, flows: a lanes bug).",
		}, []string{"result"}),
		StateCheckSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lanes_state_check_seconds", Help: "Duration of one state check beside the loop.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		ReconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_reconcile_errors_total", Help: "Reconcile failures, by kind of object.",
		}, []string{"kind"}),
		WatchLagSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lanes_watch_lag_seconds",
			Help: "Time from lanesd receiving a store watch event (the oldest of a batch) to the end of the reconcile pass that took it in, by outcome of that pass (ok, error).",
			// From a quiet host's few milliseconds to a pass stuck behind a slow OVS.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}, []string{"outcome"}),
		StoreRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lanes_store_revision", Help: "Store revision of the state last reconciled.",
		}),
		TunnelPorts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lanes_tunnel_ports", Help: "Tunnel ports on br-tun.",
		}),
		OpenFlowConnected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanes_openflow_connected", Help: "1 while the OpenFlow connection to the bridge is up.",
		}, []string{"bridge"}),
		StoreProblems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanes_store_problems", Help: "Store records concerning this host that lanesd left out, wholly or in part, by kind and class.",
		}, []string{"kind", "class"}),
		PeersDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lanes_peers_down", Help: "Peer hosts sharing a network with this host whose agent has no lease (their tunnels stay).",
		}),
		LearnedFlows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanes_learned_flows", Help: "Flows of this round that the learn() action created in the switch, by bridge and table (number and name), as of the last flow check.",
		}, []string{"bridge", "table", "table_name"}),
		ConntrackEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lanes_conntrack_entries", Help: "Conntrack entries (IPv4 and IPv6) in each local port's conntrack zone, sampled every 30 s.",
		}, []string{"zone"}),
		FirewallSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "lanes_firewall_apply_seconds", Help: "Duration of one bulk firewall write: an iptables-restore of one table (IPv4/raw, IPv4/filter, IPv6/raw, IPv6/filter) or an ipset restore (ipset).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"table"}),
		Routers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lanes_routers", Help: "Routers this host serves (qrouter namespaces set up); 0 unless --l3.",
		}),
		RouterApplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_router_applies_total", Help: "Router set-ups and teardowns, by action (apply, remove) and result (ok, error).",
		}, []string{"action", "result"}),
	}
	m.Registry.MustRegister(m.LearnedFlows, m.ConntrackEntries, m.FirewallSeconds, m.Routers, m.RouterApplies)
	m.Registry.MustRegister(m.Ports, m.Flows, m.Bundles, m.BundleSeconds, m.ReconcileSeconds, m.FullPasses, m.StateChecks, m.StateCheckSeconds,
		m.ReconcileErrors, m.WatchLagSeconds, m.StoreRevision, m.TunnelPorts, m.OpenFlowConnected, m.StoreProblems, m.PeersDown)
	v := version.Get()
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lanes_build_info", Help: "Always 1; the labels say which build of lanesd runs.",
	}, []string{"version", "commit", "date", "goversion"})
	info.WithLabelValues(v.Version, v.Commit, v.Date, v.GoVersion).Set(1)
	m.Registry.MustRegister(info, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// observeLag records the lag of a batch of store changes that a pass took in and
// published; received is zero when the pass took in no change (a retry, a resync).
func (m *Metrics) observeLag(received time.Time, ok bool) {
	if received.IsZero() {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "error"
	}
	m.WatchLagSeconds.WithLabelValues(outcome).Observe(time.Since(received).Seconds())
}

// observeFirewall is hostwire's FirewallOptions.Observe.
func (m *Metrics) observeFirewall(what string, took time.Duration, _ error) {
	m.FirewallSeconds.WithLabelValues(what).Observe(took.Seconds())
}

// learnTable is where each bridge's learn() actions write: only br-tun's table 10
// learns, into table 20 (flows.Validate refuses a learn() into a table without the
// learned entries' priority), so one aggregate per bridge counts them all.
var learnTable = map[string]uint8{api.BrTun: flows.UcastToTun}

// countLearned publishes the learned entries the flow check counted on a bridge.
func (s *flowStep) countLearned(bridge string, n int) {
	id, ok := learnTable[bridge]
	if !ok {
		return
	}
	name := ""
	for _, t := range flows.Tables(flows.Bridge(bridge)) {
		if t.ID == id {
			name = t.Name
		}
	}
	s.m.LearnedFlows.WithLabelValues(bridge, strconv.Itoa(int(id)), name).Set(float64(n))
}

// conntrackEvery paces the conntrack sample: a dump of the whole table costs in
// proportion to its entries, so it runs on its own timer, never per reconcile.
const conntrackEvery = 30 * time.Second

// sampleConntrack publishes lanes_conntrack_entries every period until ctx ends,
// starting at once.
func sampleConntrack(ctx context.Context, log *slog.Logger, m *Metrics, host *hostwire.Host, fw *hostwire.Firewall, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := countConntrack(m, host, fw); err != nil && ctx.Err() == nil {
			log.Warn("conntrack sample", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// countConntrack counts the host's conntrack entries, both families, in the zones
// the firewall gave local ports; entries of other zones are not lanes' and are left
// out. A zone whose port went away leaves the metric.
func countConntrack(m *Metrics, host *hostwire.Host, fw *hostwire.Firewall) error {
	perZone := map[uint16]int{}
	err := host.Do(func() error {
		// Both families in one dump: each walks the whole conntrack hash, which
		// costs the same however few entries it holds.
		entries, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_UNSPEC)
		if err != nil {
			return fmt.Errorf("conntrack dump: %w", err)
		}
		for _, e := range entries {
			perZone[e.Zone]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.ConntrackEntries.Reset()
	for _, z := range fw.Zones() {
		m.ConntrackEntries.WithLabelValues(strconv.Itoa(z)).Set(float64(perZone[uint16(z)]))
	}
	return nil
}
