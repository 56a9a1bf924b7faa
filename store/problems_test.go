package store

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutProblems is st as the data path sees it.
func withoutProblems(st State) State {
	st.Problems, st.Revision, st.Gen = nil, 0, 0
	return st
}

// poisonFixture is a store with a network, a group and two ports, and a mirror of it.
type poisonFixture struct {
	s      *Store
	m      *Mirror
	n      api.Network
	web    api.SecurityGroup
	p1, p2 api.Port
	clean  State // the mirror's state before any poison
}

func newPoisonFixture(t *testing.T) *poisonFixture {
	t.Helper()
	s := newStore(t)
	ctx := tctx(t)
	registerHost(t, s, "h1", "192.168.1.1")
	f := &poisonFixture{s: s, n: mustNet(t, s, "net", "10.0.0.0/24")}
	var err error
	if f.web, err = s.CreateSecurityGroup(ctx, DefaultSecurityGroup("web")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddRule(ctx, "web", api.Rule{Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 22, PortMax: 22}); err != nil {
		t.Fatal(err)
	}
	if f.web, err = s.GetSecurityGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	f.p1 = mustPort(t, s, api.Port{Name: "p1", NetworkID: "net", Host: "h1", SecurityGroups: []string{"web"}})
	f.p2 = mustPort(t, s, api.Port{Name: "p2", NetworkID: "net", Host: "h1", SecurityGroups: []string{"web"}})
	f.m = s.NewMirror(MirrorOptions{})
	runMirror(t, f.m)
	f.clean = waitState(t, f.m, "the fixture", func(st State) bool { return len(st.Ports) == 2 })
	if len(f.clean.Problems) != 0 || len(f.clean.Groups[f.web.ID].Rules) != 5 {
		t.Fatalf("fixture: %+v", f.clean)
	}
	return f
}

// port is a valid port record on the fixture's network, changed by mod.
func (f *poisonFixture) port(mod func(*api.Port)) api.Port {
	p := api.Port{ID: NewUUID(), Name: "px", NetworkID: f.n.ID, Host: "h1", MAC: "fa:16:3e:aa:bb:cc",
		FixedIPs: []string{"10.0.0.200"}, SecurityGroups: []string{f.web.ID}}
	mod(&p)
	return p
}

// Each poison record written around the CLI must be left out of the State and
// reported, with everything else as it was; removing it must bring the State back.
func TestMirrorLeavesPoisonOut(t *testing.T) {
	t.Parallel()
	f := newPoisonFixture(t)
	ctx := tctx(t)
	s, n, web, p1 := f.s, f.n, f.web, f.p1
	rulesWith := func(extra ...api.Rule) api.SecurityGroup {
		g := cloneGroup(web)
		g.Rules = append(g.Rules, extra...)
		return g
	}
	newNet := api.Network{ID: NewUUID(), Name: "twin", VNI: n.VNI, CIDR: "10.1.0.0/24", MTU: 1450}
	onTwin := f.port(func(p *api.Port) { p.NetworkID = newNet.ID; p.FixedIPs = []string{"10.1.0.5"} })
	bigPort := f.port(func(p *api.Port) { p.Name = strings.Repeat("n", 400<<10) })
	unknownGroup := NewUUID()
	withUnknownGroup := f.port(func(p *api.Port) { p.SecurityGroups = []string{unknownGroup, web.ID} })
	badRule := api.Rule{ID: NewUUID(), Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 0, PortMax: 80}
	zeroProto := api.Rule{ID: NewUUID(), Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "0"}
	danglingRule := api.Rule{ID: NewUUID(), Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: unknownGroup}
	twinRuleID := web.Rules[0].ID
	twinRule := api.Rule{ID: twinRuleID, Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "udp", PortMin: 53, PortMax: 53}
	badHostKey := pHosts + "h9"

	type put struct{ key, value string }
	for _, c := range []struct {
		name  string
		puts  []put
		key   string // the key of the problem expected
		class string
		part  string // "" for a record left out
		err   string // a substring of Problem.Err
		// check, when set, checks the state instead of "as clean".
		check func(t *testing.T, st State)
	}{
		{name: "undecodable port", puts: []put{{pPorts + onTwin.ID, `{"id": "` + onTwin.ID + `", "name": `}},
			key: pPorts + onTwin.ID, class: ProblemUndecodable, err: "not JSON of a port record"},
		{name: "port of the wrong type", puts: []put{{pPorts + onTwin.ID, `{"id": "` + onTwin.ID + `", "fixed_ips": "10.0.0.9"}`}},
			key: pPorts + onTwin.ID, class: ProblemUndecodable, err: "cannot unmarshal"},
		{name: "1 MB value", puts: []put{{pPorts + onTwin.ID, strings.Repeat("x", 1<<20)}},
			key: pPorts + onTwin.ID, class: ProblemUndecodable, err: "value of 1048576 bytes is larger than any valid record"},
		{name: "400 KB name", puts: []put{{pPorts + bigPort.ID, jsonOf(t, bigPort)}},
			key: pPorts + bigPort.ID, class: ProblemInvalid, err: "(409600 bytes): longer than 64 characters"},
		{name: "port on a missing network", puts: []put{{pPorts + onTwin.ID, jsonOf(t, onTwin)}},
			key: pPorts + onTwin.ID, class: ProblemDangling, err: "network " + newNet.ID + " does not exist"},
		{name: "port outside its network", puts: []put{{pPorts + onTwin.ID, jsonOf(t, f.port(func(p *api.Port) { p.ID = onTwin.ID; p.FixedIPs = []string{"10.1.0.5"} }))}},
			key: pPorts + onTwin.ID, class: ProblemInvalid, err: `port.fixed_ips "10.1.0.5": outside the network's CIDR 10.0.0.0/24`},
		{name: "port without MAC", puts: []put{{pPorts + onTwin.ID, jsonOf(t, f.port(func(p *api.Port) { p.ID = onTwin.ID; p.MAC = "" }))}},
			key: pPorts + onTwin.ID, class: ProblemInvalid, err: "port.mac"},
		{name: "port ID differs from key", puts: []put{{pPorts + onTwin.ID, jsonOf(t, f.port(func(*api.Port) {}))}},
			key: pPorts + onTwin.ID, class: ProblemInvalid, err: "differs from the ID in the key"},
		{name: "port key not a UUID", puts: []put{{pPorts + "vm1", jsonOf(t, f.port(func(p *api.Port) { p.ID = "vm1" }))}},
			key: pPorts + "vm1", class: ProblemInvalid, err: "not a lower-case UUID"},
		{name: "port with a taken MAC", puts: []put{{pPorts + onTwin.ID, jsonOf(t, f.port(func(p *api.Port) { p.ID = onTwin.ID; p.MAC = strings.ToUpper(p1.MAC) }))}},
			key: pPorts + onTwin.ID, class: ProblemConflict, err: "MAC " + p1.MAC + " is also port " + p1.ID + "'s, which is older"},
		{name: "port with a taken IP", puts: []put{{pPorts + onTwin.ID, jsonOf(t, f.port(func(p *api.Port) { p.ID = onTwin.ID; p.FixedIPs = []string{p1.FixedIPs[0]} }))}},
			key: pPorts + onTwin.ID, class: ProblemConflict, err: "IP " + p1.FixedIPs[0] + " is also port " + p1.ID},
		{name: "port with a taken device name", puts: []put{{pPorts + p1.ID[:11] + onTwin.ID[11:], jsonOf(t, f.port(func(p *api.Port) { p.ID = p1.ID[:11] + onTwin.ID[11:] }))}},
			key: pPorts + p1.ID[:11] + onTwin.ID[11:], class: ProblemConflict, err: "device name " + api.TapName(p1.ID) + " is also port " + p1.ID},
		{name: "port with an unknown group", puts: []put{{pPorts + withUnknownGroup.ID, jsonOf(t, withUnknownGroup)}},
			key: pPorts + withUnknownGroup.ID, class: ProblemDangling, part: "security_group " + unknownGroup, err: "the port goes without it",
			check: func(t *testing.T, st State) {
				want := withUnknownGroup
				want.SecurityGroups = []string{web.ID}
				if got, ok := st.Ports[want.ID]; !ok || !reflect.DeepEqual(*got, want) {
					t.Errorf("port kept as %+v, want %+v", got, want)
				}
				delete(st.Ports, want.ID)
				if !reflect.DeepEqual(withoutProblems(st), withoutProblems(f.clean)) {
					t.Errorf("the rest changed: %+v", st)
				}
			}},
		{name: "good port overwritten with garbage", puts: []put{{pPorts + p1.ID, `garbage`}},
			key: pPorts + p1.ID, class: ProblemUndecodable, err: "invalid character",
			check: func(t *testing.T, st State) {
				want := withoutProblems(f.clean.Clone())
				delete(want.Ports, p1.ID)
				if !reflect.DeepEqual(withoutProblems(st), want) {
					t.Errorf("state %+v, want the clean one without p1", st)
				}
			}},

		{name: "network with a taken VNI", puts: []put{{pNetworks + newNet.ID, jsonOf(t, newNet)}},
			key: pNetworks + newNet.ID, class: ProblemConflict, err: fmt.Sprintf("VNI %d is also network %s's, which is older", n.VNI, n.ID)},
		{name: "port on a network with a taken VNI", puts: []put{{pNetworks + newNet.ID, jsonOf(t, newNet)}, {pPorts + onTwin.ID, jsonOf(t, onTwin)}},
			key: pPorts + onTwin.ID, class: ProblemDangling, err: "network " + newNet.ID + " is left out: VNI"},
		{name: "network CIDR rewritten under its ports", puts: []put{{pNetworks + n.ID, jsonOf(t, api.Network{ID: n.ID, Name: n.Name, VNI: n.VNI, CIDR: "10.5.0.0/24", MTU: n.MTU})}},
			key: pPorts + p1.ID, class: ProblemInvalid, err: "outside the network's CIDR 10.5.0.0/24",
			check: func(t *testing.T, st State) {
				if st.Networks[n.ID].CIDR != "10.5.0.0/24" || len(st.Ports) != 0 || len(st.ProblemsOf(KindPorts, f.p2.ID)) != 1 {
					t.Errorf("state %+v", st)
				}
			}},
		{name: "network with VNI 0", puts: []put{{pNetworks + newNet.ID, jsonOf(t, api.Network{ID: newNet.ID, Name: "z", CIDR: "10.1.0.0/24", MTU: 1450})}},
			key: pNetworks + newNet.ID, class: ProblemInvalid, err: `network.vni "0": must be within 1..16777215`},
		{name: "network with a /31", puts: []put{{pNetworks + newNet.ID, jsonOf(t, api.Network{ID: newNet.ID, Name: "z", VNI: 77, CIDR: "10.1.0.0/31", MTU: 1450})}},
			key: pNetworks + newNet.ID, class: ProblemInvalid, err: "at least a /30"},
		{name: "network with a negative VNI", puts: []put{{pNetworks + newNet.ID, `{"id":"` + newNet.ID + `","name":"z","vni":-1,"cidr":"10.1.0.0/24","mtu":1450}`}},
			key: pNetworks + newNet.ID, class: ProblemUndecodable, err: "cannot unmarshal number -1"},

		{name: "rule with port 0-80", puts: []put{{pGroups + web.ID, jsonOf(t, rulesWith(badRule))}},
			key: pGroups + web.ID, class: ProblemInvalid, part: "rule " + badRule.ID, err: `rule.port_range "0-80": must be within 1..65535`},
		{name: "rule with protocol 0", puts: []put{{pGroups + web.ID, jsonOf(t, rulesWith(zeroProto))}},
			key: pGroups + web.ID, class: ProblemInvalid, part: "rule " + zeroProto.ID, err: `rule.protocol "0"`},
		{name: "rule with an unknown remote group", puts: []put{{pGroups + web.ID, jsonOf(t, rulesWith(danglingRule))}},
			key: pGroups + web.ID, class: ProblemDangling, part: "rule " + danglingRule.ID, err: "remote group " + unknownGroup},
		{name: "rule ID twice", puts: []put{{pGroups + web.ID, jsonOf(t, rulesWith(twinRule))}},
			key: pGroups + web.ID, class: ProblemInvalid, part: "rule " + twinRuleID, err: "used twice in the group; the first is kept"},
		{name: "group with a bad name", puts: []put{{pGroups + web.ID, jsonOf(t, api.SecurityGroup{ID: web.ID, Name: "w b", Rules: web.Rules})}},
			key: pGroups + web.ID, class: ProblemInvalid, err: "sg.name",
			check: func(t *testing.T, st State) {
				// The ports keep going, without the group: less access, not more.
				if _, ok := st.Groups[web.ID]; ok || len(st.Ports[p1.ID].SecurityGroups) != 0 || len(st.Ports[f.p2.ID].SecurityGroups) != 0 {
					t.Errorf("state %+v", st)
				}
				for _, p := range []api.Port{p1, f.p2} {
					if pr := st.ProblemsOf(KindPorts, p.ID); len(pr) != 1 || pr[0].Part != "security_group "+web.ID || pr[0].Host != "h1" {
						t.Errorf("problems of %s: %+v", p.Name, pr)
					}
				}
			}},

		{name: "host with a bad tunnel IP", puts: []put{{badHostKey, jsonOf(t, api.Host{Name: "h9", TunnelIP: "0.0.0.0", TunnelType: api.TunnelVXLAN})}},
			key: badHostKey, class: ProblemInvalid, err: "host.tunnel_ip"},
		{name: "host with a taken tunnel IP", puts: []put{{badHostKey, jsonOf(t, api.Host{Name: "h9", TunnelIP: "192.168.1.1", TunnelType: api.TunnelVXLAN})}},
			key: badHostKey, class: ProblemConflict, err: "tunnel IP 192.168.1.1 is also host h1's"},
		{name: "host name differs from key", puts: []put{{badHostKey, jsonOf(t, api.Host{Name: "h1", TunnelIP: "192.168.1.9", TunnelType: api.TunnelVXLAN})}},
			key: badHostKey, class: ProblemInvalid, err: "differs from the ID in the key"},
		{name: "undecodable status", puts: []put{{statusKey(p1.Host, p1.ID), `{`}},
			key: statusKey(p1.Host, p1.ID), class: ProblemUndecodable, err: "not JSON of a port status record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := dump(t, s)
			// Putting the store back clears the problem (and keeps a failure from
			// spilling into the next case).
			t.Cleanup(func() {
				for k, v := range before {
					if after := dump(t, s); after[k] != v {
						if _, err := s.Client().Put(ctx, k, v); err != nil {
							t.Fatal(err)
						}
					}
				}
				for k := range dump(t, s) {
					if _, ok := before[k]; !ok {
						if _, err := s.Client().Delete(ctx, k); err != nil {
							t.Fatal(err)
						}
					}
				}
				waitState(t, f.m, "the clean state again", func(st State) bool {
					return len(st.Problems) == 0 && reflect.DeepEqual(withoutProblems(st), withoutProblems(f.clean))
				})
			})
			for _, p := range c.puts {
				if _, err := s.Client().Put(ctx, p.key, p.value); err != nil {
					t.Fatal(err)
				}
			}
			st := waitState(t, f.m, "the problem", func(st State) bool {
				return slices.ContainsFunc(st.Problems, func(p Problem) bool { return p.Key == c.key })
			})
			var got []Problem
			for _, p := range st.Problems {
				if p.Key == c.key {
					got = append(got, p)
				}
			}
			kind, id, _ := strings.Cut(strings.TrimPrefix(c.key, Prefix), "/")
			if kind == KindStatus { // status/<host>/<port id>
				id = id[strings.LastIndex(id, "/")+1:]
			}
			if len(got) != 1 || got[0].Class != c.class || got[0].Part != c.part || got[0].Kind != kind || got[0].ID != id ||
				got[0].ModRevision == 0 || !strings.Contains(got[0].Err, c.err) {
				t.Fatalf("problems of %s: %+v, want one of class %s, part %q, saying %q", c.key, got, c.class, c.part, c.err)
			}
			for _, p := range st.Problems {
				if n := len(p.Key) + len(p.ID) + len(p.Host) + len(p.Part) + len(p.Err); n > 5*MaxProblemText {
					t.Errorf("problem of %d bytes: %.300s", n, p)
				}
			}
			if c.check != nil {
				c.check(t, st.Clone())
			} else {
				// Only the problems' own record is affected (and, for a port on a left-out
				// network, the network).
				if !reflect.DeepEqual(withoutProblems(st), withoutProblems(f.clean)) {
					t.Errorf("state changed:\n%+v\nwant\n%+v", withoutProblems(st), withoutProblems(f.clean))
				}
			}

			// A fresh mirror, which lists instead of watching, finds the same.
			m2 := s.NewMirror(MirrorOptions{})
			runMirror(t, m2)
			if st2 := m2.Snapshot(); !reflect.DeepEqual(withoutProblems(st2), withoutProblems(st)) || !reflect.DeepEqual(st2.Problems, st.Problems) {
				t.Errorf("listed state differs from the watched one:\n%+v\n%+v", st2, st)
			}

		})
	}
}

// An agent that keeps only some statuses reports no problem for the others.
func TestMirrorStatusProblemsFiltered(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := tctx(t)
	m := s.NewMirror(MirrorOptions{KeepStatus: func(st api.PortStatus) bool { return st.Host == "h1" }})
	runMirror(t, m)
	if _, err := s.Client().Put(ctx, statusKey("h2", NewUUID()), "{"); err != nil {
		t.Fatal(err)
	}
	n := mustNet(t, s, "after", "10.3.0.0/24") // an event after the status's
	st := waitState(t, m, "the network", func(st State) bool { return st.Networks[n.ID].ID != "" })
	if len(st.Problems) != 0 || len(st.Statuses) != 0 {
		t.Fatalf("state %+v", st)
	}
}

// Of two networks created in one transaction with the same VNI, the one with the
// lower ID wins, every time and on every host.
func TestBuildTiesByID(t *testing.T) {
	rs := newRecords()
	for _, id := range []string{"bbbbbbbb-0000-4000-8000-000000000000", "aaaaaaaa-0000-4000-8000-000000000000"} {
		rs.networks[id] = &record[api.Network]{v: api.Network{ID: id, Name: "n", VNI: 5, CIDR: "10.0.0.0/24", MTU: 1450},
			create: 7, mod: 7, key: pNetworks + id}
	}
	st := rs.build(7)
	if _, ok := st.Networks["aaaaaaaa-0000-4000-8000-000000000000"]; !ok || len(st.Networks) != 1 ||
		len(st.Problems) != 1 || st.Problems[0].ID != "bbbbbbbb-0000-4000-8000-000000000000" {
		t.Fatalf("%+v", st)
	}
}

// Every valid record fits MaxRecordBytes, so the size limit never refuses one the CLI
// could write.
func TestLargestValidRecordFits(t *testing.T) {
	i := 255
	id := NewUUID()
	r := api.Rule{ID: id, Direction: api.Ingress, Ethertype: api.IPv6, Protocol: "icmpv6", ICMPType: &i, ICMPCode: &i,
		RemoteCIDR: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}
	g := api.SecurityGroup{ID: id, Name: strings.Repeat("g", api.MaxNameLen)}
	for range api.MaxRules {
		g.Rules = append(g.Rules, r)
	}
	p := api.Port{ID: id, Name: strings.Repeat("p", api.MaxNameLen), NetworkID: id, Host: strings.Repeat("h", api.MaxNameLen), MAC: "fa:16:3e:00:00:00"}
	for range api.MaxFixedIPs {
		p.FixedIPs = append(p.FixedIPs, "255.255.255.255")
	}
	for range api.MaxPortGroups {
		p.SecurityGroups = append(p.SecurityGroups, id)
	}
	for range api.MaxAddressPairs {
		p.AllowedAddressPairs = append(p.AllowedAddressPairs, api.AddressPair{IP: "255.255.255.255/32", MAC: "fa:16:3e:00:00:00"})
	}
	for _, v := range []any{g, p} {
		// Indented, as a hand-written record might be.
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MaxRecordBytes {
			t.Errorf("%T of %d bytes exceeds MaxRecordBytes %d", v, len(b), MaxRecordBytes)
		}
	}
}
