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
// bridge's table registry, and that each flow carries its owner's cookie.
func TestEveryFlowFitsRegistry(t *testing.T) {
	for _, sc := range golden.Scenarios {
		s, err := sc.Desired.Flows()
		if err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
		for b, owners := range s {
			for o, fs := range owners {
				for _, f := range fs {
					if err := f.Validate(); err != nil {
						t.Errorf("%s: %v", sc.Name, err)
					}
					if f.Bridge != b || f.Cookie != o.Cookie() {
						t.Errorf("%s: %s flow %s filed under %s/%s", sc.Name, f.Bridge, f, b, o)
					}
				}
			}
		}
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
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	for name, f := range map[string]flows.Flow{
		"jump not in registry":   {Bridge: flows.BrTun, Table: flows.UcastToTun, Actions: actions(flows.GotoTable{flows.ARPResponder})},
		"br-int table on br-tun": {Bridge: flows.BrTun, Table: flows.Transient},
		"goto not last":          {Bridge: flows.BrInt, Table: 0, Actions: actions(flows.GotoTable{flows.Transient}, flows.Normal{})},
		"arp field without arp":  {Bridge: flows.BrInt, Table: flows.ARPSpoof, Match: flows.Match{ARPSpa: netip.MustParsePrefix("10.0.0.1/32")}},
		"unmasked arp_spa": {Bridge: flows.BrInt, Table: flows.ARPSpoof,
			Match: flows.Match{EthType: flows.EthARP, ARPSpa: netip.MustParsePrefix("10.0.0.1/24")}},
		"move width mismatch": {Bridge: flows.BrTun, Table: flows.ARPResponder, Actions: actions(flows.Move{flows.FieldEthSrc, flows.FieldARPSpa})},
	} {
		if err := f.Validate(); !errors.Is(err, flows.ErrBadFlow) {
			t.Errorf("%s: Validate() = %v, want ErrBadFlow", name, err)
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
	for name, d := range map[string]flows.Desired{
		"bad tunnel type": {TunnelType: "ipip", PatchIntOfport: 1},
		"no patch-int":    {TunnelType: "vxlan"},
		"local VLAN 4095": vxlan(func(d *flows.Desired) { d.Networks = []flows.Network{{ID: "n", VNI: 1, LocalVLAN: 4095}} }),
		"port on a network without a VLAN": vxlan(func(d *flows.Desired) {
			d.LocalPorts = []flows.LocalPort{{ID: "p", NetworkID: "n", Ofport: 5, MAC: "fa:16:3e:00:00:01"}}
		}),
		"bad MAC": vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.LocalPorts = []flows.LocalPort{{ID: "p", NetworkID: "net-a", Ofport: 5, MAC: "fa:16:3e"}}
		}),
		"two owners, one flow": vxlan(func(d *flows.Desired) {
			d.Networks = []flows.Network{netA}
			d.Tunnels = []flows.Tunnel{{RemoteIP: "172.31.0.2", Ofport: 2}}
			d.RemotePorts = []flows.RemotePort{ // same MAC on one network
				{ID: "r1", NetworkID: "net-a", HostIP: "172.31.0.2", MAC: "fa:16:3e:00:00:01"},
				{ID: "r2", NetworkID: "net-a", HostIP: "172.31.0.2", MAC: "fa:16:3e:00:00:01"},
			}
		}),
	} {
		if _, err := d.Flows(); err == nil {
			t.Errorf("%s: no error", name)
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
	f := flows.TunBridge{}.SetupDefaultTable(flows.Owner{flows.CatSetup, ""}.Cookie(), 1)[8].WithRound(3)
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
