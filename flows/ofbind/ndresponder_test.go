package ofbind_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/flows/internal/golden"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// ndHost is a private OVS with br-int and br-tun as lanes wires them, one VXLAN
// port towards a peer that does not exist, and a "VM": a network namespace whose
// eth0 is a veth into br-int, so that its kernel resolves neighbours through the
// pipeline.
type ndHost struct {
	t  *testing.T
	o  *ovsproc.OVS
	vm *ovsproc.Netns
}

const (
	ndVMMAC     = "fa:16:3e:00:00:01"
	ndRemoteMAC = "fa:16:3e:00:00:02"
	ndRouterMAC = "fa:16:3e:00:00:fe"
	ndLocalVLAN = 1
)

func (h *ndHost) vsctl(args ...string) string {
	h.t.Helper()
	out, err := h.o.Vsctl(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *ndHost) vmExec(args ...string) string {
	h.t.Helper()
	out, err := h.vm.Exec(args[0], args[1:]...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *ndHost) ofport(iface string) uint32 {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := strconv.Atoi(strings.TrimSpace(h.vsctl("get", "Interface", iface, "ofport")))
		if err == nil && n > 0 {
			return uint32(n)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("interface %s has no ofport", iface)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newNDHost(t *testing.T) *ndHost {
	o := ovsproc.ForTest(t)
	h := &ndHost{t: t, o: o, vm: ovsproc.NetnsForTest(t)}
	// ofnet keys its switches by datapath ID in one process-wide map: random ones.
	for _, br := range []flows.Bridge{flows.BrInt, flows.BrTun} {
		h.vsctl("add-br", string(br), "--", "set", "bridge", string(br), "datapath_type=netdev", "fail_mode=secure",
			"protocols=OpenFlow10,OpenFlow13,OpenFlow15", fmt.Sprintf("other_config:datapath-id=%016x", rand.Uint64()>>8))
	}
	h.vsctl("add-port", "br-int", "patch-tun", "--", "set", "interface", "patch-tun", "type=patch", "options:peer=patch-int",
		"--", "add-port", "br-tun", "patch-int", "--", "set", "interface", "patch-int", "type=patch", "options:peer=patch-tun", "ofport_request=1",
		"--", "add-port", "br-tun", "vxlan-c0000202", "--", "set", "interface", "vxlan-c0000202", "type=vxlan",
		"options:key=flow", "options:remote_ip=192.0.2.2", "ofport_request=2")
	if out, err := o.Netns.Exec("ip", "link", "add", "qvo-nd", "type", "veth", "peer", "name", "eth0", "netns", h.vm.Name); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	if out, err := o.Netns.Exec("ip", "link", "set", "qvo-nd", "up"); err != nil {
		t.Fatalf("veth up: %v: %s", err, out)
	}
	// No duplicate address detection and no router solicitations: the test counts
	// every solicitation the VM sends.
	h.vmExec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.conf.eth0.router_solicitations=0")
	h.vmExec("ip", "link", "set", "eth0", "address", ndVMMAC, "up")
	h.vmExec("ip", "-6", "addr", "add", "fd00:1::1/64", "dev", "eth0", "nodad")
	h.vsctl("add-port", "br-int", "qvo-nd", fmt.Sprintf("tag=%d", ndLocalVLAN))
	return h
}

// install puts d's flows on both bridges: br-tun's as lanesd sends them, in an
// OpenFlow 1.5 bundle encoded by this package (through controller/ofsync), br-int's
// with ovs-ofctl from the text Flow.String renders (TestBindingAgreesWithRenderer
// holds the encoding to that text). extraTun are test probes added to br-tun after.
func (h *ndHost) install(d flows.Desired, extraTun ...string) {
	h.t.Helper()
	s, err := d.Flows()
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tun := ofsync.Open(ctx, string(flows.BrTun), h.o.MgmtSocket(string(flows.BrTun)), 1, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	h.t.Cleanup(func() { cancel(); tun.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := tun.Sync(s.Flows(flows.BrTun))
		if err == nil {
			break
		}
		if !errors.Is(err, ofsync.ErrNotConnected) || time.Now().After(deadline) {
			h.t.Fatalf("sync br-tun: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var lines []string
	for _, f := range s.Flows(flows.BrInt) {
		lines = append(lines, strings.TrimSpace(f.String()))
	}
	h.addFlows(flows.BrInt, lines)
	h.addFlows(flows.BrTun, extraTun)
}

func (h *ndHost) addFlows(b flows.Bridge, lines []string) {
	h.t.Helper()
	if len(lines) == 0 {
		return
	}
	file := filepath.Join(h.t.TempDir(), string(b)+".flows")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if out, err := h.o.Ofctl15("--bundle", "add-flows", string(b), file); err != nil {
		h.t.Fatalf("add-flows %s: %v: %s", b, err, out)
	}
}

var nPackets = regexp.MustCompile(`n_packets=(\d+)`)

// packets is the packet count of the br-tun flow whose dump contains match. It
// first purges the datapath flows, so that the counts of packets the datapath
// switched itself (without an upcall) have reached the OpenFlow flows.
func (h *ndHost) packets(match string) int {
	h.t.Helper()
	if out, err := h.o.Appctl("revalidator/purge"); err != nil {
		h.t.Fatalf("revalidator/purge: %v: %s", err, out)
	}
	out, err := h.o.Ofctl15("dump-flows", "--no-names", "br-tun")
	if err != nil {
		h.t.Fatal(err)
	}
	found := -1
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, match) {
			continue
		}
		if found >= 0 {
			h.t.Fatalf("two br-tun flows contain %q:\n%s", match, out)
		}
		m := nPackets.FindStringSubmatch(l)
		if m == nil {
			h.t.Fatalf("no n_packets in %q", l)
		}
		found, _ = strconv.Atoi(m[1])
	}
	if found < 0 {
		h.t.Fatalf("no br-tun flow contains %q:\n%s", match, out)
	}
	return found
}

// neighbour polls the VM's neighbour table until addr resolves (the VM keeps
// asking by pinging it), and returns the entry.
func (h *ndHost) neighbour(addr string) string {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, _ = h.vm.Exec("ping", "-6", "-c1", "-W1", addr)
		entry := h.vmExec("ip", "-6", "neigh", "show", strings.Split(addr, "%")[0], "dev", "eth0")
		if strings.Contains(entry, "lladdr") {
			return entry
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s not resolved: %q", addr, entry)
		}
	}
}

// snmp6 is a counter of the VM's IPv6 stack (/proc/net/snmp6).
func (h *ndHost) snmp6(name string) int {
	h.t.Helper()
	for _, l := range strings.Split(h.vmExec("cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	h.t.Fatalf("no %s in /proc/net/snmp6", name)
	return 0
}

// probeNS counts, in front of table 22's flood flow, every solicitation that would
// be flooded to the tunnels; it forwards like the flood flow.
const probeNS = "table=22, priority=100,icmp6,dl_vlan=1,icmp_type=135 actions=pop_vlan,set_field:0x64->tun_id,output:2"

// TestNDResponderOnRealOVS: the VM's kernel resolves a remote port's global and
// link-local addresses from advertisements br-tun makes out of its solicitations
// (checksums right, the remote port's MAC, the router flag only for a router's
// port), none of those solicitations is flooded to the tunnel, and a duplicate
// address probe is flooded unanswered.
func TestNDResponderOnRealOVS(t *testing.T) {
	h := newNDHost(t)
	vmPort := flows.LocalPort{ID: "vm", NetworkID: "net-a", Ofport: h.ofport("qvo-nd"), MAC: golden.MAC(ndVMMAC),
		IPs: golden.Addrs("fd00:1::1")}
	remote := flows.RemotePort{ID: "remote", NetworkID: "net-a", MAC: golden.MAC(ndRemoteMAC),
		IPs: golden.Addrs("10.0.0.2", "fd00:1::2"), HostIP: netip.MustParseAddr("192.0.2.2")}
	router := flows.RemotePort{ID: "router", NetworkID: "net-a", MAC: golden.MAC(ndRouterMAC),
		IPs: golden.Addrs("fd00:1::fe"), HostIP: netip.MustParseAddr("192.0.2.2"), Router: true}
	h.install(flows.Desired{
		TunnelType:     "vxlan",
		PatchIntOfport: h.ofport("patch-int"),
		Networks:       []flows.Network{{ID: "net-a", VNI: 100, LocalVLAN: ndLocalVLAN}},
		Tunnels:        []flows.Tunnel{{RemoteIP: netip.MustParseAddr("192.0.2.2"), Ofport: h.ofport("vxlan-c0000202")}},
		LocalPorts:     []flows.LocalPort{vmPort},
		RemotePorts:    []flows.RemotePort{remote, router},
	}, probeNS)
	csumErrors := h.snmp6("Icmp6InCsumErrors")

	for _, c := range []struct{ addr, mac string }{
		{"fd00:1::2", ndRemoteMAC},
		{"fe80::f816:3eff:fe00:2%eth0", ndRemoteMAC},
		{"fd00:1::fe", ndRouterMAC},
	} {
		entry := h.neighbour(c.addr)
		if !strings.Contains(entry, "lladdr "+c.mac+" ") {
			t.Errorf("%s: neighbour entry %q, want lladdr %s", c.addr, entry, c.mac)
		}
		if isRouter := strings.Contains(entry, " router "); isRouter != (c.mac == ndRouterMAC) {
			t.Errorf("%s: neighbour entry %q: router flag %v", c.addr, entry, isRouter)
		}
		target := strings.Split(c.addr, "%")[0]
		if n := h.packets("nd_target=" + target + " "); n == 0 {
			t.Errorf("%s: the responder flow counted no solicitation", target)
		}
	}
	if n := h.snmp6("Icmp6InCsumErrors"); n != csumErrors {
		t.Errorf("the VM counted %d ICMPv6 checksum errors", n-csumErrors)
	}
	if n := h.packets("priority=100,icmp6,dl_vlan=1,icmp_type=135"); n != 0 {
		t.Errorf("%d solicitations were flooded to the tunnel", n)
	}

	// A duplicate address probe for a remote port's address must not be answered
	// (the VM would give up an address the store says is the remote port's only if
	// that port itself defends it), and goes to the tunnels as before.
	h.vmExec("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1")
	h.vmExec("ip", "-6", "addr", "add", "fd00:1::2/64", "dev", "eth0")
	deadline := time.Now().Add(15 * time.Second)
	for h.packets("priority=100,icmp6,dl_vlan=1,icmp_type=135") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the duplicate address probe was not flooded")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := h.packets("priority=2,icmp6,ipv6_src=::,icmp_type=135"); n == 0 {
		t.Error("the probe did not take table 21's DAD flow")
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		addr := h.vmExec("ip", "-6", "addr", "show", "dev", "eth0", "to", "fd00:1::2/128")
		if strings.Contains(addr, "dadfailed") {
			t.Fatalf("the probe was answered: %s", addr)
		}
		if strings.Contains(addr, "fd00:1::2") && !strings.Contains(addr, "tentative") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DAD did not finish: %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNDAntiSpoofingOnRealOVS traces neighbour discovery and IPv6 frames a VM port
// might forge through br-int's installed pipeline: only its own addresses and MACs
// (fixed, link-local, allowed address pair) pass.
func TestNDAntiSpoofingOnRealOVS(t *testing.T) {
	h := newNDHost(t)
	const pairMAC, foreign = "fa:16:3e:00:00:99", "fa:16:3e:00:00:66"
	ofport := h.ofport("qvo-nd")
	vmPort := flows.LocalPort{ID: "vm", NetworkID: "net-a", Ofport: ofport, MAC: golden.MAC(ndVMMAC),
		IPs:                 golden.Addrs("fd00:1::1"),
		AllowedAddressPairs: []flows.AddressPair{{Prefix: netip.MustParsePrefix("fd00:1::50/128"), MAC: golden.MAC(pairMAC)}}}
	h.install(flows.Desired{
		TunnelType:     "vxlan",
		PatchIntOfport: h.ofport("patch-int"),
		Networks:       []flows.Network{{ID: "net-a", VNI: 100, LocalVLAN: ndLocalVLAN}},
		LocalPorts:     []flows.LocalPort{vmPort},
	})
	nd := func(typ int, src, target, lladdr string) string {
		opt := "nd_sll"
		if typ == 136 {
			opt = "nd_tll"
		}
		return fmt.Sprintf("in_port=%d,dl_src=%s,dl_dst=33:33:ff:00:00:02,ipv6,nw_proto=58,ipv6_src=fe80::1,ipv6_dst=ff02::1:ff00:2,nw_ttl=255,"+
			"icmpv6_type=%d,icmpv6_code=0,nd_target=%s,%s=%s", ofport, src, typ, target, opt, lladdr)
	}
	const zero = "00:00:00:00:00:00"
	for _, c := range []struct {
		name, flow string
		pass       bool
	}{
		{"solicitation", nd(135, ndVMMAC, "fd00:1::2", ndVMMAC), true},
		{"solicitation without source option", nd(135, ndVMMAC, "fd00:1::2", zero), true},
		{"solicitation naming the pair's MAC", nd(135, ndVMMAC, "fd00:1::2", pairMAC), true},
		{"solicitation naming a foreign MAC", nd(135, ndVMMAC, "fd00:1::2", foreign), false},
		{"solicitation from a foreign MAC", nd(135, foreign, "fd00:1::2", ndVMMAC), false},
		{"advertisement of its address", nd(136, ndVMMAC, "fd00:1::1", ndVMMAC), true},
		{"advertisement of its link-local address", nd(136, ndVMMAC, "fe80::f816:3eff:fe00:1", ndVMMAC), true},
		{"advertisement without target option", nd(136, ndVMMAC, "fd00:1::1", zero), true},
		{"advertisement of the pair", nd(136, pairMAC, "fd00:1::50", pairMAC), true},
		{"advertisement of a neighbour's address", nd(136, ndVMMAC, "fd00:1::2", ndVMMAC), false},
		{"advertisement naming a foreign MAC", nd(136, ndVMMAC, "fd00:1::1", foreign), false},
		{"advertisement from a foreign MAC", nd(136, foreign, "fd00:1::1", ndVMMAC), false},
		{"UDP from its MAC", fmt.Sprintf("in_port=%d,udp6,dl_src=%s,dl_dst=%s,ipv6_src=fd00:1::1,ipv6_dst=fd00:1::2", ofport, ndVMMAC, ndRemoteMAC), true},
		{"UDP from a foreign MAC", fmt.Sprintf("in_port=%d,udp6,dl_src=%s,dl_dst=%s,ipv6_src=fd00:1::1,ipv6_dst=fd00:1::2", ofport, foreign, ndRemoteMAC), false},
	} {
		out, err := h.o.Trace("br-int", c.flow, false)
		if err != nil {
			t.Fatalf("%s: %v: %s", c.name, err, out)
		}
		var dp string
		for _, l := range strings.Split(out, "\n") {
			if after, ok := strings.CutPrefix(l, "Datapath actions: "); ok {
				dp = after
			}
		}
		if passed := dp != "" && dp != "drop"; passed != c.pass {
			t.Errorf("%s: datapath actions %q, want pass=%v\n%s", c.name, dp, c.pass, out)
		}
	}
}
