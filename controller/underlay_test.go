package controller

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// TestConfigIPv6Underlay: a host's tunnel IP may be IPv6, and then every MTU it
// derives takes the IPv6 outer header (20 bytes more than IPv4's).
func TestConfigIPv6Underlay(t *testing.T) {
	base := Config{Host: "h1", TunnelIP: "fd00:31::1/64", TunnelType: "vxlan", DatapathType: "netdev", UnderlayNIC: "eth1", UnderlayMTU: 1500, OVSRunDir: "/run/ovs",
		EtcdEndpoints: "http://127.0.0.1:2379", EtcdListen: "http://127.0.0.1:2379", EtcdPeer: "http://127.0.0.1:2380"}
	for _, c := range []struct {
		typ, ip string
		mtu     int
	}{
		{"vxlan", "fd00:31::1/64", 1430}, {"geneve", "fd00:31::1/64", 1430}, {"gre", "fd00:31::1/64", 1438},
		{"vxlan", "2001:db8::7", 1430}, // the system datapath needs no prefix
		{"vxlan", "172.31.0.1/24", 1450}, {"gre", "172.31.0.1/24", 1458},
	} {
		cfg := base
		cfg.TunnelType, cfg.TunnelIP = c.typ, c.ip
		if !strings.Contains(c.ip, "/") {
			cfg.DatapathType = "system"
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s over %s: %v", c.typ, c.ip, err)
			continue
		}
		if got := cfg.VMMTU(); got != c.mtu {
			t.Errorf("%s over %s: VM MTU %d, want %d", c.typ, c.ip, got, c.mtu)
		}
	}
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.TunnelIP = "fe80::1/64" }, "link-local"},
		{func(c *Config) { c.TunnelIP = "FD00:31::1/64" }, "write fd00:31::1"},
		{func(c *Config) { c.TunnelIP = "fd00:31::1/129" }, "prefix length"},
		{func(c *Config) { c.TunnelIP = "fd00:31::1" }, "prefix length"},
		// 640 carries IPv4 tunnels of 576-byte frames (576+50), not IPv6 ones (576+70).
		{func(c *Config) { c.UnderlayMTU = 640 }, "underlay-mtu"},
	} {
		cfg := base
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error saying %q, got %v", c.want, err)
		}
	}
	v4 := base
	v4.TunnelIP, v4.UnderlayMTU = "172.31.0.1/24", 640
	if err := v4.Validate(); err != nil {
		t.Errorf("IPv4 underlay of MTU 640: %v", err)
	}
}

// TestDatapathID: IPv4 keeps its readable form; IPv6 hosts differing anywhere in
// their address (one suffix, two prefixes) get distinct datapath-ids.
func TestDatapathID(t *testing.T) {
	if got := datapathID(2, netip.MustParseAddr("172.31.0.1")); got != "00000002ac1f0001" {
		t.Errorf("IPv4: %s", got)
	}
	seen := map[string]string{}
	ips := []string{"2001:db8::1", "172.31.0.1"}
	for rack := range 10 {
		for host := 1; host <= 50; host++ {
			ips = append(ips, fmt.Sprintf("fd00:3%d::%x", rack, host))
		}
	}
	for _, ip := range ips {
		id := datapathID(1, netip.MustParseAddr(ip))
		if len(id) != 16 {
			t.Errorf("%s: %q is not 16 hex digits", ip, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share datapath-id %s", ip, other, id)
		}
		seen[id] = ip
	}
}
