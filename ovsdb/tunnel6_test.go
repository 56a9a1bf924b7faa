package ovsdb

import (
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

// TestTunnelPortsIPv6: a tunnel to an IPv6 peer is named by Neutron's hash of the
// address, carries the address as remote_ip (and local_ip) exactly as given, asks
// for an ofport from the address's low 14 bits, and vswitchd takes it (an ofport,
// no error); local and remote IPs of different versions are refused before OVSDB.
func TestTunnelPortsIPv6(t *testing.T) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	tp, err := c.EnsureTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, "fd00:31::1", "fd00:31::2")
	if err != nil {
		t.Fatal(err)
	}
	if tp.Name != "vxlan-cpcmsbju" || tp.Ofport != 0x4002 || tp.OfportRequest != 0x4002 {
		t.Fatalf("tunnel %+v, want vxlan-cpcmsbju at ofport 0x4002", tp)
	}
	got := vsctl(t, o, "get", "interface", tp.Name, "options")
	want := `{df_default="true", key=flow, local_ip="fd00:31::1", remote_ip="fd00:31::2"}`
	if got != want {
		t.Fatalf("options %s, want %s", got, want)
	}
	if e := vsctl(t, o, "get", "interface", tp.Name, "error"); e != "[]" {
		t.Fatalf("vswitchd refused the port: %s", e)
	}
	// An IPv4 peer whose low 14 bits are the same moves to the next number.
	tp4, err := c.EnsureTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, "", "172.31.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if tp4.Ofport != 0x4003 {
		t.Fatalf("colliding IPv4 tunnel got ofport %d", tp4.Ofport)
	}
	for _, typ := range []string{api.TunnelGRE, api.TunnelGeneve} {
		tp, err := c.EnsureTunnelPort(ctx, api.BrTun, typ, "fd00:31::1", "fd00:31::3")
		if err != nil {
			t.Fatal(err)
		}
		if len(tp.Name) > 15 || !strings.HasPrefix(tp.Name, typ+"-") || tp.Ofport <= 0 {
			t.Errorf("%s tunnel %+v", typ, tp)
		}
	}
	if n := txDelta(t, c, func() error {
		_, err := c.EnsureTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, "fd00:31::1", "fd00:31::2")
		return err
	}); n != 0 {
		t.Fatalf("repeat: %d transactions", n)
	}
	list, err := c.ListTunnelPorts(ctx, api.BrTun)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range list {
		if l.Name == "vxlan-cpcmsbju" {
			found = l.RemoteIP == "fd00:31::2" && l.LocalIP == "fd00:31::1" && l.Ofport == 0x4002
		}
	}
	if !found || len(list) != 4 {
		t.Fatalf("list %+v", list)
	}
	for _, bad := range [][2]string{{"172.31.0.1", "fd00:31::2"}, {"fd00:31::1", "172.31.0.2"}} {
		_, err := c.EnsureTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, bad[0], bad[1])
		if err == nil || !strings.Contains(err.Error(), "different IP versions") {
			t.Errorf("local %s remote %s: %v, want a refusal", bad[0], bad[1], err)
		}
	}
	if err := c.DeleteTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, "fd00:31::2"); err != nil {
		t.Fatal(err)
	}
	if ports := vsctl(t, o, "list-ports", api.BrTun); strings.Contains(ports, "vxlan-cpcmsbju") {
		t.Fatalf("ports after delete: %q", ports)
	}
}
