package tests

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/lab"
)

// TestControlPlaneOutage is an operator's worst day: one host's lanesd stops for
// 60 s, and while it is down the whole store goes away for 30 s (h1's lanesd, which
// embeds the only etcd member, is frozen). VMs on every pair of hosts ping each other
// every 50 ms throughout: not one packet may be lost, no host may remove a tunnel,
// the stopped host is shown down while it is, and everything resyncs afterwards.
func TestControlPlaneOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("90 s of outages")
	}
	l := newLab(t, 3)
	h1, h2, h3 := l.Host("h1"), l.Host("h2"), l.Host("h3")
	ctl(t, l, h1, "network", "create", "net-a", "--cidr", "10.0.0.0/24")
	// The default group admits its members: every VM here.
	open := []string{}
	v1, _ := vm(t, l, "h1", "o1", "net-a", "10.0.0.1", open...)
	v2, _ := vm(t, l, "h2", "o2", "net-a", "10.0.0.2", open...)
	v3, _ := vm(t, l, "h3", "o3", "net-a", "10.0.0.3", open...)
	for _, c := range []struct {
		from *lab.VM
		to   string
	}{{v1, "10.0.0.2"}, {v2, "10.0.0.3"}, {v3, "10.0.0.1"}} {
		eventually(t, 10*time.Second, "ping "+c.to, func() error { return ping(l, c.from, c.to) })
	}
	tunnels := map[string][]string{}
	for _, h := range l.HostList {
		tunnels[h.Name] = tunnelPorts(t, l, h)
	}

	// Pings across every pair of hosts for the whole test.
	type pinger struct {
		name string
		cmd  *exec.Cmd
		out  *strings.Builder
	}
	var pingers []pinger
	for _, c := range []struct {
		name string
		from *lab.VM
		to   string
	}{{"h1->h2", v1, "10.0.0.2"}, {"h2->h3", v2, "10.0.0.3"}, {"h3->h1", v3, "10.0.0.1"}} {
		p := pinger{name: c.name, out: &strings.Builder{}}
		// A count, not a deadline (-w): at its deadline ping exits without waiting
		// for the reply in flight and counts it lost. -W is how long it then waits.
		p.cmd = exec.Command("ip", "netns", "exec", c.from.Netns, "ping", "-i", "0.05", "-c", "1400", "-W", "2", "-q", c.to)
		p.cmd.Stdout = p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pingers = append(pingers, p)
	}
	t.Cleanup(func() {
		for _, p := range pingers {
			_ = p.cmd.Process.Kill()
		}
	})
	time.Sleep(time.Second) // traffic flowing before anything breaks

	// h3's lanesd stops; after its lease (10 s) it is shown down.
	stopped := time.Now()
	if err := l.StopLanesd(h3); err != nil {
		t.Fatal(err)
	}
	hostAlive(t, l, h1, "h3", false, 30*time.Second)

	// The whole store goes away for 30 s: h1's lanesd (and its embedded etcd) frozen.
	pid := h1.LanesdPID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second) // the outage itself is what is measured
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// h3's lanesd comes back after 60 s.
	time.Sleep(time.Until(stopped.Add(60 * time.Second)))
	if err := l.StartLanesd(h3); err != nil {
		t.Fatal(err)
	}

	re := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	for _, p := range pingers {
		_ = p.cmd.Wait()
		m := re.FindStringSubmatch(p.out.String())
		if m == nil || m[1] != m[2] || m[1] == "0" {
			t.Errorf("%s: lost packets during the outages: %s", p.name, p.out.String())
		} else {
			t.Logf("%s: %s sent, %s received", p.name, m[1], m[2])
		}
	}
	for _, h := range l.HostList {
		if got := tunnelPorts(t, l, h); !slices.Equal(got, tunnels[h.Name]) {
			t.Errorf("%s: tunnels %v after the outages, %v before", h.Name, got, tunnels[h.Name])
		}
	}
	// Everything resyncs: h3 is up again, and a port created now on each host works.
	hostAlive(t, l, h1, "h3", true, 30*time.Second)
	n1, _ := vm(t, l, "h1", "n1", "net-a", "10.0.0.11", open...)
	vm(t, l, "h3", "n3", "net-a", "10.0.0.13", open...)
	eventually(t, 10*time.Second, "new ports reach each other across hosts", func() error { return ping(l, n1, "10.0.0.13") })
	_ = h2
}
