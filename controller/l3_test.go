package controller

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/store"
)

func l3State() store.State {
	st := store.State{
		Networks: map[string]api.Network{
			"ext": {ID: "ext", Name: "public", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", MTU: 1500, External: true,
				Provider: &api.Provider{Type: api.ProviderFlat, Physnet: "physnet1"}},
			"blue": {ID: "blue", Name: "blue", VNI: 7, CIDR: "10.1.0.0/24", MTU: 1450},
		},
		Ports: map[string]*api.Port{
			"qr1-port-id-0000": {ID: "qr1-port-id-0000", Name: "qr", NetworkID: "blue", Host: "net1", MAC: "fa:16:3e:00:00:01",
				FixedIPs: []string{"10.1.0.1"}, DeviceOwner: api.DeviceOwnerRouterInterface, DeviceID: "r1"},
			"vm-port-id-00000": {ID: "vm-port-id-00000", Name: "vm", NetworkID: "blue", Host: "cmp1", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.1.0.5"}},
		},
		Hosts: map[string]api.Host{
			"net1": {Name: "net1", TunnelIP: "192.0.2.10", TunnelType: api.TunnelVXLAN, L3: true, Alive: true},
			"net2": {Name: "net2", TunnelIP: "192.0.2.11", TunnelType: api.TunnelVXLAN, L3: true, Alive: true},
			"cmp1": {Name: "cmp1", TunnelIP: "192.0.2.1", TunnelType: api.TunnelVXLAN, Alive: true},
		},
		Routers: map[string]api.Router{"r1": {ID: "r1", Name: "r1", Host: "net1",
			Gateway:    &api.RouterGateway{NetworkID: "ext", IP: "203.0.113.10", SNAT: true},
			Interfaces: []api.RouterInterface{{NetworkID: "blue", PortID: "qr1-port-id-0000", IP: "10.1.0.1", CIDR: "10.1.0.0/24"}}}},
		FloatingIPs: map[string]api.FloatingIP{"f1": {ID: "f1", NetworkID: "ext", IP: "203.0.113.11", PortID: "vm-port-id-00000", FixedIP: "10.1.0.5", RouterID: "r1"}},
	}
	return st
}

// A host serves a router only while it is the router's host and its lease is held;
// the router's ports are router ports, never VM ports.
func TestL3Desired(t *testing.T) {
	held := true
	s, err := newL3Step(slog.Default(), nil, "net1", "", "netdev", func() bool { return held })
	if err != nil {
		t.Fatal(err)
	}
	st := l3State()
	v := view.Compute("net1", st)
	if len(v.Local) != 0 || len(v.RouterPorts) != 1 {
		t.Fatalf("view of net1: %d local, %d router ports; want the router's port apart from VM ports", len(v.Local), len(v.RouterPorts))
	}
	vlans := map[string]uint16{"blue": 3}
	want, errs := s.desired(v, vlans)
	ra, ok := want["r1"]
	if len(errs) > 0 || !ok {
		t.Fatalf("desired: %v %v", want, errs)
	}
	if ra.spec.Namespace != "qrouter-r1" || len(ra.spec.Interfaces) != 1 || ra.spec.Interfaces[0].Addr.String() != "10.1.0.1/24" ||
		ra.spec.Gateway == nil || ra.spec.Gateway.Addr.String() != "203.0.113.10/24" || len(ra.spec.FloatingIPs) != 1 || len(ra.ports) != 2 {
		t.Fatalf("router spec %+v, ports %+v", ra.spec, ra.ports)
	}
	nat := hostwire.RouterNAT(ra.spec)
	for _, rule := range []string{
		"-A lanes-l3-agent-PREROUTING -d 203.0.113.11/32 -j DNAT --to-destination 10.1.0.5",
		"-A lanes-l3-agent-float-snat -s 10.1.0.5/32 -j SNAT --to-source 203.0.113.11",
		"-A lanes-l3-agent-snat -o " + api.QgName("r1") + " -j SNAT --to-source 203.0.113.10",
	} {
		if !strings.Contains(nat, rule+"\n") {
			t.Errorf("NAT lacks %q:\n%s", rule, nat)
		}
	}

	held = false
	if want, _ := s.desired(v, vlans); len(want) != 0 {
		t.Fatalf("lease not held: still serving %v", want)
	}
	held = true
	h := st.Hosts["net1"]
	h.Alive = false
	st.Hosts["net1"] = h
	if want, _ := s.desired(view.Compute("net1", st), vlans); len(want) != 0 {
		t.Fatal("serving a router while the store says this host is down")
	}
	// The mirror moves the router's port to the host that serves it now.
	p := *st.Ports["qr1-port-id-0000"]
	p.Host = "net2"
	st.Ports[p.ID] = &p
	other, _ := newL3Step(slog.Default(), nil, "net2", "", "netdev", nil)
	if want, _ := other.desired(view.Compute("net2", st), vlans); len(want["r1"].spec.Interfaces) != 1 {
		t.Fatalf("net2 after net1 went down: %+v, want r1 with its interface", want)
	}
	if _, err := parseBridgeMappings("physnet1"); err == nil {
		t.Fatal("bridge mapping without a bridge accepted")
	}
}
