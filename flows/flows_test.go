package flows

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Scenarios exports the golden scenarios for flows/ofbind's test: name, desired
// state, expected dump per bridge.
func TestGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s, err := sc.desired.Flows()
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range []Bridge{BrTun, BrInt} {
				var got []string
				for _, f := range s.Flows(b) {
					got = append(got, f.String())
				}
				compareSets(t, b, got, sc.want(b))
			}
		})
	}
}

func compareSets(t *testing.T, b Bridge, got, want []string) {
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
// bridge's table registry, and that each flow carries its owner's cookie.
func TestEveryFlowFitsRegistry(t *testing.T) {
	for _, sc := range scenarios {
		s, err := sc.desired.Flows()
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		for b, owners := range s {
			for o, fs := range owners {
				for _, f := range fs {
					if err := f.Validate(); err != nil {
						t.Errorf("%s: %v", sc.name, err)
					}
					if f.Bridge != b || f.Cookie != o.Cookie() {
						t.Errorf("%s: %s flow %s filed under %s/%s", sc.name, f.Bridge, f, b, o)
					}
				}
			}
		}
	}
}

func TestRegistryIsConsistent(t *testing.T) {
	for _, b := range []Bridge{BrTun, BrInt} {
		for _, tb := range Tables(b) {
			for _, to := range tb.GoesTo {
				// OVS refuses goto_table to the same or an earlier table.
				if _, ok := LookupTable(b, to); !ok || to <= tb.ID {
					t.Errorf("%s table %d (%s) goes to %d: missing or not later", b, tb.ID, tb.Name, to)
				}
			}
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, f := range map[string]Flow{
		"jump not in registry":   {Bridge: BrTun, Table: UcastToTun, Actions: acts(GotoTable{ARPResponder})},
		"br-int table on br-tun": {Bridge: BrTun, Table: Transient},
		"goto not last":          {Bridge: BrInt, Table: 0, Actions: acts(GotoTable{Transient}, Normal{})},
		"arp field without arp":  {Bridge: BrInt, Table: ARPSpoof, Match: Match{ARPSpa: netip.MustParsePrefix("10.0.0.1/32")}},
		"unmasked arp_spa": {Bridge: BrInt, Table: ARPSpoof,
			Match: Match{EthType: EthARP, ARPSpa: netip.MustParsePrefix("10.0.0.1/24")}},
		"move width mismatch": {Bridge: BrTun, Table: ARPResponder, Actions: acts(Move{FieldEthSrc, FieldARPSpa})},
	} {
		if err := f.Validate(); !errors.Is(err, ErrBadFlow) {
			t.Errorf("%s: Validate() = %v, want ErrBadFlow", name, err)
		}
	}
}

func TestDesiredErrors(t *testing.T) {
	for name, d := range map[string]Desired{
		"bad tunnel type":     {TunnelType: "ipip", PatchIntOfport: 1},
		"no patch-int":        {TunnelType: "vxlan"},
		"local VLAN 4095":     with(host("vxlan"), func(d *Desired) { d.Networks = []Network{{ID: "n", VNI: 1, LocalVLAN: 4095}} }),
		"port without a VLAN": with(host("vxlan"), func(d *Desired) { d.LocalPorts = []LocalPort{lport("p", "n", 5, "fa:16:3e:00:00:01")} }),
		"bad MAC": with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA}
			d.LocalPorts = []LocalPort{lport("p", "net-a", 5, "fa:16:3e", "10.0.0.1")}
		}),
		"two owners, one flow": with(host("vxlan"), func(d *Desired) {
			d.Networks = []Network{netA}
			d.Tunnels = []Tunnel{tunB}
			d.RemotePorts = []RemotePort{
				rport("r1", "net-a", "172.31.0.2", "fa:16:3e:00:00:01", "10.0.0.1"),
				rport("r2", "net-a", "172.31.0.2", "fa:16:3e:00:00:01", "10.0.0.2"),
			}
		}),
	} {
		if _, err := d.Flows(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCookie(t *testing.T) {
	c := MakeCookie(7, CatRemotePort, "port-1")
	if c.Round() != 7 || c.Category() != CatRemotePort || c.Owner() != OwnerID("port-1") {
		t.Fatalf("cookie %#x decodes to %s", uint64(c), c)
	}
	if OwnerID("port-1") >= 1<<40 {
		t.Fatalf("owner id %#x wider than 40 bits", OwnerID("port-1"))
	}
	// FNV-1a 64 of "" is its offset basis 0xcbf29ce484222325.
	if got := MakeCookie(0, CatSetup, ""); got != 0x01cbf29ce484 {
		t.Fatalf("setup cookie %#x", uint64(got))
	}
	if c.WithRound(9).Round() != 9 || c.WithRound(9)&^RoundMask != c&^RoundMask {
		t.Fatal("WithRound changed more than the round")
	}
	if CatLearned.String() != "learned" {
		t.Fatal(CatLearned.String())
	}
}

func TestWithRoundReachesLearnedCookie(t *testing.T) {
	f := TunBridge{}.SetupDefaultTable(Owner{CatSetup, ""}.Cookie(), 1)[8].WithRound(3)
	l := f.Actions[0].(Learn)
	if f.Cookie.Round() != 3 || l.Cookie.Round() != 3 || l.Cookie.Category() != CatLearned {
		t.Fatalf("round not applied: %s", f)
	}
}

func TestStringEdgeCases(t *testing.T) {
	for want, f := range map[string]Flow{
		// cookie 0, table 0 and the default priority are all left out.
		" actions=drop":                                     {Priority: DefaultPriority},
		" cookie=0x2, table=22, actions=drop":               {Table: 22, Priority: DefaultPriority, Cookie: 2},
		" priority=4,vlan_tci=0x0000/0x1fff actions=NORMAL": {Priority: 4, Match: Match{VLAN: VLAN{0, 0x1fff}}, Actions: acts(Normal{})},
		" priority=4,in_port=3,dl_src=fa:16:3e:00:00:01,dl_type=0x1234 actions=output:7": {Priority: 4,
			Match: Match{InPort: 3, EthType: 0x1234, EthSrc: net.HardwareAddr{0xfa, 0x16, 0x3e, 0, 0, 1}}, Actions: acts(Output{7})},
	} {
		if got := f.String(); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
}
