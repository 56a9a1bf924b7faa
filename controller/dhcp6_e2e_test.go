package controller

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/diag"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/hostwire/fakevm"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/store"
)

// TestIPv6AddressConfiguration runs lanesd's RA and DHCPv6 responder against real
// guests: fake VMs (kernel network namespaces behind real taps, qbr bridges and
// iptables) on a real OVS br-int. A VM on a slaac subnet configures its EUI-64
// address and the network's MTU from the RA; ISC dhclient gets the stateful address
// and DNS servers on a dhcpv6-stateful subnet and the DNS servers by
// information-request on a dhcpv6-stateless one; a VM's rogue router advertisements
// never reach its neighbour.
func TestIPv6AddressConfiguration(t *testing.T) {
	if _, err := exec.LookPath("dhclient"); err != nil {
		t.Skip("no dhclient (isc-dhcp-client)")
	}
	r := newRig(t)
	ctx := r.ctx
	// Only the advertisement when a port is wired and those answering a solicitation:
	// the rogue-RA check below counts every advertisement a VM receives.
	r.a.dhcp.v6.setTiming(time.Hour, time.Hour, time.Hour)
	if _, err := r.st.RegisterHost(ctx, api.Host{Name: "h1", TunnelIP: "172.31.77.1", TunnelType: api.TunnelVXLAN}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	slaac := r.network6(t, "v6slaac", "10.61.0.0/24", api.Subnet6{CIDR: "fd00:61::/64", AddressMode: api.IPv6SLAAC, DNSServers: []string{"fd00:61::53"}})
	stateful := r.network6(t, "v6full", "10.62.0.0/24", api.Subnet6{CIDR: "fd00:62::/64", AddressMode: api.IPv6DHCPStateful, DNSServers: []string{"fd00:62::53", "fd00:62::54"}})
	stateless := r.network6(t, "v6info", "10.63.0.0/24", api.Subnet6{CIDR: "fd00:63::/64", AddressMode: api.IPv6DHCPStateless, DNSServers: []string{"fd00:63::53"}})

	victim := r.port6(t, "victim", slaac, "")
	rogue := r.port6(t, "rogue", slaac, "")
	full := r.port6(t, "full", stateful, "fd00:62::5")
	info := r.port6(t, "info", stateless, "")
	// Ports of a peer on two of the networks, so that their broadcast and multicast
	// floods to a tunnel: the capture below shows what leaves the host.
	if _, err := r.st.RegisterHost(ctx, api.Host{Name: "h2", TunnelIP: "172.31.77.2", TunnelType: api.TunnelVXLAN}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, n := range []api.Network{slaac, stateful} {
		if _, err := r.st.CreatePort(ctx, api.Port{Name: "far-" + n.Name, NetworkID: n.ID, Host: "h2"}); err != nil {
			t.Fatal(err)
		}
	}
	r.sync(true)
	stopCapture := r.captureUnderlay(t)

	br := r.flows(api.BrInt)
	for _, p := range []api.Port{victim, full, info} {
		of := strings.Trim(r.vsctl("get", "Interface", api.QvoName(p.ID), "ofport"), `"`)
		for _, want := range []string{
			"table=60, priority=101,udp6,in_port=" + of + ",tp_src=546,tp_dst=547 actions=goto_table:78",
			"table=60, priority=101,icmp6,in_port=" + of + ",icmp_type=133 actions=goto_table:78",
			"table=78, priority=100,in_port=" + of + " actions=controller(id=19521,meter_id=" + of + ")",
		} {
			if !strings.Contains(br, want) {
				t.Errorf("br-int lacks %q:\n%s", want, br)
			}
		}
	}

	vmVictim := r.startVM(t, victim)
	vmFull := r.startVM(t, full)
	vmInfo := r.startVM(t, info)

	// SLAAC: the EUI-64 address of the port's MAC in the RA's prefix, the network's
	// MTU, and no default route (router lifetime 0).
	hw, _ := net.ParseMAC(victim.MAC)
	eui := api.EUI64(netip.MustParsePrefix("fd00:61::/64"), hw).String()
	waitUntil(t, 20*time.Second, "the victim's SLAAC address "+eui, func() bool { return strings.Contains(vmVictim.addrs(t), eui+"/64") })
	if mtu := vmVictim.sysctl(t, "net.ipv6.conf.eth0.mtu"); mtu != strconv.Itoa(slaac.MTU) {
		t.Errorf("eth0 IPv6 MTU %s, want the network's %d from the RA", mtu, slaac.MTU)
	}
	if out := vmVictim.run(t, "ip", "-6", "route", "show", "default"); out != "" {
		t.Errorf("a default route from an RA with router lifetime 0: %s", out)
	}

	// dhcpv6-stateful: dhclient gets the port's fixed address and both DNS servers; the
	// RA's prefix is on-link only, so no SLAAC address is formed beside it.
	lease := vmFull.dhclient(t, false)
	if lease["reason"] != "BOUND6" || lease["new_ip6_address"] != "fd00:62::5" || lease["new_dhcp6_name_servers"] != "fd00:62::53 fd00:62::54" {
		t.Errorf("stateful lease %v", lease)
	}
	waitUntil(t, 10*time.Second, "the stateful address on eth0", func() bool { return strings.Contains(vmFull.addrs(t), "fd00:62::5/") })
	hwFull, _ := net.ParseMAC(full.MAC)
	if a := vmFull.addrs(t); strings.Contains(a, api.EUI64(netip.MustParsePrefix("fd00:62::/64"), hwFull).String()) || vmFull.snmp6(t, "Icmp6InRouterAdvertisements") == 0 {
		t.Errorf("stateful VM: SLAAC address beside DHCPv6, or no RA received:\n%s", a)
	}
	// lanesctl status shows what the responder did for the port.
	shown := 0
	for _, pr := range (&diag.Server{}).Status(r.a.last.Load()).Ports {
		if pr.DHCPv6 != nil {
			shown++
		}
		if pr.ID == full.ID && (pr.DHCPv6 == nil || pr.DHCPv6.Answered < 2 || pr.DHCPv6.Address != "fd00:62::5" || !strings.Contains(pr.DHCPv6.Last, "REPLY fd00:62::5")) {
			t.Errorf("status of the stateful port: DHCPv6 %+v", pr.DHCPv6)
		}
		if pr.ID == victim.ID && (pr.DHCPv6 == nil || !strings.Contains(pr.DHCPv6.Last, "RS -> RA")) {
			t.Errorf("status of the SLAAC port: DHCPv6 %+v", pr.DHCPv6)
		}
	}
	if shown != 4 {
		t.Errorf("status shows a DHCPv6 record for %d ports, want the 4 on IPv6 networks", shown)
	}

	// dhcpv6-stateless: SLAAC address from the RA, DNS by information-request.
	hwInfo, _ := net.ParseMAC(info.MAC)
	euiInfo := api.EUI64(netip.MustParsePrefix("fd00:63::/64"), hwInfo).String()
	waitUntil(t, 20*time.Second, "the stateless VM's SLAAC address", func() bool { return strings.Contains(vmInfo.addrs(t), euiInfo+"/64") })
	if got := vmInfo.dhclient(t, true); got["reason"] != "RENEW6" || got["new_dhcp6_name_servers"] != "fd00:63::53" || got["new_ip6_address"] != "" {
		t.Errorf("information-request answer %v", got)
	}

	// Neither the solicitations nor DHCPv6 left the host, while other multicast of the
	// same VMs (DAD, MLD) was flooded to the peer as it should be.
	var flooded, leaked []string
	for _, line := range stopCapture() {
		switch {
		case strings.Contains(line, "router solicitation") || strings.Contains(line, "dhcp6"):
			leaked = append(leaked, line)
		case strings.Contains(line, "ICMP6"):
			flooded = append(flooded, line)
		}
	}
	t.Logf("underlay: %d ICMPv6 packets flooded to the peer, %d RS or DHCPv6", len(flooded), len(leaked))
	if len(leaked) > 0 || len(flooded) == 0 {
		t.Errorf("on the underlay: %d RS or DHCPv6 packets (want none), %d other ICMPv6 (want some):\n%s",
			len(leaked), len(flooded), strings.Join(append(leaked, flooded...), "\n"))
	}

	// Rogue RAs: the rogue VM plays its own guest on the tap and advertises a prefix
	// of its own. Its egress chain drops them; the victim's kernel counts none and
	// forms no address in the rogue prefix.
	before := vmVictim.snmp6(t, "Icmp6InRouterAdvertisements")
	tap, err := fakevm.OpenHostTap(r.ovs.Netns.Name, api.TapName(rogue.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	// The tap has carrier once opened; qbr forwards from it a moment later.
	waitUntil(t, 10*time.Second, "qbr forwarding from the rogue's tap", func() bool {
		out, err := r.ovs.Netns.Exec("bridge", "link", "show", "dev", api.TapName(rogue.ID))
		return err == nil && strings.Contains(out, "state forwarding")
	})
	rhw, _ := net.ParseMAC(rogue.MAC)
	const burst = 20
	frame := append(make([]byte, fakevm.VnetHdrLen), rogueAdvert(rhw, netip.MustParsePrefix("fd00:666::/64"))...)
	for range burst {
		if _, err := tap.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "the rogue RAs dropped by the rogue's egress chain", func() bool {
		return r.ruleCount(t, hostwire.EgressChain(rogue.ID), "Router Advts") >= burst
	})
	if got := vmVictim.snmp6(t, "Icmp6InRouterAdvertisements") - before; got >= burst {
		t.Errorf("the victim received %d router advertisements during the rogue's burst of %d", got, burst)
	}
	if a := vmVictim.addrs(t); strings.Contains(a, "fd00:666:") {
		t.Errorf("the victim took the rogue prefix:\n%s", a)
	}

	// A changed subnet is advertised at once, unsolicited, to all nodes: the new MTU
	// reaches the guest without it asking.
	slaac.MTU = 1400
	r.putJSON(t, store.Prefix+"networks/"+slaac.ID, slaac)
	r.sync(false)
	waitUntil(t, 10*time.Second, "the victim's IPv6 MTU 1400 from an unsolicited RA", func() bool {
		return vmVictim.sysctl(t, "net.ipv6.conf.eth0.mtu") == "1400"
	})
}

// network6 creates a network through the store and then gives its record an IPv6
// subnet, as the IPv6 contract has it, straight in etcd.
func (r *rig) network6(t *testing.T, name, cidr string, sub api.Subnet6) api.Network {
	t.Helper()
	n, err := r.st.CreateNetwork(r.ctx, store.NetworkSpec{Name: name, CIDR: cidr, IPv6: &sub})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// port6 creates a port on h1, with v6 as its IPv6 address if set; otherwise the
// store gives it one (the EUI-64 one on slaac and dhcpv6-stateless subnets).
func (r *rig) port6(t *testing.T, name string, n api.Network, v6 string) api.Port {
	t.Helper()
	p := api.Port{Name: name, NetworkID: n.ID, Host: "h1"}
	if v6 != "" {
		p.FixedIPs = []string{v6}
	}
	p, err := r.st.CreatePort(r.ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rig) putJSON(t *testing.T, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Client().Put(r.ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

// captureUnderlay captures the VXLAN packets that leave the host (its underlay NIC's
// peer sees them) and returns, when stopped, the capture as tcpdump decodes it, the
// inner packets included.
func (r *rig) captureUnderlay(t *testing.T) (stop func() []string) {
	t.Helper()
	// The netdev datapath resolves the peer's MAC itself; there is no peer to answer.
	if _, err := r.ovs.Appctl("tnl/arp/set", "br-phy", "172.31.77.2", "aa:bb:cc:00:00:02"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "underlay.pcap")
	cmd := exec.Command("ip", "netns", "exec", r.ovs.Netns.Name, "tcpdump", "-i", "eth1p", "-n", "-U", "-w", file, "udp", "port", "4789")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(os.Interrupt) // our own child, by its pid
			_ = cmd.Wait()
		}
	}
	t.Cleanup(halt)
	return func() []string {
		halt()
		out, err := exec.Command("tcpdump", "-n", "-v", "-r", file).CombinedOutput()
		if err != nil {
			t.Fatalf("read the capture: %v: %s", err, out)
		}
		return strings.Split(string(out), "\n")
	}
}

// ruleCount is the packet counter of the rule of an ip6tables filter chain whose
// text contains what.
func (r *rig) ruleCount(t *testing.T, chain, what string) int {
	t.Helper()
	out, err := r.ovs.Netns.Exec("ip6tables", "-w", "-t", "filter", "-L", chain, "-v", "-x", "-n")
	if err != nil {
		t.Fatalf("ip6tables -L %s: %v: %s", chain, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(line, what) {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("chain %s has no rule with %q:\n%s", chain, what, out)
	return 0
}

// guest is a fake VM of the test: its namespace and its files.
type guest struct {
	ns, dir string
}

// startVM starts a fake VM on p's tap, eth0 without an address, accepting RAs, and
// waits until its link-local address has passed DAD (dhclient binds to it).
func (r *rig) startVM(t *testing.T, p api.Port) *guest {
	t.Helper()
	g := &guest{ns: "v6vm-" + ovsproc.RandomSuffix(6), dir: t.TempDir()}
	vm, err := fakevm.Start(fakevm.Config{HostNetns: r.ovs.Netns.Name, Tap: api.TapName(p.ID), VMNetns: g.ns, MAC: p.MAC})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Close()
		if err := fakevm.DeleteNetns(g.ns); err != nil {
			t.Error(err)
		}
	})
	for _, kv := range []string{"net.ipv6.conf.eth0.accept_ra=1", "net.ipv6.conf.eth0.autoconf=1"} {
		g.run(t, "sysctl", "-q", "-w", kv)
	}
	hw, _ := net.ParseMAC(p.MAC)
	ll := api.LinkLocal(hw).String()
	waitUntil(t, 10*time.Second, "the link-local address of "+p.Name, func() bool {
		a := g.addrs(t)
		return strings.Contains(a, ll+"/64") && !strings.Contains(a, "tentative")
	})
	return g
}

func (g *guest) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", g.ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", strings.Join(args, " "), g.ns, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (g *guest) addrs(t *testing.T) string {
	return g.run(t, "ip", "-6", "addr", "show", "dev", "eth0")
}

func (g *guest) sysctl(t *testing.T, key string) string { return g.run(t, "sysctl", "-n", key) }

// snmp6 reads a counter of the VM's /proc/net/snmp6.
func (g *guest) snmp6(t *testing.T, name string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `\s+(\d+)$`).FindStringSubmatch(g.run(t, "cat", "/proc/net/snmp6"))
	if m == nil {
		t.Fatalf("no %s in /proc/net/snmp6", name)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// dhclientScript records what dhclient was told (its environment is its own, so
// the output path is written into the script) and configures a bound address.
const dhclientScript = `#!/bin/sh
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
	# An information-request's answer comes as RENEW6 without an address.
	[ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad
	;;
*) exit 0 ;;
esac
env | grep -E '^(reason|new_ip6_address|new_ip6_prefixlen|new_dhcp6_name_servers|new_dhcp6_server_id)=' >"%s.tmp"
mv "%s.tmp" "%s"
exit 0
`

// dhclient runs ISC dhclient -6 in the VM (-S: information-request only) with its
// own config, lease, pid and script, until its script has recorded an answer, and
// returns the recorded variables.
func (g *guest) dhclient(t *testing.T, infoOnly bool) map[string]string {
	t.Helper()
	out := filepath.Join(g.dir, "dhclient.out")
	script := filepath.Join(g.dir, "dhclient.script")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(dhclientScript, out, out, out)), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(g.dir, "dhclient.conf")
	if err := os.WriteFile(conf, []byte("request dhcp6.name-servers;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"netns", "exec", g.ns, "dhclient", "-6", "-d", "-v", "-cf", conf, "-lf", filepath.Join(g.dir, "dhclient.leases"),
		"-pf", filepath.Join(g.dir, "dhclient.pid"), "-sf", script}
	if infoOnly {
		args = append(args, "-S")
	}
	cmd := exec.Command("ip", append(args, "eth0")...)
	logf, err := os.Create(filepath.Join(g.dir, "dhclient.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // our own child, by its pid
		_ = cmd.Wait()
		_ = os.Remove(out)
	}()
	var b []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err = os.ReadFile(out); err == nil {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("dhclient -6 recorded no answer:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = strings.TrimSpace(v)
		}
	}
	return vars
}

// rogueAdvert is a router advertisement a guest might send: from its link-local,
// announcing pfx for SLAAC and itself as the default router.
func rogueAdvert(mac net.HardwareAddr, pfx netip.Prefix) []byte {
	ra := []byte{icmp6RA, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	ra = append(ra, ndOptPrefixInfo, 4, byte(pfx.Bits()), pfxFlagOnLink|pfxFlagAuto)
	ra = binary.BigEndian.AppendUint32(ra, 86400)
	ra = binary.BigEndian.AppendUint32(ra, 14400)
	ra = append(ra, 0, 0, 0, 0)
	b := pfx.Addr().As16()
	ra = append(ra, b[:]...)
	dst, _ := net.ParseMAC(allNodesMAC)
	return buildIPv6Frame(mac, dst, api.LinkLocal(mac), allNodesAddr, ipProtoICMPv6, 255, ra)
}

// waitUntil polls ok until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}
