package hostwire

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// benchState is n ports in one 10-rule group (one rule uses the group as remote).
func benchState(n int) ([]PortSpec, FirewallState) {
	g := &api.SecurityGroup{ID: "bench-group-0000-0000-0000-000000000000", Name: "bench"}
	for i := range 7 {
		g.Rules = append(g.Rules, api.Rule{ID: fmt.Sprint(i), Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: 1000 + i, PortMax: 1000 + i, RemoteCIDR: "192.168.0.0/16"})
	}
	g.Rules = append(g.Rules,
		api.Rule{ID: "icmp", Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "icmp"},
		api.Rule{ID: "rg", Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: g.ID},
		api.Rule{ID: "eg", Direction: api.Egress, Ethertype: api.IPv4})
	st := FirewallState{Groups: map[string]*api.SecurityGroup{g.ID: g}, Members: map[string]map[string][]string{g.ID: {}}}
	var specs []PortSpec
	for i := range n {
		id := portID(i + 1)
		k := i + 1
		ip := fmt.Sprintf("10.%d.%d.%d", (k>>16)&0xff, (k>>8)&0xff, k&0xff)
		specs = append(specs, PortSpec{ID: id, MAC: macOf(i + 1), MTU: 1450})
		st.Ports = append(st.Ports, FirewallPort{ID: id, NetworkID: testNet, MAC: macOf(i + 1), FixedIPs: []string{ip}, PortSecurity: true, SecurityGroups: []string{g.ID}})
		st.Members[g.ID][testNet] = append(st.Members[g.ID][testNet], ip)
	}
	return specs, st
}

func BenchmarkWire100(b *testing.B) { benchWire(b, 100) }
func BenchmarkWire500(b *testing.B) { benchWire(b, 500) }

// benchWire plumbs n ports and applies their firewall in one reconcile, then removes
// them all, in a fresh host namespace per iteration.
func benchWire(b *testing.B, n int) {
	skipUnlessKernel(b)
	ctx := context.Background()
	specs, st := benchState(n)
	var wire, unwire time.Duration
	for range b.N {
		b.StopTimer()
		th := newTestHost(b, ovsproc.NetnsForTest(b))
		b.StartTimer()
		t0 := time.Now()
		if err := ensureAll(th.h, specs); err != nil {
			b.Fatal(err)
		}
		if _, err := th.fw.Apply(ctx, st); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		ids := make([]string, len(specs))
		for i, p := range specs {
			ids[i] = p.ID
		}
		if err := th.h.DeletePorts(ids); err != nil {
			b.Fatal(err)
		}
		if _, err := th.fw.Apply(ctx, FirewallState{}); err != nil {
			b.Fatal(err)
		}
		wire += t1.Sub(t0)
		unwire += time.Since(t1)
	}
	b.ReportMetric(wire.Seconds()/float64(b.N), "wire-s")
	b.ReportMetric(float64(n*b.N)/wire.Seconds(), "wire-ports/s")
	b.ReportMetric(unwire.Seconds()/float64(b.N), "unwire-s")
	b.ReportMetric(float64(n*b.N)/unwire.Seconds(), "unwire-ports/s")
}

// BenchmarkWireIncremental100 adds 100 ports one reconcile at a time (plumb one port,
// apply the firewall of all ports so far), the worst case: every apply
// rewrites the shared chains, and iptables-nft-restore reads the whole table each time.
func BenchmarkWireIncremental100(b *testing.B) {
	skipUnlessKernel(b)
	ctx := context.Background()
	specs, st := benchState(100)
	for range b.N {
		b.StopTimer()
		th := newTestHost(b, ovsproc.NetnsForTest(b))
		b.StartTimer()
		t0 := time.Now()
		for i := range specs {
			if err := th.h.EnsurePort(specs[i]); err != nil {
				b.Fatal(err)
			}
			part := st
			part.Ports = st.Ports[:i+1]
			if _, err := th.fw.Apply(ctx, part); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(time.Since(t0).Seconds(), "wire-s")
	}
}

// BenchmarkNoopReconcile500 is a reconcile of 500 wired ports where nothing changed:
// EnsurePorts (one link dump) plus a firewall Apply that must write nothing.
func BenchmarkNoopReconcile500(b *testing.B) {
	skipUnlessKernel(b)
	ctx := context.Background()
	specs, st := benchState(500)
	th := newTestHost(b, ovsproc.NetnsForTest(b))
	if err := ensureAll(th.h, specs); err != nil {
		b.Fatal(err)
	}
	if _, err := th.fw.Apply(ctx, st); err != nil {
		b.Fatal(err)
	}
	var plumb, fw time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := ensureAll(th.h, specs); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		s, err := th.fw.Apply(ctx, st)
		if err != nil {
			b.Fatal(err)
		}
		if s.Changed() {
			b.Fatalf("no-op reconcile wrote %+v", s)
		}
		plumb += t1.Sub(t0)
		fw += time.Since(t1)
	}
	b.ReportMetric(plumb.Seconds()*1000/float64(b.N), "plumb-ms")
	b.ReportMetric(fw.Seconds()*1000/float64(b.N), "firewall-ms")
	b.ReportMetric((plumb+fw).Seconds()*1000/float64(b.N), "total-ms")
}

func ensureAll(h *Host, specs []PortSpec) error {
	failed, err := h.EnsurePorts(specs)
	if err != nil {
		return err
	}
	for id, e := range failed {
		return fmt.Errorf("port %s: %w", id, e)
	}
	return nil
}

// BenchmarkRenderRemoteMembers: 10 local ports, each on its own network, in a group
// whose remote-group rule covers 10k members (1k per network); one member changes
// per pass. Full parses every set again, reused only the changed network's.
func BenchmarkRenderRemoteMembers(b *testing.B) {
	_, st := benchState(10)
	gid := st.Groups["bench-group-0000-0000-0000-000000000000"].ID
	members := map[string][]string{}
	for i := range st.Ports {
		st.Ports[i].NetworkID = fmt.Sprintf("net-%d", i)
		st.Ports[i].Zone = ZoneStart + i
		for k := range 1000 {
			members[st.Ports[i].NetworkID] = append(members[st.Ports[i].NetworkID], fmt.Sprintf("10.%d.%d.%d", i, k>>8, k&0xff))
		}
	}
	st.Members[gid] = members
	change := func(i int) FirewallState {
		m := make(map[string][]string, len(members))
		for n, l := range members {
			m[n] = l
		}
		m["net-0"] = append(m["net-0"][:999:999], fmt.Sprintf("10.200.%d.%d", (i>>8)&0xff, i&0xff))
		s := st
		s.Members = map[string]map[string][]string{gid: m}
		return s
	}
	b.Run("full", func(b *testing.B) {
		for i := range b.N {
			if _, err := Render(change(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reused", func(b *testing.B) {
		rs, err := Render(st)
		if err != nil {
			b.Fatal(err)
		}
		for i := range b.N {
			if rs, err = render(change(i), rs.Sets); err != nil {
				b.Fatal(err)
			}
		}
	})
}
