package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/lanes-net/lanes/store"
)

// TestFlowsIncrementalEqualsFull changes the cluster state at random, as store events
// would (ports added, deleted, moved and readdressed, hosts and tunnels coming and
// going, local ports plugged), and checks after each change that the flow step's
// incremental flows equal a computation from scratch, view included.
func TestFlowsIncrementalEqualsFull(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			c := newRandomCluster(seed)
			var b flows.Builder
			for step := range 150 {
				what := c.change()
				d := desired(view.Compute("h1", c.st), c.in, "vxlan")
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

// randomCluster is a cluster state that changes at random, as store events would.
type randomCluster struct {
	r    *rand.Rand
	st   store.State
	in   flowInput
	nets []string
	next int
}

func newRandomCluster(seed uint64) *randomCluster {
	c := &randomCluster{r: rand.New(rand.NewPCG(seed, 14)), next: 200}
	c.st, c.in = scaleState(20, 200)
	for i := range 10 {
		c.nets = append(c.nets, fmt.Sprintf("net-%02d", i))
	}
	return c
}

// change makes one change and says what it was. The view keeps the state it was
// computed from, so the maps are copied before they change.
func (c *randomCluster) change() string {
	r, st, in := c.r, &c.st, &c.in
	st.Ports, st.Hosts = maps.Clone(st.Ports), maps.Clone(st.Hosts)
	in.OVS.Ofports, in.OVS.Tunnels = maps.Clone(in.OVS.Ofports), maps.Clone(in.OVS.Tunnels)
	what := "nothing"
	switch k := r.IntN(8); k {
	case 0, 1:
		p := scalePort(c.next, 20+r.IntN(3), c.nets) // sometimes on a host not registered
		c.next++
		st.Ports[p.ID], what = &p, "add remote port"
	case 2:
		delete(st.Ports, scalePortID(r.IntN(c.next)))
		what = "delete port"
	case 3:
		id := scalePortID(r.IntN(c.next))
		if p, ok := portCopy(st.Ports[id]); ok {
			p.Host = fmt.Sprint("sim", r.IntN(22))
			st.Ports[id], what = &p, "move port"
		}
	case 4:
		id := scalePortID(r.IntN(c.next))
		if p, ok := portCopy(st.Ports[id]); ok {
			q := scalePort(c.next, 20, c.nets)
			c.next++
			p.MAC, p.FixedIPs = q.MAC, q.FixedIPs
			st.Ports[id], what = &p, "readdress port"
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
			in.OVS.Tunnels[k] = ovsdb.TunnelPort{Ofport: 0x5000 + c.next}
			c.next++
			what = "tunnel port (re)made"
		}
	default:
		id := fmt.Sprintf("local-%02d", r.IntN(10))
		if _, ok := in.OVS.Ofports[id]; ok && r.IntN(2) == 0 {
			delete(in.OVS.Ofports, id)
			what = "local port unplugged"
		} else {
			in.OVS.Ofports[id] = 10 + c.next
			c.next++
			what = "local port plugged"
		}
	}
	return what
}

// awkward makes the changes an incremental path gets wrong most easily: every port
// of a network on this host leaves (the network goes) and comes back, the last
// remote ports of a network leave, a record stops parsing and parses again, a port
// claims another's flows, a host is readdressed.
func (c *randomCluster) awkward() string {
	r, st := c.r, &c.st
	st.Ports, st.Hosts = maps.Clone(st.Ports), maps.Clone(st.Hosts)
	switch r.IntN(5) {
	case 0:
		id := fmt.Sprintf("local-%02d", r.IntN(10))
		if p, ok := portCopy(st.Ports[id]); ok && p.Host == "h1" {
			p.Host = "sim0"
			st.Ports[id] = &p
			return "local port " + id + " left: its network with it"
		} else if ok {
			p.Host = "h1"
			st.Ports[id] = &p
			return "local port " + id + " back"
		}
	case 1:
		n := c.nets[r.IntN(len(c.nets))]
		for id, p := range st.Ports {
			if p.NetworkID == n && p.Host != "h1" {
				delete(st.Ports, id)
			}
		}
		return "last remote ports of " + n + " deleted"
	case 2:
		id := scalePortID(r.IntN(c.next))
		if p, ok := portCopy(st.Ports[id]); ok {
			if p.MAC == "not a mac" {
				p.MAC = scalePort(c.next, 20, c.nets).MAC
				c.next++
				st.Ports[id] = &p
				return "port " + id + " valid again"
			}
			p.MAC = "not a mac"
			st.Ports[id] = &p
			return "port " + id + " invalid"
		}
	case 3:
		id := scalePortID(r.IntN(c.next))
		if p, ok := portCopy(st.Ports[id]); ok {
			p.ID = fmt.Sprint("twin-", c.next) // same MAC, network and host: same flows
			c.next++
			st.Ports[p.ID] = &p
			return "twin of " + id
		}
	default:
		name := fmt.Sprint("sim", r.IntN(20))
		h := st.Hosts[name]
		h.TunnelIP = fmt.Sprintf("172.30.8.%d", 1+r.IntN(3))
		st.Hosts[name] = h
		c.in.OVS.Tunnels = maps.Clone(c.in.OVS.Tunnels)
		c.in.OVS.Tunnels[view.TunnelKey{IP: h.TunnelIP, Type: "vxlan"}] = ovsdb.TunnelPort{Ofport: 0x6000 + c.next}
		c.next++
		return "host " + name + " readdressed"
	}
	return "nothing"
}

// portCopy is a copy of p to change, and whether there is a p: a port in a State
// is never changed in place (views computed earlier still read it).
func portCopy(p *api.Port) (api.Port, bool) {
	if p == nil {
		return api.Port{}, false
	}
	return *p, true
}

// removeTwins deletes the ports that claim another's flows, as an operator would.
func (c *randomCluster) removeTwins() {
	c.st.Ports = maps.Clone(c.st.Ports)
	for id := range c.st.Ports {
		if strings.HasPrefix(id, "twin-") {
			delete(c.st.Ports, id)
		}
	}
}

// remoteChanges is what a view diff says of two views' remote ports.
func remoteChanges(prev, cur *view.View) view.Changes {
	ch := view.Changes{Remote: map[string]bool{}, Members: map[string]bool{}}
	byID := func(v *view.View) map[string]*view.RemotePort {
		m := map[string]*view.RemotePort{}
		for _, p := range v.Remote {
			m[p.ID] = p
		}
		return m
	}
	a, b := byID(prev), byID(cur)
	for id, p := range a {
		if q, ok := b[id]; !ok || !reflect.DeepEqual(p, q) {
			ch.Remote[id] = true
		}
	}
	for id := range b {
		if _, ok := a[id]; !ok {
			ch.Remote[id] = true
		}
	}
	return ch
}

// testFlowStep is a flow step whose bridges never connect: Sync computes and keeps
// the desired sets, which is what the incremental path is about.
func testFlowStep() *flowStep {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no forget timers
	tun := &ofsync.Bridge{Name: "br-tun"}
	return &flowStep{log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: NewMetrics(), tunnelType: "vxlan",
		brInt: &ofsync.Bridge{Name: "br-int"}, brTun: tun, forget: newForgetter(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), tun)}
}

// TestFlowStepIncremental drives flowStep.Sync with views whose Changes say which
// remote ports changed, as view.Update will, through random and awkward changes,
// and checks every set against one computed from scratch from the whole view; now
// and then a full pass checks incremental == full inside the step too. An error
// (two ports claiming one flow) must be an error from scratch as well, and the pass
// after it builds everything again.
func TestFlowStepIncremental(t *testing.T) {
	errs := 0
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			c := newRandomCluster(seed)
			s := testFlowStep()
			prev := view.Compute("h1", c.st)
			if _, err := s.Sync(prev, c.in); !errors.Is(err, ofsync.ErrNotConnected) {
				t.Fatalf("first sync: %v", err)
			}
			for step := range 200 {
				what := c.change()
				if c.r.IntN(3) == 0 {
					what = c.awkward()
				}
				v := view.Compute("h1", c.st)
				v.Changes = remoteChanges(prev, v)
				if c.r.IntN(5) == 0 && len(v.Remote) > 0 { // reported, yet unchanged
					v.Changes.Remote[v.Remote[c.r.IntN(len(v.Remote))].ID] = true
				}
				in := c.in
				in.Full = c.r.IntN(10) == 0
				want, werr := desired(v, in, "vxlan").Flows()
				got, err := s.Sync(v, in)
				prev = v
				if werr != nil {
					if err == nil || errors.Is(err, ofsync.ErrNotConnected) {
						t.Fatalf("step %d (%s): from scratch: %v, incremental: %v", step, what, werr, err)
					}
					errs++
					c.removeTwins()
					continue
				}
				if !errors.Is(err, ofsync.ErrNotConnected) {
					t.Fatalf("step %d (%s): %v", step, what, err)
				}
				if err := got.Same(want); err != nil {
					t.Fatalf("step %d (%s): incremental != from scratch: %v", step, what, err)
				}
			}
		})
	}
	if errs == 0 {
		t.Error("no pass met a conflict: the error path went untested")
	}
}

// TestForgetterIncremental: a forgetter told which remote ports changed forgets the
// same MACs as one that compares whole views, through random and awkward changes
// (a MAC that moves to a local port stays; one that leaves and comes back is not
// forgotten).
func TestForgetterIncremental(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no timers: the test compares what each marks as left
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			c := newRandomCluster(seed)
			whole, inc := newForgetter(ctx, log, &ofsync.Bridge{}), newForgetter(ctx, log, &ofsync.Bridge{})
			prev := view.Compute("h1", c.st)
			whole.Update(prev)
			inc.Update(prev)
			left := 0
			for step := range 300 {
				what := c.change()
				if c.r.IntN(3) == 0 {
					what = c.awkward()
				}
				v := view.Compute("h1", c.st)
				whole.Update(v)
				cur := *v
				cur.Changes = remoteChanges(prev, v)
				inc.Update(&cur)
				prev = v
				want, got := macKeys(whole.leftAt), macKeys(inc.leftAt)
				if !slices.Equal(got, want) {
					t.Fatalf("step %d (%s): left %v, want %v", step, what, got, want)
				}
				left = max(left, len(got))
			}
			if left == 0 {
				t.Error("no MAC ever left")
			}
		})
	}
}

func macKeys(m map[mac]time.Time) []string {
	var out []string
	for k := range m {
		out = append(out, net.HardwareAddr(k[:]).String())
	}
	slices.Sort(out)
	return out
}

// TestForgetLearned: when a remote port leaves, br-tun's learned entries to its MAC
// are deleted in the pass that removes its l2pop flow, and again for forgetFor after
// (the switch's revalidators may bring one back once), while a learned entry to a
// MAC still in use stays. Entries are made by hand with the cookie learn() gives.
func TestForgetLearned(t *testing.T) {
	r := newRig(t)
	ctx := r.ctx
	for i, h := range []string{"h1", "h2"} {
		if _, err := r.st.RegisterHost(ctx, api.Host{Name: h, TunnelIP: fmt.Sprintf("172.31.77.%d", 1+i), TunnelType: api.TunnelVXLAN}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.st.CreateNetwork(ctx, store.NetworkSpec{Name: "n", CIDR: "10.62.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.CreatePort(ctx, api.Port{Name: "local", NetworkID: n.ID, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	var ports []api.Port
	for _, name := range []string{"leaves", "stays"} {
		p, err := r.st.CreatePort(ctx, api.Port{Name: name, NetworkID: n.ID, Host: "h2"})
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	r.sync(true)
	learned := uint64(r.a.flows.brTun.Round())<<48 | uint64(flows.CatLearned)<<40
	learn := func(mac string) {
		t.Helper()
		if _, err := r.ovs.Ofctl15("add-flow", api.BrTun, fmt.Sprintf("cookie=%#x,table=20,priority=1,hard_timeout=300,dl_vlan=1,dl_dst=%s,actions=drop", learned, mac)); err != nil {
			t.Fatal(err)
		}
	}
	hasLearned := func(mac string) bool {
		out, err := r.ovs.Ofctl15("dump-flows", api.BrTun, fmt.Sprintf("table=20,cookie=%#x/-1,dl_dst=%s", learned, mac))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(out, "dl_dst=")
	}
	for _, p := range ports {
		learn(p.MAC)
		if !hasLearned(p.MAC) {
			t.Fatalf("no learned entry to %s after adding it", p.Name)
		}
	}
	if err := r.st.DeletePort(ctx, ports[0].ID); err != nil {
		t.Fatal(err)
	}
	r.sync(false)
	if hasLearned(ports[0].MAC) {
		t.Fatalf("the learned entry to %s survived the pass that removed the port", ports[0].Name)
	}
	learn(ports[0].MAC) // as a revalidator would, once
	within(t, forgetFor, "the learned entry made again forgotten", func() bool { return !hasLearned(ports[0].MAC) })
	if !hasLearned(ports[1].MAC) {
		t.Errorf("the learned entry to %s, still a remote port, was deleted", ports[1].Name)
	}
}
