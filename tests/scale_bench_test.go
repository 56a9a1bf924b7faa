package tests

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/store"
)

// BenchmarkScale is one real host (h1, lanesd against an external one-member etcd,
// so that lanesd's RSS is lanesd's alone) next to N simulated peer hosts and M remote
// ports written straight into etcd in the store's record format: persistent host
// records, alive keys under one live lease, port records on networks h1 also has. It
// reports, per size: bulk converge after the last write (next to a fresh OVS's own
// time for the same tunnels and flows, ovsFloor), one remote port add and
// delete (write -> the switch reports the flow added or deleted, by a flow monitor)
// p50/p99, and of that the part after the store answered the write, with lanesd's
// CPU per event (above its CPU at rest); the same events back to back over a whole
// resync period, write -> flow at any moment; restart -> converged; lanesd's RSS
// (once it has settled: idle for 2 s) and the etcd db size after each of three
// load/purge cycles; and the growth per 1k ports.
//
// The etcd runs with lanes' embedded etcd's compaction and defrag policy, shortened
// so that it shows within a run: periodic auto-compaction with benchEtcdRetention
// instead of 5m, and after each purge, once that revision is compacted, one defrag
// check by the embedded etcd's rule (at least benchDefragMinFree and half the file
// free) instead of every 10 minutes with 16 MiB.
//
// LANES_SCALE="100/1000,1000/10000" picks the sizes (hosts/ports); by default
// 100/1k, 1k/10k and 5k/50k (about 12 minutes on a 2-core machine). With
// LANES_SCALE_PROFILE=<dir> it writes lanesd's CPU profiles of the single-port
// events and of the restart, and heap profiles after the first and the last load.
// LANES_SCALE_ENV="GOGC=50 GOMEMLIMIT=150MiB" adds to lanesd's environment (the Go
// runtime's knobs, an operator's), to weigh RSS against CPU.
func BenchmarkScale(b *testing.B) {
	sizes := [][2]int{{100, 1000}, {1000, 10000}, {5000, 50000}}
	if env := os.Getenv("LANES_SCALE"); env != "" {
		sizes = nil
		for _, s := range strings.Split(env, ",") {
			var n, m int
			if _, err := fmt.Sscanf(s, "%d/%d", &n, &m); err != nil {
				b.Fatalf("LANES_SCALE %q: want hosts/ports,...: %v", env, err)
			}
			sizes = append(sizes, [2]int{n, m})
		}
	}
	var rows []scaleResult
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("hosts=%d/ports=%d", sz[0], sz[1]), func(b *testing.B) {
			for range b.N {
				rows = append(rows, runScale(b, sz[0], sz[1]))
			}
		})
	}
	// Printed, not logged: a parent benchmark's log is not shown without -v.
	fmt.Println("BenchmarkScale: one lanesd host, N simulated peers, M remote ports")
	fmt.Println("| hosts | ports | bulk conv (OVS's own time for it) | add p50/p99 | del p50/p99 | after the store answered p50/p99 | CPU/event above rest | at any moment p50/p99/slowest | restart conv | fewest flows in restart | RSS MiB settled (cycles) | etcd db MiB (cycles) |")
	fmt.Println("|-------|-------|-----------------------------------|-------------|-------------|-------------|-----------|-------------|--------------|-------------------------|------------------|----------------------|")
	for _, r := range rows {
		fmt.Println(r.row())
	}
	for i := 1; i < len(rows); i++ {
		a, z := rows[i-1], rows[i]
		per := func(x, y float64) float64 { return (y - x) / float64(z.ports-a.ports) * 1000 }
		fmt.Printf("growth per 1k ports (%d -> %d): bulk %+.0f ms, add p50 %+.1f ms, CPU/event %+.1f ms, restart %+.0f ms, RSS %+.1f MiB\n",
			a.ports, z.ports, per(ms(a.bulk), ms(z.bulk)), per(ms(a.events.addP50), ms(z.events.addP50)), per(ms(a.events.cpu), ms(z.events.cpu)),
			per(ms(a.restart), ms(z.restart)), per(a.rss[0], z.rss[0]))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type scaleResult struct {
	hosts, ports             int
	bulk                     time.Duration
	floorTunnels, floorFlows time.Duration // OVS alone taking what the bulk asked (ovsFloor)
	events                   eventFigures
	any                      anyFigures
	restart                  time.Duration
	minFlowsInRestart        int
	rss, db                  []float64 // MiB after each cycle
}

func (r scaleResult) row() string {
	e := r.events
	f := func(v []float64) string {
		var s []string
		for _, x := range v {
			s = append(s, fmt.Sprintf("%.1f", x))
		}
		return strings.Join(s, " ")
	}
	return fmt.Sprintf("| %5d | %5d | %7.0f ms (OVS alone %4.0f ms) | %4.0f / %4.0f ms | %4.0f / %4.0f ms | %4.0f / %4.0f ms | %6.1f ms | %3.0f / %3.0f / %3.0f ms | %7.0f ms | %6d | %16s | %20s |",
		r.hosts, r.ports, ms(r.bulk), ms(r.floorTunnels+r.floorFlows), ms(e.addP50), ms(e.addP99), ms(e.delP50), ms(e.delP99), ms(e.ownP50), ms(e.ownP99), ms(e.cpu), ms(r.any.p50), ms(r.any.p99), ms(r.any.worst), ms(r.restart), r.minFlowsInRestart, f(r.rss), f(r.db))
}

// scaleLab is the lab, the store client and what the records refer to.
type scaleLab struct {
	b      *testing.B
	l      *lab.Lab
	h      *lab.Host
	cli    *clientv3.Client
	ctx    context.Context
	nets   []api.Network
	group  string // the default security group, as the local ports have it
	lease  clientv3.LeaseID
	hosts  int
	nextIP map[string]int
}

const simNetworks = 10

// The bench's etcd compaction and defrag (see BenchmarkScale).
const (
	benchEtcdRetention = "5s"
	benchDefragMinFree = 1 << 20
)

func runScale(b *testing.B, hosts, ports int) scaleResult {
	b.StopTimer()
	l := newLab(b, 1, withEtcdCluster(1), func(c *lab.Config) {
		c.EtcdCompaction = benchEtcdRetention
		c.LanesdLogLevel = "debug" // the restart's passes, with their steps' times
		c.LanesdEnv = strings.Fields(os.Getenv("LANES_SCALE_ENV"))
	})
	s := &scaleLab{b: b, l: l, h: l.Host("h1"), hosts: hosts, nextIP: map[string]int{}}
	if dir := os.Getenv("LANES_SCALE_PROFILE"); dir != "" {
		b.Cleanup(func() { // before the lab goes: lanesd's whole log, for its passes' step times
			if log, err := os.ReadFile(s.h.LogFile()); err == nil {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("lanesd-%d.log", ports)), log, 0o644)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	s.ctx = ctx
	st, err := l.OpenStore(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	s.cli = st.Client()

	// h1 has a port on every network, so every remote port is one it must reach.
	for i := range simNetworks {
		ctl(b, l, s.h, "network", "create", fmt.Sprintf("sn%d", i), "--cidr", fmt.Sprintf("10.%d.0.0/16", 100+i))
		out := ctl(b, l, s.h, "-o", "json", "port", "create", fmt.Sprintf("h1p%d", i), "--network", fmt.Sprintf("sn%d", i), "--host", "h1")
		var p api.Port
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			b.Fatal(err)
		}
		s.group = p.SecurityGroups[0]
		var ns []api.Network // show prints a list
		if err := json.Unmarshal([]byte(ctl(b, l, s.h, "-o", "json", "network", "show", fmt.Sprintf("sn%d", i))), &ns); err != nil || len(ns) != 1 {
			b.Fatalf("network show sn%d: %v", i, err)
		}
		s.nets = append(s.nets, ns[0])
	}
	s.writeHosts()
	base := s.flows()
	pid := s.h.LanesdPID()
	r := scaleResult{hosts: hosts, ports: ports}

	// Three load/purge cycles; the first load gives the bulk converge time, and the
	// single-port events and the restart run on the loaded cluster.
	for cycle := range 3 {
		ids := s.writePorts(ports, fmt.Sprintf("c%d", cycle))
		lastWrite := time.Now()
		s.waitFlows(base+ports, 10*time.Minute)
		if cycle == 0 {
			r.bulk = time.Since(lastWrite)
			r.floorTunnels, r.floorFlows = s.ovsFloor()
			t0 := time.Now()
			r.events = s.singleEvents(pid, singleEvents)
			s.profile(fmt.Sprintf("events-%d", ports), time.Since(t0), func() { s.singleEvents(pid, singleEvents) })
			r.any = s.anyMoment()
			r.restart, r.minFlowsInRestart = s.restart(base+ports, fmt.Sprintf("restart-%d", ports))
			pid = s.h.LanesdPID()
		}
		// Memory at rest: once lanesd has been idle for a while, as an operator reads
		// it between changes (right after a burst it still holds the burst's peak,
		// printed first).
		peak := float64(rssKiB(b, pid)) / 1024
		s.settle(pid)
		r.rss = append(r.rss, float64(rssKiB(b, pid))/1024)
		r.db = append(r.db, s.dbMiB())
		fmt.Printf("memory of lanesd at %d ports, cycle %d: RSS %.1f MiB as flows converged, %.1f MiB settled, %s\n", ports, cycle, peak, r.rss[cycle], s.goMemory())
		if cycle == 0 || cycle == 2 {
			s.heapProfile(fmt.Sprintf("heap-%d-c%d", ports, cycle))
		}
		s.deletePorts(ids)
		s.waitFlows(base, 10*time.Minute)
		s.compactAndDefrag()
	}
	return r
}

// ovsFloor times a fresh OVS on this machine taking what a bulk load asked of h1's:
// the same tunnel ports in one ovs-vsctl transaction (which returns once
// ovs-vswitchd has them), then the same br-tun flows in one ovs-ofctl bundle. A
// controller converges no faster than OVS takes its work, so lanes' bulk converge is
// printed next to it.
func (s *scaleLab) ovsFloor() (tunnels, flows time.Duration) {
	src := s.l.OVS(s.h)
	out, err := src.Vsctl("--format=json", "--columns=name,type,options,ofport", "find", "Interface", "type="+api.TunnelVXLAN)
	if err != nil {
		s.b.Fatal(err)
	}
	var list struct{ Data [][]json.RawMessage }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		s.b.Fatalf("ovs-vsctl find Interface: %v", err)
	}
	o := ovsproc.ForTest(s.b)
	args := []string{"add-br", "br-tun", "--", "set", "bridge", "br-tun", "datapath_type=netdev", "fail_mode=secure",
		"protocols=OpenFlow10,OpenFlow13,OpenFlow15"}
	for _, row := range list.Data {
		var name, typ string
		var opts struct {
			Pairs [][2]string
		}
		var ofport int
		var m []json.RawMessage // ["map", [[k, v], ...]]
		if len(row) != 4 || json.Unmarshal(row[0], &name) != nil || json.Unmarshal(row[1], &typ) != nil ||
			json.Unmarshal(row[2], &m) != nil || len(m) != 2 || json.Unmarshal(m[1], &opts.Pairs) != nil || json.Unmarshal(row[3], &ofport) != nil {
			s.b.Fatalf("ovs-vsctl find Interface: row %s", row)
		}
		args = append(args, "--", "add-port", "br-tun", name, "--", "set", "Interface", name, "type="+typ, fmt.Sprintf("ofport_request=%d", ofport))
		for _, kv := range opts.Pairs {
			args = append(args, fmt.Sprintf("options:%s=%q", kv[0], kv[1]))
		}
	}
	dump, err := src.DumpFlows("br-tun")
	if err != nil {
		s.b.Fatal(err)
	}
	file := filepath.Join(s.b.TempDir(), "br-tun.flows")
	if err := os.WriteFile(file, []byte(strings.Join(dump, "\n")+"\n"), 0o644); err != nil {
		s.b.Fatal(err)
	}
	// One transaction of thousands of ports takes OVS a while (26 s for 3000
	// here): longer than the tools' usual 30 s bound allows at 5000.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	vsctl := append([]string{"--db=" + o.DBEndpoint(), "--timeout=600"}, args...)
	if out, err := o.Tools().Run(ctx, "ovs-vsctl", vsctl...); err != nil {
		s.b.Fatalf("%v: %.500s", err, out)
	}
	tunnels = time.Since(start)
	start = time.Now()
	if out, err := o.Ofctl15("--bundle", "add-flows", "br-tun", file); err != nil {
		s.b.Fatalf("%v: %s", err, out)
	}
	flows = time.Since(start)
	fmt.Printf("OVS alone, fresh, taking what the bulk load asked: %d tunnel ports in one ovs-vsctl transaction %s, %d br-tun flows in one ovs-ofctl bundle %s\n",
		len(list.Data), tunnels.Round(time.Millisecond), len(dump), flows.Round(time.Millisecond))
	return tunnels, flows
}

// metrics is lanesd's /metrics page.
func (s *scaleLab) metrics() string {
	out, err := exec.Command("ip", "netns", "exec", s.h.Netns, "curl", "-sS", fmt.Sprintf("http://%s/metrics", s.h.MetricsAddr())).Output()
	if err != nil {
		s.b.Fatalf("lanesd metrics: %v", err)
	}
	return string(out)
}

// fullPasses is lanesd's count of full passes (its metrics).
func (s *scaleLab) fullPasses() int { return s.counter("lanes_full_passes_total") }

// counter is the value of one of lanesd's metrics, a counter without labels.
func (s *scaleLab) counter(name string) int {
	for _, l := range strings.Split(s.metrics(), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.b.Fatalf("%s %q: %v", name, v, err)
			}
			return int(n)
		}
	}
	s.b.Fatalf("lanesd's metrics have no %s", name)
	return 0
}

// goMemory is what lanesd's Go runtime says of its memory (its metrics): what of
// the RSS is live heap, heap waiting for the next GC, heap not yet returned.
func (s *scaleLab) goMemory() string {
	val := map[string]float64{}
	for _, l := range strings.Split(s.metrics(), "\n") {
		if name, v, ok := strings.Cut(l, " "); ok && strings.HasPrefix(name, "go_memstats_") {
			val[name], _ = strconv.ParseFloat(v, 64)
		}
	}
	mib := func(k string) float64 { return val["go_memstats_"+k] / (1 << 20) }
	return fmt.Sprintf("heap in use %.1f MiB, idle %.1f (released %.1f), next GC at %.1f, stacks %.1f, other runtime %.1f",
		mib("heap_inuse_bytes"), mib("heap_idle_bytes"), mib("heap_released_bytes"), mib("next_gc_bytes"), mib("stack_inuse_bytes"),
		mib("sys_bytes")-mib("heap_sys_bytes")-mib("stack_sys_bytes"))
}

// compactAndDefrag waits until etcd's periodic compaction has passed the current
// revision, then runs the defrag check once (see BenchmarkScale).
func (s *scaleLab) compactAndDefrag() {
	resp, err := s.cli.Get(s.ctx, store.Prefix+"hosts/", clientv3.WithCountOnly())
	if err != nil {
		s.b.Fatal(err)
	}
	rev := resp.Header.Revision
	eventually(s.b, time.Minute, fmt.Sprintf("etcd compacted to revision %d", rev), func() error {
		_, err := s.cli.Get(s.ctx, store.Prefix+"hosts/", clientv3.WithRev(rev-1), clientv3.WithCountOnly())
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("revision %d still there", rev-1)
	})
	if _, err := s.l.DefragEtcd(s.ctx, benchDefragMinFree); err != nil {
		s.b.Fatal(err)
	}
}

// heapProfile writes lanesd's heap profile (after a GC, as /debug/pprof/heap?gc=1
// takes it) to $LANES_SCALE_PROFILE/<name>.pprof; without that variable it does
// nothing.
func (s *scaleLab) heapProfile(name string) {
	dir := os.Getenv("LANES_SCALE_PROFILE")
	if dir == "" {
		return
	}
	url := fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", s.h.MetricsAddr())
	if out, err := exec.Command("ip", "netns", "exec", s.h.Netns, "curl", "-sS", "-o", filepath.Join(dir, name+".pprof"), url).CombinedOutput(); err != nil {
		s.b.Fatalf("heap profile %s: %v: %s", name, err, out)
	}
}

// profile takes a CPU profile of lanesd (its /debug/pprof on the metrics listener)
// over d while work runs, into $LANES_SCALE_PROFILE/<name>.pprof; without that
// variable it does nothing.
func (s *scaleLab) profile(name string, d time.Duration, work func()) {
	dir := os.Getenv("LANES_SCALE_PROFILE")
	if dir == "" {
		return
	}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.h.MetricsAddr(), int(d.Seconds())+1)
	cmd := exec.Command("ip", "netns", "exec", s.h.Netns, "curl", "-sS", "-o", filepath.Join(dir, name+".pprof"), url)
	if err := cmd.Start(); err != nil {
		s.b.Fatal(err)
	}
	work()
	if err := cmd.Wait(); err != nil {
		s.b.Fatalf("profile %s: %v", name, err)
	}
}

// writeHosts writes the simulated hosts: records, and alive keys under one lease
// kept alive for the benchmark.
func (s *scaleLab) writeHosts() {
	g, err := s.cli.Grant(s.ctx, 60)
	if err != nil {
		s.b.Fatal(err)
	}
	ka, err := s.cli.KeepAlive(s.ctx, g.ID)
	if err != nil {
		s.b.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	s.lease = g.ID
	var ops []clientv3.Op
	for i := range s.hosts {
		h := api.Host{Name: simHost(i), TunnelIP: simTunnelIP(i), TunnelType: "vxlan"}
		rec, err := json.Marshal(h)
		if err != nil {
			s.b.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(store.Prefix+"hosts/"+h.Name, string(rec)),
			clientv3.OpPut(store.Prefix+"alive/"+h.Name, "", clientv3.WithLease(g.ID)))
	}
	s.commit(ops)
}

func simHost(i int) string     { return fmt.Sprintf("sim%04d", i) }
func simTunnelIP(i int) string { return fmt.Sprintf("172.30.%d.%d", 1+i/250, 1+i%250) }

// commit writes ops in transactions of at most etcd's default 128 operations.
func (s *scaleLab) commit(ops []clientv3.Op) {
	for len(ops) > 0 {
		n := min(len(ops), 128)
		if _, err := s.cli.Txn(s.ctx).Then(ops[:n]...).Commit(); err != nil {
			s.b.Fatal(err)
		}
		ops = ops[n:]
	}
}

// port is the record of remote port i of a batch: spread over the networks and the
// simulated hosts, an address from the top half of its network.
func (s *scaleLab) port(batch string, i int) api.Port {
	n := s.nets[i%len(s.nets)]
	k := s.nextIP[n.ID]
	s.nextIP[n.ID]++
	seq := 32768 + k%30000
	id := store.NewUUID()
	return api.Port{
		ID: id, Name: fmt.Sprintf("%s-%d", batch, i), NetworkID: n.ID, Host: simHost(i % s.hosts),
		MAC:            fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", (k>>16)&0xff|0x80, (k>>8)&0xff, k&0xff),
		FixedIPs:       []string{fmt.Sprintf("%s.%d.%d", strings.Join(strings.Split(n.CIDR, ".")[:2], "."), seq>>8, seq&0xff)},
		SecurityGroups: []string{s.group},
	}
}

func (s *scaleLab) putPort(p api.Port) clientv3.Op {
	rec, err := json.Marshal(p)
	if err != nil {
		s.b.Fatal(err)
	}
	return clientv3.OpPut(store.Prefix+"ports/"+p.ID, string(rec))
}

func (s *scaleLab) writePorts(n int, batch string) []string {
	var ops []clientv3.Op
	var ids []string
	for i := range n {
		p := s.port(batch, i)
		ops = append(ops, s.putPort(p))
		ids = append(ids, p.ID)
	}
	s.commit(ops)
	return ids
}

func (s *scaleLab) deletePorts(ids []string) {
	var ops []clientv3.Op
	for _, id := range ids {
		ops = append(ops, clientv3.OpDelete(store.Prefix+"ports/"+id))
	}
	s.commit(ops)
}

var aggCount = regexp.MustCompile(`flow_count=(\d+)`)

// flows counts br-tun's table-20 flows (one l2pop flow per remote port).
func (s *scaleLab) flows() int {
	n, err := s.countFlows()
	if err != nil {
		s.b.Fatal(err)
	}
	return n
}

func (s *scaleLab) countFlows() (int, error) {
	out, err := s.l.OVS(s.h).Ofctl15("dump-aggregate", "br-tun", "table=20")
	if err != nil {
		return 0, err
	}
	m := aggCount.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("dump-aggregate: %s", out)
	}
	return strconv.Atoi(m[1])
}

// waitFlows waits until br-tun has want table-20 flows. A count that fails is tried
// again: at 50k ports ovs-vswitchd taking a purge can leave a dump unanswered for
// longer than the tools wait.
func (s *scaleLab) waitFlows(want int, d time.Duration) {
	eventually(s.b, d, fmt.Sprintf("%d table-20 flows on br-tun", want), func() error {
		got, err := s.countFlows()
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%d flows", got)
		}
		return nil
	})
}

// hasMAC reports whether br-tun has an l2pop flow for mac.
func (s *scaleLab) hasMAC(mac string) bool {
	out, err := s.l.OVS(s.h).Ofctl15("dump-flows", "br-tun", "table=20,dl_dst="+mac)
	if err != nil {
		s.b.Fatal(err)
	}
	return strings.Contains(out, "dl_dst=")
}

// singleEvents adds and deletes one remote port at a time, k times, timing the write
// until its flow is there (or gone), and lanesd's CPU over all of them.
//
// lanesd's CPU at rest (flow checks every 2 s, samples) is not the events' cost: it
// is measured just before and taken off. Neither is the full pass every 30 s (at 10k
// ports about a CPU-second, where an event costs milliseconds): whether it fell among
// the events or not would swing the figure by more than the figure. So the events
// start right after a full pass, measured on its own and printed, and end before the
// next; should one fall in anyway, that is printed too. What the load before left to
// do (statuses, the memory returned after a burst) is waited out first.
func (s *scaleLab) singleEvents(pid, k int) eventFigures {
	var adds, dels []time.Duration
	s.settle(pid)
	// Reading lanesd's metrics costs it CPU too: what one read costs is measured
	// first and taken off the full pass's figure.
	const reads = 5
	r0 := cpuTime(s.b, pid)
	for range reads {
		s.fullPasses()
	}
	perRead := (cpuTime(s.b, pid) - r0) / reads
	fulls, polls := s.fullPasses(), 0
	f0, tf0 := cpuTime(s.b, pid), time.Now()
	for deadline := time.Now().Add(time.Minute); s.fullPasses() == fulls; time.Sleep(250 * time.Millisecond) {
		polls++
		if time.Now().After(deadline) {
			s.b.Fatal("no full pass within a minute")
		}
	}
	s.settle(pid)
	idle0, t0 := cpuTime(s.b, pid), time.Now()
	time.Sleep(restWindow)
	cpu0, t1 := cpuTime(s.b, pid), time.Now()
	idleRate := float64(cpu0-idle0) / float64(t1.Sub(t0))
	// Small next to the noise of the rest rate at small sizes: never printed below 0.
	fullCPU := max(0, idle0-f0-time.Duration(idleRate*float64(t0.Sub(tf0)))-time.Duration(polls+1)*perRead)
	fulls++
	// A monitor only while single ports change: a bulk load overflows its backlog
	// (the switch then pauses it), and its updates cost ovs-vswitchd CPU that a
	// restart or a load would be charged with.
	watch := watchFlows(s.b, s.l.OVS(s.h), "br-tun", 20)
	defer watch.stop()
	// Of each event, how long the store took to answer the write is kept too, to
	// tell etcd's part from lanesd's.
	var timed []timedEvent
	for i := range k {
		p := s.port("single", i)
		add := s.event(watch, p, true)
		if !s.hasMAC(p.MAC) {
			s.b.Fatalf("the monitor reported the flow to %s added, but br-tun has none", p.MAC)
		}
		del := s.event(watch, p, false)
		if s.hasMAC(p.MAC) {
			s.b.Fatalf("the monitor reported the flow to %s deleted, but br-tun still has it", p.MAC)
		}
		adds, dels, timed = append(adds, add.total), append(dels, del.total), append(timed, add, del)
	}
	own := make([]time.Duration, len(timed)) // after the store answered; the flow can come first
	for i, e := range timed {
		own[i] = max(0, e.total-e.commit)
	}
	slices.SortFunc(timed, func(a, b timedEvent) int { return cmp.Compare(b.total, a.total) })
	var worst []string
	for _, e := range timed[:min(3, len(timed))] {
		worst = append(worst, fmt.Sprintf("%s %s (store answered the write after %s)", e.kind, e.total.Round(time.Millisecond), e.commit.Round(time.Millisecond)))
	}
	fmt.Printf("slowest single events: %s\n", strings.Join(worst, ", "))
	// Work that follows the flows (statuses, firewall) counts too: wait until lanesd
	// is idle (no CPU over 200 ms) before reading its CPU time.
	last := cpuTime(s.b, pid)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		now := cpuTime(s.b, pid)
		if now == last {
			break
		}
		last = now
	}
	gross := last - cpu0
	atRest := time.Duration(idleRate * float64(time.Since(t1)))
	fell := ""
	if n := s.fullPasses() - fulls; n > 0 {
		fell = fmt.Sprintf("; %d full pass(es) fell among the events and count in their CPU", n)
	}
	fmt.Printf("CPU of %d single events: %s, of which %s at rest (%.1f ms/s measured over %s before); a full pass: %s%s\n",
		2*k, gross.Round(time.Millisecond), atRest.Round(time.Millisecond), idleRate*1000, restWindow, fullCPU.Round(time.Millisecond), fell)
	return eventFigures{
		addP50: percentile(adds, 50), addP99: percentile(adds, 99), delP50: percentile(dels, 50), delP99: percentile(dels, 99),
		ownP50: percentile(own, 50), ownP99: percentile(own, 99), cpu: max(0, gross-atRest) / time.Duration(2*k),
	}
}

// resyncWindow is how long anyMoment runs: lanesd's resync period (30 s) and a
// margin, so that a resync falls among the events wherever they start.
const resyncWindow = 32 * time.Second

// anyMoment adds and deletes one remote port at a time, back to back for
// resyncWindow, with no regard for when lanesd's periodic resync runs: its pass and
// the state check it starts beside the loop (controller/check.go) fall among the
// events. Write -> flow p50/p99 and the slowest, over adds and deletes.
func (s *scaleLab) anyMoment() anyFigures {
	s.settle(s.h.LanesdPID())
	checks := s.counter("lanes_state_check_seconds_count")
	watch := watchFlows(s.b, s.l.OVS(s.h), "br-tun", 20)
	defer watch.stop()
	var all []time.Duration
	for i, end := 0, time.Now().Add(resyncWindow); time.Now().Before(end); i++ {
		p := s.port("any", i)
		all = append(all, s.event(watch, p, true).total, s.event(watch, p, false).total)
	}
	f := anyFigures{p50: percentile(all, 50), p99: percentile(all, 99), worst: slices.Max(all), n: len(all),
		checks: s.counter("lanes_state_check_seconds_count") - checks}
	if f.checks == 0 {
		s.b.Fatalf("no state check among %s of events: lanesd resyncs every 30 s", resyncWindow)
	}
	fmt.Printf("single events at any moment, back to back for %s: %d events, %d resync(s) with its state check among them: p50 %s, p99 %s, slowest %s\n",
		resyncWindow, f.n, f.checks, f.p50.Round(time.Millisecond), f.p99.Round(time.Millisecond), f.worst.Round(time.Millisecond))
	return f
}

// anyFigures are anyMoment's: write -> flow over adds and deletes, how many
// events, and how many state checks ran among them.
type anyFigures struct {
	p50, p99, worst time.Duration
	n, checks       int
}

// eventFigures are singleEvents' figures: write -> flow for adds and deletes; the
// part of it after the store answered the write (adds and deletes together; the
// store's commit, an fsync on this disk, is etcd's part); lanesd's CPU per event.
type eventFigures struct {
	addP50, addP99, delP50, delP99 time.Duration
	ownP50, ownP99                 time.Duration
	cpu                            time.Duration
}

// timedEvent is one remote port put or deleted: write -> the flow monitor's report,
// and of it how long the store took to answer the write.
type timedEvent struct {
	kind          string
	total, commit time.Duration
}

// event puts remote port p (add) or deletes it, and times it until watch reports its
// l2pop flow added or deleted.
func (s *scaleLab) event(watch *flowWatch, p api.Port, add bool) timedEvent {
	op, kind, report := clientv3.OpDelete(store.Prefix+"ports/"+p.ID), "delete", "DELETED"
	if add {
		op, kind, report = s.putPort(p), "add", "ADDED"
	}
	start := time.Now()
	s.commit([]clientv3.Op{op})
	committed := time.Since(start)
	return timedEvent{kind, watch.when(s.b, report, p.MAC, time.Minute).Sub(start), committed}
}

// singleEvents is how many remote ports are added and deleted one at a time.
const singleEvents = 40

// restWindow is how long lanesd's CPU at rest is measured before the single events.
const restWindow = 6 * time.Second

// settle waits until lanesd has been idle for two seconds (at most a minute): at
// most 20 ms of CPU in them (its flow checks every 2 s take a little; a full pass
// takes far more).
func (s *scaleLab) settle(pid int) {
	const quiet, step, idle = 2 * time.Second, 250 * time.Millisecond, 20 * time.Millisecond
	type sample struct {
		at  time.Time
		cpu time.Duration
	}
	win := []sample{{time.Now(), cpuTime(s.b, pid)}}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		time.Sleep(step)
		now := sample{time.Now(), cpuTime(s.b, pid)}
		win = append(win, now)
		for len(win) > 1 && now.at.Sub(win[1].at) >= quiet {
			win = win[1:]
		}
		if first := win[0]; now.at.Sub(first.at) >= quiet && now.cpu-first.cpu <= idle {
			return
		}
	}
	fmt.Printf("lanesd did not settle within a minute\n")
}

// restart restarts lanesd and returns start -> converged as lanesd reports it, and
// the fewest table-20 flows br-tun held meanwhile.
func (s *scaleLab) restart(want int, name string) (time.Duration, int) {
	if err := s.l.StopLanesd(s.h); err != nil {
		s.b.Fatal(err)
	}
	vswitchd := s.vswitchdPID()
	vsCPU := cpuTime(s.b, vswitchd)
	restart := time.Now()
	if err := s.l.StartLanesd(s.h); err != nil {
		s.b.Fatal(err)
	}
	// The restart's profile starts as soon as lanesd's metrics listener answers,
	// which it opens before its first reconcile.
	if dir := os.Getenv("LANES_SCALE_PROFILE"); dir != "" {
		done := make(chan error, 1)
		go func() {
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=4", s.h.MetricsAddr())
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, err := exec.Command("ip", "netns", "exec", s.h.Netns, "curl", "-sS", "-o", filepath.Join(dir, name+".pprof"), url).CombinedOutput()
				if err == nil {
					done <- nil
					return
				}
				if time.Now().After(deadline) {
					done <- fmt.Errorf("%w: %s", err, out)
					return
				}
			}
		}()
		defer func() {
			if err := <-done; err != nil {
				s.b.Errorf("restart profile: %v", err)
			}
		}()
	}
	fewest := want
	var st api.StatusReport
	eventually(s.b, 5*time.Minute, "converged after restart", func() error {
		fewest = min(fewest, s.flows())
		out, err := s.l.Ctl(s.h, "-o", "json", "status")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Converged.IsZero() || st.Started.Before(restart) {
			return fmt.Errorf("not converged")
		}
		return nil
	})
	// Whose CPU a restart takes: lanesd's own, and ovs-vswitchd's taking the flows.
	fmt.Printf("restart at %d ports: converged after %s; CPU until then: lanesd %s, ovs-vswitchd %s\n", want,
		st.Converged.Sub(st.Started).Round(time.Millisecond), cpuTime(s.b, s.h.LanesdPID()), cpuTime(s.b, vswitchd)-vsCPU)
	s.waitFlows(want, time.Minute)
	if b, err := os.ReadFile(s.h.LogFile()); err == nil {
		var trouble []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				trouble = append(trouble, l)
			}
		}
		s.b.Logf("lanesd warnings and errors so far (last 20):\n%s", strings.Join(trouble[max(0, len(trouble)-20):], "\n"))
		// Printed, not logged: a benchmark's log is cut after a few lines.
		fmt.Printf("lanesd's restart at %d ports, until converged:\n%s\n", want, strings.Join(restartLines(string(b), restart), "\n"))
	}
	return st.Converged.Sub(st.Started), fewest
}

// restartLines are the lines lanesd logged from since up to its "converged" line,
// debug lines of a pass only for the first passes: where a restart spends its time.
func restartLines(log string, since time.Time) []string {
	var out []string
	passes := 0
	for _, l := range strings.Split(log, "\n") {
		ts, _, ok := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		if t, err := time.Parse(time.RFC3339Nano, ts); !ok || err != nil || t.Before(since) {
			continue
		}
		if strings.Contains(l, `msg=reconciled`) {
			if passes++; passes > 5 {
				continue
			}
		}
		if strings.Contains(l, "level=DEBUG") && !strings.Contains(l, `msg=reconciled`) && !strings.Contains(l, `msg=startup`) {
			continue
		}
		out = append(out, l)
		if strings.Contains(l, "msg=converged") {
			break
		}
	}
	return out
}

func (s *scaleLab) vswitchdPID() int {
	b, err := os.ReadFile(filepath.Join(s.h.OVSDir, "ovs-vswitchd.pid"))
	if err != nil {
		s.b.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		s.b.Fatal(err)
	}
	return pid
}

func (s *scaleLab) dbMiB() float64 {
	var total int64
	for _, ep := range s.l.EtcdEndpoints() {
		st, err := s.cli.Status(s.ctx, ep)
		if err != nil {
			s.b.Fatal(err)
		}
		total = max(total, st.DbSize)
	}
	return float64(total) / (1 << 20)
}

// cpuTime is the user+system time of pid (/proc/<pid>/stat, in clock ticks of 10 ms).
func cpuTime(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command (which may hold spaces) start at field 3.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func rssKiB(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	tb.Fatalf("no VmRSS for %d", pid)
	return 0
}
