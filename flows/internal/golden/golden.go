// Package golden holds the golden scenarios of flows/: a host's desired state and
// the exact `ovs-ofctl` dump it must produce. flows/ tests the renderer with them and
// flows/ofbind tests the OpenFlow encoding with them.
package golden

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/lanes-net/lanes/flows"
)

// A Scenario is a host's desired state and the lines `ovs-ofctl -O OpenFlow15
// dump-flows --no-stats --no-names` must show for it, beyond the bridge defaults.
// Cookies are written as $owner placeholders (see cookieNames), everything else is
// the exact dump text.
type Scenario struct {
	Name     string
	Desired  flows.Desired
	Tun, Int []string
}

// Bridge defaults, identical for every tunnel type (patch-int is ofport 1).
var setupTun = []string{
	" cookie=$setup, priority=1,in_port=1 actions=goto_table:2",
	" cookie=$setup, priority=0 actions=drop",
	" cookie=$setup, table=2, priority=1,arp,dl_dst=ff:ff:ff:ff:ff:ff actions=goto_table:21",
	" cookie=$setup, table=2, priority=1,icmp6,dl_dst=33:33:ff:00:00:00/ff:ff:ff:00:00:00,icmp_type=135 actions=goto_table:21",
	" cookie=$setup, table=2, priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:20",
	" cookie=$setup, table=2, priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:22",
	" cookie=$setup, table=3, priority=0 actions=drop",
	" cookie=$setup, table=4, priority=0 actions=drop",
	" cookie=$setup, table=6, priority=0 actions=drop",
	" cookie=$setup, table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,cookie=$learned,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
	" cookie=$setup, table=20, priority=0 actions=goto_table:22",
	" cookie=$setup, table=21, priority=2,icmp6,ipv6_src=::,icmp_type=135 actions=goto_table:22",
	" cookie=$setup, table=21, priority=1,icmp6,icmp_type=136 actions=move:NXM_OF_ETH_SRC[]->NXM_NX_ND_TLL[],IN_PORT",
	" cookie=$setup, table=21, priority=0 actions=goto_table:22",
	" cookie=$setup, table=22, priority=0 actions=drop",
}

var setupInt = []string{
	" cookie=$setup, priority=65535,dl_vlan=4095 actions=drop",
	" cookie=$setup, priority=0 actions=goto_table:60",
	" cookie=$setup, table=23, priority=0 actions=drop",
	" cookie=$setup, table=24, priority=0 actions=drop",
	" cookie=$setup, table=60, priority=3 actions=NORMAL",
	" cookie=$setup, table=77, priority=0 actions=drop",
	" cookie=$setup, table=78, priority=0 actions=drop",
}

// Hosts B and C have tunnel ports 2 and 3; host D has none yet.
var (
	tunB = flows.Tunnel{RemoteIP: netip.MustParseAddr("172.31.0.2"), Ofport: 2}
	tunC = flows.Tunnel{RemoteIP: netip.MustParseAddr("172.31.0.3"), Ofport: 3}
	netA = flows.Network{ID: "net-a", VNI: 100, LocalVLAN: 1}
	netB = flows.Network{ID: "net-b", VNI: 200, LocalVLAN: 2}
)

func lport(id, net string, ofport uint32, mac string, ips ...string) flows.LocalPort {
	return flows.LocalPort{ID: id, NetworkID: net, Ofport: ofport, MAC: MAC(mac), IPs: Addrs(ips...)}
}

func rport(id, net, host, mac string, ips ...string) flows.RemotePort {
	return flows.RemotePort{ID: id, NetworkID: net, HostIP: netip.MustParseAddr(host), MAC: MAC(mac), IPs: Addrs(ips...)}
}

// MAC parses a MAC the scenarios spell out, panicking on a typo.
func MAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Addrs parses addresses the scenarios spell out, panicking on a typo.
func Addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// pair is an allowed address pair; mac "" keeps the port's MAC.
func pair(prefix, mac string) flows.AddressPair {
	ap := flows.AddressPair{Prefix: netip.MustParsePrefix(prefix)}
	if mac != "" {
		ap.MAC = MAC(mac)
	}
	return ap
}

func host(tunnelType string) flows.Desired {
	return flows.Desired{TunnelType: tunnelType, PatchIntOfport: 1}
}

func with(d flows.Desired, f func(*flows.Desired)) flows.Desired { f(&d); return d }

// remoteTwoHosts: net-a has one remote port on host B and two on host C; a port on
// host D (no tunnel yet) and one on a network this host lacks get nothing.
func remoteTwoHosts(tunnelType string) flows.Desired {
	return with(host(tunnelType), func(d *flows.Desired) {
		d.Networks = []flows.Network{netA}
		d.Tunnels = []flows.Tunnel{tunC, tunB}
		d.LocalPorts = []flows.LocalPort{lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")}
		d.RemotePorts = []flows.RemotePort{
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
		// Every remote port has a link-local address to answer for.
		ndResponder("rb1", 1, "fe80::f816:3eff:fe00:b1", "fa:16:3e:00:00:b1", naVM),
		ndResponder("rc1", 1, "fe80::f816:3eff:fe00:c1", "fa:16:3e:00:00:c1", naVM),
		ndResponder("rc2", 1, "fe80::f816:3eff:fe00:c2", "fa:16:3e:00:00:c2", naVM),
	}
}

// The nd_reserved words of the ND responder's advertisements: solicited and override,
// and a router's with the router flag too.
const (
	naVM     = 0x60000000
	naRouter = 0xe0000000
)

// ndResponder is a remote port's ND responder flow for target (flows/ndresponder.go).
func ndResponder(owner string, lvid int, target, mac string, flags uint32) string {
	return fmt.Sprintf(" cookie=$rport:%s, table=21, priority=1,icmp6,dl_vlan=%d,icmp_type=135,nd_target=%s "+
		"actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:%s->eth_src,move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[],"+
		"set_field:%s->ipv6_src,set_field:136->icmpv6_type,set_field:%d->nd_reserved,set_field:2->nd_options_type,resubmit(,21)",
		owner, lvid, target, mac, target, flags)
}

// portGuard is the isolation and ND anti-spoofing of a local port with port
// security (flows/ndspoof.go): tagged frames and server traffic dropped; neighbour
// advertisements only for targets (the link-local addresses of its MACs and its
// IPv6 addresses; "" is no target check, a ::/0 pair), and advertisements and
// solicitations only with one of macs, or none, as their link-layer address.
func portGuard(owner string, ofport int, macs []string, targets ...string) []string {
	c := " cookie=$lport:" + owner + ", "
	out := []string{
		fmt.Sprintf("%spriority=12,in_port=%d,vlan_tci=0x1000/0x1000 actions=drop", c, ofport),
		fmt.Sprintf("%spriority=11,udp,in_port=%d,tp_src=67,tp_dst=68 actions=drop", c, ofport),
		fmt.Sprintf("%spriority=11,udp6,in_port=%d,tp_src=547,tp_dst=546 actions=drop", c, ofport),
		fmt.Sprintf("%spriority=11,icmp6,in_port=%d,icmp_type=134 actions=drop", c, ofport),
		fmt.Sprintf("%spriority=10,icmp6,in_port=%d,icmp_type=136 actions=goto_table:24", c, ofport),
		fmt.Sprintf("%spriority=10,icmp6,in_port=%d,icmp_type=135 actions=goto_table:24", c, ofport),
	}
	lladdrs := append(slices.Clone(macs), "00:00:00:00:00:00")
	for _, t := range targets {
		if t != "" {
			t = ",nd_target=" + t
		}
		for _, ll := range lladdrs {
			out = append(out, fmt.Sprintf("%stable=24, priority=2,icmp6,in_port=%d,icmp_type=136%s,nd_tll=%s actions=goto_table:25", c, ofport, t, ll))
		}
	}
	for _, ll := range lladdrs {
		out = append(out, fmt.Sprintf("%stable=24, priority=2,icmp6,in_port=%d,icmp_type=135,nd_sll=%s actions=goto_table:25", c, ofport, ll))
	}
	return out
}

// p1Int is the anti-spoofing of local port p1 (ofport 5, 10.0.0.1).
var p1Int = append([]string{
	" cookie=$lport:p1, priority=10,arp,in_port=5 actions=goto_table:24",
	" cookie=$lport:p1, priority=9,in_port=5 actions=goto_table:25",
	" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.1 actions=goto_table:25",
	" cookie=$lport:p1, table=25, priority=2,in_port=5,dl_src=fa:16:3e:00:00:01 actions=goto_table:60",
}, portGuard("p1", 5, []string{"fa:16:3e:00:00:01"}, "fe80::f816:3eff:fe00:1")...)

// Scenarios are the golden cases.
var Scenarios = []Scenario{
	{Name: "empty host", Desired: host("vxlan")},
	{
		Name: "one network one local port",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.LocalPorts = []flows.LocalPort{lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")}
		}),
		Tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
		Int: p1Int,
	},
	{
		Name: "two networks with overlapping IPs",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA, netB}
			d.Tunnels = []flows.Tunnel{tunB}
			d.LocalPorts = []flows.LocalPort{
				lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1"),
				lport("p2", "net-b", 6, "fa:16:3e:00:00:02", "10.0.0.1"),
			}
			d.RemotePorts = []flows.RemotePort{
				rport("ra", "net-a", "172.31.0.2", "fa:16:3e:00:00:a2", "10.0.0.2"),
				rport("rb", "net-b", "172.31.0.2", "fa:16:3e:00:00:b2", "10.0.0.2"),
			}
		}),
		Tun: []string{
			" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:4",
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-b, table=4, priority=1,tun_id=0xc8 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:10",
			" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$net:net-b, table=22, priority=1,dl_vlan=2 actions=pop_vlan,set_field:0xc8->tun_id,output:2",
			" cookie=$rport:ra, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a2 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:rb, table=20, priority=2,dl_vlan=2,dl_dst=fa:16:3e:00:00:b2 actions=pop_vlan,set_field:0xc8->tun_id,output:2",
			" cookie=$rport:ra, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.2 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:a2->arp_sha,set_field:10.0.0.2->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:a2->eth_src,IN_PORT",
			" cookie=$rport:rb, table=21, priority=1,arp,dl_vlan=2,arp_tpa=10.0.0.2 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:b2->arp_sha,set_field:10.0.0.2->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:b2->eth_src,IN_PORT",
			ndResponder("ra", 1, "fe80::f816:3eff:fe00:a2", "fa:16:3e:00:00:a2", naVM),
			ndResponder("rb", 2, "fe80::f816:3eff:fe00:b2", "fa:16:3e:00:00:b2", naVM),
		},
		Int: append(append(p1Int[:len(p1Int):len(p1Int)],
			" cookie=$lport:p2, priority=10,arp,in_port=6 actions=goto_table:24",
			" cookie=$lport:p2, priority=9,in_port=6 actions=goto_table:25",
			" cookie=$lport:p2, table=24, priority=2,arp,in_port=6,arp_spa=10.0.0.1 actions=goto_table:25",
			" cookie=$lport:p2, table=25, priority=2,in_port=6,dl_src=fa:16:3e:00:00:02 actions=goto_table:60",
		), portGuard("p2", 6, []string{"fa:16:3e:00:00:02"}, "fe80::f816:3eff:fe00:2")...),
	},
	{
		Name:    "remote ports on two hosts",
		Desired: remoteTwoHosts("vxlan"),
		Tun:     remoteTwoHostsTun(4),
		Int:     p1Int,
	},
	{
		Name: "a network without remote hosts",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA, netB}
			d.Tunnels = []flows.Tunnel{tunB}
			d.RemotePorts = []flows.RemotePort{rport("ra", "net-a", "172.31.0.2", "fa:16:3e:00:00:a2")}
		}),
		Tun: []string{
			" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:4",
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-b, table=4, priority=1,tun_id=0xc8 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:10",
			" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:ra, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a2 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			ndResponder("ra", 1, "fe80::f816:3eff:fe00:a2", "fa:16:3e:00:00:a2", naVM),
		},
	},
	{
		Name: "a port with allowed extra IPs",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			p := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")
			p.AllowedAddressPairs = []flows.AddressPair{
				pair("10.0.0.50/32", ""),
				pair("10.1.7.7/16", "FA:16:3E:00:00:99"),  // masked: 10.1.0.0/16
				pair("10.0.0.1/32", ""),                   // already a fixed IP: no second flow
				pair("10.0.0.51/32", "fa:16:3e:00:00:01"), // the port's MAC: no second MAC flow
			}
			any := lport("p2", "net-a", 6, "fa:16:3e:00:00:02", "10.0.0.2")
			any.AllowedAddressPairs = []flows.AddressPair{pair("0.0.0.0/0", "")} // ARP check off, MAC check stays
			d.LocalPorts = []flows.LocalPort{p, any}
		}),
		Tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
		Int: append([]string{
			" cookie=$lport:p1, priority=10,arp,in_port=5 actions=goto_table:24",
			" cookie=$lport:p1, priority=9,in_port=5 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.1 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.50 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.1.0.0/16 actions=goto_table:25",
			" cookie=$lport:p1, table=24, priority=2,arp,in_port=5,arp_spa=10.0.0.51 actions=goto_table:25",
			" cookie=$lport:p1, table=25, priority=2,in_port=5,dl_src=fa:16:3e:00:00:01 actions=goto_table:60",
			" cookie=$lport:p1, table=25, priority=2,in_port=5,dl_src=fa:16:3e:00:00:99 actions=goto_table:60",
			" cookie=$lport:p2, priority=9,in_port=6 actions=goto_table:25",
			" cookie=$lport:p2, table=25, priority=2,in_port=6,dl_src=fa:16:3e:00:00:02 actions=goto_table:60",
		}, append(portGuard("p1", 5, []string{"fa:16:3e:00:00:01", "fa:16:3e:00:00:99"}, "fe80::f816:3eff:fe00:1", "fe80::f816:3eff:fe00:99"),
			portGuard("p2", 6, []string{"fa:16:3e:00:00:02"}, "fe80::f816:3eff:fe00:2")...)...),
	},
	{
		Name: "port security off",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			p := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")
			p.PortSecurityDisabled = true
			d.LocalPorts = []flows.LocalPort{p, lport("p-no-ofport", "net-a", 0, "fa:16:3e:00:00:03", "10.0.0.3")}
		}),
		Tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
	},
	{
		Name: "IPv6 addresses take no part in ARP",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.Tunnels = []flows.Tunnel{tunB}
			p := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1", "fd00::1")
			p.AllowedAddressPairs = []flows.AddressPair{pair("::/0", "")}     // an IPv6 /0 leaves the ARP check on
			v6only := lport("p2", "net-a", 6, "fa:16:3e:00:00:02", "fd00::2") // no IPv4: its ARP dies in table 24
			d.LocalPorts = []flows.LocalPort{p, v6only}
			// The IPv4-mapped spelling is the same address: one responder flow.
			d.RemotePorts = []flows.RemotePort{rport("ra", "net-a", "172.31.0.2", "fa:16:3e:00:00:a2", "fd00::a2", "10.0.0.2", "::ffff:10.0.0.2")}
		}),
		Tun: []string{
			" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:4",
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:ra, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a2 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:ra, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.2 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:a2->arp_sha,set_field:10.0.0.2->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:a2->eth_src,IN_PORT",
			ndResponder("ra", 1, "fe80::f816:3eff:fe00:a2", "fa:16:3e:00:00:a2", naVM),
			ndResponder("ra", 1, "fd00::a2", "fa:16:3e:00:00:a2", naVM),
		},
		// p1's ::/0 pair turns its neighbour-advertisement check off (as in Neutron):
		// its drops stay, its NA jump and targets go. p2 may announce its link-local
		// address and fd00::2.
		Int: slices.Concat(p1Int[:4], portGuard("p1", 5, []string{"fa:16:3e:00:00:01"}, ""), []string{
			" cookie=$lport:p2, priority=10,arp,in_port=6 actions=goto_table:24",
			" cookie=$lport:p2, priority=9,in_port=6 actions=goto_table:25",
			" cookie=$lport:p2, table=25, priority=2,in_port=6,dl_src=fa:16:3e:00:00:02 actions=goto_table:60",
		}, portGuard("p2", 6, []string{"fa:16:3e:00:00:02"}, "fe80::f816:3eff:fe00:2", "fd00::2")),
	},
	{
		// DHCP: a port with port security, one without (its DHCP still goes to
		// lanesd), and one on a network without DHCP (no DHCP flows).
		Name: "DHCP ports",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA, netB}
			p1 := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")
			p1.DHCP = true
			open := lport("p2", "net-a", 6, "fa:16:3e:00:00:02", "10.0.0.2")
			open.DHCP, open.PortSecurityDisabled = true, true
			off := lport("p3", "net-b", 7, "fa:16:3e:00:00:03", "10.0.0.3")
			off.PortSecurityDisabled = true
			d.LocalPorts = []flows.LocalPort{p1, open, off}
		}),
		Tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-b, table=4, priority=1,tun_id=0xc8 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:10",
		},
		Int: append(p1Int[:len(p1Int):len(p1Int)],
			" cookie=$lport:p1, table=60, priority=101,udp,in_port=5,tp_src=68,tp_dst=67 actions=goto_table:77",
			" cookie=$lport:p1, table=77, priority=100,in_port=5 actions=controller(id=19521,meter_id=5)",
			" cookie=$lport:p2, table=60, priority=101,udp,in_port=6,tp_src=68,tp_dst=67 actions=goto_table:77",
			" cookie=$lport:p2, table=77, priority=100,in_port=6 actions=controller(id=19521,meter_id=6)",
		),
	},
	{
		// The ND responder answers for every IPv6 address of a remote port and for the
		// link-local address of its MAC, each once; a router's port answers with the
		// router flag. IPv4 addresses keep their ARP flows.
		Name: "ND responder for remote ports",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.Tunnels = []flows.Tunnel{tunB}
			vm := rport("rv", "net-a", "172.31.0.2", "fa:16:3e:00:00:a3", "fd00:1::a3", "fd00:1::a3", "fe80::f816:3eff:fe00:a3", "2001:db8::5")
			router := rport("rr", "net-a", "172.31.0.2", "fa:16:3e:00:00:a1", "10.0.0.1", "fd00:1::1")
			router.Router = true
			d.RemotePorts = []flows.RemotePort{vm, router}
		}),
		Tun: []string{
			" cookie=$tun:172.31.0.2, priority=1,in_port=2 actions=goto_table:4",
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
			" cookie=$net:net-a, table=22, priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:rv, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a3 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:rr, table=20, priority=2,dl_vlan=1,dl_dst=fa:16:3e:00:00:a1 actions=pop_vlan,set_field:0x64->tun_id,output:2",
			" cookie=$rport:rr, table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.1 actions=set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:fa:16:3e:00:00:a1->arp_sha,set_field:10.0.0.1->arp_spa,move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:fa:16:3e:00:00:a1->eth_src,IN_PORT",
			ndResponder("rv", 1, "fe80::f816:3eff:fe00:a3", "fa:16:3e:00:00:a3", naVM),
			ndResponder("rv", 1, "fd00:1::a3", "fa:16:3e:00:00:a3", naVM),
			ndResponder("rv", 1, "2001:db8::5", "fa:16:3e:00:00:a3", naVM),
			ndResponder("rr", 1, "fe80::f816:3eff:fe00:a1", "fa:16:3e:00:00:a1", naRouter),
			ndResponder("rr", 1, "fd00:1::1", "fa:16:3e:00:00:a1", naRouter),
		},
	},
	{
		// DHCPv6: a port on a network with an IPv6 subnet sends its DHCPv6 and router
		// solicitations to table 78 and on to lanesd through its DHCP meter.
		Name: "DHCPv6 port",
		Desired: with(host("vxlan"), func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			p1 := lport("p1", "net-a", 5, "fa:16:3e:00:00:01", "10.0.0.1")
			p1.DHCP, p1.DHCPv6 = true, true
			d.LocalPorts = []flows.LocalPort{p1}
		}),
		Tun: []string{
			" cookie=$net:net-a, table=4, priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10",
		},
		Int: append(p1Int[:len(p1Int):len(p1Int)],
			" cookie=$lport:p1, table=60, priority=101,udp,in_port=5,tp_src=68,tp_dst=67 actions=goto_table:77",
			" cookie=$lport:p1, table=77, priority=100,in_port=5 actions=controller(id=19521,meter_id=5)",
			" cookie=$lport:p1, table=60, priority=101,udp6,in_port=5,tp_src=546,tp_dst=547 actions=goto_table:78",
			" cookie=$lport:p1, table=60, priority=101,icmp6,in_port=5,icmp_type=133 actions=goto_table:78",
			" cookie=$lport:p1, table=78, priority=100,in_port=5 actions=controller(id=19521,meter_id=5)",
		),
	},
	{Name: "GRE", Desired: remoteTwoHosts("gre"), Tun: remoteTwoHostsTun(3), Int: p1Int},
	{Name: "Geneve", Desired: remoteTwoHosts("geneve"), Tun: remoteTwoHostsTun(6), Int: p1Int},
}

// cookieNames maps the $owner placeholders of a scenario to cookies.
func cookieNames(d flows.Desired) *strings.Replacer {
	pairs := []string{"$setup", cookieText(flows.Owner{Category: flows.CatSetup, Key: ""}), "$learned", fmt.Sprintf("%#x", uint64(flows.LearnedCookie))}
	for _, n := range d.Networks {
		pairs = append(pairs, "$net:"+n.ID, cookieText(flows.Owner{Category: flows.CatNetwork, Key: n.ID}))
	}
	for _, t := range d.Tunnels {
		pairs = append(pairs, "$tun:"+t.RemoteIP.String(), cookieText(flows.Owner{Category: flows.CatTunnel, Key: t.RemoteIP.String()}))
	}
	for _, p := range d.LocalPorts {
		pairs = append(pairs, "$lport:"+p.ID, cookieText(flows.Owner{Category: flows.CatLocalPort, Key: p.ID}))
	}
	for _, p := range d.RemotePorts {
		pairs = append(pairs, "$rport:"+p.ID, cookieText(flows.Owner{Category: flows.CatRemotePort, Key: p.ID}))
	}
	return strings.NewReplacer(pairs...)
}

func cookieText(o flows.Owner) string { return fmt.Sprintf("%#x", uint64(o.Cookie())) }

// Want is the scenario's full expected dump of bridge b, cookies filled in.
func (sc Scenario) Want(b flows.Bridge) []string {
	lines := append(append([]string{}, setupTun...), sc.Tun...)
	if b == flows.BrInt {
		lines = append(append([]string{}, setupInt...), sc.Int...)
	}
	r := cookieNames(sc.Desired)
	for i := range lines {
		lines[i] = r.Replace(lines[i])
	}
	return lines
}
