package controller

import (
	"fmt"
	"testing"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// scaleState is the benchmark's cluster: host h1 with one port on each of 10
// networks, 1000 peers and 10 000 remote ports on those networks.
func scaleState(hosts, ports int) (store.State, flowInput) {
	st := store.State{Revision: 1, Networks: map[string]api.Network{}, Ports: map[string]api.Port{}, Groups: map[string]api.SecurityGroup{},
		Hosts: map[string]api.Host{}, Statuses: map[string]api.PortStatus{}, Routers: map[string]api.Router{}, FloatingIPs: map[string]api.FloatingIP{}}
	in := flowInput{PatchInt: 1, VLANs: map[string]uint16{}, OVS: ovsResult{Ofports: map[string]int{}, Tunnels: map[view.TunnelKey]ovsdb.TunnelPort{}}}
	st.Hosts["h1"] = api.Host{Name: "h1", TunnelIP: "172.29.0.1", TunnelType: "vxlan"}
	var nets []string
	for i := range 10 {
		n := api.Network{ID: fmt.Sprintf("net-%02d", i), Name: fmt.Sprint("n", i), VNI: uint32(100 + i), CIDR: fmt.Sprintf("10.%d.0.0/16", i), MTU: 1450}
		st.Networks[n.ID] = n
		nets = append(nets, n.ID)
		in.VLANs[n.ID] = uint16(1 + i)
		p := api.Port{ID: fmt.Sprintf("local-%02d", i), NetworkID: n.ID, Host: "h1", MAC: fmt.Sprintf("fa:16:3e:01:00:%02x", i), FixedIPs: []string{fmt.Sprintf("10.%d.0.2", i)}}
		st.Ports[p.ID] = p
		in.OVS.Ofports[p.ID] = 10 + i
	}
	for h := range hosts {
		ip := fmt.Sprintf("172.30.%d.%d", 1+h/250, 1+h%250)
		st.Hosts[fmt.Sprint("sim", h)] = api.Host{Name: fmt.Sprint("sim", h), TunnelIP: ip, TunnelType: "vxlan"}
		in.OVS.Tunnels[view.TunnelKey{IP: ip, Type: "vxlan"}] = ovsdb.TunnelPort{Ofport: 0x4000 + h}
	}
	for i := range ports {
		st.Ports[scalePortID(i)] = scalePort(i, hosts, nets)
	}
	return st, in
}

func scalePortID(i int) string { return fmt.Sprintf("remote-%06d", i) }

func scalePort(i, hosts int, nets []string) api.Port {
	return api.Port{ID: scalePortID(i), NetworkID: nets[i%len(nets)], Host: fmt.Sprint("sim", i%hosts),
		MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", 0x80|(i>>16)&0xff, (i>>8)&0xff, i&0xff), FixedIPs: []string{fmt.Sprintf("10.%d.%d.%d", i%len(nets), 128+(i>>8)&0x7f, i&0xff)}}
}

// BenchmarkPortEvent is the flow step's share of one remote port event (one added,
// then deleted) at 1k peers and 10k remote ports: the view, the desired flows and the
// br-tun diff; incremental as the flow step runs, and from scratch as it did before
// (the same-run anchor).
func BenchmarkPortEvent(b *testing.B) {
	for _, mode := range []string{"incremental", "scratch"} {
		b.Run(mode, func(b *testing.B) {
			st, in := scaleState(1000, 10000)
			var nets []string
			for i := range 10 {
				nets = append(nets, fmt.Sprintf("net-%02d", i))
			}
			var builder flows.Builder
			var installed ofsync.Flows
			for i := 0; b.Loop(); i++ {
				if p := scalePort(10000+i/2, 1000, nets); i%2 == 0 {
					st.Ports[p.ID] = p
				} else {
					delete(st.Ports, p.ID)
				}
				v := view.Compute("h1", st)
				d := desired(v, in, "vxlan")
				set, err := builder.Build(d)
				if mode == "scratch" {
					set, err = d.Flows()
				}
				if err != nil {
					b.Fatal(err)
				}
				cur := ofsync.Index(set, "br-tun", 1)
				if p := ofsync.Diff(installed, cur, false); i > 0 && len(p.Add)+len(p.Delete) != 2 {
					b.Fatalf("event %d: %d adds, %d deletes, want 2 flows", i, len(p.Add), len(p.Delete))
				}
				installed = cur
			}
		})
	}
}

// BenchmarkView is view.Compute at 1k peers and 10k remote ports.
func BenchmarkView(b *testing.B) {
	st, _ := scaleState(1000, 10000)
	for b.Loop() {
		view.Compute("h1", st)
	}
}
