package ofsync_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
)

// Underlay addresses of this host's peers.
const (
	hostB = "172.31.0.2"
	hostC = "172.31.0.3"
	hostD = "172.31.0.4"
)

var (
	netA = flows.Network{ID: "net-a", VNI: 100, LocalVLAN: 1}
	netB = flows.Network{ID: "net-b", VNI: 200, LocalVLAN: 2}
	netC = flows.Network{ID: "net-c", VNI: 300, LocalVLAN: 3}
)

func rport(id string, n flows.Network, host, mac, ip string) flows.RemotePort {
	return flows.RemotePort{ID: id, NetworkID: n.ID, HostIP: netip.MustParseAddr(host), MAC: mustMAC(mac), IPs: []netip.Addr{netip.MustParseAddr(ip)}}
}

func (h *host) lport(id string, n flows.Network, mac, ip string) flows.LocalPort {
	return flows.LocalPort{ID: id, NetworkID: n.ID, Ofport: h.ports[id], MAC: mustMAC(mac), IPs: []netip.Addr{netip.MustParseAddr(ip)}}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func (h *host) tunnel(ip string) flows.Tunnel {
	return flows.Tunnel{RemoteIP: netip.MustParseAddr(ip), Ofport: h.tunnels[ip]}
}

// baseState: net-a and net-b, tunnels to B and C, a local port on each network,
// remote ports of net-a on B and C and one of net-b on B.
func (h *host) baseState() flows.Desired {
	return flows.Desired{
		TunnelType:     "vxlan",
		PatchIntOfport: h.patchInt,
		Networks:       []flows.Network{netA, netB},
		Tunnels:        []flows.Tunnel{h.tunnel(hostB), h.tunnel(hostC)},
		LocalPorts: []flows.LocalPort{
			h.lport("vm1", netA, "fa:16:3e:00:00:01", "10.0.0.1"),
			h.lport("vm2", netB, "fa:16:3e:00:00:02", "10.1.0.2"),
		},
		RemotePorts: []flows.RemotePort{
			rport("rb1", netA, hostB, "fa:16:3e:00:00:b1", "10.0.0.21"),
			rport("rc1", netA, hostC, "fa:16:3e:00:00:c1", "10.0.0.31"),
			rport("rb2", netB, hostB, "fa:16:3e:00:00:b2", "10.1.0.22"),
		},
	}
}

func render(t testing.TB, d flows.Desired) flows.Set {
	t.Helper()
	s, err := d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var bridges = []flows.Bridge{flows.BrTun, flows.BrInt}

// TestSyncMatchesDump: after Sync the switch holds exactly the rendered flows,
// cookies included; each change of the desired state changes exactly the flows whose
// rendering changed, and leaves every other flow in place (not re-added).
func TestSyncMatchesDump(t *testing.T) {
	h := newHost(t, []string{hostB, hostC, hostD}, map[string]uint16{"vm1": 1, "vm2": 2})
	const round = 7
	br := map[flows.Bridge]*ofsync.Bridge{}
	for _, b := range bridges {
		br[b], _ = h.open(b, round)
	}

	state := h.baseState()
	set := render(t, state)
	for _, b := range bridges {
		syncConnected(t, br[b], set.Flows(b))
		sameSet(t, "initial "+string(b), h.dump(b), rendered(set.Flows(b), round))
		// The cookie the switch shows, round and all, leads back to the owner whose
		// flow it is.
		for _, line := range h.dump(b) {
			m := cookiePrefix.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s: no cookie in %q", b, line)
			}
			c, err := strconv.ParseUint(m[1], 0, 64)
			if err != nil {
				t.Fatal(err)
			}
			o, ok := set.Owner(b, flows.Cookie(c))
			if !ok || !slices.Contains(rendered(set.OwnerFlows(b, o), round), line) {
				t.Errorf("%s: cookie %s of %q names owner %s (%v), which has no such flow", b, flows.Cookie(c), line, o, ok)
			}
		}
	}
	if n := len(set.Flows(flows.BrTun)); n < 20 {
		t.Fatalf("base state renders only %d br-tun flows", n)
	}

	steps := []struct {
		name   string
		change func(d *flows.Desired)
	}{
		{"add network", func(d *flows.Desired) { d.Networks = append(d.Networks, netC) }},
		{"add remote port on new network", func(d *flows.Desired) {
			d.RemotePorts = append(d.RemotePorts, rport("rc3", netC, hostC, "fa:16:3e:00:00:c3", "10.2.0.33"))
		}},
		{"add tunnel and remote port", func(d *flows.Desired) {
			d.Tunnels = append(d.Tunnels, h.tunnel(hostD))
			d.RemotePorts = append(d.RemotePorts, rport("rd1", netA, hostD, "fa:16:3e:00:00:d1", "10.0.0.41"))
		}},
		{"change remote port MAC", func(d *flows.Desired) {
			d.RemotePorts[1].MAC = mustMAC("fa:16:3e:00:01:c1")
		}},
		{"remove remote port", func(d *flows.Desired) {
			d.RemotePorts = slices.DeleteFunc(d.RemotePorts, func(p flows.RemotePort) bool { return p.ID == "rb1" })
		}},
		{"remove network", func(d *flows.Desired) {
			d.Networks = slices.DeleteFunc(d.Networks, func(n flows.Network) bool { return n.ID == netB.ID })
			d.LocalPorts = slices.DeleteFunc(d.LocalPorts, func(p flows.LocalPort) bool { return p.NetworkID == netB.ID })
		}},
		{"remove tunnel", func(d *flows.Desired) {
			d.Tunnels = slices.DeleteFunc(d.Tunnels, func(tn flows.Tunnel) bool { return tn.RemoteIP.String() == hostC })
		}},
		{"nothing", func(d *flows.Desired) {}},
	}
	for _, step := range steps {
		next := state
		next.Networks = slices.Clone(state.Networks)
		next.Tunnels = slices.Clone(state.Tunnels)
		next.LocalPorts = slices.Clone(state.LocalPorts)
		next.RemotePorts = slices.Clone(state.RemotePorts)
		step.change(&next)
		nextSet := render(t, next)

		// Every flow must be clearly older than the time the change and the dump
		// after it take, so that an untouched flow is told apart from a re-added one
		// by its duration (OVS 3.1 restarts a flow's duration when an ADD replaces it,
		// even with identical actions; n_packets is kept, so it would not tell).
		before := map[flows.Bridge]map[string]time.Duration{}
		for _, b := range bridges {
			deadline := time.Now().Add(5 * time.Second)
			for {
				before[b] = h.dumpStats(b)
				young := 0
				for _, d := range before[b] {
					if d < 150*time.Millisecond {
						young++
					}
				}
				if young == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}

		changeStart := time.Now()
		for _, b := range bridges {
			if err := br[b].Sync(nextSet.Flows(b)); err != nil {
				t.Fatalf("%s: sync %s: %v", step.name, b, err)
			}
		}
		changed := 0
		for _, b := range bridges {
			after := h.dumpStats(b)
			sinceChange := time.Since(changeStart)
			oldR, newR := rendered(set.Flows(b), round), rendered(nextSet.Flows(b), round)
			var beforeFlows, afterFlows []string
			for f := range before[b] {
				beforeFlows = append(beforeFlows, f)
			}
			for f := range after {
				afterFlows = append(afterFlows, f)
			}
			what := fmt.Sprintf("%s: %s", step.name, b)
			sameSet(t, what+" before", beforeFlows, oldR)
			sameSet(t, what+" after", afterFlows, newR)
			// Redundant with the two above, but it is the property this test is about.
			sameSet(t, what+" added", minus(afterFlows, beforeFlows), minus(newR, oldR))
			sameSet(t, what+" removed", minus(beforeFlows, afterFlows), minus(oldR, newR))

			added := minus(newR, oldR)
			changed += len(added) + len(minus(oldR, newR))
			for f, age := range after {
				rewritten := age <= sinceChange+2*time.Millisecond
				if slices.Contains(added, f) != rewritten {
					t.Errorf("%s: flow %s: age %v, change %v ago: added=%v but rewritten=%v",
						what, f, age, sinceChange, slices.Contains(added, f), rewritten)
				}
			}
		}
		if (step.name == "nothing") != (changed == 0) {
			t.Errorf("%s: %d flows changed", step.name, changed)
		}
		t.Logf("%s: %d flows changed", step.name, changed)
		state, set = next, nextSet
	}

	// The detector itself: re-adding one flow unchanged, as a full replay would, does
	// show up as a young duration.
	probe := rendered(set.Flows(flows.BrTun), round)[0]
	start := time.Now()
	if _, err := h.o.Ofctl15("add-flow", "br-tun", probe); err != nil {
		t.Fatal(err)
	}
	if age, ok := h.dumpStats(flows.BrTun)[probe]; !ok || age > time.Since(start)+2*time.Millisecond {
		t.Errorf("re-added %s: age %v (present %v), want at most %v", probe, age, ok, time.Since(start))
	}

	// What the bridge reports matches the switch.
	for _, b := range bridges {
		st := br[b].Status()
		if !st.Connected || st.Round != round || st.Installed != len(set.Flows(b)) || st.LastError != "" {
			t.Errorf("%s status = %+v", b, st)
		}
		var inst []string
		for _, f := range br[b].Installed() {
			inst = append(inst, strings.TrimSpace(f.String()))
		}
		sameSet(t, string(b)+" Installed()", inst, h.dump(b))
	}
}
