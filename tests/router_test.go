package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/lab"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

func withL3(hosts ...string) labOption { return func(c *lab.Config) { c.L3 = hosts } }

// whoami answers every TCP connection in a namespace with the address it came from,
// so a test sees what source address NAT left on the packets.
func whoami(t *testing.T, ns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintln(c, host)
			c.Close()
		}
	}()
}

// askWho connects from a namespace and returns what whoami answered.
func askWho(ns, addr string) (string, error) {
	c, err := dialIn(ns, addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// inRouter runs a command in a router's namespace on lab host h. lanesd runs in the
// host's own mount namespace (ip netns exec makes one), so the qrouter- namespaces it
// adds are mounted there only: the command enters lanesd's mount namespace first.
func inRouter(l *lab.Lab, h *lab.Host, ns string, args ...string) (string, error) {
	pid := h.LanesdPID()
	if pid == 0 {
		return "", fmt.Errorf("lanesd on %s is not running", h.Name)
	}
	cmd := append([]string{"-t", fmt.Sprint(pid), "-m", "-n", "ip", "netns", "exec", ns}, args...)
	out, err := exec.Command("nsenter", cmd...).CombinedOutput()
	return string(out), err
}

// TestRouters: two networks on one router reach each other and, through SNAT, the
// outside; a floating IP makes a VM reachable from the outside; a third network with
// an overlapping CIDR on another router reaches neither; removing the floating IP
// and the interfaces ends it all and leaves nothing behind.
func TestRouters(t *testing.T) {
	l := newLab(t, 2, withL3("h2"))
	h1, h2 := l.Host("h1"), l.Host("h2")
	out := l.Outside()
	ctl(t, l, h1, "network", "create", "public", "--external", "--provider", "flat", "--physnet", "physnet1",
		"--cidr", lab.ExternalCIDR, "--gateway", lab.OutsideIP, "--allocation-pool", "203.0.113.10-203.0.113.99")
	ctl(t, l, h1, "network", "create", "blue", "--cidr", "10.1.0.0/24", "--gateway", "10.1.0.1")
	ctl(t, l, h1, "network", "create", "green", "--cidr", "10.2.0.0/24", "--gateway", "10.2.0.1")
	ctl(t, l, h1, "network", "create", "red", "--cidr", "10.1.0.0/16", "--gateway", "10.1.0.254")
	ctl(t, l, h1, "sg", "create", "open")
	ctl(t, l, h1, "sg", "rule", "add", "open", "--direction", "ingress", "--protocol", "icmp")
	ctl(t, l, h1, "sg", "rule", "add", "open", "--direction", "ingress", "--protocol", "tcp", "--port", "22")
	ctl(t, l, h1, "sg", "rule", "add", "open", "--direction", "egress")
	var r1, r2 []struct {
		ID   string `json:"id"`
		Host string `json:"active_host"`
	}
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "router", "create", "r1")), &r1)
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "router", "create", "r2")), &r2)
	if len(r1) != 1 || r1[0].Host != "h2" || len(r2) != 1 {
		t.Fatalf("routers %+v %+v: want them on the L3 host h2", r1, r2)
	}
	t.Cleanup(func() { // a failed test must not leave namespaces behind either
		for _, r := range append(r1, r2...) {
			(&ovsproc.Netns{Name: "qrouter-" + r.ID}).Delete()
		}
	})
	start := time.Now()
	ctl(t, l, h1, "router", "add-interface", "r1", "blue")
	ctl(t, l, h1, "router", "add-interface", "r1", "green")
	ctl(t, l, h1, "router", "set-gateway", "r1", "public")
	ctl(t, l, h1, "router", "add-interface", "r2", "red")

	sg := []string{"--sg", "open"}
	blue, _ := vm(t, l, "h1", "vblue", "blue", "10.1.0.5", sg...)
	green, _ := vm(t, l, "h1", "vgreen", "green", "10.2.0.5", sg...)
	red, _ := vm(t, l, "h1", "vred", "red", "10.1.0.6", sg...)
	for _, v := range []struct {
		vm *lab.VM
		gw string
	}{{blue, "10.1.0.1"}, {green, "10.2.0.1"}, {red, "10.1.0.254"}} {
		if _, err := l.VMExec(v.vm, "ip", "route", "add", "default", "via", v.gw); err != nil {
			t.Fatal(err)
		}
	}
	ns1 := "qrouter-" + r1[0].ID
	eventually(t, 30*time.Second, "blue reaches green through r1", func() error { return ping(l, blue, "10.2.0.5") })
	t.Logf("router with 2 interfaces: add-interface to first routed ping %v", time.Since(start).Round(time.Millisecond))
	if err := ping(l, green, "10.1.0.5"); err != nil {
		t.Fatalf("green -> blue: %v", err)
	}
	whoami(t, green.Netns, "0.0.0.0:22")
	if who, err := askWho(blue.Netns, "10.2.0.5:22"); err != nil || who != "10.1.0.5" {
		t.Fatalf("blue -> green tcp/22: %q, %v (want blue's own address: no NAT between a router's networks)", who, err)
	}
	// red overlaps blue, on another router: its 10.2.0.5 is not green.
	eventually(t, 30*time.Second, "red reaches its gateway on r2", func() error { return ping(l, red, "10.1.0.254") })
	if err := ping(l, red, "10.2.0.5"); err == nil {
		t.Fatal("red reached green through a router it is not attached to")
	}

	// SNAT: the outside sees the router's external address.
	whoami(t, out, lab.OutsideIP+":80")
	var rs []struct {
		Gateway struct{ IP string } `json:"external_gateway"`
	}
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "router", "show", "r1")), &rs)
	extIP := rs[0].Gateway.IP
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, c := range [][]string{{"ip", "addr"}, {"ip", "route"}, {"iptables", "-t", "nat", "-S"}, {"ping", "-c1", "-W1", lab.OutsideIP}} {
			o, err := inRouter(l, h2, ns1, c...)
			t.Logf("%s: %v\n%s", strings.Join(c, " "), err, o)
		}
		o, _ := l.OVS(h2).Vsctl("show")
		t.Logf("ovs-vsctl show on h2:\n%s", o)
	})
	eventually(t, 30*time.Second, "blue reaches the outside", func() error {
		who, err := askWho(blue.Netns, lab.OutsideIP+":80")
		if err == nil && who != extIP {
			return fmt.Errorf("outside saw %s, want the router's %s", who, extIP)
		}
		return err
	})
	if _, err := askWho(red.Netns, lab.OutsideIP+":80"); err == nil {
		t.Fatal("red reached the outside through a router without gateway")
	}

	// A floating IP: reachable from the outside on tcp/22, and the VM's source.
	var fips []struct{ IP string }
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "fip", "create", "public", "--port", "vgreen")), &fips)
	fip := fips[0].IP
	eventually(t, 30*time.Second, "the outside reaches green on its floating IP", func() error {
		who, err := askWho(out, fip+":22")
		if err == nil && who != lab.OutsideIP {
			return fmt.Errorf("green saw %s, want the outside's own %s", who, lab.OutsideIP)
		}
		return err
	})
	if who, err := askWho(green.Netns, lab.OutsideIP+":80"); err != nil || who != fip {
		t.Fatalf("green -> outside: seen as %q (%v), want its floating IP %s", who, err, fip)
	}
	nat, err := inRouter(l, h2, ns1, "iptables", "-t", "nat", "-S")
	if err != nil || !strings.Contains(nat, "-A lanes-l3-agent-PREROUTING -d "+fip+"/32 -j DNAT --to-destination 10.2.0.5") {
		t.Fatalf("nat rules of %s: %v\n%s", ns1, err, nat)
	}

	// Deleting the floating IP ends reachability from the outside.
	ctl(t, l, h1, "fip", "delete", fip)
	eventually(t, 30*time.Second, "floating IP gone", func() error {
		if _, err := askWho(out, fip+":22"); err == nil {
			return fmt.Errorf("%s:22 still answers", fip)
		}
		return nil
	})
	if nat, _ := inRouter(l, h2, ns1, "iptables", "-t", "nat", "-S"); strings.Contains(nat, fip) {
		t.Fatalf("rules of the deleted floating IP left:\n%s", nat)
	}

	// Removing every interface and the routers leaves nothing on the L3 host.
	for _, c := range [][]string{{"r1", "blue"}, {"r1", "green"}, {"r2", "red"}} {
		ctl(t, l, h1, "router", "remove-interface", c[0], c[1])
	}
	eventually(t, 30*time.Second, "blue no longer reaches green", func() error {
		if err := ping(l, blue, "10.2.0.5"); err == nil {
			return fmt.Errorf("still routed")
		}
		return nil
	})
	ctl(t, l, h1, "router", "delete", "r1")
	ctl(t, l, h1, "router", "delete", "r2")
	eventually(t, 30*time.Second, "namespaces and ports gone", func() error {
		for _, r := range append(r1, r2...) {
			if (&ovsproc.Netns{Name: "qrouter-" + r.ID}).Exists() {
				return fmt.Errorf("qrouter-%s still there", r.ID)
			}
		}
		o, err := l.OVS(h2).Vsctl("show")
		if err != nil {
			return err
		}
		for _, id := range []string{r1[0].ID, r2[0].ID} {
			if strings.Contains(o, "tap"+id[:11]) {
				return fmt.Errorf("qg- peer of %s left on br-ex", id)
			}
		}
		if strings.Count(o, "Port tap") > 0 {
			return fmt.Errorf("router ports left in OVS:\n%s", o)
		}
		return nil
	})
}

// TestRouterFailover makes the router's L3 host fail (its lanesd killed, its
// ovs-vswitchd stopped: no agent, no data path): once its lease has expired the other
// L3 host serves the router and the VM reaches the outside again. (A killed lanesd
// alone leaves its data path forwarding; see docs/routers.md, Limits.)
func TestRouterFailover(t *testing.T) {
	l := newLab(t, 3, withL3("h2", "h3"))
	h1 := l.Host("h1")
	ctl(t, l, h1, "network", "create", "public", "--external", "--provider", "flat", "--physnet", "physnet1",
		"--cidr", lab.ExternalCIDR, "--gateway", lab.OutsideIP)
	ctl(t, l, h1, "network", "create", "blue", "--cidr", "10.1.0.0/24", "--gateway", "10.1.0.1")
	var rs []struct {
		ID   string `json:"id"`
		Host string `json:"active_host"`
	}
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "router", "create", "r1")), &rs)
	ctl(t, l, h1, "router", "add-interface", "r1", "blue")
	ctl(t, l, h1, "router", "set-gateway", "r1", "public")
	t.Cleanup(func() { (&ovsproc.Netns{Name: "qrouter-" + rs[0].ID}).Delete() })
	blue, _ := vm(t, l, "h1", "vblue", "blue", "10.1.0.5", "--sg", "default")
	if _, err := l.VMExec(blue, "ip", "route", "add", "default", "via", "10.1.0.1"); err != nil {
		t.Fatal(err)
	}
	whoami(t, l.Outside(), lab.OutsideIP+":80")
	reach := func() error { _, err := askWho(blue.Netns, lab.OutsideIP+":80"); return err }
	eventually(t, 30*time.Second, "blue reaches the outside", reach)

	first := l.Host(rs[0].Host)
	other := "h2"
	if first.Name == "h2" {
		other = "h3"
	}
	killed := time.Now()
	if err := syscall.Kill(first.LanesdPID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := l.OVS(first).StopVswitchd(); err != nil {
		t.Fatal(err)
	}
	if reach() == nil {
		t.Fatal("the outside still reachable with the L3 host's data path gone")
	}
	eventually(t, 60*time.Second, "the outside reachable again", reach)
	took := time.Since(killed)
	var now []struct {
		Host string `json:"active_host"`
	}
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "router", "show", "r1")), &now)
	if now[0].Host != other {
		t.Fatalf("router active on %q after %s died, want %s", now[0].Host, first.Name, other)
	}
	t.Logf("failover: lanesd of %s killed, outside reachable through %s after %v (lease TTL 10 s)", first.Name, other, took.Round(100*time.Millisecond))
}

// TestRouterSetupTime measures a router with 2 interfaces and 10 floating IPs: from
// router create until the L3 host holds every floating IP's DNAT rule.
func TestRouterSetupTime(t *testing.T) {
	l := newLab(t, 2, withL3("h2"))
	h1, h2 := l.Host("h1"), l.Host("h2")
	ctl(t, l, h1, "network", "create", "public", "--external", "--provider", "flat", "--physnet", "physnet1",
		"--cidr", lab.ExternalCIDR, "--gateway", lab.OutsideIP)
	ctl(t, l, h1, "network", "create", "blue", "--cidr", "10.1.0.0/24")
	ctl(t, l, h1, "network", "create", "green", "--cidr", "10.2.0.0/24")
	for i := range 10 {
		ctl(t, l, h1, "port", "create", fmt.Sprintf("p%d", i), "--network", []string{"blue", "green"}[i%2], "--host", "h1")
	}
	start := time.Now()
	var rs []struct{ ID string }
	json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "router", "create", "r1")), &rs)
	t.Cleanup(func() { (&ovsproc.Netns{Name: "qrouter-" + rs[0].ID}).Delete() })
	ctl(t, l, h1, "router", "add-interface", "r1", "blue")
	ctl(t, l, h1, "router", "add-interface", "r1", "green")
	ctl(t, l, h1, "router", "set-gateway", "r1", "public")
	for i := range 10 {
		ctl(t, l, h1, "fip", "create", "public", "--port", fmt.Sprintf("p%d", i))
	}
	cli := time.Since(start)
	eventually(t, 30*time.Second, "10 floating IPs in the router's NAT table", func() error {
		nat, err := inRouter(l, h2, "qrouter-"+rs[0].ID, "iptables", "-t", "nat", "-S", "lanes-l3-agent-PREROUTING")
		if n := strings.Count(nat, "-j DNAT"); err != nil || n != 10 {
			return fmt.Errorf("%d DNAT rules (%v)", n, err)
		}
		return nil
	})
	t.Logf("router with 2 interfaces and 10 floating IPs: %v in 14 lanesctl calls, realised %v after the first",
		cli.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
