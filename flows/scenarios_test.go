package flows

import (
	"fmt"
	"strings"

	"github.com/lanes-net/lanes/api"
)

// A scenario is a host's desired state and the lines `ovs-ofctl -O OpenFlow15
// dump-flows --no-stats --no-names` must show for it, beyond the bridge defaults.
// Cookies are written as $owner placeholders (see cookieNames), everything else is
// the exact dump text.
type scenario struct {
	name     string
	desired  Desired
	tun, int []string
}

// Bridge defaults, identical for every tunnel type (patch-int is ofport 1).
var setupTun = []string{
	" cookie=$setup, priority=1,in_port=1 actions=goto_table:2",
	" cookie=$setup, priority=0 actions=drop",
	" cookie=$setup, table=2, priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=goto_table:21",
	" cookie=$setup, table=2, priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:20",
	" cookie=$setup, table=2, priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:22",
	" cookie=$setup, table=3, priority=0 actions=drop",
	" cookie=$setup, table=4, priority=0 actions=drop",
	" cookie=$setup, table=6, priority=0 actions=drop",
	" cookie=$setup, table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,cookie=$learned,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
	" cookie=$setup, table=20, priority=0 actions=goto_table:22",
	" cookie=$setup, table=21, priority=0 actions=goto_table:22",
	" cookie=$setup, table=22, priority=0 actions=drop",
}

var setupInt = []string{
	" cookie=$setup, priority=65535,dl_vlan=4095 actions=drop",
	" cookie=$setup, priority=0 actions=goto_table:60",
	" cookie=$setup, table=23, priority=0 actions=drop",
	" cookie=$setup, table=24, priority=0 actions=drop",
	" cookie=$setup, table=60, priority=3 actions=NORMAL",
}

// Hosts B and C have tunnel ports 2 and 3; host D has none yet.
var (
	tunB = Tunnel{RemoteIP: "172.31.0.2", Ofport: 2}
	tunC = Tunnel{RemoteIP: "172.31.0.3", Ofport: 3}
	netA = Network{ID: "net-a", VNI: 100, LocalVLAN: 1}
	netB = Network{ID: "net-b", VNI: 200, LocalVLAN: 2}
)

func lport(id, net string, ofport uint32, mac string, ips ...string) LocalPort {
	return LocalPort{ID: id, NetworkID: net, Ofport: ofport, MAC: mac, IPs: ips}
}

func rport(id, net, host, mac string, ips ...string) RemotePort {
	return RemotePort{ID: id, NetworkID: net, HostIP: host, MAC: mac, IPs: ips}
}

func host(tunnelType string) Desired { return Desired{TunnelType: tunnelType, PatchIntOfport: 1} }

func with(d Desired, f func(*Desired)) Desired { f(&d); return d }

// remoteTwoHosts: net-a has one remote port on host B and two on host C; a port on
// host D (no tunnel yet) and one on a network this host lacks get nothing.
func remoteTwoHosts(tunnelType string) Desired {
	return with(host(tunnelType), func(d *Desired) {
		d.Networks = []Network{netA}
		d.Tunnels = []Tunnel{tunC, tunB}
		d.LocalPorts = []LocalPort{lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")}
		d.RemotePorts = []RemotePort{
			rport("rc1", "net-a", "172.31.0.3", "fa:16:3e:00:00:c1", "10.0.0.31"),
			rport("rb1", "net-a", "172.31.0.2", "fa:16:3e:00:00:b1", "10.0.0.21"),
			rport("rc2", "net-a", "172.31.0.3", "fa:16:3e:00:00:c2", "10.0.0.32"),
			rport("rd1", "net-a", "172.31.0.4", "fa:16:3e:00:00:d1", "10.0.0.41"),
			rport("rx1", "net-x", "172.31.0.2", "fa:16:3e:00:00:e1", "10.9.0.1"),
		}
	})
}

// remoteTwoHostsTun is remoteTwoHosts's br-tun flows with the tunnel type's table.
func remoteTwoHostsTun(table int) []string {
	return []string{
		fmt.Sprintf(" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:%d", table),
		fmt.Sprintf(" cookie=$tun:172.31.0.3, priority=1,in_port=3 actions=goto_table:%d", table),
		fmt.Sprintf(" cookie=$net:net-a, table=%d, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10", table),
		" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2,output:3",
		" cookie=$rport:rb1, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:b1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
		" cookie=$rport:rc1, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:c1 actions=pop_vlan,set_field:0x64->tun_id,output:3",
		" cookie=$rport:rc2, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:c2 actions=pop_vlan,set_field:0x64->tun_id,output:3",
		" cookie=$rport:rb1, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.21 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:b1->arp_sha,set_field:10.0.0.21->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:b1->eth_src,IN_PORT",
		" cookie=$rport:rc1, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.31 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:c1->arp_sha,set_field:10.0.0.31->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:c1->eth_src,IN_PORT",
		" cookie=$rport:rc2, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.32 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:c2->arp_sha,set_field:10.0.0.32->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:c2->eth_src,IN_PORT",
	}
}

// p1Int is the anti-spoofing of local port p1 (ofport 5, 10.0.0.1).
var p1Int = []string{
	" cookie=$lport:p1, priority=10,arp,in_port=5 actions=goto_table:24",
	" cookie=$lport:p1, priority=9,in_port=5 actions=goto_table:25",
	" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.1 actions=goto_table:25",
	" cookie=$lport:p1, table=25, priority=2,in_port=5,dl_src=fa:16:3e:00:00:01 actions=goto_table:60",
}

var scenarios = []scenario{
	{name: "empty host", desired: host("vxlan")},
	{
		name: "one network one local port",
		desired: with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA}
			d.LocalPorts = []LocalPort{lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")}
		}),
		tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
		int: p1Int,
	},
	{
		name: "two networks with overlapping IPs",
		desired: with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA, netB}
			d.Tunnels = []Tunnel{tunB}
			d.LocalPorts = []LocalPort{
				lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1"),
				lport("p2", "net-b", 6, "fa:16:3e:00:00:02", "10.0.0.1"),
			}
			d.RemotePorts = []RemotePort{
				rport("ra", "net-a", "172.31.0.2", "fa:16:3e:00:00:a2", "10.0.0.2"),
				rport("rb", "net-b", "172.31.0.2", "fa:16:3e:00:00:b2", "10.0.0.2"),
			}
		}),
		tun: []string{
			" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:4",
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-b, table=4, priority=1,tun_id=0xc8 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:10",
			" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$net:net-b, table=22, priority=1,dl_vlan=2 actions=pop_vlan,set_field:0xc8->tun_id,output:2",
			" cookie=$rport:ra, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a2 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:rb, table=20, priority=2,dl_vlan=2,dl_dst=fa:16:3e:00:00:b2 actions=pop_vlan,set_field:0xc8->tun_id,output:2",
			" cookie=$rport:ra, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.2 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:a2->arp_sha,set_field:10.0.0.2->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:a2->eth_src,IN_PORT",
			" cookie=$rport:rb, table=21, priority=1,arp,dl_vlan=2,arp_tpa=10.0.0.2 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:b2->arp_sha,set_field:10.0.0.2->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:b2->eth_src,IN_PORT",
		},
		int: append(p1Int[:len(p1Int):len(p1Int)],
			" cookie=$lport:p2, priority=10,arp,in_port=6 actions=goto_table:24",
			" cookie=$lport:p2, priority=9,in_port=6 actions=goto_table:25",
			" cookie=$lport:p2, table=24, priority=2,arp,in_port=6,arp_spa=10.0.0.1 actions=goto_table:25",
			" cookie=$lport:p2, table=25, priority=2,in_port=6,dl_src=fa:16:3e:00:00:02 actions=goto_table:60",
		),
	},
	{
		name:    "remote ports on two hosts",
		desired: remoteTwoHosts("vxlan"),
		tun:     remoteTwoHostsTun(4),
		int:     p1Int,
	},
	{
		name: "a network without remote hosts",
		desired: with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA, netB}
			d.Tunnels = []Tunnel{tunB}
			d.RemotePorts = []RemotePort{rport("ra", "net-a", "172.31.0.2", "fa:16:3e:00:00:a2")}
		}),
		tun: []string{
			" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:4",
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-b, table=4, priority=1,tun_id=0xc8 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:10",
			" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:ra, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a2 actions=pop_vlan,set_field:0x64->tun_id,output:2",
		},
	},
	{
		name: "a port with allowed extra IPs",
		desired: with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA}
			p := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")
			p.AllowedAddressPairs = []api.AddressPair{
				{IP: "10.0.0.50"},
				{IP: "10.1.0.0/16", MAC: "FA:16:3E:00:00:99"},
				{IP: "10.0.0.1"}, // already a fixed IP: no second flow
			}
			any := lport("p2", "net-a", 6, "fa:16:3e:00:00:02", "10.0.0.2")
			any.AllowedAddressPairs = []api.AddressPair{{IP: "0.0.0.0/0"}} // ARP check off, MAC check stays
			d.LocalPorts = []LocalPort{p, any}
		}),
		tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
		int: []string{
			" cookie=$lport:p1, priority=10,arp,in_port=5 actions=goto_table:24",
			" cookie=$lport:p1, priority=9,in_port=5 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.1 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.50 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.1.0.0/16 actions=goto_table:25",
			" cookie=$lport:p1, table=25, priority=2,in_port=5,dl_src=fa:16:3e:00:00:01 actions=goto_table:60",
			" cookie=$lport:p1, table=25, priority=2,in_port=5,dl_src=fa:16:3e:00:00:99 actions=goto_table:60",
			" cookie=$lport:p2, priority=9,in_port=6 actions=goto_table:25",
			" cookie=$lport:p2, table=25, priority=2,in_port=6,dl_src=fa:16:3e:00:00:02 actions=goto_table:60",
		},
	},
	{
		name: "port security off",
		desired: with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA}
			p := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")
			p.PortSecurityDisabled = true
			d.LocalPorts = []LocalPort{p, lport("p-no-ofport", "net-a", 0, "fa:16:3e:00:00:03", "10.0.0.3")}
		}),
		tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
	},
	{name: "GRE", desired: remoteTwoHosts("gre"), tun: remoteTwoHostsTun(3), int: p1Int},
	{name: "Geneve", desired: remoteTwoHosts("geneve"), tun: remoteTwoHostsTun(6), int: p1Int},
}

// cookieNames maps the $owner placeholders of a scenario to cookies.
func cookieNames(d Desired) *strings.Replacer {
	pairs := []string{"$setup", cookieText(Owner{CatSetup, ""}), "$learned", fmt.Sprintf("%#x", uint64(LearnedCookie))}
	for _, n := range d.Networks {
		pairs = append(pairs, "$net:"+n.ID, cookieText(Owner{CatNetwork, n.ID}))
	}
	for _, t := range d.Tunnels {
		pairs = append(pairs, "$tun:"+t.RemoteIP, cookieText(Owner{CatTunnel, t.RemoteIP}))
	}
	for _, p := range d.LocalPorts {
		pairs = append(pairs, "$lport:"+p.ID, cookieText(Owner{CatLocalPort, p.ID}))
	}
	for _, p := range d.RemotePorts {
		pairs = append(pairs, "$rport:"+p.ID, cookieText(Owner{CatRemotePort, p.ID}))
	}
	return strings.NewReplacer(pairs...)
}

func cookieText(o Owner) string { return fmt.Sprintf("%#x", uint64(o.Cookie())) }

// Want is the scenario's full expected dump of bridge b, cookies filled in.
func (sc scenario) want(b Bridge) []string {
	lines := append(append([]string{}, setupTun...), sc.tun...)
	if b == BrInt {
		lines = append(append([]string{}, setupInt...), sc.int...)
	}
	r := cookieNames(sc.desired)
	for i := range lines {
		lines[i] = r.Replace(lines[i])
	}
	return lines
}
