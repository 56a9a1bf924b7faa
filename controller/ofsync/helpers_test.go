package ofsync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// ofnet keeps its switches in a process-global map keyed by datapath ID, so every
// bridge this test binary connects to needs its own: a random prefix per process
// and a counter.
var (
	dpidPrefix = uint64(rand.Uint32()) << 24
	dpidSeq    atomic.Uint64
)

func nextDPID() string { return fmt.Sprintf("%016x", dpidPrefix|dpidSeq.Add(1)) }

// host is a private OVS with br-int and br-tun joined by patch ports, as lanes sets
// them up (ovsdb/ does this in production; here ovs-vsctl keeps the test
// independent of it).
type host struct {
	t        testing.TB
	o        *ovsproc.OVS
	patchInt uint32            // patch-int's ofport on br-tun
	tunnels  map[string]uint32 // remote IP -> vxlan ofport on br-tun
	ports    map[string]uint32 // VM port name -> ofport on br-int
}

func vsctl(t testing.TB, o *ovsproc.OVS, args ...string) string {
	t.Helper()
	out, err := o.Vsctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func addBridge(t testing.TB, o *ovsproc.OVS, name string) {
	t.Helper()
	vsctl(t, o, "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev",
		"fail_mode=secure", "protocols=OpenFlow10,OpenFlow13,OpenFlow15",
		"other_config:datapath-id="+nextDPID())
}

func ofport(t testing.TB, o *ovsproc.OVS, iface string) uint32 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := vsctl(t, o, "get", "Interface", iface, "ofport")
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err == nil && n > 0 {
			return uint32(n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("interface %s: no ofport (%q)", iface, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tunnelPortName(ip string) string {
	var b [4]int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &b[0], &b[1], &b[2], &b[3])
	return fmt.Sprintf("vxlan-%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
}

// newHost starts an OVS with br-int, br-tun, the patch pair, a VXLAN port per remote
// IP and an internal port per VM port (tagged with its local VLAN).
func newHost(t testing.TB, remotes []string, vmPorts map[string]uint16) *host {
	t.Helper()
	o := ovsproc.ForTest(t)
	h := &host{t: t, o: o, tunnels: map[string]uint32{}, ports: map[string]uint32{}}
	addBridge(t, o, string(flows.BrInt))
	addBridge(t, o, string(flows.BrTun))
	vsctl(t, o,
		"add-port", "br-int", "patch-tun", "--", "set", "interface", "patch-tun", "type=patch", "options:peer=patch-int",
		"--", "add-port", "br-tun", "patch-int", "--", "set", "interface", "patch-int", "type=patch", "options:peer=patch-tun", "ofport_request=1")
	for i, ip := range remotes {
		name := tunnelPortName(ip)
		vsctl(t, o, "add-port", "br-tun", name, "--", "set", "interface", name, "type=vxlan",
			"options:key=flow", "options:remote_ip="+ip, "options:df_default=true", fmt.Sprintf("ofport_request=%d", i+2))
	}
	for name, tag := range vmPorts {
		vsctl(t, o, "add-port", "br-int", name, fmt.Sprintf("tag=%d", tag), "--", "set", "interface", name, "type=internal")
	}
	h.patchInt = ofport(t, o, "patch-int")
	for _, ip := range remotes {
		h.tunnels[ip] = ofport(t, o, tunnelPortName(ip))
	}
	for name := range vmPorts {
		h.ports[name] = ofport(t, o, name)
	}
	return h
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// open connects a Bridge; it is closed when the test ends (or earlier by the
// returned func, which also waits for its goroutines).
func (h *host) open(br flows.Bridge, round uint16) (*ofsync.Bridge, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	b := ofsync.Open(ctx, string(br), h.o.MgmtSocket(string(br)), round, quietLogger(), nil)
	closed := false
	closeFn := func() {
		if !closed {
			closed = true
			cancel()
			b.Wait()
		}
	}
	h.t.Cleanup(closeFn)
	return b, closeFn
}

// syncConnected calls Sync until the bridge is connected and the bundle committed.
func syncConnected(t testing.TB, b *ofsync.Bridge, fs []flows.Flow) {
	t.Helper()
	untilConnected(t, b, func() error { return b.Sync(fs) })
}

// syncSetConnected is syncConnected for a flows.Set (SyncSet).
func syncSetConnected(t testing.TB, b *ofsync.Bridge, s flows.Set) {
	t.Helper()
	untilConnected(t, b, func() error { return b.SyncSet(s) })
}

// untilConnected calls sync until it succeeds, while it fails only for want of a
// connection.
func untilConnected(t testing.TB, b *ofsync.Bridge, sync func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := sync()
		if err == nil {
			return
		}
		if !errors.Is(err, ofsync.ErrNotConnected) {
			t.Fatalf("sync %s: %v", b.Name, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync %s: still not connected", b.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rendered is what dump-flows --no-stats must print for fs in round r.
func rendered(fs []flows.Flow, r uint16) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = strings.TrimSpace(f.WithRound(r).String())
	}
	slices.Sort(out)
	return out
}

func (h *host) dump(br flows.Bridge) []string {
	h.t.Helper()
	fs, err := h.o.DumpFlows(string(br))
	if err != nil {
		h.t.Fatal(err)
	}
	slices.Sort(fs)
	return fs
}

// statFields are the statistics dump-flows prints unless --no-stats.
var statFields = regexp.MustCompile(`(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, `)

var durationField = regexp.MustCompile(`duration=([0-9.]+)s`)

// dumpStats returns the bridge's flows keyed by their --no-stats text, with their
// age.
func (h *host) dumpStats(br flows.Bridge) map[string]time.Duration {
	h.t.Helper()
	out, err := h.o.Ofctl15("dump-flows", "--no-names", string(br))
	if err != nil {
		h.t.Fatal(err)
	}
	m := map[string]time.Duration{}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "OFPST_FLOW") {
			continue
		}
		d := durationField.FindStringSubmatch(l)
		if d == nil {
			h.t.Fatalf("no duration in %q", l)
		}
		sec, err := strconv.ParseFloat(d[1], 64)
		if err != nil {
			h.t.Fatal(err)
		}
		// With statistics, dump-flows also prints table 0; --no-stats leaves it out.
		l = strings.Replace(statFields.ReplaceAllString(l, ""), " table=0, ", " ", 1)
		m[l] = time.Duration(sec * float64(time.Second))
	}
	return m
}

// minus is a − b for sorted-or-not string slices, sorted.
func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, s := range b {
		in[s] = true
	}
	var out []string
	for _, s := range a {
		if !in[s] {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// sameSet fails with the differences when got and want differ as sets.
func sameSet(t testing.TB, what string, got, want []string) {
	t.Helper()
	missing, extra := minus(want, got), minus(got, want)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("%s: %d flows, want %d\nmissing:\n  %s\nunexpected:\n  %s", what, len(got), len(want),
			strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
	}
}

// waitDump polls dump-flows until the bridge holds exactly want.
func (h *host) waitDump(br flows.Bridge, want []string, timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := h.dump(br)
		if len(minus(want, got)) == 0 && len(minus(got, want)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sameSet(h.t, string(br), got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
