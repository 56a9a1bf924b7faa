package view

import (
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

// TestComputeIPv6Underlay: peers with IPv6 tunnel IPs get tunnels keyed by their
// address like IPv4 ones; a peer of the other IP version gets no tunnel, no l2pop
// flows and no place in Peers, and the local ports of the networks it shares say so.
func TestComputeIPv6Underlay(t *testing.T) {
	st := state()
	st.Hosts = map[string]api.Host{
		"h1": {Name: "h1", TunnelIP: "fd00:31::1", Alive: true},
		"h2": {Name: "h2", TunnelIP: "fd00:31::2", Alive: true},
		"h5": {Name: "h5", TunnelIP: "172.31.0.5", Alive: true}, // IPv4 only
	}
	v := Compute("h1", st)
	if _, ok := v.Tunnels[TunnelKey{IP: "fd00:31::2", Type: "vxlan"}]; !ok || len(v.Tunnels) != 1 {
		t.Errorf("tunnels %v, want one to fd00:31::2", v.Tunnels)
	}
	if _, ok := v.Peers["fd00:31::2"]; !ok || len(v.Peers) != 1 {
		t.Errorf("peers %v, want h2 only", v.Peers)
	}
	for _, rp := range v.Remote {
		if rp.Host == "h5" {
			t.Errorf("remote port %s of the IPv4 host h5 got l2pop flows", rp.ID)
		}
		if rp.Host == "h2" && rp.HostIP.String() != "fd00:31::2" {
			t.Errorf("remote port %s: host IP %v", rp.ID, rp.HostIP)
		}
	}
	if len(v.CrossFamily) != 1 || v.CrossFamily[0].Host.Name != "h5" || v.CrossFamily[0].Network.ID != "nb" {
		t.Errorf("cross-family peers %+v, want h5 on network b", v.CrossFamily)
	}
	p1, _ := v.LocalPort("p1") // network a: shared with h2 only
	p3, _ := v.LocalPort("p3") // network b: shared with h5
	if why := v.MismatchOf(p1); why != "" {
		t.Errorf("p1: %q, want no mismatch", why)
	}
	if why := v.MismatchOf(p3); !strings.Contains(why, "network b is cut between this host (IPv6 tunnel IP) and host h5 (IPv4)") {
		t.Errorf("p3: %q", why)
	}

	// Seen from h5, the IPv4 host: the IPv6 hosts are the other family.
	v = Compute("h5", st)
	if len(v.Tunnels) != 0 || len(v.CrossFamily) != 1 || v.CrossFamily[0].Host.Name != "h1" {
		t.Errorf("from h5: tunnels %v, cross-family %+v", v.Tunnels, v.CrossFamily)
	}
	if p7, _ := v.LocalPort("p7"); !strings.Contains(v.MismatchOf(p7), "this host (IPv4 tunnel IP) and host h1 (IPv6)") {
		t.Errorf("p7: %q", v.MismatchOf(p7))
	}

	// A tunnel-type mismatch and a family one on the same network: both are said.
	h2 := st.Hosts["h2"]
	h2.TunnelType = "geneve"
	st.Hosts["h2"] = h2
	p2 := *st.Ports["p2"]
	p2.NetworkID = "nb"
	st.Ports["p2"] = &p2
	v = Compute("h1", st)
	p3, _ = v.LocalPort("p3")
	if why := v.MismatchOf(p3); !strings.Contains(why, "which host h2 does not accept") || !strings.Contains(why, "and host h5 (IPv4)") {
		t.Errorf("p3 with both: %q", why)
	}
}
