package flows_test

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/flows/internal/golden"
)

// TestGolden renders every golden scenario and compares it, as a set of lines, with
// the dump written out in the scenario.
func TestGolden(t *testing.T) {
	for _, sc := range golden.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			s, err := sc.Desired.Flows()
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range []flows.Bridge{flows.BrTun, flows.BrInt} {
				var got []string
				for _, f := range s.Flows(b) {
					got = append(got, f.String())
				}
				compareSets(t, b, got, sc.Want(b))
			}
		})
	}
}

func compareSets(t *testing.T, b flows.Bridge, got, want []string) {
	t.Helper()
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(got) != len(want) && len(missing) == 0 && len(extra) == 0 {
		t.Errorf("%s: %d flows, want %d (duplicates?)", b, len(got), len(want))
	}
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s:\nmissing:\n%s\nextra:\n%s", b, strings.Join(missing, "\n"), strings.Join(extra, "\n"))
	}
}

// TestEveryFlowFitsRegistry checks every flow of every scenario against its
// bridge's table registry, that each flow carries its owner's cookie, and that the
// set names that owner for the cookie in any round.
func TestEveryFlowFitsRegistry(t *testing.T) {
	for _, sc := range golden.Scenarios {
		s, err := sc.Desired.Flows()
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		for _, b := range []flows.Bridge{flows.BrTun, flows.BrInt} {
			for _, o := range s.Owners(b) {
				for _, f := range s.OwnerFlows(b, o) {
					if err := f.Validate(); err != nil {
						t.Errorf("%s: %v", sc.Name, err)
					}
					if f.Bridge != b || f.Cookie != o.Cookie() {
						t.Errorf("%s: %s flow %s filed under %s/%s", sc.Name, f.Bridge, f, b, o)
					}
					if got, ok := s.Owner(b, f.Cookie.WithRound(7)); !ok || got != o {
						t.Errorf("%s: Owner(%s, %s) = %s, %v; want %s", sc.Name, b, f.Cookie.WithRound(7), got, ok, o)
					}
				}
			}
		}
	}
}

func TestSetOwner(t *testing.T) {
	i := slices.IndexFunc(golden.Scenarios, func(sc golden.Scenario) bool { return sc.Name == "remote ports on two hosts" })
	s, err := golden.Scenarios[i].Desired.Flows()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		b      flows.Bridge
		cookie flows.Cookie
		want   flows.Owner
		ok     bool
	}{
		{flows.BrTun, flows.MakeCookie(3, flows.CatRemotePort, "rc2"), flows.Owner{Category: flows.CatRemotePort, Key: "rc2"}, true},
		{flows.BrTun, flows.MakeCookie(0, flows.CatTunnel, "172.31.0.3"), flows.Owner{Category: flows.CatTunnel, Key: "172.31.0.3"}, true},
		{flows.BrInt, flows.MakeCookie(65535, flows.CatSetup, ""), flows.Owner{Category: flows.CatSetup}, true},
		// learn()'s cookie, in the round a restarted controller gave it.
		{flows.BrTun, flows.LearnedCookie.WithRound(2), flows.Owner{Category: flows.CatLearned}, true},
		// No owner: a port on a host without tunnel, a port not on br-int, a category
		// that does not match the owner id, nothing learned on br-int.
		{flows.BrTun, flows.MakeCookie(0, flows.CatRemotePort, "rd1"), flows.Owner{}, false},
		{flows.BrInt, flows.MakeCookie(0, flows.CatRemotePort, "rc2"), flows.Owner{}, false},
		{flows.BrTun, flows.MakeCookie(0, flows.CatLocalPort, "rc2"), flows.Owner{}, false},
		{flows.BrInt, flows.LearnedCookie, flows.Owner{}, false},
		{"br-ex", flows.MakeCookie(0, flows.CatSetup, ""), flows.Owner{}, false},
	} {
		if got, ok := s.Owner(tc.b, tc.cookie); got != tc.want || ok != tc.ok {
			t.Errorf("Owner(%s, %s) = %s, %v; want %s, %v", tc.b, tc.cookie, got, ok, tc.want, tc.ok)
		}
	}
	var zero flows.Set
	if _, ok := zero.Owner(flows.BrTun, flows.LearnedCookie); ok || zero.Flows(flows.BrTun) != nil || zero.Owners(flows.BrInt) != nil {
		t.Error("the zero Set is not empty")
	}
	// Owners and OwnerFlows hand out copies: the set stays as computed.
	before := len(s.Flows(flows.BrTun))
	owners := s.Owners(flows.BrTun)
	owners[0] = flows.Owner{Category: flows.CatRemotePort, Key: "x"}
	fs := s.OwnerFlows(flows.BrTun, s.Owners(flows.BrTun)[0])
	fs[0].Table = 99
	if s.Owners(flows.BrTun)[0].Category != flows.CatSetup || s.OwnerFlows(flows.BrTun, s.Owners(flows.BrTun)[0])[0].Table == 99 || len(s.Flows(flows.BrTun)) != before {
		t.Error("a copy handed out changed the set")
	}
}

func TestRegistryIsConsistent(t *testing.T) {
	for _, b := range []flows.Bridge{flows.BrTun, flows.BrInt} {
		for _, tb := range flows.Tables(b) {
			for _, to := range tb.GoesTo {
				// OVS refuses goto_table to the same or an earlier table.
				if _, ok := flows.LookupTable(b, to); !ok || to <= tb.ID {
					t.Errorf("%s table %d (%s) goes to %d: missing or not later", b, tb.ID, tb.Name, to)
				}
			}
			switch tb.Miss.Kind {
			case flows.MissDrop, flows.MissNormal, flows.MissLearn, flows.MissNoFlow:
			case flows.MissGoto:
				if !tb.MayGoTo(tb.Miss.Goto) {
					t.Errorf("%s table %d (%s): miss goes to %d, not in GoesTo", b, tb.ID, tb.Name, tb.Miss.Goto)
				}
			default:
				t.Errorf("%s table %d (%s): no miss behaviour", b, tb.ID, tb.Name)
			}
			if tb.Purpose == "" || tb.Name == "" {
				t.Errorf("%s table %d: no name or purpose", b, tb.ID)
			}
			if got, ok := flows.LookupTableName(b, strings.ToLower(tb.Name)); !ok || got.ID != tb.ID {
				t.Errorf("%s: LookupTableName(%q) = %d, %v", b, strings.ToLower(tb.Name), got.ID, ok)
			}
		}
	}
	if _, ok := flows.LookupTableName(flows.BrTun, "TRANSIENT"); ok {
		t.Error("br-int's TRANSIENT found on br-tun")
	}
}

func TestValidateRefuses(t *testing.T) {
	learn := flows.Learn{Table: flows.UcastToTun, Priority: 5, HardTimeout: 300, Cookie: flows.LearnedCookie}
	arp := flows.Match{EthType: flows.EthARP, InPort: 5}
	for name, f := range map[string]flows.Flow{
		"jump not in registry": {Bridge: flows.BrTun, Table: flows.UcastToTun, Priority: flows.PrioTun20L2pop,
			Match: flows.Match{VLAN: flows.TagVID(1), EthDst: golden.MAC("fa:16:3e:00:00:01")}, Actions: actions(flows.GotoTable{flows.ARPResponder})},
		"br-int table on br-tun": {Bridge: flows.BrTun, Table: flows.Transient},
		"goto not last": {Bridge: flows.BrInt, Table: 0, Priority: flows.PrioInt0Port, Match: flows.Match{InPort: 5},
			Actions: actions(flows.GotoTable{flows.Transient}, flows.Normal{})},
		"arp field without arp": {Bridge: flows.BrInt, Table: flows.ARPSpoof, Priority: flows.PrioInt24Allowed,
			Match: flows.Match{InPort: 5, ARPSpa: netip.MustParsePrefix("10.0.0.1/32")}},
		"unmasked arp_spa": {Bridge: flows.BrInt, Table: flows.ARPSpoof, Priority: flows.PrioInt24Allowed,
			Match: flows.Match{InPort: 5, EthType: flows.EthARP, ARPSpa: netip.MustParsePrefix("10.0.0.1/24")}},
		"IPv6 arp_spa": {Bridge: flows.BrInt, Table: flows.ARPSpoof, Priority: flows.PrioInt24Allowed,
			Match: flows.Match{InPort: 5, EthType: flows.EthARP, ARPSpa: netip.MustParsePrefix("fd00::1/128")}},
		"IPv6 arp_tpa": {Bridge: flows.BrTun, Table: flows.ARPResponder, Priority: flows.PrioTun21Responder,
			Match: flows.Match{EthType: flows.EthARP, ARPTpa: netip.MustParseAddr("fd00::1")}},
		"IPv6 arp_spa set": {Bridge: flows.BrTun, Table: flows.ARPResponder, Priority: flows.PrioTun21Responder,
			Match: flows.Match{EthType: flows.EthARP, ARPTpa: netip.MustParseAddr("10.0.0.1")}, Actions: actions(flows.SetARPSpa{netip.MustParseAddr("fd00::1")})},
		"move width mismatch": {Bridge: flows.BrTun, Table: flows.ARPResponder, Priority: flows.PrioTun21Responder,
			Match: flows.Match{EthType: flows.EthARP, ARPTpa: netip.MustParseAddr("10.0.0.1")}, Actions: actions(flows.Move{flows.FieldEthSrc, flows.FieldARPSpa})},
		// The registry's match fields: in_port is table 0's business on br-tun, tun_id
		// only the tunnel tables', arp_op nobody's.
		"in_port in table 22": {Bridge: flows.BrTun, Table: flows.FloodToTun, Priority: flows.PrioTun22Flood,
			Match: flows.Match{InPort: 2, VLAN: flows.TagVID(1)}},
		"tun_id in table 0": {Bridge: flows.BrTun, Table: 0, Priority: flows.PrioTun0Tunnel,
			Match: flows.Match{InPort: 2, TunID: 100}, Actions: actions(flows.GotoTable{flows.VXLANTunToLV})},
		"arp_op in table 24": {Bridge: flows.BrInt, Table: flows.ARPSpoof, Priority: flows.PrioInt24Allowed,
			Match: flows.Match{InPort: 5, EthType: flows.EthARP, ARPOp: 1}, Actions: actions(flows.GotoTable{flows.MACSpoof})},
		"dl_src in table 60": {Bridge: flows.BrInt, Table: flows.Transient, Priority: flows.PrioInt60Normal,
			Match: flows.Match{EthSrc: golden.MAC("fa:16:3e:00:00:01")}, Actions: actions(flows.Normal{})},
		// The registry's priorities.
		"priority 3 in table 20": {Bridge: flows.BrTun, Table: flows.UcastToTun, Priority: 3,
			Match: flows.Match{VLAN: flows.TagVID(1), EthDst: golden.MAC("fa:16:3e:00:00:01")}, Actions: actions(flows.Output{2})},
		"learn at a priority table 20 lacks": {Bridge: flows.BrTun, Table: flows.LearnFromTun, Priority: flows.PrioTun10Learn,
			Actions: actions(learn, flows.Output{1})},
		// The registry's misses.
		"table 20 catch-all drops": {Bridge: flows.BrTun, Table: flows.UcastToTun, Priority: flows.PrioMiss},
		"table 22 catch-all floods": {Bridge: flows.BrTun, Table: flows.FloodToTun, Priority: flows.PrioMiss,
			Actions: actions(flows.Output{2})},
		"table 60 catch-all at 0": {Bridge: flows.BrInt, Table: flows.Transient, Priority: flows.PrioMiss, Actions: actions(flows.Normal{})},
		"catch-all in table 25":   {Bridge: flows.BrInt, Table: flows.MACSpoof, Priority: flows.PrioInt25Allowed, Actions: actions(flows.GotoTable{flows.Transient})},
		"learn without output": {Bridge: flows.BrTun, Table: flows.LearnFromTun, Priority: flows.PrioTun10Learn,
			Actions: actions(flows.Learn{Table: flows.UcastToTun, Priority: flows.PrioTun20Learned, HardTimeout: 300, Cookie: flows.LearnedCookie})},
		// DHCP: ports need a protocol, the protocol needs IPv4.
		"tp_dst without udp": {Bridge: flows.BrInt, Table: flows.Transient, Priority: flows.PrioInt60DHCP,
			Match: flows.Match{InPort: 5, EthType: flows.EthIPv4, TpDst: 67}, Actions: actions(flows.GotoTable{flows.DHCPIPv4})},
		"udp without ip": {Bridge: flows.BrInt, Table: flows.Transient, Priority: flows.PrioInt60DHCP,
			Match: flows.Match{InPort: 5, IPProto: flows.IPProtoUDP, TpDst: 67}, Actions: actions(flows.GotoTable{flows.DHCPIPv4})},
		"udp ports in table 77": {Bridge: flows.BrInt, Table: flows.DHCPIPv4, Priority: flows.PrioInt77Port,
			Match: flows.Match{InPort: 5, EthType: flows.EthIPv4, IPProto: flows.IPProtoUDP, TpDst: 67}, Actions: actions(flows.Controller{ID: 1})},
		"table 77 catch-all to the controller": {Bridge: flows.BrInt, Table: flows.DHCPIPv4, Priority: flows.PrioMiss,
			Actions: actions(flows.Controller{ID: flows.ControllerID})},
		// Ofports.
		"output to port 0":     {Bridge: flows.BrInt, Table: 0, Priority: flows.PrioInt0Port, Match: flows.Match{InPort: 5}, Actions: actions(flows.Output{0})},
		"in_port LOCAL":        {Bridge: flows.BrInt, Table: 0, Priority: flows.PrioInt0Port, Match: flows.Match{InPort: 0xfffffffe}},
		"ARP table 24 via mac": {Bridge: flows.BrInt, Table: flows.ARPSpoof, Priority: flows.PrioInt24Allowed, Match: arp, Actions: actions(flows.GotoTable{flows.Transient})},
	} {
		if err := f.Validate(); !errors.Is(err, flows.ErrBadFlow) {
			t.Errorf("%s: Validate() = %v, want ErrBadFlow", name, err)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	// A catch-all rebuilt in another round is still the table's miss.
	learn := flows.TunBridge{}.SetupDefaultTable(flows.Owner{Category: flows.CatSetup}.Cookie(), 1)
	for _, f := range learn {
		if err := f.WithRound(5).Validate(); err != nil {
			t.Error(err)
		}
	}
}

func TestDesiredErrors(t *testing.T) {
	vxlan := func(f func(d *flows.Desired)) flows.Desired {
		d := flows.Desired{TunnelType: "vxlan", PatchIntOfport: 1}
		f(&d)
		return d
	}
	netA := flows.Network{ID: "net-a", VNI: 100, LocalVLAN: 1}
	tunB := flows.Tunnel{RemoteIP: netip.MustParseAddr("172.31.0.2"), Ofport: 2}
	mac1 := golden.MAC("fa:16:3e:00:00:01")
	rport := func(id string, mac net.HardwareAddr, ips ...netip.Addr) flows.RemotePort {
		return flows.RemotePort{ID: id, NetworkID: "net-a", HostIP: tunB.RemoteIP, MAC: mac, IPs: ips}
	}
	lport := func(mac net.HardwareAddr, ips ...netip.Addr) flows.LocalPort {
		return flows.LocalPort{ID: "p", NetworkID: "net-a", Ofport: 5, MAC: mac, IPs: ips}
	}
	for name, tc := range map[string]struct {
		d    flows.Desired
		want string
	}{
		"bad tunnel type":   {flows.Desired{TunnelType: "ipip", PatchIntOfport: 1}, "tunnel type"},
		"no patch-int":      {flows.Desired{TunnelType: "vxlan"}, "patch-int"},
		"local VLAN 4095":   {vxlan(func(d *flows.Desired) { d.Networks = []flows.Network{{ID: "n", VNI: 1, LocalVLAN: 4095}} }), "network n"},
		"VNI 0":             {vxlan(func(d *flows.Desired) { d.Networks = []flows.Network{{ID: "n", VNI: 0, LocalVLAN: 1}} }), "network n"},
		"network twice":     {vxlan(func(d *flows.Desired) { d.Networks = []flows.Network{netA, netA} }), "net-a listed twice"},
		"tunnel without IP": {vxlan(func(d *flows.Desired) { d.Tunnels = []flows.Tunnel{{Ofport: 2}} }), "tunnel"},
		"tunnel without ofport": {vxlan(func(d *flows.Desired) {
			d.Tunnels = []flows.Tunnel{{RemoteIP: tunB.RemoteIP}}
		}), "tunnel to 172.31.0.2"},
		"tunnel twice": {vxlan(func(d *flows.Desired) {
			d.Tunnels = []flows.Tunnel{tunB, {RemoteIP: netip.MustParseAddr("::ffff:172.31.0.2"), Ofport: 3}}
		}), "tunnel 172.31.0.2 listed twice"},
		"tunnel ofport reserved": {vxlan(func(d *flows.Desired) {
			d.Tunnels = []flows.Tunnel{{RemoteIP: tunB.RemoteIP, Ofport: 0xfffffffe}}
		}), "in_port"},
		"port on a network without a VLAN": {vxlan(func(d *flows.Desired) {
			d.LocalPorts = []flows.LocalPort{{ID: "p", NetworkID: "n", Ofport: 5, MAC: mac1}}
		}), "local port p"},
		"short MAC": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.LocalPorts = []flows.LocalPort{lport(mac1[:3])}
		}), "local port p: MAC"},
		"no MAC": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.LocalPorts = []flows.LocalPort{lport(nil)}
		}), "local port p: MAC"},
		"IP not set": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.LocalPorts = []flows.LocalPort{lport(mac1, netip.Addr{})}
		}), "local port p: IP"},
		"pair without prefix": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			p := lport(mac1)
			p.AllowedAddressPairs = []flows.AddressPair{{MAC: mac1}}
			d.LocalPorts = []flows.LocalPort{p}
		}), "allowed address pair"},
		"pair with a long MAC": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			p := lport(mac1)
			p.AllowedAddressPairs = []flows.AddressPair{{Prefix: netip.MustParsePrefix("10.0.0.9/32"), MAC: golden.MAC("00:00:00:00:fe:80:00:00")}}
			d.LocalPorts = []flows.LocalPort{p}
		}), "allowed address pair MAC"},
		"remote port with a long MAC": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.Tunnels = []flows.Tunnel{tunB}
			d.RemotePorts = []flows.RemotePort{rport("r1", golden.MAC("00:00:00:00:fe:80:00:00"))}
		}), "remote port r1: MAC"},
		"two owners, one flow": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.Tunnels = []flows.Tunnel{tunB}
			d.RemotePorts = []flows.RemotePort{rport("r1", mac1), rport("r2", mac1)} // same MAC on one network
		}), "claimed by both"},
		// port-4577399 and port-6839796 share the first 40 bits of their FNV-1a hash.
		"two owners, one cookie": {vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.Tunnels = []flows.Tunnel{tunB}
			d.RemotePorts = []flows.RemotePort{rport("port-4577399", mac1), rport("port-6839796", golden.MAC("fa:16:3e:00:00:02"))}
		}), "share cookie"},
	} {
		_, err := tc.d.Flows()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestCookie(t *testing.T) {
	c := flows.MakeCookie(7, flows.CatRemotePort, "port-1")
	if c.Round() != 7 || c.Category() != flows.CatRemotePort || c.Owner() != flows.OwnerID("port-1") {
		t.Fatalf("cookie %#x decodes to %s", uint64(c), c)
	}
	if flows.OwnerID("port-1") >= 1<<40 {
		t.Fatalf("owner id %#x wider than 40 bits", flows.OwnerID("port-1"))
	}
	// FNV-1a 64 of "" is its offset basis 0xcbf29ce484222325.
	if got := flows.MakeCookie(0, flows.CatSetup, ""); got != 0x01cbf29ce484 {
		t.Fatalf("setup cookie %#x", uint64(got))
	}
	if c.WithRound(9).Round() != 9 || c.WithRound(9)&^flows.RoundMask != c&^flows.RoundMask {
		t.Fatal("WithRound changed more than the round")
	}
	if flows.CatLearned.String() != "learned" {
		t.Fatal(flows.CatLearned.String())
	}
}

func TestWithRoundReachesLearnedCookie(t *testing.T) {
	var f flows.Flow
	for _, sf := range (flows.TunBridge{}).SetupDefaultTable(flows.Owner{Category: flows.CatSetup}.Cookie(), 1) {
		if sf.Table == flows.LearnFromTun {
			f = sf.WithRound(3)
		}
	}
	l := f.Actions[0].(flows.Learn)
	if f.Cookie.Round() != 3 || l.Cookie.Round() != 3 || l.Cookie.Category() != flows.CatLearned {
		t.Fatalf("round not applied: %s", f)
	}
}

func TestStringEdgeCases(t *testing.T) {
	for want, f := range map[string]flows.Flow{
		// cookie 0, table 0 and the default priority are all left out.
		" actions=drop":                                     {Priority: flows.DefaultPriority},
		" cookie=0x2, table=22, actions=drop":               {Table: 22, Priority: flows.DefaultPriority, Cookie: 2},
		" priority=4,vlan_tci=0x0000/0x1fff actions=NORMAL": {Priority: 4, Match: flows.Match{VLAN: flows.VLAN{0, 0x1fff}}, Actions: actions(flows.Normal{})},
		" priority=4,in_port=3,dl_src=fa:16:3e:00:00:01,dl_type=0x1234 actions=output:7": {Priority: 4,
			Match: flows.Match{InPort: 3, EthType: 0x1234, EthSrc: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}}, Actions: actions(flows.Output{7})},
	} {
		if got := f.String(); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
}

func actions(a ...flows.Action) []flows.Action { return a }
