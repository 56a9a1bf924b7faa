package controller

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// Config is lanesd's configuration. The json names are the command-line flag names, so
// a config file and the flags read the same.
type Config struct {
	Host          string `json:"host"`
	TunnelIP      string `json:"tunnel-ip"`
	TunnelType    string `json:"tunnel-type"`
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
	TapUID        int    `json:"-"`
	TapGID        int    `json:"-"`
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
	switch c.DatapathType {
	case "system":
	case "netdev":
		if c.UnderlayNIC == "" {
			return fmt.Errorf("underlay-nic: the netdev datapath needs the NIC that carries tunnel traffic")
		}
		if !strings.Contains(c.TunnelIP, "/") {
			return fmt.Errorf("tunnel-ip %q: the netdev datapath needs a prefix length (lanesd puts the address on br-phy)", c.TunnelIP)
		}
	default:
		return fmt.Errorf("datapath %q: must be system or netdev", c.DatapathType)
	}
	if c.UnderlayMTU < 576+api.TunnelOverhead(c.TunnelType) {
		return fmt.Errorf("underlay-mtu %d: too small to carry tunnelled frames", c.UnderlayMTU)
	}
	if c.OVSDB == "" {
		c.OVSDB = "unix:" + filepath.Join(c.OVSRunDir, "db.sock")
	}
	return nil
}

// TunnelAddr is the tunnel endpoint address without prefix.
func (c *Config) TunnelAddr() (netip.Addr, error) {
	s, _, _ := strings.Cut(c.TunnelIP, "/")
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("tunnel-ip %q: not an IPv4 address", c.TunnelIP)
	}
	return a, nil
}

// VMMTU is the MTU of VM-facing devices when the network does not set one.
func (c *Config) VMMTU() int { return c.UnderlayMTU - api.TunnelOverhead(c.TunnelType) }
