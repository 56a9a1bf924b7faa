package api

import (
	"errors"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	id := "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"
	for got, want := range map[string]string{
		TapName(id): "tap3f2a1b4c-5d", QbrName(id): "qbr3f2a1b4c-5d", QvbName(id): "qvb3f2a1b4c-5d", QvoName(id): "qvo3f2a1b4c-5d",
	} {
		if got != want || len(got) != 14 {
			t.Errorf("%s, want %s (14 characters)", got, want)
		}
	}
	if n, err := TunnelPortName(TunnelVXLAN, "192.168.10.2"); err != nil || n != "vxlan-c0a80a02" {
		t.Errorf("tunnel name %q %v", n, err)
	}
	if _, err := TunnelPortName(TunnelVXLAN, "nope"); err == nil {
		t.Error("a remote that is no address named")
	}
}

func TestValidation(t *testing.T) {
	net := &Network{Name: "a", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450}
	port := func(mod func(*Port)) *Port {
		p := &Port{Name: "vm1", NetworkID: "a", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.5"}}
		mod(p)
		return p
	}
	for _, c := range []struct {
		name  string
		err   error
		field string
	}{
		{"ok", ValidatePort(port(func(*Port) {}), net, false), ""},
		{"bad mac", ValidatePort(port(func(p *Port) { p.MAC = "zz:16:3e:00:00:01" }), net, false), "port.mac"},
		{"multicast mac", ValidatePort(port(func(p *Port) { p.MAC = "01:00:5e:00:00:01" }), net, false), "port.mac"},
		{"ip outside", ValidatePort(port(func(p *Port) { p.FixedIPs = []string{"10.0.1.5"} }), net, false), "port.fixed_ips"},
		{"broadcast", ValidatePort(port(func(p *Port) { p.FixedIPs = []string{"10.0.0.255"} }), net, false), "port.fixed_ips"},
		{"twice", ValidatePort(port(func(p *Port) { p.FixedIPs = []string{"10.0.0.5", "10.0.0.5"} }), net, false), "port.fixed_ips"},
		{"odd name", ValidatePort(port(func(p *Port) { p.Name = "vm 1" }), net, false), "port.name"},
		{"long name", ValidatePort(port(func(p *Port) { p.Name = strings.Repeat("x", 65) }), net, false), "port.name"},
		{"pair", ValidatePort(port(func(p *Port) { p.AllowedAddressPairs = []AddressPair{{IP: "10.0.0.300"}} }), net, false), "port.allowed_address_pairs.ip"},
		{"vni 0", ValidateNetwork(&Network{Name: "a", CIDR: "10.0.0.0/24", MTU: 1450}, false), "network.vni"},
		{"vni big", ValidateNetwork(&Network{Name: "a", VNI: 1 << 24, CIDR: "10.0.0.0/24", MTU: 1450}, true), "network.vni"},
		{"host bits", ValidateNetwork(&Network{Name: "a", VNI: 1, CIDR: "10.0.0.1/24", MTU: 1450}, false), "network.cidr"},
		{"rule dir", ValidateRule(&Rule{Direction: "in", Ethertype: IPv4}), "rule.direction"},
		{"rule ports on icmp", ValidateRule(&Rule{Direction: Ingress, Ethertype: IPv4, Protocol: "icmp", PortMin: 22, PortMax: 22}), "rule.port_range"},
		{"rule cidr family", ValidateRule(&Rule{Direction: Ingress, Ethertype: IPv6, RemoteCIDR: "10.0.0.0/8"}), "rule.remote_cidr"},
		{"host ip", ValidateHost(&Host{Name: "h1", TunnelIP: "nope", TunnelType: TunnelVXLAN}), "host.tunnel_ip"},
	} {
		switch {
		case c.field == "" && c.err != nil:
			t.Errorf("%s: %v", c.name, c.err)
		case c.field != "" && (c.err == nil || !errors.Is(c.err, ErrInvalid) || !strings.HasPrefix(c.err.Error(), c.field)):
			t.Errorf("%s: want an invalid-input error naming %s, got %v", c.name, c.field, c.err)
		}
	}
}

func TestDHCPValidation(t *testing.T) {
	base := func(mod func(*Network)) *Network {
		n := &Network{Name: "a", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450, Gateway: "10.0.0.1",
			DHCP: DHCP{DNSServers: []string{"10.0.0.53", "192.0.2.1"}, Domain: "lab.example", SearchDomains: []string{"lab.example", "example"},
				HostRoutes: []HostRoute{{Destination: "192.168.0.0/16", NextHop: "10.0.0.254"}}, LeaseSeconds: 3600}}
		mod(n)
		return n
	}
	for _, c := range []struct {
		name  string
		n     *Network
		field string
	}{
		{"ok", base(func(*Network) {}), ""},
		{"zero dhcp", base(func(n *Network) { n.Gateway, n.DHCP = "", DHCP{} }), ""},
		{"gateway outside", base(func(n *Network) { n.Gateway = "10.0.1.1" }), "network.gateway"},
		{"gateway broadcast", base(func(n *Network) { n.Gateway = "10.0.0.255" }), "network.gateway"},
		{"gateway v6", base(func(n *Network) { n.Gateway = "fe80::1" }), "network.gateway"},
		{"dns bad", base(func(n *Network) { n.DHCP.DNSServers = []string{"8.8.8"} }), "network.dhcp.dns_servers"},
		{"dns twice", base(func(n *Network) { n.DHCP.DNSServers = []string{"8.8.8.8", "8.8.8.8"} }), "network.dhcp.dns_servers"},
		{"dns many", base(func(n *Network) {
			n.DHCP.DNSServers = strings.Split("1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6", ",")
		}), "network.dhcp.dns_servers"},
		{"domain underscore", base(func(n *Network) { n.DHCP.Domain = "my_lab.example" }), "network.dhcp.domain"},
		{"domain dash", base(func(n *Network) { n.DHCP.Domain = "-lab.example" }), "network.dhcp.domain"},
		{"domain empty label", base(func(n *Network) { n.DHCP.Domain = "lab..example" }), "network.dhcp.domain"},
		{"search bad", base(func(n *Network) { n.DHCP.SearchDomains = []string{"ok.example", "bad domain"} }), "network.dhcp.search_domains"},
		{"route dst", base(func(n *Network) { n.DHCP.HostRoutes = []HostRoute{{"192.168.0.1/16", "10.0.0.254"}} }), "network.dhcp.host_routes.destination"},
		{"route default with gateway", base(func(n *Network) { n.DHCP.HostRoutes = []HostRoute{{"0.0.0.0/0", "10.0.0.254"}} }), "network.dhcp.host_routes.destination"},
		{"route hop off-link", base(func(n *Network) { n.DHCP.HostRoutes = []HostRoute{{"192.168.0.0/16", "10.9.0.1"}} }), "network.dhcp.host_routes.nexthop"},
		{"lease short", base(func(n *Network) { n.DHCP.LeaseSeconds = 10 }), "network.dhcp.lease_seconds"},
		{"lease negative", base(func(n *Network) { n.DHCP.LeaseSeconds = -1 }), "network.dhcp.lease_seconds"},
	} {
		err := ValidateNetwork(c.n, false)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.field != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), c.field+" ")):
			t.Errorf("%s: want an invalid-input error naming %s, got %v", c.name, c.field, err)
		}
	}
	n := base(func(*Network) {})
	p := &Port{Name: "vm1", NetworkID: "a", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}}
	if err := ValidatePort(p, n, false); err == nil || !strings.HasPrefix(err.Error(), "port.fixed_ips") {
		t.Errorf("port on the gateway address: %v", err)
	}
	if got := Hostname("web_1.prod"); got != "web-1-prod" {
		t.Errorf("Hostname = %q", got)
	}
	if (DHCP{}).Lease() != DefaultLeaseSeconds || len((DHCP{Domain: "x.example"}).Search()) != 1 {
		t.Error("DHCP defaults")
	}
}
