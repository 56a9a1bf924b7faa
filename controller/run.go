// Package controller is lanesd's per-host reconciler: it follows the store, and makes
// this host's Open vSwitch bridges, kernel devices, firewall and OpenFlow tables match
// what the store says about the ports bound here and the networks they share with
// other hosts.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netns"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/diag"
	"github.com/lanes-net/lanes/etcdembed"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/internal/ovstool"
	"github.com/lanes-net/lanes/internal/pki"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// forgetConnectionsEvery paces the conntrack walks that follow remote-group members
// leaving (hostwire.FirewallOptions.ForgetEvery): a walk costs ~13 ms of kernel time
// on a host with a large conntrack hash, however few entries it holds, so a churn of
// ports elsewhere in the cluster costs at most one per second, and a connection that
// lost its admission lives on for at most that long.
const forgetConnectionsEvery = time.Second

// startGCPercent and startMemoryLimit are the collector's GOGC and soft memory
// limit until lanesd first converges (Run).
const (
	startGCPercent   = 400
	startMemoryLimit = 512 << 20
)

// HostLeaseTTL is how long a host stays in the store after its lanesd stops renewing
// its lease. Long enough to ride out a lanesd restart (peers keep their tunnels), short
// enough that a dead host's tunnels go away soon.
const HostLeaseTTL = 10 * time.Second

// Run is lanesd: it returns when ctx ends (with ctx's error) or on a fatal error.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// ofnet logs through logrus at info level for every connection event; ours are enough.
	logrus.SetLevel(logrus.WarnLevel)
	m := NewMetrics()
	// A restart's time before its first reconcile, phase by phase (debug).
	start := time.Now()
	phase := start
	took := func(what string) {
		log.Debug("startup", "phase", what, "took", time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}

	// Until the first convergence the collector runs a quarter as often: a restart
	// builds the whole desired state at once (at 10k remote ports the heap grows to
	// about 150 MB), and collecting it as it grows was a quarter of the restart's
	// CPU. A soft limit bounds what that costs on a big host (at 50k remote ports the
	// heap is 300 MB, and the RSS reached 1.2 GiB without it). Both go back to what
	// they were (GOGC and GOMEMLIMIT) once converged, and the memory is returned after
	// the burst (agent.returnMemory).
	if old := debug.SetGCPercent(-1); old >= 0 && old < startGCPercent {
		debug.SetGCPercent(startGCPercent)
		oldLimit := debug.SetMemoryLimit(-1)
		if oldLimit == math.MaxInt64 { // no GOMEMLIMIT given
			debug.SetMemoryLimit(startMemoryLimit)
		}
		restore := func() {
			debug.SetGCPercent(old)
			debug.SetMemoryLimit(oldLimit)
		}
		defer restore() // also when Run ends before converging
		converged := cfg.OnConverged
		cfg.OnConverged = func() {
			restore()
			if converged != nil {
				converged()
			}
		}
	} else {
		debug.SetGCPercent(old)
	}

	st, stopStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopStore()
	took("store")
	// The store is listed while OVS, the firewall and the agent are opened: at 10k
	// ports the list is a tenth of a restart, and nothing below needs it.
	mirror := agentMirror(st)
	go func() { _ = mirror.Run(ctx) }()

	// The host's kernel side and its firewall open while OVSDB loads: neither needs
	// the other, and at 1000 tunnels the OVSDB load is a fifth of a restart.
	type kernelSide struct {
		host *hostwire.Host
		fw   *hostwire.Firewall
		err  error
		took time.Duration
	}
	opened := make(chan kernelSide, 1)
	go func() {
		t0 := time.Now()
		host, err := hostwire.Open(netns.None())
		if err != nil {
			opened <- kernelSide{err: err}
			return
		}
		fw, err := hostwire.NewFirewall(host, hostwire.FirewallOptions{Log: log, Backend: cfg.IPTablesBackend, Observe: m.observeFirewall,
			ForgetEvery: forgetConnectionsEvery})
		if err != nil {
			host.Close()
			opened <- kernelSide{err: fmt.Errorf("firewall: %w", err)}
			return
		}
		opened <- kernelSide{host: host, fw: fw, took: time.Since(t0)}
	}()
	db, err := ovsdb.Connect(ctx, cfg.OVSDB)
	took("ovsdb")
	k := <-opened
	if k.host != nil {
		defer k.host.Close()
	}
	if err != nil {
		return fmt.Errorf("ovsdb %s: %w", cfg.OVSDB, err)
	}
	defer db.Close()
	if k.err != nil {
		return k.err
	}
	host, fw := k.host, k.fw
	log.Debug("startup", "phase", "firewall (beside ovsdb)", "took", k.took.Round(time.Millisecond))
	phase = time.Now()
	log.Info("firewall", "iptables_backend", fw.Backend(), "chosen_by", map[bool]string{true: "--iptables-backend", false: "iptables in $PATH"}[cfg.IPTablesBackend != ""])

	a, err := newAgent(ctx, cfg, log, m, st, mirror, db, host, fw)
	if err != nil {
		return err
	}
	a.started = start // status's start -> converged counts the connections too
	took("agent")
	addr, _ := cfg.TunnelAddr()
	reg, err := registerHost(ctx, st, api.Host{Name: cfg.Host, TunnelIP: addr.String(), TunnelType: cfg.TunnelType,
		TunnelTypes: cfg.AcceptedTunnelTypes(), L3: cfg.L3}, log)
	if err != nil {
		return err
	}
	// reg is never revoked: the key expires after HostLeaseTTL once lanesd is gone.
	// Close writes the last heartbeat, so host list says when lanesd stopped.
	defer reg.Close()
	took("register")
	if cfg.L3 { // l3.go: routers are served only while reg holds the lease
		if a.l3, err = newL3Step(log, db, cfg.Host, cfg.BridgeMappings, cfg.DatapathType, reg.SurelyHeld); err != nil {
			return err
		}
		a.l3.m = m
	}
	h := &health{st: st, reg: reg, bridges: a.flows.bridges(), rundir: cfg.OVSRunDir, last: a.last.Load}

	if cfg.Socket != "" {
		srv := &diag.Server{Snapshot: a.last.Load, Bridges: a.flows.bridges(), Mirror: a.mirror, Tools: a.flows.tools, Health: h.check}
		if err := srv.Serve(ctx, cfg.Socket, log); err != nil {
			return err
		}
	}
	if cfg.MetricsAddr != "" {
		if err := serveMetrics(ctx, cfg.MetricsAddr, m, h, log); err != nil {
			return err
		}
	}
	go sampleConntrack(ctx, log, m, host, fw, conntrackEvery)
	if cfg.WatchdogEvery > 0 && cfg.OnWatchdog != nil {
		go a.watchdog(ctx, cfg.WatchdogEvery, cfg.OnWatchdog)
	}
	log.Info("lanesd started", "host", cfg.Host, "tunnel_ip", addr, "round", a.flows.brTun.Round(), "datapath", cfg.DatapathType)
	err = a.loop(ctx)
	log.Info("stopping: leaving bridges, ports and flows in place")
	a.wait()
	return err
}

// newAgent assembles the steps over the clients and prepares what a first reconcile
// needs: the host's bridges, a new flow round, the local VLANs and port statuses of
// the previous lanesd; it reads the store through mirror (which may be running).
func newAgent(ctx context.Context, cfg Config, log *slog.Logger, m *Metrics, st *store.Store, mirror *store.Mirror, db *ovsdb.Client, host *hostwire.Host, fw *hostwire.Firewall) (*agent, error) {
	addr, _ := cfg.TunnelAddr()
	a := &agent{cfg: cfg, log: log, m: m, started: time.Now(), prog: newProgress(), fullDue: make(chan struct{}, 1),
		guard:   newRecordGuard(cfg.Host),
		host:    &hostStep{cfg: cfg, db: db, host: host},
		nets:    newNetworkStep(log, cfg.VMMTU()),
		wire:    newWireStep(log, host, cfg.TapUID, cfg.TapGID),
		ovs:     &ovsStep{db: db, tunnelType: cfg.TunnelType, localIP: addr.String()},
		fw:      &firewallStep{fw: fw},
		prune:   &pruneStep{log: log, host: host},
		reports: &statusStep{log: log, m: m, st: st, host: cfg.Host},
	}
	if _, err := a.host.Sync(ctx, true); err != nil {
		return nil, err
	}
	round, err := nextRound(ctx, db)
	if err != nil {
		return nil, err
	}
	obs := bundleMetrics{m}
	brInt := ofsync.Open(ctx, api.BrInt, filepath.Join(cfg.OVSRunDir, api.BrInt+".mgmt"), round, log, obs)
	brTun := ofsync.Open(ctx, api.BrTun, filepath.Join(cfg.OVSRunDir, api.BrTun+".mgmt"), round, log, obs)
	a.flows = &flowStep{log: log, m: m, tools: ovstool.Tools{RunDir: cfg.OVSRunDir}, tunnelType: cfg.TunnelType,
		brInt: brInt, brTun: brTun, forget: newForgetter(ctx, log, brTun)}
	a.dhcp = newDHCPStep(ctx, log, m.Registry, brInt)
	if err := a.nets.Recover(ctx, db); err != nil {
		return nil, err
	}
	if err := a.reports.Load(ctx); err != nil {
		return nil, err
	}
	a.mirror = mirror
	a.ovsChanges = db.Changes
	if a.links, err = host.WatchPorts(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// wait blocks until the OpenFlow connections have stopped after ctx ended, and the
// state check beside the loop, if one runs, has ended.
func (a *agent) wait() {
	for _, b := range a.flows.bridges() {
		b.Wait()
	}
	a.checks.Wait()
}

// agentMirror is the store mirror an agent reads. The agent writes its ports' statuses
// and remembers them itself; keeping them out of the mirror means its own writes do
// not wake it up for another reconcile.
func agentMirror(st *store.Store) *store.Mirror {
	return st.NewMirror(store.MirrorOptions{KeepStatus: func(api.PortStatus) bool { return false }})
}

// openStore connects to etcd, starting the embedded server first when configured.
// Peers of the first host may start before it: keep trying until ctx ends.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (*store.Store, func(), error) {
	if cfg.EtcdCert != "" {
		// The certificate's CN is the etcd user; another host's would have every write
		// of this host refused, one by one, long after start.
		c, err := pki.ParseCertFile(cfg.EtcdCert)
		if err != nil {
			return nil, nil, fmt.Errorf("etcd-cert: %w", err)
		}
		if c.Subject.CommonName != cfg.Host {
			return nil, nil, fmt.Errorf("etcd-cert %s is for etcd user %q, not this host %q (lanesctl pki issue-host %s makes one)",
				cfg.EtcdCert, c.Subject.CommonName, cfg.Host, cfg.Host)
		}
	}
	endpoints := strings.Split(cfg.EtcdEndpoints, ",")
	stop := func() {}
	if cfg.EtcdEmbedDir != "" {
		e, err := startEmbedded(ctx, cfg, log)
		if err != nil {
			return nil, nil, fmt.Errorf("embedded etcd: %w", err)
		}
		endpoints = e.Endpoints()
		// etcd's Close waits up to its request timeout per listener for peers' watch
		// streams to finish. It must finish: a successor started while this process
		// still holds the listeners cannot bind them. Bounded, so a stuck close never
		// keeps lanesd from exiting.
		stop = func() {
			done := make(chan struct{})
			go func() { e.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(embedCloseTimeout):
				log.Warn("embedded etcd did not close in time; exiting anyway", "waited", embedCloseTimeout)
			}
		}
		log.Info("embedded etcd ready", "endpoints", endpoints, "dir", cfg.EtcdEmbedDir)
	}
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := store.Open(dctx, endpoints, store.WithTLS(cfg.clientTLS()), store.AllowInsecure(cfg.EtcdInsecure))
		cancel()
		if err == nil {
			return st, func() { st.Close(); stop() }, nil
		}
		if ctx.Err() != nil || errors.Is(err, api.ErrInvalid) {
			stop()
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, err
		}
		log.Warn("store not reachable yet", "endpoints", endpoints, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Embedded etcd start and stop bounds.
const (
	embedCloseTimeout = 10 * time.Second
	// embedBindRetry is how long a start keeps retrying listeners a predecessor may
	// still be releasing.
	embedBindRetry = 10 * time.Second
)

// startEmbedded starts the embedded etcd, retrying while its ports are still taken
// (a predecessor's threads can outlive its main thread by a little).
func startEmbedded(ctx context.Context, cfg Config, log *slog.Logger) (*etcdembed.Server, error) {
	deadline := time.Now().Add(embedBindRetry)
	for {
		e, err := etcdembed.Start(cfg.EtcdEmbedDir, cfg.EtcdListen, cfg.EtcdPeer, cfg.serverTLS()...)
		if err == nil || !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			return e, err
		}
		log.Warn("embedded etcd: ports still taken, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func registerHost(ctx context.Context, st *store.Store, h api.Host, log *slog.Logger) (*store.HostRegistration, error) {
	for {
		reg, err := st.RegisterHost(ctx, h, HostLeaseTTL)
		if err == nil {
			return reg, nil
		}
		if errors.Is(err, api.ErrInvalid) || ctx.Err() != nil {
			return nil, err
		}
		log.Warn("host registration failed, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// serveMetrics serves /metrics, /healthz and /readyz until ctx ends.
func serveMetrics(ctx context.Context, addr string, m *Metrics, h *health, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: metricsMux(m, h), ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return nil
}

// metricsMux is the metrics listener's handler: /metrics, /healthz, /readyz and
// /debug/pprof.
func metricsMux(m *Metrics, h *health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/readyz", h.readyz)
	// Go's profiler, as Antrea serves it: where a slow reconcile spends its time is
	// read from the running daemon, not guessed (make bench profiles lanesd this way).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return mux
}
