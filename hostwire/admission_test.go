package hostwire

import (
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// admissionsOf renders st and returns the admission of its first port.
func admissionsOf(t *testing.T, st FirewallState) portAdmission {
	t.Helper()
	for i := range st.Ports {
		st.Ports[i].Zone = ZoneStart + i
	}
	rs, err := Render(st)
	if err != nil {
		t.Fatal(err)
	}
	return rs.admits[DeviceID(st.Ports[0].ID)]
}

func ctFlow(zone uint16, proto uint8, src, dst string, dport uint16) *netlink.ConntrackFlow {
	f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, Zone: zone}
	f.Forward = netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst), SrcPort: 40000, DstPort: dport}
	return f
}

func TestRevokedConnections(t *testing.T) {
	svc := &api.SecurityGroup{ID: "svc", Rules: []api.Rule{
		{ID: "ssh", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{ID: "web", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 80, PortMax: 80},
		{ID: "peers", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", RemoteGroupID: "peers"},
		{ID: "out", Direction: api.Egress, Ethertype: api.IPv4, Protocol: "tcp"},
	}}
	state := func(rules []api.Rule, peers ...string) FirewallState {
		g := *svc
		g.Rules = rules
		return FirewallState{
			Ports: []FirewallPort{{ID: portID(1), NetworkID: testNet, MAC: macOf(1), FixedIPs: []string{"10.0.0.1"},
				PortSecurity: true, SecurityGroups: []string{"svc"}}},
			Groups:  map[string]*api.SecurityGroup{"svc": &g},
			Members: map[string]map[string][]string{"peers": {testNet: peers}},
		}
	}
	old := admissionsOf(t, state(svc.Rules, "10.0.0.5", "10.0.0.6"))
	z := uint16(old.zone)
	cases := []struct {
		name string
		now  portAdmission
		flow *netlink.ConntrackFlow
		gone bool
	}{
		{"rule removed", admissionsOf(t, state(svc.Rules[1:], "10.0.0.5", "10.0.0.6")), ctFlow(z, 6, "10.0.0.9", "10.0.0.1", 22), true},
		{"other rule's connection stays", admissionsOf(t, state(svc.Rules[1:], "10.0.0.5", "10.0.0.6")), ctFlow(z, 6, "10.0.0.9", "10.0.0.1", 80), false},
		{"connection the VM opened stays", admissionsOf(t, state(svc.Rules[1:], "10.0.0.5", "10.0.0.6")), ctFlow(z, 6, "10.0.0.1", "10.0.0.9", 22), false},
		{"other zone untouched", admissionsOf(t, state(svc.Rules[1:], "10.0.0.5", "10.0.0.6")), ctFlow(z+1, 6, "10.0.0.9", "10.0.0.1", 22), false},
		{"member left", admissionsOf(t, state(svc.Rules, "10.0.0.5")), ctFlow(z, 17, "10.0.0.6", "10.0.0.1", 5000), true},
		{"member stayed", admissionsOf(t, state(svc.Rules, "10.0.0.5")), ctFlow(z, 17, "10.0.0.5", "10.0.0.1", 5000), false},
		{"never admitted by a rule", admissionsOf(t, state(svc.Rules[1:])), ctFlow(z, 17, "10.0.0.9", "10.0.0.1", 68), false},
		{"egress narrowed", admissionsOf(t, state(svc.Rules[:3], "10.0.0.5", "10.0.0.6")), ctFlow(z, 6, "10.0.0.1", "10.0.0.9", 443), true},
	}
	for _, c := range cases {
		rv := revoked{zones: map[uint16][2]portAdmission{z: {old, c.now}}}
		if got := rv.MatchConntrackFlow(c.flow); got != c.gone {
			t.Errorf("%s: deleted=%v, want %v", c.name, got, c.gone)
		}
	}
	if !old.equal(admissionsOf(t, state(svc.Rules, "10.0.0.5", "10.0.0.6"))) {
		t.Error("the same rules gave a different admission")
	}

	// covers decides whether a change can forget anything: it must say no whenever
	// some entry would be revoked, and yes for changes that only widen.
	narrower := *svc
	narrower.Rules = []api.Rule{{ID: "ssh", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22}}
	wider := []api.Rule{{ID: "all-tcp", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp"}}
	other := state(svc.Rules, "10.0.0.5", "10.0.0.6")
	other.Ports[0].FixedIPs = []string{"10.0.0.2"}
	for _, c := range []struct {
		name string
		now  portAdmission
		want bool
	}{
		{"same", admissionsOf(t, state(svc.Rules, "10.0.0.5", "10.0.0.6")), true},
		{"member added", admissionsOf(t, state(svc.Rules, "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7")), true},
		{"rule added", admissionsOf(t, state(append(append([]api.Rule(nil), svc.Rules...), wider...), "10.0.0.5", "10.0.0.6")), true},
		{"rules reordered", admissionsOf(t, state([]api.Rule{svc.Rules[3], svc.Rules[2], svc.Rules[1], svc.Rules[0]}, "10.0.0.6", "10.0.0.5")), true},
		{"member left", admissionsOf(t, state(svc.Rules, "10.0.0.5")), false},
		{"member replaced", admissionsOf(t, state(svc.Rules, "10.0.0.5", "10.0.0.7")), false},
		{"rule removed", admissionsOf(t, state(svc.Rules[1:], "10.0.0.5", "10.0.0.6")), false},
		{"port range narrowed", admissionsOf(t, state(append(narrower.Rules, svc.Rules[2:]...), "10.0.0.5", "10.0.0.6")), false},
		{"own address changed", admissionsOf(t, other), false},
	} {
		if got := c.now.covers(&old); got != c.want {
			t.Errorf("covers, %s: %v, want %v", c.name, got, c.want)
		}
		// Whatever covers says yes to must revoke none of the entries above.
		if c.want {
			rv := revoked{zones: map[uint16][2]portAdmission{z: {old, c.now}}}
			for _, f := range []*netlink.ConntrackFlow{ctFlow(z, 6, "10.0.0.9", "10.0.0.1", 22), ctFlow(z, 17, "10.0.0.6", "10.0.0.1", 5000),
				ctFlow(z, 6, "10.0.0.1", "10.0.0.9", 443), ctFlow(z, 6, "10.0.0.9", "10.0.0.1", 80)} {
				if rv.MatchConntrackFlow(f) {
					t.Errorf("covers, %s: yet %v is revoked", c.name, f.Forward)
				}
			}
		}
	}
}

// TestFirewallForgetsRevokedConnections puts conntrack entries in a port's zone and
// checks that narrowing its rules deletes exactly those no rule admits any more.
func TestFirewallForgetsRevokedConnections(t *testing.T) {
	skipUnlessKernel(t)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Skip("needs conntrack (conntrack-tools) to create entries")
	}
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	g := &api.SecurityGroup{ID: "svc", Rules: []api.Rule{
		{ID: "a", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 5000, PortMax: 5000},
		{ID: "b", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 6000, PortMax: 6000},
		{ID: "c", Direction: api.Egress, Ethertype: api.IPv4},
	}}
	st := FirewallState{
		Ports: []FirewallPort{{ID: portID(1), NetworkID: testNet, MAC: macOf(1), FixedIPs: []string{"10.0.0.1"},
			PortSecurity: true, SecurityGroups: []string{"svc"}}},
		Groups: map[string]*api.SecurityGroup{"svc": g},
	}
	th.apply(t, st)
	zone := th.fw.Zones()[DeviceID(portID(1))]
	entries := []struct {
		src, dst string
		dport    int
		zone     int
		stays    bool
	}{
		{"10.0.0.9", "10.0.0.1", 5000, zone, false},    // only rule a admitted it
		{"10.0.0.9", "10.0.0.1", 6000, zone, true},     // rule b still does
		{"10.0.0.1", "10.0.0.9", 5000, zone, true},     // the VM opened it: egress
		{"10.0.0.9", "10.0.0.1", 5000, zone + 1, true}, // another port's zone
	}
	for _, e := range entries {
		th.sh(t, "conntrack", "-I", "-p", "udp", "-s", e.src, "-d", e.dst, "--sport", "40000", "--dport", strconv.Itoa(e.dport),
			"--timeout", "120", "-w", strconv.Itoa(e.zone))
	}
	g.Rules = g.Rules[1:]
	if s := th.apply(t, st); s.ConnsForgotten != 1 {
		t.Errorf("removing rule a forgot %d connections, want 1", s.ConnsForgotten)
	}
	for _, e := range entries {
		out, _ := th.ns.Exec("conntrack", "-L", "-p", "udp", "-s", e.src, "-d", e.dst, "--dport", strconv.Itoa(e.dport), "-w", strconv.Itoa(e.zone))
		if got := strings.Contains(out, "dport="+strconv.Itoa(e.dport)); got != e.stays {
			t.Errorf("%s -> %s:%d in zone %d: present=%v, want %v\n%s", e.src, e.dst, e.dport, e.zone, got, e.stays, out)
		}
	}
	// Nothing changed: nothing forgotten, no dump.
	if s := th.apply(t, st); s.ConnsForgotten != 0 || s.Changed() {
		t.Errorf("no-op apply: %+v", s)
	}
}

// TestFirewallForgetsLeftMembers: a remote-group member that leaves takes the
// connections it had been admitted by with it, in both families; members that stay
// keep theirs, and a member that joins forgets nothing.
func TestFirewallForgetsLeftMembers(t *testing.T) {
	skipUnlessKernel(t)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Skip("needs conntrack (conntrack-tools) to create entries")
	}
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	g := &api.SecurityGroup{ID: "peers", Rules: []api.Rule{
		{ID: "v4", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", RemoteGroupID: "peers"},
		{ID: "v6", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "udp", RemoteGroupID: "peers"},
	}}
	state := func(members ...string) FirewallState {
		return FirewallState{
			Ports: []FirewallPort{{ID: portID(1), NetworkID: testNet, MAC: macOf(1), FixedIPs: []string{"10.0.0.1", "fd00::1"},
				PortSecurity: true, SecurityGroups: []string{"peers"}}},
			Groups:  map[string]*api.SecurityGroup{"peers": g},
			Members: map[string]map[string][]string{"peers": {testNet: append([]string{"10.0.0.1", "fd00::1"}, members...)}},
		}
	}
	th.apply(t, state("10.0.0.5", "10.0.0.6", "fd00::5", "fd00::6"))
	zone := strconv.Itoa(th.fw.Zones()[DeviceID(portID(1))])
	entries := []struct{ fam, src, dst string }{
		{"ipv4", "10.0.0.5", "10.0.0.1"}, {"ipv4", "10.0.0.6", "10.0.0.1"},
		{"ipv6", "fd00::5", "fd00::1"}, {"ipv6", "fd00::6", "fd00::1"},
	}
	for _, e := range entries {
		th.sh(t, "conntrack", "-I", "-p", "udp", "-s", e.src, "-d", e.dst, "--sport", "40000", "--dport", "5000",
			"--timeout", "120", "-w", zone)
	}
	present := func(e struct{ fam, src, dst string }) bool {
		out, _ := th.ns.Exec("conntrack", "-L", "-f", e.fam, "-p", "udp", "-s", e.src, "-w", zone)
		return strings.Contains(out, "dport=5000")
	}
	if s := th.apply(t, state("10.0.0.5", "10.0.0.6", "10.0.0.7", "fd00::5", "fd00::6")); s.ConnsForgotten != 0 || s.SetsWritten != 1 {
		t.Errorf("a member joined: %+v, want one set written and nothing forgotten", s)
	}
	if s := th.apply(t, state("10.0.0.5", "10.0.0.7", "fd00::5")); s.ConnsForgotten != 2 {
		t.Errorf("two members left: forgot %d connections, want 2", s.ConnsForgotten)
	}
	for i, e := range entries {
		if want := i%2 == 0; present(e) != want {
			t.Errorf("%s -> %s: present=%v, want %v", e.src, e.dst, !want, want)
		}
	}
}

// TestCoversNeverHidesARevocation: for random pairs of rule sets and member lists,
// whenever covers says the new admission holds the old one, no connection is one
// the old admitted and the new does not; so skipping the conntrack dump then
// forgets nothing that a dump would have.
func TestCoversNeverHidesARevocation(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 4))
	addrs := []string{"10.0.0.1", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.1.9"}
	protos := []string{"", "tcp", "udp", "icmp"}
	randomState := func() FirewallState {
		var rules []api.Rule
		for i := range rng.IntN(5) {
			r := api.Rule{ID: strconv.Itoa(i), Direction: []string{api.Ingress, api.Egress}[rng.IntN(2)], Ethertype: api.IPv4, Protocol: protos[rng.IntN(len(protos))]}
			if r.Protocol == "tcp" || r.Protocol == "udp" {
				if lo := rng.IntN(3) * 1000; lo > 0 {
					r.PortMin, r.PortMax = lo, lo+rng.IntN(2)*500
				}
			}
			switch rng.IntN(3) {
			case 0:
				r.RemoteGroupID = "peers"
			case 1:
				r.RemoteCIDR = []string{"10.0.0.0/24", "10.0.0.4/30", "0.0.0.0/0"}[rng.IntN(3)]
			}
			rules = append(rules, r)
		}
		var members []string
		for _, a := range addrs[1:] {
			if rng.IntN(2) == 0 {
				members = append(members, a)
			}
		}
		return FirewallState{
			Ports: []FirewallPort{{ID: portID(1), NetworkID: testNet, MAC: macOf(1), FixedIPs: []string{"10.0.0.1"},
				PortSecurity: rng.IntN(8) > 0, SecurityGroups: []string{"svc"}}},
			Groups:  map[string]*api.SecurityGroup{"svc": {ID: "svc", Rules: rules}},
			Members: map[string]map[string][]string{"peers": {testNet: members}},
		}
	}
	covered := 0
	for range 3000 {
		old, cur := admissionsOf(t, randomState()), admissionsOf(t, randomState())
		if !cur.covers(&old) {
			continue
		}
		covered++
		rv := revoked{zones: map[uint16][2]portAdmission{uint16(old.zone): {old, cur}}}
		for _, src := range addrs {
			for _, dst := range addrs {
				for _, proto := range []uint8{1, 6, 17} {
					for _, dport := range []uint16{22, 1000, 1400, 2000} {
						if f := ctFlow(uint16(old.zone), proto, src, dst, dport); rv.MatchConntrackFlow(f) {
							t.Fatalf("covers held, yet %s -> %s:%d/%d is revoked\nold %+v\nnew %+v", src, dst, dport, proto, old, cur)
						}
					}
				}
			}
		}
	}
	if covered < 100 {
		t.Fatalf("only %d covered pairs: the test checks too little", covered)
	}
}

// TestFirewallPacesForgetting: with ForgetEvery, members leaving one after another
// cost one conntrack walk per period, not one each. The first departure is forgotten
// at once, the next ones together within the period, and a member that leaves and
// comes back within it keeps its connections.
func TestFirewallPacesForgetting(t *testing.T) {
	skipUnlessKernel(t)
	if _, err := exec.LookPath("conntrack"); err != nil {
		t.Skip("needs conntrack (conntrack-tools) to create entries")
	}
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	th.fw.forgetEvery = 500 * time.Millisecond
	g := &api.SecurityGroup{ID: "peers", Rules: []api.Rule{{ID: "v4", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", RemoteGroupID: "peers"}}}
	state := func(members ...string) FirewallState {
		return FirewallState{
			Ports: []FirewallPort{{ID: portID(1), NetworkID: testNet, MAC: macOf(1), FixedIPs: []string{"10.0.0.1"},
				PortSecurity: true, SecurityGroups: []string{"peers"}}},
			Groups:  map[string]*api.SecurityGroup{"peers": g},
			Members: map[string]map[string][]string{"peers": {testNet: append([]string{"10.0.0.1"}, members...)}},
		}
	}
	th.apply(t, state("10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"))
	zone := strconv.Itoa(th.fw.Zones()[DeviceID(portID(1))])
	for _, src := range []string{"10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"} {
		th.sh(t, "conntrack", "-I", "-p", "udp", "-s", src, "-d", "10.0.0.1", "--sport", "40000", "--dport", "5000",
			"--timeout", "120", "-w", zone)
	}
	present := func(src string) bool {
		out, _ := th.ns.Exec("conntrack", "-L", "-p", "udp", "-s", src, "-w", zone)
		return strings.Contains(out, "dport=5000")
	}
	if s := th.apply(t, state("10.0.0.6", "10.0.0.7", "10.0.0.8")); s.ConnsForgotten != 1 || present("10.0.0.5") {
		t.Fatalf("the first member to leave: forgot %d at once, want 1", s.ConnsForgotten)
	}
	th.fw.mu.Lock()
	walked := th.fw.walked
	th.fw.mu.Unlock()
	for _, members := range [][]string{{"10.0.0.7", "10.0.0.8"}, {"10.0.0.8"}, {}, {"10.0.0.8"}} {
		if s := th.apply(t, state(members...)); s.ConnsForgotten != 0 {
			t.Fatalf("members %v within the period: forgot %d at once, want the walk put off", members, s.ConnsForgotten)
		}
	}
	if !present("10.0.0.6") {
		t.Fatal("10.0.0.6 forgotten before the period ended")
	}
	deadline := time.Now().Add(5 * time.Second)
	for present("10.0.0.6") || present("10.0.0.7") {
		if time.Now().After(deadline) {
			t.Fatal("the members that left within the period kept their connections")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !present("10.0.0.8") {
		t.Error("10.0.0.8 left and came back within the period but lost its connection")
	}
	th.fw.mu.Lock()
	defer th.fw.mu.Unlock()
	if th.fw.walked.Sub(walked) < th.fw.forgetEvery {
		t.Errorf("the put-off walk ran %s after the first, want at least %s", th.fw.walked.Sub(walked), th.fw.forgetEvery)
	}
}
