package hostwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

func fwState(ports ...int) FirewallState {
	web := &api.SecurityGroup{ID: "web", Rules: []api.Rule{
		{ID: "1", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{ID: "2", Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: "web"},
		{ID: "3", Direction: api.Egress, Ethertype: api.IPv4},
	}}
	other := &api.SecurityGroup{ID: "other", Rules: []api.Rule{
		{ID: "4", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
	}}
	st := FirewallState{Groups: map[string]*api.SecurityGroup{"web": web, "other": other}, Members: map[string]map[string][]string{"web": {}, "other": {}}}
	for _, n := range ports {
		ip := "10.0.0." + string(rune('0'+n))
		groups := []string{"web"}
		if n%2 == 0 {
			groups = []string{"other"}
		}
		st.Ports = append(st.Ports, FirewallPort{ID: portID(n), NetworkID: testNet, MAC: macOf(n), FixedIPs: []string{ip}, PortSecurity: true, SecurityGroups: groups})
		for _, g := range groups {
			st.Members[g][testNet] = append(st.Members[g][testNet], ip)
		}
	}
	return st
}

func countLines(s, sub string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func TestFirewallApply(t *testing.T) {
	skipUnlessKernel(t)
	ctx := context.Background()
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	// Rules and sets of other software must survive everything lanes does.
	th.sh(t, "iptables", "-A", "FORWARD", "-m", "comment", "--comment", "other software", "-j", "ACCEPT")
	th.sh(t, "iptables", "-N", "OTHER-chain")
	th.sh(t, "iptables", "-A", "OTHER-chain", "-j", "RETURN")
	th.sh(t, "ipset", "create", "other-set", "hash:ip")

	st := fwState(1, 2, 3)
	if s := th.apply(t, st); !s.Changed() || s.Tables != 4 || s.SetsWritten != 1 {
		t.Fatalf("first apply: %+v", s)
	}
	if s := th.apply(t, st); s.Changed() {
		t.Fatalf("no-op apply wrote %+v", s)
	}
	zones := th.fw.Zones()
	if zones[DeviceID(portID(1))] != ZoneStart || zones[DeviceID(portID(3))] != ZoneStart+2 {
		t.Fatalf("zones = %v", zones)
	}

	// A rule change rewrites only the ingress chains of the ports in that group.
	st.Groups["web"].Rules[0].PortMin, st.Groups["web"].Rules[0].PortMax = 2222, 2222
	s := th.apply(t, st)
	if s.Tables != 1 || s.ChainsWritten != 2 || s.SetsWritten != 0 {
		t.Fatalf("rule change wrote %+v, want 1 table, 2 chains", s)
	}
	if out := th.sh(t, "iptables-save", "-t", "filter"); !strings.Contains(out, "-A "+IngressChain(portID(3))+" -p tcp -m tcp --dport 2222 -j RETURN") {
		t.Fatalf("changed rule missing:\n%s", out)
	}

	// Membership change: only the set.
	st.Members["web"][testNet] = append(st.Members["web"][testNet], "10.9.9.9")
	if s := th.apply(t, st); s.Tables != 0 || s.SetsWritten != 1 {
		t.Fatalf("member change wrote %+v", s)
	}
	if out := th.sh(t, "ipset", "list", SetName(V4, "web", testNet)); !strings.Contains(out, "10.9.9.9") {
		t.Fatalf("set not updated:\n%s", out)
	}

	// Restart: a new Firewall recovers the zones, rewrites once, keeps one hook each.
	fw2, err := NewFirewall(th.h, FirewallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	th.fw = fw2
	if z := fw2.Zones(); len(z) != 3 || z[DeviceID(portID(3))] != ZoneStart+2 {
		t.Fatalf("recovered zones = %v, want %v", z, zones)
	}
	th.apply(t, st)
	if s := th.apply(t, st); s.Changed() {
		t.Fatalf("no-op apply after restart wrote %+v", s)
	}
	// Port 1 goes, port 4 comes: port 4 gets a new zone, port 1's chains go.
	st2 := fwState(2, 3, 4)
	st2.Groups = st.Groups
	if s := th.apply(t, st2); s.ChainsDeleted != 6 {
		t.Fatalf("port swap: %+v", s)
	}
	if z := th.fw.Zones(); z[DeviceID(portID(4))] != ZoneStart+3 || z[DeviceID(portID(1))] != 0 {
		t.Fatalf("zones after swap = %v", z)
	}

	// Someone deletes the FORWARD hook: Resync notices and the next Apply restores it.
	hook := Hook{Chain: "FORWARD", Target: ChainForward}
	th.sh(t, "sh", "-c", "iptables -D FORWARD "+hook.Rule())
	if err := th.fw.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	th.apply(t, st2)

	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out := th.sh(t, bin)
		for _, h := range []string{"-A FORWARD -m comment --comment \"lanes security groups\" -j lanes-FORWARD",
			"-A INPUT -m comment --comment \"lanes security groups\" -j lanes-INPUT",
			"-A PREROUTING -m comment --comment \"lanes security groups\" -j lanes-PREROUTING"} {
			if n := countLines(out, h); n != 1 {
				t.Errorf("%s: %d x %q", bin, n, h)
			}
		}
		if strings.Contains(out, DeviceID(portID(1))) {
			t.Errorf("%s still has the removed port", bin)
		}
	}
	// Hooks come first in FORWARD, before the other software's rule.
	if out := th.sh(t, "iptables", "-S", "FORWARD"); !strings.Contains(out, "-j lanes-FORWARD\n-A FORWARD -m comment --comment \"other software\" -j ACCEPT") {
		t.Errorf("FORWARD order:\n%s", out)
	}

	// Remove everything: other software's rules and sets are still there.
	if err := th.fw.RemoveAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		if out := th.sh(t, bin); strings.Contains(out, "lanes") {
			t.Errorf("%s after RemoveAll:\n%s", bin, out)
		}
	}
	out := th.sh(t, "iptables-save")
	for _, want := range []string{"other software", "-A OTHER-chain -j RETURN"} {
		if !strings.Contains(out, want) {
			t.Errorf("other software's rule %q gone:\n%s", want, out)
		}
	}
	if out := th.sh(t, "ipset", "list", "-n"); strings.TrimSpace(out) != "other-set" {
		t.Errorf("ipsets after RemoveAll: %q", out)
	}
}

// TestRemovedPortForgetsConnections: when a port goes, the conntrack entries of its
// zone go with it, and entries of other zones stay.
func TestRemovedPortForgetsConnections(t *testing.T) {
	skipUnlessKernel(t)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Skip("needs conntrack (scripts/deps.sh installs it)")
	}
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	th.apply(t, fwState(1, 2))
	zones := th.fw.Zones()
	z1, z2 := zones[DeviceID(portID(1))], zones[DeviceID(portID(2))]
	if z1 == 0 || z2 == 0 || z1 == z2 {
		t.Fatalf("zones %v", zones)
	}
	entry := func(zone int, sport string) {
		th.sh(t, "conntrack", "-I", "-p", "tcp", "-s", "10.0.0.1", "-d", "10.0.0.2", "--sport", sport, "--dport", "22",
			"--state", "ESTABLISHED", "-t", "300", "-w", strconv.Itoa(zone))
	}
	entry(z1, "40001")
	entry(z2, "40002")
	count := func(zone int) int {
		out, _ := th.ns.Exec("conntrack", "-L", "-w", strconv.Itoa(zone))
		return strings.Count(out, "dport=22")
	}
	if count(z1) != 1 || count(z2) != 1 {
		t.Fatalf("entries: zone %d: %d, zone %d: %d", z1, count(z1), z2, count(z2))
	}
	th.apply(t, fwState(2)) // port 1 removed
	if n := count(z1); n != 0 {
		t.Errorf("zone %d of the removed port still has %d entries", z1, n)
	}
	if n := count(z2); n != 1 {
		t.Errorf("zone %d of the remaining port has %d entries, want 1", z2, n)
	}
}

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]string{
		"iptables v1.8.9 (nf_tables)\n": BackendNFT,
		"iptables v1.8.7 (legacy)\n":    BackendLegacy,
		"iptables v1.6.1\n":             BackendLegacy,
	} {
		if got, err := parseBackend(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	if _, err := parseBackend("something else"); err == nil {
		t.Error("unknown version accepted")
	}
}

// The backend is detected, selectable, and lanes refuses to start on one backend
// while the other holds lanes chains: both would filter the same packets.
func TestFirewallBackend(t *testing.T) {
	ns := ovsproc.NetnsForTest(t)
	th := newTestHost(t, ns)
	if b := th.fw.Backend(); b != BackendNFT && b != BackendLegacy {
		t.Fatalf("backend %q", b)
	}
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		t.Skip("needs iptables-legacy")
	}
	if _, err := exec.LookPath("iptables-nft"); err != nil {
		t.Skip("needs iptables-nft")
	}
	if _, err := NewFirewall(th.h, FirewallOptions{Backend: "xtables"}); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "iptables-backend") {
		t.Errorf("bad backend: %v", err)
	}
	fw, err := NewFirewall(th.h, FirewallOptions{Backend: BackendNFT})
	if err != nil || fw.Backend() != BackendNFT {
		t.Fatalf("nft: %v, %v", fw, err)
	}
	if err := fw.OtherBackendChains(); err != nil {
		t.Errorf("running nft firewall, nothing under legacy: %v", err)
	}
	// A leftover of a lanesd that ran on the legacy backend; a running firewall
	// sees it appear too (lanesctl status warns of it).
	th.sh(t, "iptables-legacy", "-N", ChainPrefix+"leftover")
	if err := fw.OtherBackendChains(); err == nil || !strings.Contains(err.Error(), ChainPrefix+"leftover") {
		t.Errorf("running nft firewall, lanes chain under legacy: %v", err)
	}
	_, err = NewFirewall(th.h, FirewallOptions{Backend: BackendNFT})
	if err == nil || !strings.Contains(err.Error(), "legacy backend hold lanes chains ("+ChainPrefix+"leftover)") || !strings.Contains(err.Error(), "--iptables-backend legacy") {
		t.Errorf("nft start over legacy lanes chains: %v", err)
	}
	// And the other way round: legacy refuses while nft holds lanes chains.
	th.sh(t, "iptables-legacy", "-X", ChainPrefix+"leftover")
	th.sh(t, "iptables-nft", "-N", ChainPrefix+"nftchain")
	if _, err := NewFirewall(th.h, FirewallOptions{Backend: BackendLegacy}); err == nil || !strings.Contains(err.Error(), "nft backend hold lanes chains") {
		t.Errorf("legacy start over nft lanes chains: %v", err)
	}
}

// TestSetEditsEqualRewrite: random member changes of a remote group, applied as
// edits when few and as a swap when many, leave the kernel's ipset holding exactly
// the rendered members after every step.
func TestSetEditsEqualRewrite(t *testing.T) {
	skipUnlessKernel(t)
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	// Failed edits fall back to a rewrite with a warning: the edits must not fail.
	var warnings bytes.Buffer
	fw, err := NewFirewall(th.h, FirewallOptions{Log: slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	th.fw = fw
	t.Cleanup(func() {
		if warnings.Len() > 0 {
			t.Errorf("warnings: %s", warnings.String())
		}
	})
	rng := rand.New(rand.NewPCG(14, 5))
	st := fwState(1)
	// An IPv6 remote-group rule too: its set takes the group's IPv6 members.
	web := *st.Groups["web"]
	web.Rules = append(slices.Clone(web.Rules), api.Rule{ID: "6", Direction: api.Ingress, Ethertype: api.IPv6, RemoteGroupID: "web"})
	st.Groups["web"] = &web
	member := func(step int) string {
		switch rng.IntN(3) {
		case 0:
			return fmt.Sprintf("fd00:%x::%x", step, rng.IntN(250))
		case 1:
			return fmt.Sprintf("10.5.%d.0/24", rng.IntN(250))
		}
		return fmt.Sprintf("10.2.%d.%d", step, rng.IntN(250))
	}
	members := []string{"10.0.0.1", "fd00::1"}
	for i := range 60 {
		members = append(members, fmt.Sprintf("10.1.%d.%d", i/200, i%200))
	}
	for step := range 30 {
		switch rng.IntN(4) {
		case 0: // one joins
			members = append(slices.Clone(members), member(step))
		case 1: // one leaves
			if len(members) > 1 {
				i := 1 + rng.IntN(len(members)-1)
				members = slices.Delete(slices.Clone(members), i, i+1)
			}
		case 2: // one moves
			members = append(slices.Clone(members[:len(members)-1]), member(step))
		case 3: // many change
			members = []string{"10.0.0.1"}
			for range rng.IntN(80) {
				members = append(members, fmt.Sprintf("10.4.%d.%d", rng.IntN(4), rng.IntN(250)))
			}
		}
		st.Members = map[string]map[string][]string{"web": {testNet: members}, "other": {}}
		s := th.apply(t, st)
		for i := range st.Ports {
			st.Ports[i].Zone = th.fw.Zones()[DeviceID(st.Ports[i].ID)]
		}
		rs, err := Render(st)
		if err != nil {
			t.Fatal(err)
		}
		for name, set := range rs.Sets {
			out := th.sh(t, "ipset", "list", name)
			_, body, _ := strings.Cut(out, "Members:\n")
			got := strings.Fields(body)
			slices.Sort(got)
			if !slices.Equal(got, set.Members) {
				t.Fatalf("step %d (%+v): ipset %s holds %v, want %v", step, s, name, got, set.Members)
			}
		}
	}
}

func TestSetEdits(t *testing.T) {
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("10.0.0.%03d", i)
	}
	moved := append(slices.Clone(many[1:]), "10.0.1.1")
	if e, ok := setEdits(many, moved); !ok || !slices.Equal(e.del, []string{"10.0.0.000"}) || !slices.Equal(e.add, []string{"10.0.1.1"}) {
		t.Errorf("one member moved: %+v %v", e, ok)
	}
	if _, ok := setEdits(many, many[:10]); ok {
		t.Error("30 of 40 members gone: want a rewrite")
	}
	if e, ok := setEdits([]string{"a"}, nil); !ok || !slices.Equal(e.del, []string{"a"}) || e.add != nil {
		t.Errorf("the last member gone: %+v %v", e, ok)
	}
}

// TestFirewallRestartAdoptsWhatIsThere: a new Firewall (lanesd restarted) on a host
// that holds what it wants writes nothing; after a change (a rule, members, a port),
// what it writes leaves the host equal to a host written from scratch.
func TestFirewallRestartAdoptsWhatIsThere(t *testing.T) {
	skipUnlessKernel(t)
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	st := fwState(1, 2, 3)
	st.Members["web"]["n6"] = []string{"fd00::1", "fd00::2"}
	th.apply(t, st)
	restart := func() {
		t.Helper()
		fw, err := NewFirewall(th.h, FirewallOptions{})
		if err != nil {
			t.Fatal(err)
		}
		th.fw = fw
	}
	restart()
	if s := th.apply(t, st); s.Changed() {
		t.Errorf("first apply after a restart on an unchanged host wrote %+v", s)
	}
	saved := func() string {
		var b strings.Builder
		for _, id := range Tables {
			bin := "iptables-save"
			if id.Family == V6 {
				bin = "ip6tables-save"
			}
			for _, l := range strings.Split(th.sh(t, bin, "-t", id.Table), "\n") {
				if strings.HasPrefix(l, "-A "+ChainPrefix) || strings.HasPrefix(l, ":"+ChainPrefix) {
					// Zones are kept across a restart, given afresh from scratch.
					b.WriteString(id.String() + " " + zoneNumber.ReplaceAllString(l, "--zone Z") + "\n")
				}
			}
		}
		for _, l := range strings.Split(th.sh(t, "ipset", "save"), "\n") {
			// initval is the random seed of the set's hash, not its content.
			l, _, _ = strings.Cut(l, " initval ")
			b.WriteString(l + "\n")
		}
		lines := strings.Split(b.String(), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	changed := fwState(1, 3, 4)
	changed.Groups["web"].Rules = append(changed.Groups["web"].Rules, api.Rule{ID: "9", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 53})
	changed.Members["web"][testNet] = append(changed.Members["web"][testNet], "10.9.9.9")
	restart()
	if s := th.apply(t, changed); !s.Changed() {
		t.Fatal("a changed state after a restart wrote nothing")
	}
	got := saved()
	// The same state written on a host cleared first, by a firewall that never saw
	// the old one.
	if err := th.fw.RemoveAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	restart()
	th.apply(t, changed)
	if want := saved(); got != want {
		t.Errorf("after a restart and a change the host holds\n%s\nwritten from scratch\n%s", got, want)
	}
}

var zoneNumber = regexp.MustCompile(`--zone \d+`)
