package flows_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// TestMixedTunnelTypes: networks carry their own tunnel type; a host has one tunnel
// per peer and type, each tunnel's ingress goes to its type's table, and a network
// floods and sends unicast only over tunnels of its own type.
func TestMixedTunnelTypes(t *testing.T) {
	peer := netip.MustParseAddr("172.31.0.2")
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	d := flows.Desired{
		TunnelType: "vxlan", PatchIntOfport: 1,
		Networks: []flows.Network{
			{ID: "a", VNI: 100, LocalVLAN: 1},
			{ID: "b", VNI: 200, LocalVLAN: 2, TunnelType: "geneve"},
		},
		Tunnels: []flows.Tunnel{{RemoteIP: peer, Ofport: 16386}, {RemoteIP: peer, Ofport: 16387, Type: "geneve"}},
		RemotePorts: []flows.RemotePort{
			{ID: "ra", NetworkID: "a", MAC: mac("fa:16:3e:00:00:0a"), IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}, HostIP: peer},
			{ID: "rb", NetworkID: "b", MAC: mac("fa:16:3e:00:00:0b"), IPs: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, HostIP: peer},
		},
	}
	set, err := d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, f := range set.Flows(flows.BrTun) {
		text = append(text, f.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"priority=1,in_port=16386 actions=goto_table:4",
		"priority=1,in_port=16387 actions=goto_table:6",
		"table=4, priority=1,tun_id=0x64 actions=",
		"table=6, priority=1,tun_id=0xc8 actions=",
		"table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:16386",
		"table=22, priority=1,dl_vlan=2 actions=pop_vlan,set_field:0xc8->tun_id,output:16387",
		"table=20, priority=2,dl_vlan=2,dl_dst=fa:16:3e:00:00:0b actions=pop_vlan,set_field:0xc8->tun_id,output:16387",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("br-tun lacks %q:\n%s", want, all)
		}
	}
	if o, ok := set.Owner(flows.BrTun, flows.Owner{Category: flows.CatTunnel, Key: flows.TunnelOwnerKey(peer, "geneve", "vxlan")}.Cookie()); !ok || o.Key != "geneve/172.31.0.2" {
		t.Errorf("geneve tunnel owner %+v %v", o, ok)
	}
}
