package controller

import (
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/lanes-net/lanes/api"
)

// A network with only an IPv6 subnet has CIDR "": the DHCPv4 responder refuses its
// ports' requests (there is no address to give) instead of failing on the prefix.
func TestDHCPOnIPv6OnlyNetwork(t *testing.T) {
	n := api.Network{ID: "n6", Name: "v6", VNI: 8, MTU: 1450, IPv6: &api.Subnet6{CIDR: "fd00:1::/64"}}
	p := testPort(n, "fd00:1::f816:3eff:fe00:5")
	if p.IP.IsValid() || p.Prefix.IsValid() {
		t.Fatalf("IPv4 address %v, prefix %v on an IPv6-only network", p.IP, p.Prefix)
	}
	disc, err := dhcpv4.NewDiscovery(portMAC)
	if err != nil {
		t.Fatal(err)
	}
	reply, v := p.answer(clientFrame(t, portMAC, disc))
	if reply != nil || v.Kind != dhcpRefused || !strings.Contains(v.Reason, "no IPv4 address") {
		t.Fatalf("verdict %+v, reply %d bytes: want a refusal for want of an IPv4 address", v, len(reply))
	}
}
