package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// benchRecords is a store of 10 networks, 100 groups of 20 rules and 10 000 ports,
// as the mirror holds it.
func benchRecords(b *testing.B) *records {
	b.Helper()
	rs := newRecords()
	rev := int64(1)
	kv := func(key string, v any) *mvccpb.KeyValue {
		rev++
		return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(jsonOf(b, v)), CreateRevision: rev, ModRevision: rev}
	}
	var nets, groups []string
	for i := range 10 {
		n := api.Network{ID: NewUUID(), Name: fmt.Sprint("n", i), VNI: uint32(i + 1), CIDR: fmt.Sprintf("10.%d.0.0/16", i), MTU: 1450}
		rs.networks[n.ID] = readNetwork(kv(pNetworks+n.ID, n), n.ID)
		nets = append(nets, n.ID)
	}
	for i := range 100 {
		g := api.SecurityGroup{ID: NewUUID(), Name: fmt.Sprint("g", i)}
		for j := range 20 {
			g.Rules = append(g.Rules, api.Rule{ID: NewUUID(), Direction: api.Ingress, Ethertype: api.IPv4, Protocol: "tcp", PortMin: j + 1, PortMax: j + 1, RemoteCIDR: "10.0.0.0/8"})
		}
		rs.groups[g.ID] = readGroup(kv(pGroups+g.ID, g), g.ID)
		groups = append(groups, g.ID)
	}
	for i := range 10000 {
		p := api.Port{ID: NewUUID(), Name: fmt.Sprint("p", i), NetworkID: nets[i%10], Host: fmt.Sprint("h", i%50),
			MAC: fmt.Sprintf("fa:16:3e:00:%02x:%02x", i>>8, i&0xff), FixedIPs: []string{fmt.Sprintf("10.%d.%d.%d", i%10, 1+i/250, 1+i%250)},
			SecurityGroups: []string{groups[i%100], groups[(i+1)%100]}}
		rs.ports[p.ID] = readPort(kv(pPorts+p.ID, p), p.ID)
	}
	if st := rs.build(rev); len(st.Problems) != 0 || len(st.Ports) != 10000 {
		b.Fatalf("%d ports, problems %v", len(st.Ports), st.Problems[:min(3, len(st.Problems))])
	}
	return rs
}

// The mirror builds the State once per change the agent reads; compare with the
// Clone every Snapshot makes anyway. On the 2-vCPU test machine, loaded: build about
// 45 ms, clone about 24 ms for 10 000 ports.
func BenchmarkBuild10kPorts(b *testing.B) {
	rs := benchRecords(b)
	b.ResetTimer()
	for range b.N {
		rs.build(1)
	}
}

func BenchmarkClone10kPorts(b *testing.B) {
	st := benchRecords(b).build(1)
	b.ResetTimer()
	for range b.N {
		st.Clone()
	}
}

// One port event at 10 000 ports, as the mirror takes it: the put applied, then the
// State patched (incremental) or built again (full, in the same run); the ratio is
// what the patch saves per event.
func BenchmarkPortEvent10kPorts(b *testing.B) {
	rs := benchRecords(b)
	m := (&Store{}).NewMirror(MirrorOptions{})
	m.recs, m.stale, m.dirtyAll = rs, true, true
	m.Shared()
	var moved *record[api.Port]
	for _, r := range rs.ports {
		moved = r
		break
	}
	var values [2][]byte
	for i := range values {
		p := moved.v
		p.Host = fmt.Sprint("elsewhere", i)
		values[i] = []byte(jsonOf(b, p))
	}
	rev := int64(1 << 30)
	event := func(full bool) {
		rev++
		kv := &mvccpb.KeyValue{Key: []byte(moved.key), Value: values[rev%2], CreateRevision: moved.create, ModRevision: rev}
		m.mu.Lock()
		m.applyEvent(mvccpb.PUT, kv)
		m.stale, m.rev = true, rev
		m.dirtyAll = m.dirtyAll || full
		m.mu.Unlock()
		if st, d := m.SharedSince(m.gen); d.All != full || st.Ports[moved.v.ID].Host != fmt.Sprint("elsewhere", rev%2) {
			b.Fatalf("full %v: delta %+v, port %+v", full, d, st.Ports[moved.v.ID])
		}
	}
	const fulls = 10
	start := time.Now()
	for range fulls {
		event(true)
	}
	full := time.Since(start) / fulls
	b.ResetTimer()
	for b.Loop() {
		event(false)
	}
	b.StopTimer()
	inc := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(full.Nanoseconds()), "full-ns/event")
	b.ReportMetric(float64(full)/float64(inc), "full/incremental")
}
