package tests

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
)

// TestOverlay is issue 4's scenario: three hosts, host 1 with the embedded etcd, two
// tenant networks with the same CIDR, VMs of A on all three hosts and of B on hosts 1
// and 2, a1 and b1 with the same IP, a security group allowing ICMP and TCP/22. It
// runs dual stack: both networks also have the same IPv6 /64, the VMs configure
// their addresses by SLAAC, and every IPv4 check has its IPv6 twin (overlay6_test.go).
func TestOverlay(t *testing.T) {
	l := newLab(t, 3)
	h1, h2, h3 := l.Host("h1"), l.Host("h2"), l.Host("h3")

	var nets map[string]struct {
		ID  string `json:"id"`
		VNI uint32 `json:"vni"`
	}
	for _, n := range []struct{ name, vni string }{{"net-a", "100"}, {"net-b", "200"}} {
		var out []struct {
			ID  string `json:"id"`
			VNI uint32 `json:"vni"`
		}
		if err := json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "network", "create", n.name, "--cidr", "10.0.0.0/24", "--ipv6-cidr", "fd00:a::/64", "--vni", n.vni)), &out); err != nil {
			t.Fatal(err)
		}
		if nets == nil {
			nets = map[string]struct {
				ID  string `json:"id"`
				VNI uint32 `json:"vni"`
			}{}
		}
		nets[n.name] = out[0]
	}
	ctl(t, l, h1, "sg", "create", "ssh-icmp")
	ctl(t, l, h1, "sg", "rule", "add", "ssh-icmp", "--direction", "ingress", "--protocol", "icmp")
	ctl(t, l, h1, "sg", "rule", "add", "ssh-icmp", "--direction", "ingress", "--protocol", "tcp", "--port", "22")
	ctl(t, l, h1, "sg", "rule", "add", "ssh-icmp", "--direction", "egress")
	ctl(t, l, h1, "sg", "rule", "add", "ssh-icmp", "--direction", "ingress", "--ethertype", "IPv6", "--protocol", "icmpv6")
	ctl(t, l, h1, "sg", "rule", "add", "ssh-icmp", "--direction", "ingress", "--ethertype", "IPv6", "--protocol", "tcp", "--port", "22")
	ctl(t, l, h1, "sg", "rule", "add", "ssh-icmp", "--direction", "egress", "--ethertype", "IPv6")

	sg := []string{"--sg", "ssh-icmp"}
	a1, pa1 := vm(t, l, "h1", "a1", "net-a", "10.0.0.1", sg...)
	a2, pa2 := vm(t, l, "h2", "a2", "net-a", "10.0.0.2", sg...)
	a3, pa3 := vm(t, l, "h3", "a3", "net-a", "10.0.0.3", sg...)
	b1, pb1 := vm(t, l, "h1", "b1", "net-b", "10.0.0.1", sg...) // same IP as a1
	b2, pb2 := vm(t, l, "h2", "b2", "net-b", "10.0.0.12", sg...)
	netA, netB := []*lab.VM{a1, a2, a3}, []*lab.VM{b1, b2}
	ports := map[*lab.VM]vmPort{a1: pa1, a2: pa2, a3: pa3, b1: pb1, b2: pb2}
	for vm, p := range ports {
		waitSLAAC(t, l, vm, v6Of(t, p))
	}

	t.Run("ping within each network", func(t *testing.T) {
		for _, group := range [][]*lab.VM{netA, netB} {
			for _, from := range group {
				for _, to := range group {
					if from == to {
						continue
					}
					ip := strings.Split(to.IP, "/")[0]
					eventually(t, 10*time.Second, from.Name+" pings "+to.Name, func() error { return ping(l, from, ip) })
				}
			}
		}
	})

	t.Run("no VM reaches the other network", func(t *testing.T) {
		for _, c := range []struct {
			from *lab.VM
			ip   string
		}{{a2, "10.0.0.12"}, {a3, "10.0.0.12"}, {b1, "10.0.0.2"}, {b1, "10.0.0.3"}, {b2, "10.0.0.3"}} {
			if err := ping(l, c.from, c.ip); err == nil {
				t.Errorf("%s reached %s in the other network", c.from.Name, c.ip)
			}
		}
		// 10.0.0.1 is a1 in A and b1 in B: each network resolves it to its own VM.
		for _, c := range []struct {
			from *lab.VM
			mac  string
		}{{a2, pa1.MAC}, {a3, pa1.MAC}, {b2, pb1.MAC}} {
			eventually(t, 5*time.Second, c.from.Name+" pings 10.0.0.1", func() error { return ping(l, c.from, "10.0.0.1") })
			out, _ := l.VMExec(c.from, "ip", "neigh", "show", "10.0.0.1")
			if !strings.Contains(out, c.mac) {
				t.Errorf("%s resolved 10.0.0.1 to %q, want %s", c.from.Name, out, c.mac)
			}
		}
	})

	t.Run("security group: tcp 22 open, 80 closed", func(t *testing.T) {
		for _, port := range []string{"22", "80"} {
			srv := exec.Command("ip", "netns", "exec", a2.Netns, "nc", "-l", "-k", "-p", port)
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
		}
		eventually(t, 5*time.Second, "tcp/22 a1 -> a2", func() error {
			_, err := l.VMExec(a1, "nc", "-z", "-w", "1", "10.0.0.2", "22")
			return err
		})
		if _, err := l.VMExec(a1, "nc", "-z", "-w", "1", "10.0.0.2", "80"); err == nil {
			t.Error("tcp/80 a1 -> a2 connected; the group allows only ICMP and TCP/22")
		}
	})

	t.Run("IPv6: ping within each network, global and link-local", func(t *testing.T) {
		for _, group := range [][]*lab.VM{netA, netB} {
			for _, from := range group {
				for _, to := range group {
					if from == to {
						continue
					}
					for _, addr := range []netip.Addr{v6Of(t, ports[to]), llOf(t, ports[to])} {
						eventually(t, 10*time.Second, from.Name+" pings "+to.Name+" at "+addr.String(), func() error { return ping6(l, from, addr) })
					}
				}
			}
		}
	})

	t.Run("IPv6: no VM reaches the other network on the same prefix", func(t *testing.T) {
		for _, c := range []struct{ from, to *lab.VM }{{a2, b2}, {a3, b2}, {a1, b2}, {b1, a2}, {b1, a3}, {b2, a3}} {
			for _, addr := range []netip.Addr{v6Of(t, ports[c.to]), llOf(t, ports[c.to])} {
				if err := ping6(l, c.from, addr); err == nil {
					t.Errorf("%s reached %s (%s) in the other network", c.from.Name, c.to.Name, addr)
				}
			}
		}
	})

	t.Run("IPv6: security group: tcp 22 open, 80 closed", func(t *testing.T) {
		listen6(t, a2, "22")
		listen6(t, a2, "80")
		dst := v6Of(t, pa2).String()
		eventually(t, 5*time.Second, "tcp/22 a1 -> a2 over IPv6", func() error {
			_, err := l.VMExec(a1, "nc", "-6", "-z", "-w", "1", dst, "22")
			return err
		})
		if _, err := l.VMExec(a1, "nc", "-6", "-z", "-w", "1", dst, "80"); err == nil {
			t.Error("tcp/80 a1 -> a2 over IPv6 connected; the group allows only ICMPv6 and TCP/22")
		}
	})

	t.Run("IPv6: a neighbour solicitation for a remote VM is answered locally", func(t *testing.T) {
		// Inside VXLAN, the inner IPv6 next header is at udp[36] and the ICMPv6
		// type at udp[70]. Captured on both ends: a host's own sends are not seen
		// on its NIC under the userspace datapath, its receives are.
		ns := "udp dst port 4789 and udp[28:2] = 0x86dd and udp[36] = 58 and udp[70] = 135"
		stop1, stop3 := capture(t, l, h1, ns), capture(t, l, h3, ns)
		target := v6Of(t, pa3)
		_, _ = l.VMExec(a1, "ip", "-6", "neigh", "flush", "dev", "eth0")
		eventually(t, 5*time.Second, "a1 pings a3 over IPv6", func() error { return ping6(l, a1, target) })
		out, _ := l.VMExec(a1, "ip", "-6", "neigh", "show", target.String())
		if !strings.Contains(out, pa3.MAC) {
			t.Errorf("a1 resolved %s to %q, want %s", target, out, pa3.MAC)
		}
		if n1, n3 := stop1(), stop3(); n1+n3 != 0 {
			t.Errorf("neighbour solicitations crossed the underlay: %d reached h1, %d reached h3", n1, n3)
		}
		eventually(t, 5*time.Second, "h1's ND responder flow for a3 counts the solicitation", func() error {
			st, err := l.OVS(h1).Ofctl("dump-flows", "br-tun", "table=21,icmp6,icmp_type=135,nd_target="+target.String())
			if err != nil || strings.Contains(st, "n_packets=0") || !strings.Contains(st, "n_packets=") {
				return fmt.Errorf("%s %v", st, err)
			}
			return nil
		})
	})

	t.Run("br-tun flows of each host", func(t *testing.T) {
		// h1 and h2 have both networks, h3 only A. Check tables 4, 20, 21, 22.
		want := map[string][][]string{
			"h1": {{"table=4,", "tun_id=0x64"}, {"table=4,", "tun_id=0xc8"},
				{"table=20,", "priority=2", pa2.MAC}, {"table=20,", "priority=2", pa3.MAC}, {"table=20,", "priority=2", pb2.MAC},
				{"table=21,", "arp_tpa=10.0.0.2"}, {"table=21,", "arp_tpa=10.0.0.3"}, {"table=21,", "arp_tpa=10.0.0.12"},
				{"table=22,", "set_field:0x64->tun_id"}, {"table=22,", "set_field:0xc8->tun_id"}},
			"h3": {{"table=4,", "tun_id=0x64"}, {"table=20,", "priority=2", pa1.MAC}, {"table=20,", "priority=2", pa2.MAC},
				{"table=21,", "arp_tpa=10.0.0.1"}, {"table=22,", "set_field:0x64->tun_id"}},
		}
		for host, checks := range want {
			fs := dumpFlows(t, l, l.Host(host), "br-tun")
			for _, c := range checks {
				if len(grep(fs, c...)) != 1 {
					t.Errorf("%s br-tun: want one flow with %v, got %v", host, c, grep(fs, c...))
				}
			}
		}
		// h3 has no B port: no B flows, and B's flood flows elsewhere skip h3.
		if fs := grep(dumpFlows(t, l, h3, "br-tun"), "0xc8"); len(fs) != 0 {
			t.Errorf("h3 has flows of network B: %v", fs)
		}
		h1h3 := "output:" + ofport(t, l, h1, "vxlan-ac1f0003")
		for _, f := range grep(dumpFlows(t, l, h1, "br-tun"), "table=22,", "0xc8") {
			if strings.Contains(f, h1h3) {
				t.Errorf("h1 floods network B to h3: %s", f)
			}
		}
	})

	t.Run("broadcasts of B never reach h3", func(t *testing.T) {
		vniB := nets["net-b"].VNI
		filter := fmt.Sprintf("udp dst port 4789 and (udp[12:4] >> 8) = %d", vniB)
		stop3 := capture(t, l, h3, filter)
		stop2 := capture(t, l, h2, filter)
		// ARP for an address nobody has is broadcast and misses the ARP responder.
		_, _ = l.VMExec(b1, "ping", "-c", "2", "-W", "1", "10.0.0.99")
		if n := stop2(); n == 0 {
			t.Errorf("control: no B broadcast reached h2")
		}
		if n := stop3(); n != 0 {
			t.Errorf("%d VXLAN packets with B's VNI %d reached h3", n, vniB)
		}
	})

	t.Run("ARP for a remote VM is answered locally", func(t *testing.T) {
		// An ARP request inside VXLAN has the inner ethertype 0x0806 at udp[28:2].
		stop := capture(t, l, h1, "udp dst port 4789 and udp[28:2] = 0x0806 and udp[36:2] = 1")
		_, _ = l.VMExec(a1, "ip", "neigh", "flush", "all")
		eventually(t, 5*time.Second, "a1 pings a3", func() error { return ping(l, a1, "10.0.0.3") })
		out, _ := l.VMExec(a1, "ip", "neigh", "show", "10.0.0.3")
		if !strings.Contains(out, pa3.MAC) {
			t.Errorf("a1 resolved 10.0.0.3 to %q, want %s", out, pa3.MAC)
		}
		if n := stop(); n != 0 {
			t.Errorf("%d ARP requests left h1 over VXLAN", n)
		}
		st, err := l.OVS(h1).Ofctl("dump-flows", "br-tun", "table=21,arp,arp_tpa=10.0.0.3")
		if err != nil || strings.Contains(st, "n_packets=0") || !strings.Contains(st, "n_packets=") {
			t.Errorf("ARP responder flow for 10.0.0.3 did not count the request: %s %v", st, err)
		}
	})

	t.Run("restart lanesd on h1 loses no packet", func(t *testing.T) {
		pinger := exec.Command("ip", "netns", "exec", a1.Netns, "ping", "-i", "0.05", "-c", "150", "-W", "2", "-q", "10.0.0.2") // a count: see TestControlPlaneOutage
		out := &strings.Builder{}
		pinger.Stdout = out
		if err := pinger.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // let the pinger run before the restart: traffic, not sync
		if err := l.StopLanesd(h1); err != nil {
			t.Fatal(err)
		}
		if err := l.StartLanesd(h1); err != nil {
			t.Fatal(err)
		}
		_ = pinger.Wait()
		if !strings.Contains(out.String(), " 0% packet loss") {
			t.Errorf("ping during restart: %s", out.String())
		}
		// The restarted lanesd converged: every br-tun flow carries its new round.
		eventually(t, 10*time.Second, "h1 flows of the new round only", func() error {
			rounds := map[string]bool{}
			for _, f := range dumpFlows(t, l, h1, "br-tun") {
				if c, ok := strings.CutPrefix(strings.Fields(f)[0], "cookie=0x"); ok {
					v, _ := strconv.ParseUint(strings.TrimSuffix(c, ","), 16, 64)
					rounds[strconv.FormatUint(v>>48, 10)] = true
				}
			}
			if len(rounds) != 1 {
				return fmt.Errorf("rounds present: %v", rounds)
			}
			return nil
		})
	})

	t.Run("ovs-vswitchd restart on h2: flows replayed, traffic back", func(t *testing.T) {
		// Learned flows (table 10's, with a hard timeout) come back only with traffic:
		// the VMs' IPv6 multicast floods teach them; the controller's flows must all
		// be replayed.
		installed := func() int {
			n := 0
			for _, f := range dumpFlows(t, l, h2, "br-tun") {
				if match, _, _ := strings.Cut(f, "actions="); !strings.Contains(match, "hard_timeout=") {
					n++
				}
			}
			return n
		}
		before := installed()
		if err := l.OVS(h2).RestartVswitchd(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "h2 br-tun flows back", func() error {
			if n := installed(); n < before {
				return fmt.Errorf("%d of %d flows", n, before)
			}
			return nil
		})
		eventually(t, 20*time.Second, "a1 pings a2 again", func() error { return ping(l, a1, "10.0.0.2") })
		eventually(t, 20*time.Second, "h2 ports ACTIVE again", func() error { return allActive(l, h2, 2) })
	})

	t.Run("flows deleted by hand come back", func(t *testing.T) {
		// Learned flows (hard_timeout) come back with traffic, not with the replay.
		installed := func() []string {
			var out []string
			for _, f := range dumpFlows(t, l, h2, "br-tun") {
				if !strings.Contains(f, "hard_timeout") {
					out = append(out, f)
				}
			}
			sort.Strings(out)
			return out
		}
		before := installed()
		if _, err := l.OVS(h2).Ofctl("del-flows", "br-tun"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "h2 br-tun replayed", func() error {
			if now := installed(); !slices.Equal(now, before) {
				return fmt.Errorf("%d of %d flows", len(now), len(before))
			}
			return nil
		})
		eventually(t, 10*time.Second, "a1 pings a2", func() error { return ping(l, a1, "10.0.0.2") })
	})

	t.Run("a port moved to another host follows", func(t *testing.T) {
		// b1 moves from h1 to h3: its devices leave h1, h3 wires it, every host's
		// flows follow (h2's unicast flow for b1 now points at its tunnel to h3).
		if err := l.StopVM(b1); err != nil {
			t.Fatal(err)
		}
		ctl(t, l, h1, "port", "update", "b1", "--host", "h3")
		eventually(t, 10*time.Second, "b1 ACTIVE on h3", func() error {
			var ps []struct {
				Host   string `json:"host"`
				Status *struct {
					State string `json:"state"`
					Host  string `json:"host"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "port", "show", "b1")), &ps); err != nil {
				return err
			}
			if len(ps) != 1 || ps[0].Status == nil || ps[0].Status.State != "ACTIVE" || ps[0].Status.Host != "h3" {
				return fmt.Errorf("b1: %+v", ps)
			}
			return nil
		})
		eventually(t, 10*time.Second, "b1's tap gone from h1", func() error {
			if out, err := l.Exec(h1, "ip", "link", "show", pb1.Tap); err == nil {
				return fmt.Errorf("still there: %s", out)
			}
			return nil
		})
		moved, err := l.StartVM(h3, "b1m", pb1.Tap, pb1.MAC, "10.0.0.1/24", 1450)
		b1 = moved
		if err != nil {
			t.Fatal(err)
		}
		toH3 := "output:" + ofport(t, l, h2, "vxlan-ac1f0003")
		eventually(t, 10*time.Second, "h2 sends b1's MAC to h3", func() error {
			fs := grep(dumpFlows(t, l, h2, "br-tun"), "table=20,", "priority=2", pb1.MAC)
			if len(fs) != 1 || !strings.Contains(fs[0], toH3) {
				return fmt.Errorf("h2 unicast flows for b1: %v", fs)
			}
			return nil
		})
		eventually(t, 10*time.Second, "b2 pings b1 on h3", func() error { return ping(l, b2, "10.0.0.1") })
		if err := ping(l, moved, "10.0.0.12"); err != nil {
			t.Errorf("moved b1 pings b2: %v", err)
		}
	})

	t.Run("bad input is refused and changes nothing", func(t *testing.T) {
		before := storeDump(t, l, h1)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"port", "create", "x1", "--network", "net-a", "--host", "h1", "--mac", "zz:16:3e:00:00:01"}, "port.mac"},
			{[]string{"port", "create", "x2", "--network", "net-a", "--host", "h1", "--ip", "10.0.1.5"}, "outside the network's CIDR"},
			{[]string{"port", "create", "x3", "--network", "nope", "--host", "h1"}, "port.network"},
			{[]string{"port", "create", "x4", "--network", "net-a", "--host", "h1", "--ip", "10.0.0.2"}, "10.0.0.2"},
			{[]string{"network", "create", "net-z", "--cidr", "10.9.0.0/24", "--vni", "0"}, "network.vni"},
		} {
			out, err := l.Ctl(h1, c.args...)
			if err == nil {
				t.Errorf("lanesctl %s succeeded", strings.Join(c.args, " "))
				continue
			}
			if !strings.Contains(out, c.want) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
				t.Errorf("lanesctl %s: want a one-line error naming %q, got %q", strings.Join(c.args, " "), c.want, out)
			}
		}
		if after := storeDump(t, l, h1); after != before {
			t.Errorf("store changed by refused commands:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("deleting a port removes its flows everywhere", func(t *testing.T) {
		// As Nova does: the VM goes first, then its port (a VM still sending after its
		// port is gone would be learned again by the hosts it talks to).
		if err := l.StopVM(b2); err != nil {
			t.Fatal(err)
		}
		ctl(t, l, h1, "port", "delete", "b2")
		eventually(t, 10*time.Second, "b2 flows gone", func() error {
			for _, h := range l.HostList {
				if fs := grep(dumpFlows(t, l, h, "br-tun"), pb2.MAC); len(fs) != 0 {
					return fmt.Errorf("%s still has %v", h.Name, fs)
				}
				if fs := grep(dumpFlows(t, l, h, "br-int"), pb2.MAC); len(fs) != 0 {
					return fmt.Errorf("%s br-int still has %v", h.Name, fs)
				}
			}
			return nil
		})
		// h2 has no B port left: h1 stops flooding B anywhere.
		eventually(t, 10*time.Second, "no B flood flow on h1", func() error {
			if fs := grep(dumpFlows(t, l, h1, "br-tun"), "table=22,", "0xc8"); len(fs) != 0 {
				return fmt.Errorf("h1: %v", fs)
			}
			return nil
		})
	})

	t.Run("h3's last port deleted: tunnels to h3 go", func(t *testing.T) {
		// a3 and b1 (moved there above) are h3's ports.
		ctl(t, l, h1, "port", "delete", "a3")
		ctl(t, l, h1, "port", "delete", "b1")
		if err := l.StopVM(a3); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "no tunnel to h3", func() error {
			for _, h := range []*lab.Host{h1, h2} {
				for _, p := range tunnelPorts(t, l, h) {
					if p == "vxlan-ac1f0003" {
						return fmt.Errorf("%s keeps %s", h.Name, p)
					}
				}
			}
			if ps := tunnelPorts(t, l, h3); len(ps) != 0 {
				return fmt.Errorf("h3 keeps %v", ps)
			}
			return nil
		})
	})

	t.Run("h3 stops: shown down, its tunnels stay until it is deleted", func(t *testing.T) {
		// Give h3 a port again so h1 and h2 have a tunnel to it.
		vm(t, l, "h3", "a4", "net-a", "10.0.0.4", sg...)
		eventually(t, 10*time.Second, "tunnel h1 -> h3", func() error {
			if !contains(tunnelPorts(t, l, h1), "vxlan-ac1f0003") {
				return fmt.Errorf("h1 tunnels %v", tunnelPorts(t, l, h1))
			}
			return nil
		})
		if err := l.StopLanesd(h3); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		// Liveness is not placement: the lease expires, h3 is shown down, and its
		// peers keep everything toward it (its VMs may be fine).
		hostAlive(t, l, h1, "h3", false, 30*time.Second)
		var hosts []api.Host
		if err := json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "host", "list")), &hosts); err != nil {
			t.Fatal(err)
		}
		for _, h := range hosts {
			if h.Name == "h3" && (h.LastSeen == nil || h.LastSeen.Sub(stopped).Abs() > 5*time.Second) {
				t.Errorf("h3 down: last seen %v, want about when it stopped (%s)", h.LastSeen, stopped.UTC())
			}
		}
		eventually(t, 10*time.Second, "h1's status to show h3's agent down", func() error {
			var st api.StatusReport
			if err := json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "status")), &st); err != nil {
				return err
			}
			for _, tr := range st.Tunnels {
				if tr.PeerHost == "h3" && !tr.PeerAlive {
					return nil
				}
			}
			return fmt.Errorf("tunnels %+v", st.Tunnels)
		})
		for _, h := range []*lab.Host{h1, h2} {
			if !contains(tunnelPorts(t, l, h), "vxlan-ac1f0003") {
				t.Errorf("%s dropped its tunnel to h3 although h3's ports are still there", h.Name)
			}
		}
		// An operator removes the host: refused while a port is bound, unless forced.
		if out, err := l.Ctl(h1, "host", "delete", "h3"); err == nil || !strings.Contains(out+fmt.Sprint(err), "bound") {
			t.Errorf("host delete h3 with a port bound: %v %s", err, out)
		}
		ctl(t, l, h1, "host", "delete", "h3", "--force")
		eventually(t, 30*time.Second, "h1 and h2 drop their tunnel to h3", func() error {
			for _, h := range []*lab.Host{h1, h2} {
				if contains(tunnelPorts(t, l, h), "vxlan-ac1f0003") {
					return fmt.Errorf("%s keeps vxlan-ac1f0003", h.Name)
				}
			}
			return nil
		})
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// ofport reads an interface's ofport on a host.
func ofport(t testing.TB, l *lab.Lab, h *lab.Host, iface string) string {
	t.Helper()
	out, err := l.OVS(h).Vsctl("get", "Interface", iface, "ofport")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// storeDump is everything lanesctl can list, as JSON, to compare before and after;
// port statuses are left out: hosts rewrite them on their own (e.g. BUILD while an
// OpenFlow connection is down).
func storeDump(t testing.TB, l *lab.Lab, h *lab.Host) string {
	var b strings.Builder
	for _, what := range [][]string{{"network", "list"}, {"port", "list"}, {"sg", "list"}} {
		var rows []map[string]any
		if err := json.Unmarshal([]byte(ctl(t, l, h, append([]string{"-o", "json"}, what...)...)), &rows); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			delete(r, "status")
		}
		out, _ := json.Marshal(rows)
		b.Write(out)
	}
	return b.String()
}
