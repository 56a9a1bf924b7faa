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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netns"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/etcdembed"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// HostLeaseTTL is how long a host stays in the store after its lanesd stops renewing
// its lease. Long enough to ride out a lanesd restart (peers keep their tunnels), short
// enough that a dead host's tunnels go away soon.
const HostLeaseTTL = 10 * time.Second

// roundKey is the Bridge external_ids key holding the controller's flow round.
const roundKey = "lanes-round"

// Run is lanesd: it returns when ctx ends (with ctx's error) or on a fatal error.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// ofnet logs through logrus at info level for every connection event; ours are enough.
	logrus.SetLevel(logrus.WarnLevel)
	m := NewMetrics()

	st, stopStore, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopStore()

	db, err := ovsdb.Connect(ctx, cfg.OVSDB)
	if err != nil {
		return fmt.Errorf("ovsdb %s: %w", cfg.OVSDB, err)
	}
	defer db.Close()

	host, err := hostwire.Open(netns.None())
	if err != nil {
		return err
	}
	defer host.Close()
	fw, err := hostwire.NewFirewall(host, hostwire.FirewallOptions{Log: log})
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}

	started := time.Now()
	a := &agent{cfg: cfg, log: log, m: m, st: st, db: db, host: host, fw: fw, vlans: newVLANMap(),
		realized: map[string]realizedPort{}, failures: map[string]*failure{}, statuses: map[string]api.PortStatus{}, mtuWarned: map[string]bool{}, leftAt: map[string]time.Time{}}
	a.last.Started = started
	if err := a.setupHost(ctx); err != nil {
		return err
	}
	round, err := a.nextRound(ctx)
	if err != nil {
		return err
	}
	a.brInt = ofsync.Open(ctx, BrInt, filepath.Join(cfg.OVSRunDir, BrInt+".mgmt"), round, log, a)
	a.brTun = ofsync.Open(ctx, BrTun, filepath.Join(cfg.OVSRunDir, BrTun+".mgmt"), round, log, a)
	if err := a.recoverVLANs(ctx); err != nil {
		return err
	}

	addr, _ := cfg.TunnelAddr()
	reg, err := registerHost(ctx, st, api.Host{Name: cfg.Host, TunnelIP: addr.String(), TunnelType: cfg.TunnelType}, log)
	if err != nil {
		return err
	}
	_ = reg // the key expires after HostLeaseTTL once lanesd is gone: never revoked

	// The agent writes its ports' statuses and remembers them itself; keeping them out
	// of the mirror means its own writes do not wake it up for another reconcile.
	if err := a.loadStatuses(ctx); err != nil {
		return err
	}
	a.mirror = st.NewMirror(store.MirrorOptions{KeepStatus: func(api.PortStatus) bool { return false }})
	go func() { _ = a.mirror.Run(ctx) }()

	if err := serveLocal(ctx, cfg, a, log); err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		if err := serveMetrics(ctx, cfg.MetricsAddr, m, log); err != nil {
			return err
		}
	}
	log.Info("lanesd started", "host", cfg.Host, "tunnel_ip", addr, "round", round, "datapath", cfg.DatapathType)
	err = a.loop(ctx)
	log.Info("stopping: leaving bridges, ports and flows in place")
	a.brInt.Wait()
	a.brTun.Wait()
	return err
}

// openStore connects to etcd, starting the embedded server first when configured.
// Peers of the first host may start before it: keep trying until ctx ends.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (*store.Store, func(), error) {
	endpoints := strings.Split(cfg.EtcdEndpoints, ",")
	stop := func() {}
	if cfg.EtcdEmbedDir != "" {
		e, err := etcdembed.Start(cfg.EtcdEmbedDir, cfg.EtcdListen, cfg.EtcdPeer)
		if err != nil {
			return nil, nil, fmt.Errorf("embedded etcd: %w", err)
		}
		endpoints = e.Endpoints()
		// etcd's Close waits up to its request timeout per listener for peers' watch
		// streams to finish; lanesd is exiting and every commit is already on disk.
		stop = func() {
			done := make(chan struct{})
			go func() { e.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(time.Second):
			}
		}
		log.Info("embedded etcd ready", "endpoints", endpoints, "dir", cfg.EtcdEmbedDir)
	}
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := store.Open(dctx, endpoints)
		cancel()
		if err == nil {
			return st, func() { st.Close(); stop() }, nil
		}
		if ctx.Err() != nil {
			stop()
			return nil, nil, ctx.Err()
		}
		log.Warn("store not reachable yet", "endpoints", endpoints, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
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

// datapathID gives each bridge of a host a fixed, distinct datapath-id derived from the
// host's tunnel IP, so the OpenFlow connection never resets when ports change the
// bridge's MAC, and two hosts never share one.
func datapathID(bridge int, ip [4]byte) string {
	return fmt.Sprintf("%08x%02x%02x%02x%02x", bridge, ip[0], ip[1], ip[2], ip[3])
}

// setupHost checks the sysctls the firewall needs and ensures the bridges; it runs at
// start and on every full reconcile, and changes nothing when all is in place.
func (a *agent) setupHost(ctx context.Context) error {
	if err := a.host.EnsureSysctls(); err != nil {
		return fmt.Errorf("host sysctls: %w", err)
	}
	return a.setupBridges(ctx)
}

// setupBridges ensures br-int, br-tun, the patch pair and, for the netdev datapath, the
// underlay bridge, in one OVSDB transaction (plus netlink for the underlay address).
func (a *agent) setupBridges(ctx context.Context) error {
	addr, _ := a.cfg.TunnelAddr()
	ip := addr.As4()
	if a.cfg.DatapathType == "netdev" {
		if err := a.db.EnsureUnderlay(ctx, ovsdb.UnderlaySpec{Bridge: BrPhy, NIC: a.cfg.UnderlayNIC, DatapathID: datapathID(3, ip)}); err != nil {
			return fmt.Errorf("underlay: %w", err)
		}
		if err := a.host.EnsureUnderlay(ctx, hostwire.UnderlaySpec{NIC: a.cfg.UnderlayNIC, Bridge: BrPhy, CIDR: a.cfg.TunnelIP}); err != nil {
			return fmt.Errorf("underlay: %w", err)
		}
	}
	ids := map[string]string{"lanes-host": a.cfg.Host}
	res, err := a.db.NewBatch().
		EnsureBridge(ovsdb.BridgeSpec{Name: BrInt, DatapathType: a.cfg.DatapathType, DatapathID: datapathID(1, ip), ExternalIDs: ids}).
		EnsureBridge(ovsdb.BridgeSpec{Name: BrTun, DatapathType: a.cfg.DatapathType, DatapathID: datapathID(2, ip), ExternalIDs: ids}).
		EnsurePatchPair(BrInt, BrTun, PatchTun, PatchInt).
		Commit(ctx)
	if err != nil {
		return fmt.Errorf("bridges: %w", err)
	}
	a.patchInt = res.Ofports[PatchInt]
	if a.patchInt <= 0 {
		return fmt.Errorf("bridges: %s has no ofport (%d)", PatchInt, a.patchInt)
	}
	return nil
}

// nextRound reads the previous controller's round from br-tun and stores the next one,
// which stamps every flow this process installs. Round 0 is skipped: flows/ builds
// with round 0, so it would not tell a controller's flows from unstamped ones.
func (a *agent) nextRound(ctx context.Context) (uint16, error) {
	v, _, err := a.db.BridgeExternalID(ctx, BrTun, roundKey)
	if err != nil {
		return 0, fmt.Errorf("read round: %w", err)
	}
	prev, _ := strconv.Atoi(v)
	round := uint16(prev + 1)
	if round == 0 {
		round = 1
	}
	if err := a.db.SetBridgeExternalID(ctx, BrTun, roundKey, strconv.Itoa(int(round))); err != nil {
		return 0, fmt.Errorf("store round: %w", err)
	}
	return round, nil
}

// recoverVLANs reads back the local VLAN of every network from the qvo ports, so a
// restarted lanesd keeps the tags and flows it had.
func (a *agent) recoverVLANs(ctx context.Context) error {
	ports, err := a.db.ListVMPorts(ctx, BrInt)
	if err != nil {
		return fmt.Errorf("recover local VLANs: %w", err)
	}
	for _, p := range ports {
		if p.NetUUID != "" && p.Tag > 0 {
			a.vlans.restore(p.NetUUID, uint16(p.Tag))
		}
	}
	if n := len(a.vlans.byNet); n > 0 {
		a.log.Info("recovered local VLANs", "networks", n)
	}
	return nil
}

// serveMetrics serves /metrics until ctx ends.
func serveMetrics(ctx context.Context, addr string, m *Metrics, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return nil
}

// listenUnix listens on a root-only unix socket, replacing a stale one.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
