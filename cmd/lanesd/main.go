// Command lanesd is lanes' per-host controller: it registers the host in the store,
// wires the host's ports into Open vSwitch and iptables, and programs br-int and
// br-tun. On SIGTERM it exits and leaves the data path running.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/lanes-net/lanes/controller"
	"github.com/lanes-net/lanes/internal/sdnotify"
	"github.com/lanes-net/lanes/internal/version"
)

func main() {
	err := run()
	if errors.Is(err, flag.ErrHelp) {
		return // the help went to stdout: asked for, so not a failure
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanesd:", err)
		if errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake on the command line: exit status 2, as lanesctl's.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func run() error {
	cfg := controller.DefaultConfig()
	fs := flag.NewFlagSet("lanesd", flag.ContinueOnError)
	configFile := fs.String("config", "", "JSON config file; flags given on the command line override it")
	tapOwner := fs.String("tap-owner", "0:0", "uid:gid owning the taps, so that qemu running as that user can open them")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkConfig := fs.Bool("check-config", false, "load and validate the configuration (flags and --config), then exit")
	fs.StringVar(&cfg.Host, "host", cfg.Host, "this host's name in the store (default: the hostname)")
	fs.StringVar(&cfg.TunnelIP, "tunnel-ip", cfg.TunnelIP, "this host's tunnel endpoint, an IPv4 or IPv6 (global or ULA) address (with /prefix when lanesd configures the netdev underlay)")
	fs.StringVar(&cfg.TunnelType, "tunnel-type", cfg.TunnelType, "vxlan, gre or geneve: this host's default tunnel type")
	fs.StringVar(&cfg.TunnelTypes, "tunnel-types", cfg.TunnelTypes, "the tunnel types this host accepts, comma-separated (default: --tunnel-type only); networks carry their own type")
	fs.StringVar(&cfg.EtcdEndpoints, "etcd", cfg.EtcdEndpoints, "comma-separated etcd client URLs (ignored with --etcd-embed-dir)")
	fs.StringVar(&cfg.EtcdEmbedDir, "etcd-embed-dir", cfg.EtcdEmbedDir, "run an embedded single-node etcd with its data in this directory")
	fs.StringVar(&cfg.EtcdListen, "etcd-listen", cfg.EtcdListen, "client URLs of the embedded etcd, comma-separated")
	fs.StringVar(&cfg.EtcdPeer, "etcd-peer", cfg.EtcdPeer, "peer URL of the embedded etcd")
	fs.StringVar(&cfg.EtcdCACert, "etcd-cacert", cfg.EtcdCACert, "CA bundle of etcd's server certificates (and, with --etcd-server-cert, of the clients the embedded member accepts); default $LANES_ETCD_CACERT")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", cfg.EtcdCert, "this host's etcd client certificate; its CN is the host's etcd user (default $LANES_ETCD_CERT)")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", cfg.EtcdKey, "key of --etcd-cert (default $LANES_ETCD_KEY)")
	fs.StringVar(&cfg.EtcdServerCert, "etcd-server-cert", cfg.EtcdServerCert, "server certificate of the embedded etcd (its client and peer URLs must then be https)")
	fs.StringVar(&cfg.EtcdServerKey, "etcd-server-key", cfg.EtcdServerKey, "key of --etcd-server-cert")
	fs.BoolVar(&cfg.EtcdInsecure, "etcd-insecure", cfg.EtcdInsecure, "accept plain http to etcd (or embedded etcd URLs) on non-loopback addresses")
	fs.StringVar(&cfg.OVSRunDir, "ovs-rundir", cfg.OVSRunDir, "Open vSwitch run directory (bridge management sockets live here)")
	fs.StringVar(&cfg.OVSDB, "ovsdb", cfg.OVSDB, "OVSDB endpoint (default unix:<ovs-rundir>/db.sock)")
	fs.StringVar(&cfg.DatapathType, "datapath", cfg.DatapathType, "system (kernel module) or netdev (userspace)")
	fs.StringVar(&cfg.UnderlayNIC, "underlay-nic", cfg.UnderlayNIC, "netdev datapath: the NIC that lanesd puts into br-phy")
	fs.IntVar(&cfg.UnderlayMTU, "underlay-mtu", cfg.UnderlayMTU, "MTU of the underlay; lanesd warns about networks whose MTU exceeds it minus the tunnel overhead")
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "root-only unix socket for lanesctl status/flows/trace")
	fs.StringVar(&cfg.IPTablesBackend, "iptables-backend", cfg.IPTablesBackend, "nft or legacy (default: the backend of iptables in $PATH); lanesd refuses to start while the other one holds lanes chains")
	fs.StringVar(&cfg.MetricsAddr, "metrics", cfg.MetricsAddr, "address of the Prometheus /metrics listener; empty disables it")
	fs.BoolVar(&cfg.L3, "l3", cfg.L3, "serve routers on this host (a network host): qrouter namespaces, qr- and qg- ports, NAT")
	fs.StringVar(&cfg.BridgeMappings, "bridge-mapping", cfg.BridgeMappings, "physical networks' bridges on an L3 host, physnet:bridge[,physnet:bridge...] (default physnet1:br-ex)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stdout, "usage: lanesd [flags]\n\nlanes' per-host controller, %s.\n\nflags:\n", version.Get())
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError{fmt.Errorf("%w (see lanesd --help)", err)}
	}
	if *logFormat != "text" && *logFormat != "json" {
		return usageError{fmt.Errorf("--log-format %q: want text or json", *logFormat)}
	}
	if *showVersion {
		fmt.Println("lanesd", version.Get())
		return nil
	}
	if *configFile != "" {
		if err := loadConfig(*configFile, &cfg, fs); err != nil {
			return err
		}
	}
	uid, gid, err := parseOwner(*tapOwner)
	if err != nil {
		return err
	}
	cfg.TapUID, cfg.TapGID = uid, gid
	if *checkConfig {
		if err := cfg.Validate(); err != nil {
			return err
		}
		fmt.Printf("lanesd %s: configuration valid (host %s, tunnel %s %s, etcd %s)\n", version.Get().Version, cfg.Host, cfg.TunnelType, cfg.TunnelIP, cfg.EtcdEndpoints)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *logLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler
	switch *logFormat {
	case "text":
		handler = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		handler = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}
	log := slog.New(handler).With()
	log.Info("lanesd", "version", version.Get().Version, "commit", version.Get().Commit, "built", version.Get().Date)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Under systemd (Type=notify): READY=1 once the host matches the store, WATCHDOG=1
	// while the agent loop makes progress (a reconcile stuck for half of WatchdogSec
	// stops it, and systemd restarts lanesd), STOPPING=1 on the way out.
	cfg.OnConverged = func() {
		if _, err := sdnotify.Notify("READY=1"); err != nil {
			log.Warn("sd_notify", "err", err)
		}
	}
	if cfg.WatchdogEvery = sdnotify.WatchdogInterval(); cfg.WatchdogEvery > 0 {
		log.Info("systemd watchdog", "ping_every", cfg.WatchdogEvery)
		cfg.OnWatchdog = func() {
			if _, err := sdnotify.Notify("WATCHDOG=1"); err != nil {
				log.Warn("sd_notify", "err", err)
			}
		}
	}
	defer func() { _, _ = sdnotify.Notify("STOPPING=1") }()
	err = controller.Run(ctx, cfg, log)
	if errors.Is(err, context.Canceled) {
		log.Info("stopped; the data path keeps running")
		return nil
	}
	return err
}

// loadConfig reads a JSON file of the same keys as controller.Config; flags set on the
// command line keep their values.
func loadConfig(path string, cfg *controller.Config, fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	flagged := *cfg
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	cfg.Override(flagged, set)
	return nil
}

func parseOwner(s string) (int, int, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("--tap-owner %q: want uid:gid, e.g. 64055:108", s)
	}
	return uid, gid, nil
}
