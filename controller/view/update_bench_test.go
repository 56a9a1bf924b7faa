package view

import (
	"fmt"
	"maps"
	"runtime"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// scale is h1 with a port on each of 10 networks, 1000 peers and 10 000 remote
// ports on those networks, every port in one group (as lanesctl creates them).
func scale() store.State {
	st := store.State{Revision: 1, Gen: 1, Networks: map[string]api.Network{}, Ports: map[string]*api.Port{},
		Groups: map[string]api.SecurityGroup{"default": {ID: "default", Name: "default"}}, Hosts: map[string]api.Host{}}
	st.Hosts["h1"] = api.Host{Name: "h1", TunnelIP: "172.29.0.1", TunnelType: "vxlan"}
	for i := range 10 {
		n := api.Network{ID: fmt.Sprintf("net-%02d", i), Name: fmt.Sprint("n", i), VNI: uint32(100 + i), CIDR: fmt.Sprintf("10.%d.0.0/16", i), MTU: 1450}
		st.Networks[n.ID] = n
		p := api.Port{ID: fmt.Sprintf("local-%02d", i), NetworkID: n.ID, Host: "h1", MAC: fmt.Sprintf("fa:16:3e:01:00:%02x", i),
			FixedIPs: []string{fmt.Sprintf("10.%d.0.2", i)}, SecurityGroups: []string{"default"}}
		st.Ports[p.ID] = &p
	}
	for h := range 1000 {
		st.Hosts[fmt.Sprint("sim", h)] = api.Host{Name: fmt.Sprint("sim", h), TunnelIP: fmt.Sprintf("172.30.%d.%d", 1+h/250, 1+h%250), TunnelType: "vxlan"}
	}
	for i := range 10000 {
		p := scalePort(i)
		st.Ports[p.ID] = &p
	}
	return st
}

func scalePort(i int) api.Port {
	return api.Port{ID: fmt.Sprintf("remote-%06d", i), NetworkID: fmt.Sprintf("net-%02d", i%10), Host: fmt.Sprint("sim", i%1000),
		MAC:      fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", 0x80|(i>>16)&0xff, (i>>8)&0xff, i&0xff),
		FixedIPs: []string{fmt.Sprintf("10.%d.%d.%d", i%10, 128+(i>>8)&0x7f, i&0xff)}, SecurityGroups: []string{"default"}}
}

// BenchmarkRemotePortEvent is one remote port added or deleted at 1k peers and 10k
// remote ports: the view updated from the last one, timed by the benchmark, and
// computed from scratch for a few events before it (the same-run anchor, apart so
// that its garbage is not collected on the update's time); compute/update is how
// many times cheaper the update is.
func BenchmarkRemotePortEvent(b *testing.B) {
	without := scale()
	with := without
	with.Ports = maps.Clone(without.Ports)
	p := scalePort(10000)
	with.Ports[p.ID] = &p
	states := [2]store.State{with, without}
	d := store.Delta{Ports: map[string]bool{p.ID: true}}
	const computes = 8
	t0 := time.Now()
	for i := range computes {
		Compute("h1", states[i%2])
	}
	perFull := float64(time.Since(t0)) / computes
	v := Compute("h1", without)
	runtime.GC()
	b.ResetTimer()
	t0 = time.Now()
	for i := 0; b.Loop(); i++ {
		st := states[i%2]
		st.Gen, st.Revision = v.State.Gen+1, v.Revision+1
		u := Update(v, "h1", st, d)
		if u.Changes.All || len(u.Changes.Remote) != 1 || !u.Changes.Members["default"] || len(u.Remote) != len(v.Remote)+1-2*(i%2) {
			b.Fatalf("event %d: changes %+v", i, u.Changes)
		}
		v = u
	}
	perIncr := float64(time.Since(t0)) / float64(b.N)
	b.ReportMetric(perFull/1e3, "compute-µs/event")
	b.ReportMetric(perFull/perIncr, "compute/update")
}

// BenchmarkCompute is the full view at 1k peers and 10k remote ports.
func BenchmarkCompute(b *testing.B) {
	st := scale()
	for b.Loop() {
		Compute("h1", st)
	}
}
