package controller

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/ovsdb"
)

// TestFlowsIncrementalEqualsFull changes the cluster state at random, as store events
// would (ports added, deleted, moved and readdressed, hosts and tunnels coming and
// going, local ports plugged), and checks after each change that the flow step's
// incremental flows equal a computation from scratch, view included.
func TestFlowsIncrementalEqualsFull(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 14))
			st, in := scaleState(20, 200)
			nets := []string{}
			for i := range 10 {
				nets = append(nets, fmt.Sprintf("net-%02d", i))
			}
			next := 200
			var b flows.Builder
			for step := range 150 {
				// The view keeps the state it was computed from: change copies.
				st.Ports, st.Hosts = maps.Clone(st.Ports), maps.Clone(st.Hosts)
				in.OVS.Ofports, in.OVS.Tunnels = maps.Clone(in.OVS.Ofports), maps.Clone(in.OVS.Tunnels)
				what := ""
				switch k := r.IntN(8); k {
				case 0, 1:
					p := scalePort(next, 20+r.IntN(3), nets) // sometimes on a host not registered
					next++
					st.Ports[p.ID], what = p, "add remote port"
				case 2:
					delete(st.Ports, scalePortID(r.IntN(next)))
					what = "delete port"
				case 3:
					id := scalePortID(r.IntN(next))
					if p, ok := st.Ports[id]; ok {
						p.Host = fmt.Sprint("sim", r.IntN(22))
						st.Ports[id], what = p, "move port"
					}
				case 4:
					id := scalePortID(r.IntN(next))
					if p, ok := st.Ports[id]; ok {
						q := scalePort(next, 20, nets)
						next++
						p.MAC, p.FixedIPs = q.MAC, q.FixedIPs
						st.Ports[id], what = p, "readdress port"
					}
				case 5:
					name := fmt.Sprint("sim", 20+r.IntN(2))
					ip := fmt.Sprintf("172.30.9.%d", 1+r.IntN(2))
					if _, ok := st.Hosts[name]; ok {
						delete(st.Hosts, name)
						what = "delete host"
					} else {
						st.Hosts[name] = api.Host{Name: name, TunnelIP: ip, TunnelType: "vxlan"}
						what = "add host"
					}
				case 6:
					h := st.Hosts[fmt.Sprint("sim", r.IntN(20))]
					k := view.TunnelKey{IP: h.TunnelIP, Type: "vxlan"}
					if _, ok := in.OVS.Tunnels[k]; ok && r.IntN(2) == 0 {
						delete(in.OVS.Tunnels, k)
						what = "tunnel port gone"
					} else {
						in.OVS.Tunnels[k] = ovsdb.TunnelPort{Ofport: 0x5000 + next}
						next++
						what = "tunnel port (re)made"
					}
				default:
					id := fmt.Sprintf("local-%02d", r.IntN(10))
					if _, ok := in.OVS.Ofports[id]; ok && r.IntN(2) == 0 {
						delete(in.OVS.Ofports, id)
						what = "local port unplugged"
					} else {
						in.OVS.Ofports[id] = 10 + next
						next++
						what = "local port plugged"
					}
				}
				d := desired(view.Compute("h1", st), in, "vxlan")
				got, err := b.Build(d)
				if err != nil {
					t.Fatalf("step %d (%s): %v", step, what, err)
				}
				want, err := d.Flows()
				if err != nil {
					t.Fatalf("step %d (%s): from scratch: %v", step, what, err)
				}
				if err := got.Same(want); err != nil {
					t.Fatalf("step %d (%s): incremental != from scratch: %v", step, what, err)
				}
			}
		})
	}
}
