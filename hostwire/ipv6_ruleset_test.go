package hostwire

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

// TestRenderIPv6FixedIP: once a port holds an IPv6 fixed IP (the store's EUI-64 or
// DHCPv6 address), ip6tables lets it send from that address (and its link-local one)
// and from no other, and a remote-group rule of ethertype IPv6 matches an inet6 set
// holding the members' IPv6 addresses while the IPv4 set keeps the IPv4 ones.
func TestRenderIPv6FixedIP(t *testing.T) {
	const netID = "9a000000-net-d"
	g := api.SecurityGroup{ID: "5b7e9c2a-1111-4b3c-8d2e-0000000000a6", Name: "web", Rules: []api.Rule{
		{ID: "r4", Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: "5b7e9c2a-1111-4b3c-8d2e-0000000000a6"},
		{ID: "r6", Direction: api.Ingress, Ethertype: api.IPv6, RemoteGroupID: "5b7e9c2a-1111-4b3c-8d2e-0000000000a6"},
	}}
	members := map[string]map[string][]netip.Addr{g.ID: {netID: {
		netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00:1::f816:3eff:fe00:1"),
		netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("fd00:1::3"),
	}}}
	st := GroupState(map[string]api.SecurityGroup{g.ID: g}, members)
	port := api.Port{ID: "0d8a43d2-3a3f-4b4e-9c2f-2f3a1e5b7c06", NetworkID: netID, MAC: "fa:16:3e:00:00:01",
		FixedIPs: []string{"10.0.0.2", "fd00:1::f816:3eff:fe00:1"}, SecurityGroups: []string{g.ID}}
	fp := NewFirewallPort(&port)
	fp.Zone = 4097
	st.Ports = []FirewallPort{fp}
	rs, err := Render(st)
	if err != nil {
		t.Fatal(err)
	}

	spoof6 := rs.Tables[TableID{V6, "filter"}].Chains[SpoofChain(port.ID)]
	for _, want := range []string{
		"-s fd00:1::f816:3eff:fe00:1/128 -m mac --mac-source FA:16:3E:00:00:01",
		"-s fe80::f816:3eff:fe00:1/128 -m mac --mac-source FA:16:3E:00:00:01",
	} {
		if !slices.ContainsFunc(spoof6, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("IPv6 spoof chain lacks %q:\n%s", want, strings.Join(spoof6, "\n"))
		}
	}
	if slices.ContainsFunc(spoof6, func(r string) bool { return strings.Contains(r, "10.0.0.2") }) {
		t.Errorf("IPv6 spoof chain names the IPv4 address:\n%s", strings.Join(spoof6, "\n"))
	}
	if last := spoof6[len(spoof6)-1]; !strings.HasSuffix(last, "-j DROP") || len(spoof6) != 3 {
		t.Errorf("IPv6 spoof chain: want the two addresses, then drop:\n%s", strings.Join(spoof6, "\n"))
	}
	spoof4 := rs.Tables[TableID{V4, "filter"}].Chains[SpoofChain(port.ID)]
	if slices.ContainsFunc(spoof4, func(r string) bool { return strings.Contains(r, "fd00:") }) {
		t.Errorf("IPv4 spoof chain names the IPv6 address:\n%s", strings.Join(spoof4, "\n"))
	}

	set6, set4 := rs.Sets[SetName(V6, g.ID, netID)], rs.Sets[SetName(V4, g.ID, netID)]
	if set6 == nil || set6.Family != V6 || !slices.Equal(set6.Members, []string{"fd00:1::3", "fd00:1::f816:3eff:fe00:1"}) {
		t.Fatalf("inet6 set %+v", set6)
	}
	if set4 == nil || !slices.Equal(set4.Members, []string{"10.0.0.2", "10.0.0.3"}) {
		t.Fatalf("inet set %+v", set4)
	}
	if !strings.Contains(rs.IPSetRestoreText(), "create "+set6.Name+" hash:net family inet6 ") {
		t.Errorf("ipset text:\n%s", rs.IPSetRestoreText())
	}
	in6 := rs.Tables[TableID{V6, "filter"}].Chains[IngressChain(port.ID)]
	if !slices.ContainsFunc(in6, func(r string) bool { return strings.Contains(r, "--match-set "+set6.Name+" src") }) {
		t.Errorf("IPv6 ingress chain does not match the inet6 set:\n%s", strings.Join(in6, "\n"))
	}

	// The firewall's own model agrees: the port's IPv6 address passes its spoof
	// check, another address of the subnet does not.
	for src, want := range map[string]bool{"fd00:1::f816:3eff:fe00:1": true, "fd00:1::66": false} {
		v, err := st.Verdict(port.ID, api.Egress, Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("fd00:1::3"),
			SrcMAC: port.MAC, Protocol: api.ProtoICMPv6, ICMPType: 128})
		if err != nil {
			t.Fatal(err)
		}
		if spoofed := v.Reason == ReasonSpoofed; spoofed == want || v.Allowed != want {
			t.Errorf("from %s: %v, want allowed %v", src, v, want)
		}
	}
}
