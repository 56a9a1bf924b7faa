package hostwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/hostwire/fakevm"
	"github.com/lanes-net/lanes/internal/nsexec"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// testVM is a port plumbed by hostwire, attached to br-int, with a fake VM behind it.
type testVM struct {
	port FirewallPort
	ns   string // VM namespace
	ip   string
	vm   *fakevm.VM
}

type dpEnv struct {
	*testHost
	ovs *ovsproc.OVS
	vms map[string]*testVM
	sg  map[string]*api.SecurityGroup
}

func newDPEnv(t *testing.T) *dpEnv {
	ovs := ovsproc.ForTest(t)
	skipUnlessKernel(t)
	e := &dpEnv{testHost: newTestHost(t, ovs.Netns), ovs: ovs, vms: map[string]*testVM{}, sg: map[string]*api.SecurityGroup{}}
	if _, err := ovs.Vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "fail_mode=secure"); err != nil {
		t.Fatal(err)
	}
	if _, err := ovs.Ofctl("add-flow", "br-int", "priority=0,actions=NORMAL"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *dpEnv) addVM(t *testing.T, name string, n int, ip string, vlan int, groups ...string) *testVM {
	t.Helper()
	id := portID(n)
	if err := e.h.EnsurePort(PortSpec{ID: id, MAC: macOf(n), MTU: 1450}); err != nil {
		t.Fatal(err)
	}
	// Test only: in lanes the controller adds qvo through the ovsdb package.
	if _, err := e.ovs.Vsctl("add-port", "br-int", api.QvoName(id), "tag="+strconv.Itoa(vlan)); err != nil {
		t.Fatal(err)
	}
	v := &testVM{ns: "ltvm-" + ovsproc.RandomSuffix(6), ip: ip,
		port: FirewallPort{ID: id, NetworkID: testNet, MAC: macOf(n), FixedIPs: []string{ip}, PortSecurity: true, SecurityGroups: groups}}
	t.Cleanup(func() { _ = fakevm.DeleteNetns(v.ns) })
	vm, err := fakevm.Start(fakevm.Config{HostNetns: e.ns.Name, Tap: api.TapName(id), VMNetns: v.ns, MAC: macOf(n), IP: ip + "/24", MTU: 1450})
	if err != nil {
		t.Fatal(err)
	}
	v.vm = vm
	t.Cleanup(func() { vm.Close() })
	e.vms[name] = v
	return v
}

// state is the firewall state of all VMs, with group members derived from the ports.
func (e *dpEnv) state() FirewallState {
	st := FirewallState{Groups: e.sg, Members: map[string]map[string][]string{}}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for k := range e.vms {
			if !yield(k) {
				return
			}
		}
	}) {
		v := e.vms[n]
		st.Ports = append(st.Ports, v.port)
		for _, g := range v.port.SecurityGroups {
			if st.Members[g] == nil {
				st.Members[g] = map[string][]string{}
			}
			st.Members[g][testNet] = append(st.Members[g][testNet], v.port.FixedIPs...)
		}
	}
	return st
}

func (e *dpEnv) sync(t *testing.T) ApplyStats {
	t.Helper()
	return e.apply(t, e.state())
}

func vmExec(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

func ping(v *testVM, dst string, extra ...string) error {
	args := append([]string{"ping", "-c", "1", "-W", "1", "-q"}, extra...)
	out, err := vmExec(v.ns, append(args, dst)...)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w: %s", dst, v.ip, err, out)
	}
	return nil
}

func mustPing(t *testing.T, v *testVM, dst string, extra ...string) {
	t.Helper()
	eventually(t, 10*time.Second, "ping", func() error { return ping(v, dst, extra...) })
}

func mustNotPing(t *testing.T, v *testVM, dst string, extra ...string) {
	t.Helper()
	for range 2 {
		if err := ping(v, dst, extra...); err == nil {
			t.Fatalf("ping %s from %s %v succeeded, want it dropped", dst, v.ip, extra)
		}
	}
}

// inNS runs fn on a thread inside the VM's namespace; sockets made there stay there.
func inNS(t *testing.T, ns string, fn func() error) error {
	t.Helper()
	return nsexec.DoPath(ns, fn)
}

// listen starts TCP listeners in the VM that accept and close connections.
func listen(t *testing.T, v *testVM, ports ...int) {
	t.Helper()
	for _, p := range ports {
		var l net.Listener
		if err := inNS(t, v.ns, func() (err error) {
			l, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}

func connect(t *testing.T, from *testVM, dst string, port int) error {
	return inNS(t, from.ns, func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(dst, strconv.Itoa(port)), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

func mustConnect(t *testing.T, from *testVM, dst string, port int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("tcp %s -> %s:%d", from.ip, dst, port), func() error { return connect(t, from, dst, port) })
}

func mustNotConnect(t *testing.T, from *testVM, dst string, port int) {
	t.Helper()
	if err := connect(t, from, dst, port); err == nil {
		t.Fatalf("tcp %s -> %s:%d connected, want it dropped", from.ip, dst, port)
	}
}

// echoRequests counts the ICMP echo requests a VM's kernel received (Icmp InEchos):
// other frames, such as the bridge's own multicast, may reach any VM at any time.
func echoRequests(t *testing.T, v *testVM) int {
	t.Helper()
	out, err := vmExec(v.ns, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InEchos" && i < len(f) {
				v, _ := strconv.Atoi(f[i])
				return v
			}
		}
	}
	t.Fatalf("no Icmp InEchos in /proc/net/snmp:\n%s", out)
	return 0
}

func TestDataPath(t *testing.T) {
	e := newDPEnv(t)
	e.sg["client"] = &api.SecurityGroup{ID: "client", Rules: []api.Rule{
		{Direction: api.Egress, Ethertype: api.IPv4},
		{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
	}}
	e.sg["server"] = &api.SecurityGroup{ID: "server", Rules: []api.Rule{
		{Direction: api.Egress, Ethertype: api.IPv4},
		{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
		{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 68, PortMax: 68},
	}}
	e.sg["other"] = &api.SecurityGroup{ID: "other", Rules: []api.Rule{
		{Direction: api.Egress, Ethertype: api.IPv4},
		{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
	}}
	a := e.addVM(t, "a", 1, "10.0.0.1", 1, "client")
	b := e.addVM(t, "b", 2, "10.0.0.2", 1, "server")
	c := e.addVM(t, "c", 3, "10.0.0.3", 1, "other")
	d := e.addVM(t, "d", 4, "10.0.0.2", 2, "other") // B's address, other VLAN
	e.sync(t)
	listen(t, b, 22, 80, 5432)
	inB := IngressChain(b.port.ID)

	t.Run("same VLAN ping", func(t *testing.T) {
		mustPing(t, a, "10.0.0.2")
		mustPing(t, c, "10.0.0.1")
	})

	t.Run("other VLAN not reached", func(t *testing.T) {
		before := echoRequests(t, d)
		_, _ = vmExec(a.ns, "ip", "neigh", "flush", "all") // force ARP broadcasts
		for range 3 {
			mustPing(t, a, "10.0.0.2")
		}
		if out, _ := vmExec(a.ns, "ip", "neigh", "show", "10.0.0.2"); !strings.Contains(out, macOf(2)) {
			t.Errorf("A resolved 10.0.0.2 to %q, want B's MAC %s", out, macOf(2))
		}
		if after := echoRequests(t, d); after != before {
			t.Errorf("D (VLAN 2, same IP as B) received %d echo requests", after-before)
		}
		mustNotPing(t, d, "10.0.0.1")
	})

	t.Run("security groups", func(t *testing.T) {
		c22 := e.counter(t, V4, "filter", inB, "--dport 22 ")
		cDrop := e.counter(t, V4, "filter", ChainFallback, "-j DROP")
		mustConnect(t, a, "10.0.0.2", 22)
		mustNotConnect(t, a, "10.0.0.2", 80)
		if n := e.counter(t, V4, "filter", inB, "--dport 22 "); n <= c22 {
			t.Errorf("tcp/22 rule counter %d -> %d, want growth", c22, n)
		}
		if n := e.counter(t, V4, "filter", ChainFallback, "-j DROP"); n <= cDrop {
			t.Errorf("fallback drop counter %d -> %d, want growth", cDrop, n)
		}
	})

	t.Run("rule change rewrites only the changed chain", func(t *testing.T) {
		outA := EgressChain(a.port.ID)
		before := e.counter(t, V4, "filter", outA, "RELATED,ESTABLISHED")
		if before == 0 {
			t.Fatal("A's egress RELATED,ESTABLISHED counter is 0: earlier traffic did not pass it")
		}
		e.sg["server"].Rules = append(e.sg["server"].Rules, api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 80, PortMax: 80})
		s := e.sync(t)
		if s.Tables != 1 || s.ChainsWritten != 1 {
			t.Errorf("rule change wrote %+v, want B's ingress chain only", s)
		}
		if after := e.counter(t, V4, "filter", outA, "RELATED,ESTABLISHED"); after < before {
			t.Errorf("A's chain was rewritten: counter %d -> %d", before, after)
		}
		mustConnect(t, a, "10.0.0.2", 80)
	})

	t.Run("remove group from port", func(t *testing.T) {
		e.vms["b"].port.SecurityGroups = nil
		e.sync(t)
		mustNotPing(t, a, "10.0.0.2")
		mustNotConnect(t, a, "10.0.0.2", 22)
		e.vms["b"].port.SecurityGroups = []string{"server"}
		e.sync(t)
		mustPing(t, a, "10.0.0.2")
	})

	t.Run("remote group", func(t *testing.T) {
		e.sg["server"].Rules = append(e.sg["server"].Rules, api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 5432, PortMax: 5432, RemoteGroupID: "client"})
		e.sync(t)
		set := SetName(V4, "client", testNet)
		mustConnect(t, a, "10.0.0.2", 5432)
		mustNotConnect(t, c, "10.0.0.2", 5432)
		// C joins the client group: the set grows, C gets in.
		e.vms["c"].port.SecurityGroups = []string{"other", "client"}
		s := e.sync(t)
		if s.SetsWritten != 1 {
			t.Errorf("join wrote %+v, want one set", s)
		}
		if out := e.sh(t, "ipset", "list", set); !strings.Contains(out, "10.0.0.3") {
			t.Fatalf("C not in %s:\n%s", set, out)
		}
		mustConnect(t, c, "10.0.0.2", 5432)
		// C leaves: only the set changes for B (C's own chains change with its groups).
		e.vms["c"].port.SecurityGroups = []string{"other"}
		e.sync(t)
		if out := e.sh(t, "ipset", "list", set); strings.Contains(out, "10.0.0.3") {
			t.Fatalf("C still in %s:\n%s", set, out)
		}
		mustNotConnect(t, c, "10.0.0.2", 5432)
		// A member port on another host comes and goes: the set alone changes.
		st := e.state()
		st.Members["client"][testNet] = append(st.Members["client"][testNet], "10.0.0.77")
		if s := e.apply(t, st); s.SetsWritten != 1 || s.Tables != 0 {
			t.Errorf("remote member add wrote %+v", s)
		}
		if s := e.sync(t); s.SetsWritten != 1 || s.Tables != 0 {
			t.Errorf("remote member removal wrote %+v", s)
		}
	})

	t.Run("anti-spoofing", func(t *testing.T) {
		spoofA := SpoofChain(a.port.ID)
		drops := e.counter(t, V4, "filter", spoofA, "-j DROP")
		if out, err := vmExec(a.ns, "ip", "addr", "add", "10.0.0.99/24", "dev", "eth0"); err != nil {
			t.Fatal(out)
		}
		mustNotPing(t, a, "10.0.0.2", "-I", "10.0.0.99")
		if out, err := vmExec(a.ns, "ip", "addr", "del", "10.0.0.99/24", "dev", "eth0"); err != nil {
			t.Fatal(out)
		}
		mustPing(t, a, "10.0.0.2")
		if out, err := vmExec(a.ns, "ip", "link", "set", "eth0", "address", "fa:16:3e:99:99:99"); err != nil {
			t.Fatal(out)
		}
		mustNotPing(t, a, "10.0.0.2")
		if out, err := vmExec(a.ns, "ip", "link", "set", "eth0", "address", macOf(1)); err != nil {
			t.Fatal(out)
		}
		mustPing(t, a, "10.0.0.2")
		if n := e.counter(t, V4, "filter", spoofA, "-j DROP"); n < drops+4 {
			t.Errorf("spoof drop counter %d -> %d, want at least 4 more", drops, n)
		}
	})

	t.Run("DHCP server reply from VM dropped", func(t *testing.T) {
		got := udpListener(t, b, 68)
		rule := e.counter(t, V4, "filter", EgressChain(a.port.ID), "Prevent DHCP Spoofing")
		// Control: the same crafted frame from another source port arrives.
		eventually(t, 10*time.Second, "crafted UDP frame delivered", func() error {
			sendUDP(t, a, macOf(2), "10.0.0.1", "10.0.0.2", 1067, 68)
			select {
			case <-got:
				return nil
			case <-time.After(300 * time.Millisecond):
				return errors.New("not received")
			}
		})
		sendUDP(t, a, macOf(2), "10.0.0.1", "10.0.0.2", 67, 68)
		select {
		case p := <-got:
			t.Fatalf("DHCP server reply from VM A reached B (source port %d)", p)
		case <-time.After(time.Second):
		}
		if n := e.counter(t, V4, "filter", EgressChain(a.port.ID), "Prevent DHCP Spoofing"); n != rule+1 {
			t.Errorf("DHCP spoofing drop counter %d -> %d, want +1", rule, n)
		}
	})

	t.Run("port security off", func(t *testing.T) {
		mustNotConnect(t, c, "10.0.0.2", 5432)
		e.vms["b"].port.PortSecurity = false
		e.sync(t)
		mustConnect(t, c, "10.0.0.2", 5432)
		if out := e.sh(t, "iptables-save", "-t", "filter"); strings.Contains(out, ":"+inB) {
			t.Errorf("unfiltered port still has its chains")
		}
	})

	t.Run("teardown", func(t *testing.T) {
		for _, n := range []string{"a", "b", "c", "d"} {
			v := e.vms[n]
			v.vm.Close()
			if err := e.h.DeletePort(v.port.ID); err != nil {
				t.Fatal(err)
			}
			delete(e.vms, n)
		}
		e.sync(t)
		if ps, err := e.h.ListPorts(); err != nil || len(ps) != 0 {
			t.Fatalf("ports left: %+v %v", ps, err)
		}
		for _, id := range []string{a.port.ID, b.port.ID, c.port.ID, d.port.ID} {
			assertNoTrace(t, e.testHost, id)
		}
	})
}

// udpListener receives UDP datagrams on port in the VM and reports their source port.
func udpListener(t *testing.T, v *testVM, port int) <-chan int {
	var pc net.PacketConn
	if err := inNS(t, v.ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan int, 16)
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ch <- from.(*net.UDPAddr).Port
		}
	}()
	return ch
}

// sendUDP writes a hand-made Ethernet/IPv4/UDP frame on the VM's eth0 through a raw
// packet socket, bypassing the VM's own stack (as a rogue DHCP server would).
func sendUDP(t *testing.T, v *testVM, dstMAC, src, dst string, sport, dport int) {
	t.Helper()
	smac, _ := net.ParseMAC(macOf(0))
	if out, err := vmExec(v.ns, "cat", "/sys/class/net/eth0/address"); err == nil {
		smac, _ = net.ParseMAC(strings.TrimSpace(out))
	}
	dmac, _ := net.ParseMAC(dstMAC)
	payload := []byte("lanes test")
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], uint16(sport))
	binary.BigEndian.PutUint16(udp[2:], uint16(dport))
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload) // checksum 0: none, allowed for UDP over IPv4
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	copy(ip[12:], net.ParseIP(src).To4())
	copy(ip[16:], net.ParseIP(dst).To4())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	frame := append(append(append(append([]byte{}, dmac...), smac...), 0x08, 0x00), append(ip, udp...)...)
	err := inNS(t, v.ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: 0x0008, Halen: 6,
			Addr: [8]byte{dmac[0], dmac[1], dmac[2], dmac[3], dmac[4], dmac[5]}})
	})
	if err != nil {
		t.Fatalf("send crafted frame: %v", err)
	}
}
