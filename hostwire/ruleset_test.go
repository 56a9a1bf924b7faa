package hostwire

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func intp(i int) *int { return &i }

// goldenState has a filtered port with an address pair and two groups (one with a
// remote-group rule), a port with port security off, and a port on another network
// with a group that is gone and the remote-group rule, whose set is that network's.
func goldenState() FirewallState {
	web := &api.SecurityGroup{ID: "5b7e9c2a-1111-4b3c-8d2e-000000000001", Name: "web", Rules: []api.Rule{
		{ID: "r1", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{ID: "r2", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
		{ID: "r3", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 8000, PortMax: 8080, RemoteCIDR: "192.168.0.0/16"},
		{ID: "r4", Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: "5b7e9c2a-1111-4b3c-8d2e-000000000001"},
		{ID: "r5", Direction: api.Egress, Ethertype: api.IPv4},
		{ID: "r6", Direction: api.Egress, Ethertype: api.IPv6},
		{ID: "r7", Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "icmpv6", ICMPType: intp(128), ICMPCode: intp(0)},
	}}
	dup := &api.SecurityGroup{ID: "7c000000-2222-4b3c-8d2e-000000000002", Name: "dup", Rules: []api.Rule{
		{ID: "d1", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22},
		{ID: "d2", Direction: api.Egress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 53, RemoteCIDR: "0.0.0.0/0"},
		{ID: "d3", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp", ICMPType: intp(8)},
	}}
	return FirewallState{
		Ports: []FirewallPort{
			{ID: "0d8a43d2-3a3f-4b4e-9c2f-2f3a1e5b7c01", NetworkID: "9a000000-net-a", MAC: "fa:16:3e:4c:2e:01", FixedIPs: []string{"10.0.0.5"},
				AllowedAddressPairs: []api.AddressPair{{IP: "10.0.0.100"}, {IP: "10.0.1.0/24", MAC: "fa:16:3e:00:00:99"}},
				PortSecurity:        true, SecurityGroups: []string{web.ID, dup.ID}, Zone: 4097},
			{ID: "1e000000-0000-0000-0000-000000000002", NetworkID: "9a000000-net-a", MAC: "fa:16:3e:4c:2e:02", FixedIPs: []string{"10.0.0.6"},
				PortSecurity: false, SecurityGroups: []string{web.ID}, Zone: 4098},
			{ID: "2f000000-0000-0000-0000-000000000003", NetworkID: "9b000000-net-b", MAC: "fa:16:3e:4c:2e:03", FixedIPs: []string{"10.0.0.7"},
				PortSecurity: true, SecurityGroups: []string{"gone-group", web.ID}, Zone: 4099},
		},
		Groups: map[string]*api.SecurityGroup{web.ID: web, dup.ID: dup},
		Members: map[string]map[string][]string{web.ID: {
			"9a000000-net-a": {"10.0.0.6", "10.0.0.5", "10.0.1.0/24", "10.0.0.5/32", "fd00::1", "0.0.0.0/0"},
			// The same group on another network, with an address of net-a: not in net-a's set.
			"9b000000-net-b": {"10.0.0.9"},
		}},
		ServerLinkLocal: netip.MustParseAddr(mServerLL),
	}
}

func TestRenderGolden(t *testing.T) {
	rs, err := Render(goldenState())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, id := range Tables {
		b.WriteString("# " + id.String() + "\n")
		b.WriteString(rs.RestoreText(id))
	}
	b.WriteString("# ipset\n")
	b.WriteString(rs.IPSetRestoreText())
	golden := filepath.Join("testdata", "ruleset.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("ruleset differs from %s (run `go test ./hostwire -run Golden -update` after checking):\n%s", golden, lineDiff(string(want), got))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			b.WriteString("- " + a + "\n+ " + c + "\n")
		}
	}
	return b.String()
}

func TestRenderStable(t *testing.T) {
	st := goldenState()
	a, err := Render(st)
	if err != nil {
		t.Fatal(err)
	}
	// Port order must not matter.
	st.Ports[0], st.Ports[2] = st.Ports[2], st.Ports[0]
	b, err := Render(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range Tables {
		if a.RestoreText(id) != b.RestoreText(id) {
			t.Errorf("%s depends on port order", id)
		}
	}
}

func TestNamesFitLimits(t *testing.T) {
	id := "0d8a43d2-3a3f-4b4e-9c2f-2f3a1e5b7c01"
	for _, c := range []string{IngressChain(id), EgressChain(id), SpoofChain(id), ChainFallback, ChainPrerouting} {
		if len(c) > 28 {
			t.Errorf("chain %s: %d > 28 characters", c, len(c))
		}
	}
	if n := SetName(V6, id, id) + "-n"; len(n) > 31 {
		t.Errorf("set %s: %d > 31 characters", n, len(n))
	}
	if got := IngressChain(id); got != "lanes-i0d8a43d2-3a" {
		t.Errorf("IngressChain = %s", got)
	}
}

func TestRenderRejectsSharedDevice(t *testing.T) {
	st := FirewallState{Ports: []FirewallPort{
		{ID: "0d8a43d2-3a3f-aaaa", MAC: "fa:16:3e:00:00:01", Zone: 1},
		{ID: "0d8a43d2-3a3f-bbbb", MAC: "fa:16:3e:00:00:02", Zone: 2},
	}}
	if _, err := Render(st); err == nil {
		t.Fatal("two ports with the same device name accepted")
	}
}

// TestRenderReusedSetsEqualFresh: a render that reuses the sets of the previous one
// equals a render from scratch after every step of random member changes (members
// added, removed, replaced, a network's list emptied or dropped, a group's rules
// switched between families).
func TestRenderReusedSetsEqualFresh(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 1))
	st := goldenState()
	web := st.Groups["5b7e9c2a-1111-4b3c-8d2e-000000000001"]
	nets := []string{"9a000000-net-a", "9b000000-net-b"}
	pool := []string{"10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.1.0/24", "fd00::1", "fd00::2", "0.0.0.0/0", "10.0.0.5/32", "bad"}
	var prev map[string]*IPSet
	for step := range 300 {
		members := map[string][]string{}
		for n, l := range st.Members[web.ID] {
			members[n] = l
		}
		n := nets[rng.IntN(len(nets))]
		switch l := members[n]; rng.IntN(6) {
		case 0:
			members[n] = append(slices.Clone(l), pool[rng.IntN(len(pool))])
		case 1:
			if len(l) > 0 {
				i := rng.IntN(len(l))
				members[n] = slices.Delete(slices.Clone(l), i, i+1)
			}
		case 2:
			if len(l) > 0 {
				c := slices.Clone(l)
				c[rng.IntN(len(c))] = pool[rng.IntN(len(pool))]
				members[n] = c
			}
		case 3:
			members[n] = nil
		case 4:
			delete(members, n)
		case 5:
			g := *web
			g.Rules = slices.Clone(g.Rules)
			for i := range g.Rules {
				if g.Rules[i].RemoteGroupID != "" {
					g.Rules[i].Ethertype = map[string]string{api.IPv4: api.IPv6, api.IPv6: api.IPv4}[g.Rules[i].Ethertype]
				}
			}
			web = &g
			st.Groups = map[string]*api.SecurityGroup{web.ID: web, "7c000000-2222-4b3c-8d2e-000000000002": st.Groups["7c000000-2222-4b3c-8d2e-000000000002"]}
		}
		st.Members = map[string]map[string][]string{web.ID: members}
		got, err := render(st, prev)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Render(st)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Sets) != len(want.Sets) {
			t.Fatalf("step %d: %d sets, want %d", step, len(got.Sets), len(want.Sets))
		}
		for name, w := range want.Sets {
			g := got.Sets[name]
			if g == nil || g.Family != w.Family || !slices.Equal(g.Members, w.Members) || !slices.Equal(g.prefixes, w.prefixes) {
				t.Fatalf("step %d: set %s = %+v, want %+v", step, name, g, w)
			}
		}
		for _, id := range Tables {
			if got.RestoreText(id) != want.RestoreText(id) {
				t.Fatalf("step %d: %s differs", step, id)
			}
		}
		if !reflect.DeepEqual(got.admits, want.admits) {
			t.Fatalf("step %d: admissions differ", step)
		}
		prev = got.Sets
	}
}
