package controller

import (
	"github.com/lanes-net/lanes/internal/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
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
	ReconcileErrors   *prometheus.CounterVec // by object kind
	WatchLagSeconds   prometheus.Gauge
	StoreRevision     prometheus.Gauge
	TunnelPorts       prometheus.Gauge
	OpenFlowConnected *prometheus.GaugeVec // by bridge
	StoreProblems     *prometheus.GaugeVec // by kind, class
	PeersDown         prometheus.Gauge
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
		ReconcileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lanes_reconcile_errors_total", Help: "Reconcile failures, by kind of object.",
		}, []string{"kind"}),
		WatchLagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lanes_watch_lag_seconds", Help: "Time from a store change being seen to the end of the reconcile that applied it.",
		}),
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
	}
	m.Registry.MustRegister(m.Ports, m.Flows, m.Bundles, m.BundleSeconds, m.ReconcileSeconds,
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
