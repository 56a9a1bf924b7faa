package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
)

// udhcpcScript is the event script of the fake VMs' DHCP client (busybox udhcpc): it
// configures eth0 the way a distribution's script does and writes what it was told
// to a file next to it, one variable a line.
const udhcpcScript = `#!/bin/sh
out="$(dirname "$0")/lease-$(cat /proc/sys/kernel/hostname 2>/dev/null || echo x)-$$"
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	for r in $router; do ip route replace default via "$r" dev "$interface"; done
	set -- $staticroutes
	while [ $# -ge 2 ]; do
		[ "$1" != "0.0.0.0/0" ] && ip route replace "$1" via "$2" dev "$interface"
		shift 2
	done
	env | grep -E '^(ip|mask|router|dns|domain|search|hostname|mtu|serverid|lease|staticroutes)=' >"$LANES_LEASE_FILE"
	;;
esac
exit 0
`

// dhcpClient runs udhcpc once in a VM (three DISCOVERs a second apart) and returns
// the variables its script was given; an error if it got no lease.
func dhcpClient(t *testing.T, l *lab.Lab, vm *lab.VM) (map[string]string, error) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.script")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	lease := filepath.Join(dir, "lease")
	cmd := exec.Command("ip", "netns", "exec", vm.Netns, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "1", "-A", "1", "-s", script)
	cmd.Env = append(os.Environ(), "LANES_LEASE_FILE="+lease)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("udhcpc in %s: %w: %s", vm.Name, err, out)
	}
	b, err := os.ReadFile(lease)
	if err != nil {
		return nil, fmt.Errorf("udhcpc in %s exited 0 but its script wrote no lease: %s", vm.Name, out)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// bareVM creates a port (waiting for ACTIVE) and starts a fake VM on it without an
// address; mac, if set, is the MAC the VM's eth0 takes instead of the port's.
func bareVM(t *testing.T, l *lab.Lab, host, name, network, ip, mac string, extra ...string) (*lab.VM, vmPort) {
	t.Helper()
	h := l.Host(host)
	args := append([]string{"-o", "json", "port", "create", name, "--network", network, "--host", host, "--ip", ip, "--wait"}, extra...)
	var p vmPort
	if err := json.Unmarshal([]byte(ctl(t, l, h, args...)), &p); err != nil {
		t.Fatal(err)
	}
	if mac == "" {
		mac = p.MAC
	}
	v, err := l.StartVM(h, name, p.Tap, mac, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return v, p
}

// underlayDHCP captures a host's underlay and returns, when stopped, the decoded
// lines of DHCP inside tunnel packets.
func underlayDHCP(t *testing.T, l *lab.Lab, h *lab.Host) (stop func() []string) {
	t.Helper()
	file := filepath.Join(h.Dir, fmt.Sprintf("dhcp-%d.pcap", time.Now().UnixNano()))
	cmd := exec.Command("ip", "netns", "exec", h.Netns, "tcpdump", "-i", "eth1", "-n", "-U", "-w", file, "udp")
	stderr, _ := cmd.StderrPipe()
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
	return func() []string {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		// tcpdump decodes VXLAN (udp/4789) and prints the inner packet.
		out, err := exec.Command("tcpdump", "-n", "-r", file).Output()
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
		var dhcp []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "BOOTP") || strings.Contains(line, ".67:") || strings.Contains(line, ".68:") {
				dhcp = append(dhcp, line)
			}
		}
		return dhcp
	}
}

// TestDHCP is issue 12's scenario: fake VMs without addresses run a real DHCP client
// and get their port's address, MTU, router, DNS and routes from their own host's
// lanesd; a network with the same CIDR hands out its own; a VM that takes another
// port's MAC gets nothing; no DHCP frame ever reaches the underlay.
func TestDHCP(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox's udhcpc (scripts/deps.sh installs it)")
	}
	l := newLab(t, 2)
	h1, h2 := l.Host("h1"), l.Host("h2")
	ctl(t, l, h1, "network", "create", "net-a", "--cidr", "10.0.0.0/24", "--gateway", "10.0.0.1", "--dns", "10.0.0.53,192.0.2.53",
		"--domain", "a.example", "--route", "192.168.0.0/16,10.0.0.254", "--lease", "1h")
	ctl(t, l, h1, "network", "create", "net-b", "--cidr", "10.0.0.0/24", "--dns", "192.0.2.99", "--search", "b.example")
	for _, bad := range [][]string{
		{"network", "create", "net-c", "--cidr", "10.0.0.0/24", "--gateway", "10.1.0.1"},
		{"network", "update", "net-a", "--dns", "10.0.0.300"},
		{"network", "update", "net-a", "--domain", "not_a_domain"},
		{"network", "update", "net-a", "--route", "192.168.0.0/16"},
	} {
		if out, err := l.Ctl(h1, bad...); err == nil || !strings.Contains(out+err.Error(), "network.") {
			t.Errorf("lanesctl %s: want an error naming the field, got %v: %s", strings.Join(bad, " "), err, out)
		}
	}
	sg := []string{"--sg", "default"}
	a1, pa1 := bareVM(t, l, "h1", "a1", "net-a", "10.0.0.11", "", sg...)
	a2, _ := bareVM(t, l, "h2", "a2", "net-a", "10.0.0.12", "", sg...)
	b1, _ := bareVM(t, l, "h1", "b1", "net-b", "10.0.0.21", "", sg...)
	// Two VMs that take a1's MAC: one behind port security, one without it.
	s1, _ := bareVM(t, l, "h1", "s1", "net-a", "10.0.0.31", pa1.MAC, sg...)
	s2, _ := bareVM(t, l, "h1", "s2", "net-a", "10.0.0.32", pa1.MAC, "--no-port-security")

	stop1, stop2 := underlayDHCP(t, l, h1), underlayDHCP(t, l, h2)
	leases := map[string]map[string]string{}
	for _, vm := range []*lab.VM{a1, a2, b1} {
		vars, err := dhcpClient(t, l, vm)
		if err != nil {
			t.Fatal(err)
		}
		leases[vm.Name] = vars
	}
	for _, vm := range []*lab.VM{s1, s2} {
		if vars, err := dhcpClient(t, l, vm); err == nil {
			t.Errorf("%s, with a1's MAC on its own port, got a lease: %v", vm.Name, vars)
		}
	}
	if lines := append(stop1(), stop2()...); len(lines) > 0 {
		t.Errorf("%d DHCP frames on the underlay:\n%s", len(lines), strings.Join(lines, "\n"))
	}

	t.Run("each VM gets its own port's address and its network's settings", func(t *testing.T) {
		want := map[string]map[string]string{
			"a1": {"ip": "10.0.0.11", "mask": "24", "router": "10.0.0.1", "dns": "10.0.0.53 192.0.2.53", "domain": "a.example", "search": "a.example",
				"hostname": "a1", "mtu": "1450", "serverid": "10.0.0.1", "lease": "3600", "staticroutes": "192.168.0.0/16 10.0.0.254 0.0.0.0/0 10.0.0.1"},
			"a2": {"ip": "10.0.0.12", "router": "10.0.0.1", "dns": "10.0.0.53 192.0.2.53", "hostname": "a2", "mtu": "1450"},
			"b1": {"ip": "10.0.0.21", "mask": "24", "router": "", "dns": "192.0.2.99", "domain": "", "search": "b.example", "hostname": "b1",
				"mtu": "1450", "serverid": "169.254.169.254", "lease": "86400"},
		}
		for vm, vars := range want {
			for k, v := range vars {
				if got := leases[vm][k]; got != v {
					t.Errorf("%s: %s=%q, want %q", vm, k, got, v)
				}
			}
		}
		// The script configured the guests as a distribution's would.
		for _, c := range []struct {
			vm    *lab.VM
			cmd   []string
			wants []string
		}{
			{a1, []string{"ip", "-4", "addr", "show", "eth0"}, []string{"inet 10.0.0.11/24"}},
			{a1, []string{"ip", "link", "show", "eth0"}, []string{"mtu 1450"}},
			{a1, []string{"ip", "route"}, []string{"default via 10.0.0.1", "192.168.0.0/16 via 10.0.0.254"}},
			{b1, []string{"ip", "-4", "addr", "show", "eth0"}, []string{"inet 10.0.0.21/24"}},
		} {
			out, err := l.VMExec(c.vm, c.cmd[0], c.cmd[1:]...)
			for _, w := range c.wants {
				if err != nil || !strings.Contains(out, w) {
					t.Errorf("%s: %s: want %q in %q (%v)", c.vm.Name, strings.Join(c.cmd, " "), w, out, err)
				}
			}
		}
		eventually(t, 10*time.Second, "a1 pings a2 across hosts with the addresses DHCP gave", func() error { return ping(l, a1, "10.0.0.12") })
	})

	t.Run("status, trace and metrics show the answers and refusals", func(t *testing.T) {
		var st api.StatusReport
		localCtl(t, l, "h1", &st, "status")
		got := map[string]*api.DHCPReport{}
		for _, p := range st.Ports {
			got[p.Name] = p.DHCP
		}
		if r := got["a1"]; r == nil || !r.Serving || r.Address != "10.0.0.11" || r.Answered < 2 || r.Refused != 0 || !strings.Contains(r.Last, "ACK 10.0.0.11") {
			t.Errorf("a1's DHCP report: %+v", r)
		}
		if r := got["s2"]; r == nil || r.Answered != 0 || r.Refused < 1 || !strings.Contains(r.Last, "not the port's MAC") {
			t.Errorf("s2 (a1's MAC, no port security): %+v", r)
		}
		if r := got["s1"]; r == nil || r.Answered != 0 || r.Refused != 0 {
			t.Errorf("s1 (a1's MAC behind port security, dropped by table 25 before lanesd): %+v", r)
		}
		var tr api.TraceReport
		localCtl(t, l, "h1", &tr, "trace", "--from-port", "a1", "--dhcp")
		if !strings.HasPrefix(tr.Result, "to lanesd") || tr.Tunnel != "" || !strings.Contains(tr.Result, "10.0.0.11") {
			t.Errorf("trace --dhcp: %s\n%s", tr.Result, strings.Join(tr.Steps, "\n"))
		}
		body, err := getIn(h1.Netns, "http://"+h1.MetricsAddr()+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{`lanes_dhcp_answers_total{type="ACK"}`, `lanes_dhcp_answers_total{type="OFFER"}`, `lanes_dhcp_verdicts_total{verdict="refused"}`} {
			if v := metricValue(body, m); v < 1 {
				t.Errorf("%s = %v, want >= 1", m, v)
			}
		}
		// Every DHCP port has its meter.
		out, err := l.OVS(h1).Ofctl15("dump-meters", "br-int")
		if err != nil || strings.Count(out, "type=drop rate=20 burst_size=40") != 4 {
			t.Errorf("br-int meters of h1's 4 DHCP ports: %v\n%s", err, out)
		}
	})

	t.Run("DHCP off: no answer; on again: answers", func(t *testing.T) {
		ctl(t, l, h1, "network", "update", "net-b", "--no-dhcp")
		eventually(t, 10*time.Second, "b1's DHCP flows gone", func() error {
			if fs := grep(dumpFlows(t, l, h1, "br-int"), "table=77", "priority=100"); len(fs) != 3 {
				return fmt.Errorf("%d port flows in table 77, want 3 (net-a's a1, s1, s2)", len(fs))
			}
			return nil
		})
		if vars, err := dhcpClient(t, l, b1); err == nil {
			t.Errorf("b1 got a lease on a network with DHCP off: %v", vars)
		}
		ctl(t, l, h1, "network", "update", "net-b", "--dhcp", "--dns", "")
		eventually(t, 15*time.Second, "b1's lease after DHCP is on again", func() error {
			vars, err := dhcpClient(t, l, b1)
			if err == nil && vars["dns"] != "" {
				return fmt.Errorf("dns %q after --dns \"\"", vars["dns"])
			}
			return err
		})
	})

	t.Run("a lanesd restart: the client's retries get their lease", func(t *testing.T) {
		if err := l.StopLanesd(h1); err != nil {
			t.Fatal(err)
		}
		if err := l.StartLanesd(h1); err != nil {
			t.Fatal(err)
		}
		// udhcpc sends three DISCOVERs a second apart per run: like a booting guest, it
		// keeps trying; the answer must come within a few of its retries.
		start := time.Now()
		eventually(t, 20*time.Second, "a1's lease after the restart", func() error {
			_, err := dhcpClient(t, l, a1)
			return err
		})
		t.Logf("lease %s after lanesd was started again", time.Since(start).Round(time.Millisecond))
	})
}

// metricValue is the value of one sample line of a Prometheus text page (-1: none).
func metricValue(body, name string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
