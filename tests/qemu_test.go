//go:build qemu

package tests

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQemu boots a real Linux guest in qemu (TCG: KVM cannot run a normal guest on
// the project machine) on a tap made by lanesd on h1, and checks that it pings a fake
// VM on h2 through the overlay and that the fake VM pings it back. The guest kernel and
// initramfs come from scripts/qemu-deps.sh (`make test-qemu` runs it first); its /init
// reports over the serial console with LANES-* markers.
func TestQemu(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("needs qemu-system-x86_64 (scripts/qemu-deps.sh installs it)")
	}
	dir := os.Getenv("LANES_QEMU_DIR")
	if dir == "" {
		dir = filepath.Join("..", ".cache", "qemu")
	}
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("needs the guest from scripts/qemu-deps.sh: %v", err)
		}
	}

	l := newLab(t, 2)
	h1 := l.Host("h1")
	var nets []struct {
		MTU int `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "network", "create", "net-q", "--cidr", "10.0.0.0/24", "--vni", "300",
		"--gateway", "10.0.0.1", "--dns", "10.0.0.53", "--domain", "q.example")), &nets); err != nil {
		t.Fatal(err)
	}
	ctl(t, l, h1, "sg", "create", "icmp")
	ctl(t, l, h1, "sg", "rule", "add", "icmp", "--direction", "ingress", "--protocol", "icmp")
	ctl(t, l, h1, "sg", "rule", "add", "icmp", "--direction", "egress")

	peer, _ := vm(t, l, "h2", "peer", "net-q", "10.0.0.2", "--sg", "icmp")

	const guestIP = "10.0.0.5"
	var gp struct {
		vmPort
		Qemu string `json:"qemu"`
	}
	if err := json.Unmarshal([]byte(ctl(t, l, h1, "-o", "json", "port", "create", "guest", "--network", "net-q",
		"--host", "h1", "--ip", guestIP, "--sg", "icmp", "--wait")), &gp); err != nil {
		t.Fatal(err)
	}
	if gp.Status != "ACTIVE" || gp.Tap == "" || gp.MAC == "" {
		t.Fatalf("guest port: %+v", gp)
	}
	// The -netdev/-device pair is the one lanesctl prints for the port. vhost=on makes
	// qemu 7.2 abort ("Assertion `nc' failed") when /dev/vhost-net is missing, as it is
	// here, so it is dropped then.
	netArgs := strings.Fields(gp.Qemu)
	if _, err := os.Stat("/dev/vhost-net"); err != nil {
		for i, a := range netArgs {
			netArgs[i] = strings.Replace(a, ",vhost=on", "", 1)
		}
		if strings.Contains(gp.Qemu, "vhost=on") {
			t.Logf("no /dev/vhost-net: dropped vhost=on from lanesctl's line %q", gp.Qemu)
		}
	}

	g := startQemu(t, h1.Netns, qemu, kernel, initrd,
		// No address on the command line: the guest asks h1's lanesd by DHCP.
		"console=ttyS0 panic=-1 quiet lanes.ip=dhcp lanes.ping=10.0.0.2 lanes.tries=120 lanes.hold=60",
		netArgs)

	line := g.waitFor(t, 5*time.Minute, "LANES-PING-OK", "LANES-PING-FAIL")
	if !strings.HasPrefix(line, "LANES-PING-OK") {
		t.Fatalf("guest could not ping the fake VM on h2: %s", line)
	}
	t.Logf("qemu start to guest ping of h2's VM: %s (%s)", time.Since(g.start).Round(100*time.Millisecond), line)

	// Its lease: the port's address and the network's settings.
	lease := g.find("LANES-DHCP")
	for _, want := range []string{"ip=" + guestIP + "/24", "router=10.0.0.1", "dns=10.0.0.53", "domain=q.example", "hostname=guest",
		fmt.Sprintf("mtu=%d", nets[0].MTU)} {
		if !strings.Contains(lease, want) {
			t.Errorf("guest's DHCP lease %q lacks %s", lease, want)
		}
	}

	// The guest's eth0 took its MTU from host_mtu (lanesctl's line) and its MAC from the port.
	link := g.find("LANES-NET", "link/ether")
	if !strings.Contains(link, strings.ToLower(gp.MAC)) {
		t.Errorf("guest eth0 is not %s: %s", gp.MAC, link)
	}
	if mtu := nets[0].MTU; mtu != 0 && !strings.Contains(link, fmt.Sprintf(" mtu %d ", mtu)) {
		t.Errorf("guest eth0 MTU is not the network's %d: %s", mtu, link)
	}

	// The other direction: h2's fake VM reaches the guest and resolved it to the port's MAC.
	eventually(t, 30*time.Second, "fake VM on h2 pings the guest", func() error { return ping(l, peer, guestIP) })
	if out, _ := l.VMExec(peer, "ip", "neigh", "show", guestIP); !strings.Contains(out, strings.ToLower(gp.MAC)) {
		t.Errorf("fake VM resolved %s to %q, want %s", guestIP, strings.TrimSpace(out), gp.MAC)
	}

	g.waitFor(t, time.Minute, "LANES-ECHOED")
	if err := g.waitExit(time.Minute); err != nil {
		t.Fatalf("qemu did not power off cleanly: %v", err)
	}
	t.Logf("qemu ran %s (boot, ping both ways, power off)", time.Since(g.start).Round(100*time.Millisecond))
	t.Logf("guest said:\n%s", strings.Join(g.grep("LANES-"), "\n"))
}

// guest is a running qemu whose serial console is collected line by line.
type guest struct {
	cmd   *exec.Cmd
	start time.Time
	done  chan struct{} // closed when qemu has exited
	err   error         // qemu's exit status, once done is closed

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every new line (and at EOF)
	eof   bool
}

// startQemu runs qemu-system-x86_64 inside netns with a TCG guest; it is killed (by
// PID) when the test ends, and its console is logged if the test failed.
func startQemu(t *testing.T, netns, qemu, kernel, initrd, appendArgs string, netArgs []string) *guest {
	t.Helper()
	args := append([]string{"netns", "exec", netns, qemu,
		"-accel", "tcg", // /dev/kvm exists here but cannot run a normal Linux guest
		"-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-serial", "stdio", "-no-reboot", "-m", "256",
		"-kernel", kernel, "-initrd", initrd, "-append", appendArgs,
	}, netArgs...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// ip netns exec execs qemu in place, so the PID below is qemu's.
	g := &guest{cmd: exec.Command("ip", args...), done: make(chan struct{}), more: make(chan struct{})}
	g.cmd.Stdout, g.cmd.Stderr = w, w
	g.start = time.Now()
	if err := g.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("start qemu: %v", err)
	}
	w.Close()
	t.Logf("qemu pid %d: %s", g.cmd.Process.Pid, strings.Join(args[3:], " "))
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			g.mu.Lock()
			g.lines = append(g.lines, strings.TrimRight(sc.Text(), "\r"))
			close(g.more)
			g.more = make(chan struct{})
			g.mu.Unlock()
		}
		r.Close()
		g.mu.Lock()
		g.eof = true
		close(g.more)
		g.mu.Unlock()
	}()
	go func() {
		g.err = g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			_ = g.cmd.Process.Kill()
			select {
			case <-g.done:
			case <-time.After(10 * time.Second):
				t.Errorf("qemu pid %d did not die after SIGKILL", g.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			g.mu.Lock()
			t.Logf("qemu console:\n%s", strings.Join(g.lines, "\n"))
			g.mu.Unlock()
		}
	})
	return g
}

// waitFor returns the first console line starting with one of the prefixes; the test
// fails if none comes within d or qemu's output ends first.
func (g *guest) waitFor(t *testing.T, d time.Duration, prefixes ...string) string {
	t.Helper()
	deadline := time.After(d)
	seen := 0
	for {
		g.mu.Lock()
		for ; seen < len(g.lines); seen++ {
			for _, p := range prefixes {
				if strings.HasPrefix(g.lines[seen], p) {
					line := g.lines[seen]
					g.mu.Unlock()
					return line
				}
			}
		}
		eof, more := g.eof, g.more
		g.mu.Unlock()
		if eof {
			<-g.done
			t.Fatalf("qemu exited (%v) before printing %s", g.err, strings.Join(prefixes, " or "))
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("guest did not print %s within %s", strings.Join(prefixes, " or "), d)
		}
	}
}

// grep returns the console lines so far that start with prefix.
func (g *guest) grep(prefix string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, l := range g.lines {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// find returns the first console line so far that contains every sub.
func (g *guest) find(subs ...string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return l
		}
	}
	return ""
}

func (g *guest) waitExit(d time.Duration) error {
	select {
	case <-g.done:
		return g.err
	case <-time.After(d):
		return errors.New("still running after " + d.String())
	}
}
