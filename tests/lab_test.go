// Package tests holds lanes' end-to-end tests: several hosts as network namespaces,
// each with its own Open vSwitch and lanesd (the real binaries), fake VMs behind real
// taps, and lanesctl as the only way in.
package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/lanes-net/lanes/api"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/lab"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// binDir holds lanesd, lanesctl and lanes-vm built from this tree by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lanes-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// etcd is etcd's own server for labs with an external cluster.
	cmd := exec.Command("go", "build", "-o", dir+"/", "../cmd/lanesd", "../cmd/lanesctl", "../cmd/lanes-vm", "../cmd/lanes-lab", "../internal/lab/etcd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// labOption changes the lab's configuration before it comes up.
type labOption func(*lab.Config)

// withEtcdCluster runs an external etcd cluster of n members instead of h1's
// embedded one.
func withEtcdCluster(n int) labOption { return func(c *lab.Config) { c.EtcdMembers = n } }

// secure turns on TLS and etcd authentication with lanes' roles.
func secure(c *lab.Config) { c.Secure = true }

// withTunnelTypes makes every host accept these tunnel types (comma-separated).
func withTunnelTypes(types string) labOption { return func(c *lab.Config) { c.TunnelTypes = types } }

// newLab starts a lab of n hosts with lanesd running on each; everything is removed
// when the test ends (lanesd and etcd logs are printed if it failed).
func newLab(t testing.TB, n int, opts ...labOption) *lab.Lab {
	t.Helper()
	ovsproc.SkipUnlessCapable(t)
	for _, tool := range []string{"iptables", "ipset", "tcpdump", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "lt-lab-")
	if err != nil {
		t.Fatal(err)
	}
	cfg := lab.Config{Name: "lt" + ovsproc.RandomSuffix(5), Dir: dir, BinDir: binDir, Hosts: n}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := lab.Up(cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.HostList {
				if b, err := os.ReadFile(h.LogFile()); err == nil {
					t.Logf("lanesd log of %s:\n%s", h.Name, tail(string(b), 40))
				}
			}
			for _, m := range l.Members {
				if b, err := os.ReadFile(m.LogFile()); err == nil {
					t.Logf("etcd log of %s:\n%s", m.Name, tail(string(b), 20))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	for _, h := range l.HostList {
		if err := l.StartLanesd(h); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Secure && cfg.EtcdMembers == 0 {
		// The embedded member's roles, once h1's lanesd serves it.
		eventually(t, 30*time.Second, "store init on h1's embedded etcd", l.InitStore)
	}
	// Every host registered: lanesd is up and the store reachable.
	eventually(t, 30*time.Second, "all hosts registered", func() error {
		out, err := l.Ctl(l.HostList[0], "-o", "json", "host", "list")
		if err != nil {
			return err
		}
		var hs []struct{ Name string }
		if err := json.Unmarshal([]byte(out), &hs); err != nil {
			return err
		}
		if len(hs) != n {
			return fmt.Errorf("%d of %d hosts registered", len(hs), n)
		}
		return nil
	})
	return l
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctl runs lanesctl on host h and fails the test on error.
func ctl(t testing.TB, l *lab.Lab, h *lab.Host, args ...string) string {
	t.Helper()
	out, err := l.Ctl(h, args...)
	if err != nil {
		t.Fatalf("lanesctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// vmPort is what `lanesctl -o json port create` prints.
type vmPort struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	MAC      string   `json:"mac"`
	FixedIPs []string `json:"fixed_ips"`
	Tap      string   `json:"tap"`
	Status   string   `json:"status"`
}

// vm creates a port through lanesctl (waiting for ACTIVE) and starts a fake VM on it.
func vm(t testing.TB, l *lab.Lab, host, name, network, ip string, extra ...string) (*lab.VM, vmPort) {
	t.Helper()
	h := l.Host(host)
	args := append([]string{"-o", "json", "port", "create", name, "--network", network, "--host", host, "--ip", ip, "--wait"}, extra...)
	var p vmPort
	if err := json.Unmarshal([]byte(ctl(t, l, h, args...)), &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != "ACTIVE" {
		t.Fatalf("port %s: status %q", name, p.Status)
	}
	v, err := l.StartVM(h, name, p.Tap, p.MAC, ip+"/24", 1450)
	if err != nil {
		t.Fatal(err)
	}
	return v, p
}

// ping sends one echo request from a VM; nil when a reply came back.
func ping(l *lab.Lab, from *lab.VM, ip string) error {
	_, err := l.VMExec(from, "ping", "-c", "1", "-W", "1", ip)
	return err
}

// dumpFlows lists a bridge's flows on a host as ovs-ofctl prints them.
func dumpFlows(t testing.TB, l *lab.Lab, h *lab.Host, bridge string) []string {
	t.Helper()
	fs, err := l.OVS(h).DumpFlows(bridge)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func grep(lines []string, subs ...string) []string {
	var out []string
	for _, l := range lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// tunnelPorts lists the tunnel ports of a host's br-tun.
func tunnelPorts(t testing.TB, l *lab.Lab, h *lab.Host) []string {
	t.Helper()
	out, err := l.OVS(h).Vsctl("list-ports", "br-tun")
	if err != nil {
		t.Fatal(err)
	}
	var ts []string
	for _, p := range strings.Fields(out) {
		if strings.HasPrefix(p, "vxlan-") || strings.HasPrefix(p, "geneve-") || strings.HasPrefix(p, "gre-") {
			ts = append(ts, p)
		}
	}
	return ts
}

// capture runs tcpdump on a host's underlay NIC until stop is called and returns the
// number of packets that matched filter.
func capture(t testing.TB, l *lab.Lab, h *lab.Host, filter string) (stop func() int) {
	t.Helper()
	file := filepath.Join(h.Dir, fmt.Sprintf("cap-%d.pcap", time.Now().UnixNano()))
	cmd := exec.Command("ip", "netns", "exec", h.Netns, "tcpdump", "-i", "eth1", "-n", "-U", "-w", file, filter)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// tcpdump says "listening on" once the capture is armed.
	sc := bufio.NewScanner(stderr)
	var said []string
	for sc.Scan() && !strings.Contains(sc.Text(), "listening") {
		said = append(said, sc.Text())
	}
	if sc.Err() != nil || !strings.Contains(sc.Text(), "listening") {
		_ = cmd.Process.Kill()
		t.Fatalf("tcpdump did not start: %s", strings.Join(said, "; "))
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	return func() int {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		out, err := exec.Command("tcpdump", "-n", "-r", file).Output()
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
		return strings.Count(string(out), "\n")
	}
}

// hostAlive waits until host name is shown alive (or down) in host list.
func hostAlive(t testing.TB, l *lab.Lab, from *lab.Host, name string, alive bool, within time.Duration) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("%s shown alive=%v", name, alive), func() error {
		out, err := l.Ctl(from, "-o", "json", "host", "list")
		if err != nil {
			return err
		}
		var hosts []api.Host
		if err := json.Unmarshal([]byte(out), &hosts); err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == name && h.Alive == alive {
				return nil
			}
		}
		return fmt.Errorf("hosts %+v", hosts)
	})
}
