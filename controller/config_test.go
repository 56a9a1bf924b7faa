package controller

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Host: "h1", TunnelIP: "172.31.0.1/24", TunnelType: "vxlan", DatapathType: "netdev", UnderlayNIC: "eth1", UnderlayMTU: 1500, OVSRunDir: "/run/ovs"}
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
	} {
		cfg := ok
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error naming %s, got %v", c.want, err)
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
