package controller

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/internal/pki"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Host: "h1", TunnelIP: "172.31.0.1/24", TunnelType: "vxlan", DatapathType: "netdev", UnderlayNIC: "eth1", UnderlayMTU: 1500, OVSRunDir: "/run/ovs",
		EtcdEndpoints: "http://127.0.0.1:2379", EtcdListen: "http://127.0.0.1:2379", EtcdPeer: "http://127.0.0.1:2380"}
	if err := ok.Validate(); err != nil || ok.OVSDB != "unix:/run/ovs/db.sock" {
		t.Fatalf("valid config: %v (ovsdb %q)", err, ok.OVSDB)
	}
	if ok.VMMTU() != 1450 {
		t.Errorf("VM MTU %d", ok.VMMTU())
	}
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Host = "bad host" }, "host"},
		{func(c *Config) { c.TunnelIP = "" }, "tunnel-ip"},
		{func(c *Config) { c.TunnelIP = "fe80::1" }, "tunnel-ip"},
		{func(c *Config) { c.TunnelIP = "172.31.0.1" }, "prefix length"},
		{func(c *Config) { c.UnderlayNIC = "" }, "underlay-nic"},
		{func(c *Config) { c.DatapathType = "dpdk" }, "datapath"},
		{func(c *Config) { c.TunnelType = "stt" }, "tunnel-type"},
		{func(c *Config) { c.UnderlayMTU = 600 }, "underlay-mtu"},
		{func(c *Config) { c.EtcdEndpoints = "http://10.0.0.1:2379" }, "etcd \"http://10.0.0.1:2379\": plain http"},
		{func(c *Config) {
			c.EtcdEndpoints = "http://127.0.0.1:2379"
			c.EtcdCert = "h1.crt"
			c.EtcdKey = "h1.key"
		}, "use https://"},
		{func(c *Config) { c.EtcdCert = "h1.crt" }, "etcd-cert and etcd-key"},
		{func(c *Config) { c.EtcdServerCert, c.EtcdServerKey = "s.crt", "s.key" }, "only the embedded member"},
		{func(c *Config) { c.EtcdEmbedDir, c.EtcdListen = "/var/lib/lanes", "http://10.0.0.1:2379" }, "etcd-listen"},
		{func(c *Config) { c.EtcdEmbedDir, c.EtcdPeer = "/var/lib/lanes", "http://10.0.0.1:2380" }, "etcd-peer"},
		{func(c *Config) {
			c.EtcdEmbedDir, c.EtcdServerCert, c.EtcdServerKey = "/var/lib/lanes", "s.crt", "s.key"
		}, "etcd-cacert"},
		{func(c *Config) {
			c.EtcdEmbedDir, c.EtcdServerCert, c.EtcdServerKey = "/var/lib/lanes", "s.crt", "s.key"
			c.EtcdCACert, c.EtcdCert, c.EtcdKey = "ca.crt", "h1.crt", "h1.key"
		}, "etcd-listen"}, // still http
	} {
		cfg := ok
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %s, got %v", c.want, err)
		}
	}
}

func TestConfigEtcdAccepted(t *testing.T) {
	base := Config{Host: "h1", TunnelIP: "172.31.0.1", TunnelType: "vxlan", DatapathType: "system", UnderlayMTU: 1500, OVSRunDir: "/run/ovs",
		EtcdListen: "http://127.0.0.1:2379", EtcdPeer: "http://127.0.0.1:2380"}
	for _, mod := range []func(*Config){
		func(c *Config) { c.EtcdEndpoints, c.EtcdInsecure = "http://10.0.0.1:2379,http://10.0.0.2:2379", true },
		func(c *Config) {
			c.EtcdEndpoints = "https://10.0.0.1:2379,https://10.0.0.2:2379"
			c.EtcdCACert, c.EtcdCert, c.EtcdKey = "ca.crt", "h1.crt", "h1.key"
		},
		func(c *Config) {
			c.EtcdEmbedDir, c.EtcdServerCert, c.EtcdServerKey = "/var/lib/lanes", "s.crt", "s.key"
			c.EtcdCACert, c.EtcdCert, c.EtcdKey = "ca.crt", "h1.crt", "h1.key"
			c.EtcdListen, c.EtcdPeer = "https://127.0.0.1:2379,https://10.0.0.1:2379", "https://10.0.0.1:2380"
		},
		func(c *Config) {
			c.EtcdEmbedDir, c.EtcdListen, c.EtcdInsecure = "/var/lib/lanes", "http://10.0.0.1:2379", true
		},
	} {
		cfg := base
		mod(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestConfigOverride(t *testing.T) {
	file := Config{Host: "from-file", TunnelIP: "10.0.0.1", MetricsAddr: ":1"}
	flags := Config{Host: "from-flag", TunnelIP: "10.9.9.9", MetricsAddr: ":2"}
	file.Override(flags, map[string]bool{"host": true, "metrics": true})
	if file.Host != "from-flag" || file.MetricsAddr != ":2" || file.TunnelIP != "10.0.0.1" {
		t.Errorf("override: %+v", file)
	}
}

func TestOpenStoreRefusesAnotherHostsCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Write(dir, pki.Request{Kind: pki.Host, CN: "h2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Host: "h1", EtcdEndpoints: "https://127.0.0.1:1", EtcdCACert: filepath.Join(dir, pki.CACert), EtcdCert: p.Cert, EtcdKey: p.Key}
	_, _, err = openStore(context.Background(), cfg, slog.Default())
	if err == nil || !strings.Contains(err.Error(), `for etcd user "h2", not this host "h1"`) {
		t.Errorf("want a refusal of h2's certificate, got %v", err)
	}
}
