package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// scaleState is the benchmark's cluster: host h1 with one port on each of 10
// networks, 1000 peers and 10 000 remote ports on those networks.
func scaleState(hosts, ports int) (store.State, flowInput) {
	st := store.State{Revision: 1, Networks: map[string]api.Network{}, Ports: map[string]*api.Port{}, Groups: map[string]api.SecurityGroup{},
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
		st.Ports[p.ID] = &p
		in.OVS.Ofports[p.ID] = 10 + i
	}
	for h := range hosts {
		ip := fmt.Sprintf("172.30.%d.%d", 1+h/250, 1+h%250)
		st.Hosts[fmt.Sprint("sim", h)] = api.Host{Name: fmt.Sprint("sim", h), TunnelIP: ip, TunnelType: "vxlan"}
		in.OVS.Tunnels[view.TunnelKey{IP: ip, Type: "vxlan"}] = ovsdb.TunnelPort{Ofport: 0x4000 + h}
	}
	for i := range ports {
		st.Ports[scalePortID(i)] = new(scalePort(i, hosts, nets))
	}
	return st, in
}

func scalePortID(i int) string { return fmt.Sprintf("remote-%06d", i) }

func scalePort(i, hosts int, nets []string) api.Port {
	return api.Port{ID: scalePortID(i), NetworkID: nets[i%len(nets)], Host: fmt.Sprint("sim", i%hosts),
		MAC: fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", 0x80|(i>>16)&0xff, (i>>8)&0xff, i&0xff), FixedIPs: []string{fmt.Sprintf("10.%d.%d.%d", i%len(nets), 128+(i>>8)&0x7f, i&0xff)}}
}

// BenchmarkPortEvent is the flow step's share of one remote port event (one added,
// then deleted) at 1k peers and 10k remote ports, through flowStep.Sync with real
// switches: the desired flows, the Builder, both bridges' diffs and bundles and the
// forgetter. "incremental" hands it views whose Changes name the port, as
// view.Update does; "full" views that say All, as every event did before. The views
// are computed beforehand: they are not this step's. Besides the time per event it
// reports this process's CPU per event (ovs-vswitchd's is its own), and the parent
// prints full/incremental of both, measured in the same run.
func BenchmarkPortEvent(b *testing.B) {
	st, in := scaleState(1000, 10000)
	var nets []string
	for i := range 10 {
		nets = append(nets, fmt.Sprintf("net-%02d", i))
	}
	without := view.Compute("h1", st)
	p := scalePort(10000, 1000, nets)
	st.Ports = maps.Clone(st.Ports)
	st.Ports[p.ID] = &p
	with := view.Compute("h1", st)
	o := ovsproc.ForTest(b)
	for _, br := range []string{"br-int", "br-tun"} {
		if _, err := o.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev", "fail_mode=secure",
			"protocols=OpenFlow10,OpenFlow13,OpenFlow15", fmt.Sprintf("other_config:datapath-id=%016x", rand.Uint64()>>8)); err != nil {
			b.Fatal(err)
		}
	}
	type result struct{ wall, cpu float64 } // ms per event
	results := map[string]result{}
	for i, mode := range []string{"incremental", "full"} {
		b.Run(mode, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			s := &flowStep{log: log, m: NewMetrics(), tunnelType: "vxlan",
				brInt: ofsync.Open(ctx, "br-int", o.MgmtSocket("br-int"), uint16(10+i), log, nil),
				brTun: ofsync.Open(ctx, "br-tun", o.MgmtSocket("br-tun"), uint16(10+i), log, nil)}
			s.forget = newForgetter(ctx, log, s.brTun)
			defer func() { cancel(); s.brInt.Wait(); s.brTun.Wait() }()
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, err := s.Sync(without, in)
				if err == nil {
					break
				}
				if !errors.Is(err, ofsync.ErrNotConnected) || time.Now().After(deadline) {
					b.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			views := [2]view.View{*with, *without}
			for j := range views {
				views[j].Changes = view.Changes{All: true}
				if mode == "incremental" {
					views[j].Changes = view.Changes{Remote: map[string]bool{p.ID: true}}
				}
			}
			cpu0, start, n := cpuTime(b), time.Now(), 0
			for ; b.Loop(); n++ {
				set, err := s.Sync(&views[n%2], in)
				if err != nil {
					b.Fatal(err)
				}
				if got := len(set.OwnerFlows(flows.BrTun, flows.Owner{Category: flows.CatRemotePort, Key: p.ID})); got == 0 == (n%2 == 0) {
					b.Fatalf("event %d: the port has %d flows", n, got)
				}
			}
			r := result{float64(time.Since(start).Microseconds()) / 1e3 / float64(n), (cpuTime(b) - cpu0).Seconds() * 1e3 / float64(n)}
			b.ReportMetric(r.cpu, "cpu-ms/event")
			results[mode] = r
		})
	}
	if inc, full := results["incremental"], results["full"]; inc.cpu > 0 && inc.wall > 0 {
		fmt.Printf("flow step per remote port event at 10k remote ports: full/incremental %.1fx CPU (%.2f / %.2f ms), %.1fx time (%.2f / %.2f ms)\n",
			full.cpu/inc.cpu, full.cpu, inc.cpu, full.wall/inc.wall, full.wall, inc.wall)
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkView is view.Compute at 1k peers and 10k remote ports.
func BenchmarkView(b *testing.B) {
	st, _ := scaleState(1000, 10000)
	for b.Loop() {
		view.Compute("h1", st)
	}
}
