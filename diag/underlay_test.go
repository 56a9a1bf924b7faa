package diag

import (
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/store"
)

// A peer whose tunnel IP is of the other IP version is a warning: the network is cut
// between the two hosts although nothing failed.
func TestStatusWarnsCrossFamilyPeer(t *testing.T) {
	st := store.State{
		Revision: 1,
		Networks: map[string]api.Network{"n": {ID: "n", Name: "blue", VNI: 100, CIDR: "10.0.0.0/24", MTU: 1430}},
		Hosts: map[string]api.Host{
			"h1": {Name: "h1", TunnelIP: "fd00:31::1", TunnelType: api.TunnelVXLAN, Alive: true},
			"h2": {Name: "h2", TunnelIP: "172.31.0.2", TunnelType: api.TunnelVXLAN, Alive: true},
		},
		Ports: map[string]*api.Port{
			"p1": {ID: "p1", Name: "vm1", NetworkID: "n", Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.0.0.1"}},
			"p2": {ID: "p2", Name: "vm2", NetworkID: "n", Host: "h2", MAC: "fa:16:3e:00:00:02", FixedIPs: []string{"10.0.0.2"}},
		},
	}
	snap := &Snapshot{View: view.Compute("h1", st), Host: Host{Name: "h1", TunnelIP: "fd00:31::1", TunnelType: api.TunnelVXLAN, VMMTU: 1430}}
	r := (&Server{}).Status(snap)
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "peer host h2: its tunnel IP 172.31.0.2 is of the other IP version than this host's: network blue is cut") {
		t.Errorf("warnings: %q", r.Warnings)
	}
}
