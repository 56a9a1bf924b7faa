package diag

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/store"
)

// Status warns about what is wrong although every step succeeded, and a failed
// readiness check is a warning too.
func TestStatusWarnings(t *testing.T) {
	st := store.State{
		Revision: 1,
		Networks: map[string]api.Network{
			"n": {ID: "n", Name: "blue", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1450},
			"j": {ID: "j", Name: "jumbo", VNI: 101, CIDR: "10.9.0.0/24", MTU: 8950},
		},
		Hosts: map[string]api.Host{
			"h2": {Name: "h2", TunnelIP: "172.31.0.2", TunnelType: api.TunnelVXLAN, Alive: true},
			"h3": {Name: "h3", TunnelIP: "172.31.0.3", TunnelType: api.TunnelGRE, Alive: true},
		},
		Ports: map[string]*api.Port{
			"p1": {ID: "p1", Name: "vm1", NetworkID: "n", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}},
			"p2": {ID: "p2", Name: "vm2", NetworkID: "n", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2"}},
			"p3": {ID: "p3", Name: "vm3", NetworkID: "n", Host: "h3", MAC: "fa:16:3e:00:00:03", FixedIPs: []string{"10.0.0.3"}},
			"p4": {ID: "p4", Name: "vm4", NetworkID: "j", Host: "h1", MAC: "fa:16:3e:00:00:04", FixedIPs: []string{"10.9.0.4"}},
		},
	}
	snap := &Snapshot{View: view.Compute("h1", st), Host: Host{Name: "h1", TunnelType: api.TunnelVXLAN, VMMTU: 1450}}
	s := &Server{}
	r := s.Status(snap)
	if len(r.Warnings) != 2 || !strings.Contains(r.Warnings[0], "network jumbo: MTU 8950 is more than this host's underlay carries (1450)") ||
		!strings.Contains(r.Warnings[1], "peer host h3 does not accept vxlan tunnels: network blue") {
		t.Errorf("warnings: %q", r.Warnings)
	}
	s.Health = func(context.Context) api.Readiness {
		return api.Readiness{Checks: []api.ReadyCheck{{Name: "store", OK: true}, {Name: "lease", Detail: "host lease lost: last renewed 12s ago"}}}
	}
	r = s.StatusWithHealth(context.Background(), snap)
	if len(r.Warnings) != 3 || r.Warnings[2] != "not ready: lease: host lease lost: last renewed 12s ago" || r.Ready == nil || r.Ready.Ready {
		t.Errorf("with a lost lease: %q, %+v", r.Warnings, r.Ready)
	}
	// A step's host warning (the firewall's, of lanes chains under the other
	// iptables backend) is listed with the others.
	snap.Warnings = []string{"iptables backend mismatch: iptables rules of the legacy backend hold lanes chains"}
	if r := s.Status(snap); len(r.Warnings) != 3 || !slices.Contains(r.Warnings, snap.Warnings[0]) {
		t.Errorf("with a host warning: %q", r.Warnings)
	}
	// Nothing wrong, nothing said.
	delete(st.Networks, "j")
	delete(st.Ports, "p4")
	delete(st.Hosts, "h3")
	delete(st.Ports, "p3")
	if r := (&Server{}).Status(&Snapshot{View: view.Compute("h1", st), Host: snap.Host}); len(r.Warnings) != 0 {
		t.Errorf("healthy host warns: %q", r.Warnings)
	}
}
