package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/etcdembed"
	"github.com/lanes-net/lanes/store"
)

// Config is lanesd's configuration. The json names are the command-line flag names, so
// a config file and the flags read the same.
type Config struct {
	Host       string `json:"host"`
	TunnelIP   string `json:"tunnel-ip"`
	TunnelType string `json:"tunnel-type"`
	// TunnelTypes are the tunnel types this host accepts, comma-separated; empty:
	// TunnelType only. A network of a type the host does not accept cannot have ports
	// here.
	TunnelTypes   string `json:"tunnel-types"`
	EtcdEndpoints string `json:"etcd"`
	EtcdEmbedDir  string `json:"etcd-embed-dir"`
	EtcdListen    string `json:"etcd-listen"`
	EtcdPeer      string `json:"etcd-peer"`
	OVSRunDir     string `json:"ovs-rundir"`
	OVSDB         string `json:"ovsdb"`
	DatapathType  string `json:"datapath"`
	UnderlayNIC   string `json:"underlay-nic"`
	UnderlayMTU   int    `json:"underlay-mtu"`
	Socket        string `json:"socket"`
	MetricsAddr   string `json:"metrics"`
	// IPTablesBackend is nft or legacy; empty: the backend of iptables in $PATH.
	IPTablesBackend string `json:"iptables-backend"`
	TapUID          int    `json:"-"`
	TapGID          int    `json:"-"`
	// OnConverged is called once, after the first reconcile without errors (lanesd
	// tells systemd READY=1 there).
	OnConverged func() `json:"-"`
	// OnWatchdog is called every WatchdogEvery while the agent loop makes progress
	// (watchdog.go; lanesd sends systemd WATCHDOG=1 there). Zero: no watchdog.
	OnWatchdog    func()        `json:"-"`
	WatchdogEvery time.Duration `json:"-"`
	// L3 makes this host serve routers (a network host); BridgeMappings maps physical
	// networks to the bridges of their NICs, "physnet1:br-ex[,...]" (l3.go).
	L3             bool   `json:"l3"`
	BridgeMappings string `json:"bridge-mapping"`

	// The store client's TLS (its certificate's CN is this host's etcd user), and the
	// embedded member's server certificate (it then requires client certificates
	// signed by EtcdCACert).
	EtcdCACert     string `json:"etcd-cacert"`
	EtcdCert       string `json:"etcd-cert"`
	EtcdKey        string `json:"etcd-key"`
	EtcdServerCert string `json:"etcd-server-cert"`
	EtcdServerKey  string `json:"etcd-server-key"`
	// EtcdInsecure accepts plain http to etcd on a non-loopback address.
	EtcdInsecure bool `json:"etcd-insecure"`
}

// DefaultConfig is what lanesd uses without flags.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	etcd := os.Getenv("LANES_ETCD")
	if etcd == "" {
		etcd = "http://127.0.0.1:2379"
	}
	return Config{
		Host:          host,
		TunnelType:    api.TunnelVXLAN,
		EtcdEndpoints: etcd,
		EtcdCACert:    os.Getenv("LANES_ETCD_CACERT"),
		EtcdCert:      os.Getenv("LANES_ETCD_CERT"),
		EtcdKey:       os.Getenv("LANES_ETCD_KEY"),
		EtcdListen:    "http://127.0.0.1:2379",
		EtcdPeer:      "http://127.0.0.1:2380",
		OVSRunDir:     "/var/run/openvswitch",
		DatapathType:  "system",
		UnderlayMTU:   1500,
		Socket:        "/run/lanes/lanesd.sock",
		MetricsAddr:   "127.0.0.1:9477",
	}
}

// Override copies the fields whose flag names are in set from flagged.
func (c *Config) Override(flagged Config, set map[string]bool) {
	dst, src := reflect.ValueOf(c).Elem(), reflect.ValueOf(flagged)
	for i := 0; i < dst.NumField(); i++ {
		if name := dst.Type().Field(i).Tag.Get("json"); set[name] {
			dst.Field(i).Set(src.Field(i))
		}
	}
}

// Validate checks the configuration and fills in derived defaults.
func (c *Config) Validate() error {
	if err := api.ValidateName("host", c.Host); err != nil {
		return err
	}
	if c.TunnelIP == "" {
		return fmt.Errorf("tunnel-ip: must be set")
	}
	if _, err := c.TunnelAddr(); err != nil {
		return err
	}
	if err := api.ValidateTunnelType("tunnel-type", c.TunnelType); err != nil {
		return err
	}
	if c.TunnelTypes != "" {
		h := api.Host{TunnelType: c.TunnelType, TunnelTypes: c.AcceptedTunnelTypes()}
		for _, t := range h.TunnelTypes {
			if err := api.ValidateTunnelType("tunnel-types", t); err != nil {
				return err
			}
		}
		if !h.Accepts(c.TunnelType) {
			return fmt.Errorf("tunnel-types %q: must include the tunnel-type %s", c.TunnelTypes, c.TunnelType)
		}
	}
	switch c.IPTablesBackend {
	case "", "nft", "legacy":
	default:
		return &api.FieldError{Field: "iptables-backend", Value: c.IPTablesBackend, Reason: "must be nft or legacy (empty: the backend of iptables in $PATH)"}
	}
	switch c.DatapathType {
	case "system":
	case "netdev":
		if c.UnderlayNIC == "" {
			return fmt.Errorf("underlay-nic: the netdev datapath needs the NIC that carries tunnel traffic")
		}
		if !strings.Contains(c.TunnelIP, "/") {
			return fmt.Errorf("tunnel-ip %q: the netdev datapath needs a prefix length (lanesd puts the address on br-phy)", c.TunnelIP)
		}
		if _, err := netip.ParsePrefix(c.TunnelIP); err != nil {
			return &api.FieldError{Field: "tunnel-ip", Value: c.TunnelIP, Reason: "not an address with a prefix length, e.g. 172.31.0.1/24 or fd00:31::1/64"}
		}
	default:
		return fmt.Errorf("datapath %q: must be system or netdev", c.DatapathType)
	}
	if c.UnderlayMTU < 576+c.TunnelOverhead() {
		return fmt.Errorf("underlay-mtu %d: too small to carry tunnelled frames", c.UnderlayMTU)
	}
	if c.OVSDB == "" {
		c.OVSDB = "unix:" + filepath.Join(c.OVSRunDir, "db.sock")
	}
	return c.validateEtcd()
}

// validateEtcd checks that the store is reached, and the embedded member served, the
// way the configuration says: TLS files that go together, https wherever TLS is on,
// and plain http off loopback only with etcd-insecure.
func (c *Config) validateEtcd() error {
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		return fmt.Errorf("etcd-cert and etcd-key: give both or neither")
	}
	if (c.EtcdServerCert == "") != (c.EtcdServerKey == "") {
		return fmt.Errorf("etcd-server-cert and etcd-server-key: give both or neither")
	}
	if c.EtcdEmbedDir == "" {
		if c.EtcdServerCert != "" {
			return fmt.Errorf("etcd-server-cert: only the embedded member (etcd-embed-dir) has a server certificate")
		}
		return store.CheckEndpoints(strings.Split(c.EtcdEndpoints, ","), c.clientTLS().Enabled(), c.EtcdInsecure)
	}
	serverTLS := c.EtcdServerCert != ""
	if serverTLS && (c.EtcdCACert == "" || c.EtcdCert == "") {
		return fmt.Errorf("etcd-server-cert: the embedded member then requires client certificates: give etcd-cacert (their CA) and etcd-cert/etcd-key (this host's)")
	}
	if !serverTLS && c.EtcdCert != "" {
		return fmt.Errorf("etcd-cert: the embedded member serves plain http; give it etcd-server-cert and etcd-server-key")
	}
	for _, u := range []struct{ field, urls string }{{"etcd-listen", c.EtcdListen}, {"etcd-peer", c.EtcdPeer}} {
		if err := store.CheckEndpoints(strings.Split(u.urls, ","), serverTLS, c.EtcdInsecure); err != nil {
			var fe *api.FieldError
			if errors.As(err, &fe) {
				fe.Field = u.field
			}
			return err
		}
	}
	return nil
}

// clientTLS is the store client's TLS files.
func (c *Config) clientTLS() store.ClientTLS {
	return store.ClientTLS{CACert: c.EtcdCACert, Cert: c.EtcdCert, Key: c.EtcdKey}
}

// serverTLS is the embedded member's TLS, if any.
func (c *Config) serverTLS() []etcdembed.Option {
	if c.EtcdServerCert == "" {
		return nil
	}
	return []etcdembed.Option{etcdembed.WithTLS(etcdembed.ServerTLS{CACert: c.EtcdCACert, Cert: c.EtcdServerCert, Key: c.EtcdServerKey})}
}

// AcceptedTunnelTypes lists the tunnel types this host accepts.
func (c *Config) AcceptedTunnelTypes() []string {
	if c.TunnelTypes == "" {
		return []string{c.TunnelType}
	}
	var out []string
	for _, t := range strings.Split(c.TunnelTypes, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// TunnelAddr is the tunnel endpoint address without prefix: IPv4, or IPv6 (global
// unicast or unique local).
func (c *Config) TunnelAddr() (netip.Addr, error) {
	s, _, _ := strings.Cut(c.TunnelIP, "/")
	if err := api.ValidateTunnelIP("tunnel-ip", s); err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(s)
}

// IPVersion is the IP version of this host's tunnel IP (api.IPv4Underlay or
// api.IPv6Underlay): the outer header of every tunnel it makes, since a tunnel joins
// two endpoints of one family.
func (c *Config) IPVersion() int {
	a, _ := c.TunnelAddr()
	return api.IPVersion(a)
}

// TunnelOverhead is what this host's tunnels of its tunnel type add to each frame.
func (c *Config) TunnelOverhead() int { return api.TunnelOverhead(c.TunnelType, c.IPVersion()) }

// VMMTU is the MTU of VM-facing devices when the network does not set one.
func (c *Config) VMMTU() int { return c.UnderlayMTU - c.TunnelOverhead() }
