package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// patchWorld feeds a Mirror (without etcd) the events its watch would, with create and
// mod revisions as etcd would give them.
type patchWorld struct {
	t       *testing.T
	rnd     *rand.Rand
	m       *Mirror
	rev     int64
	created map[string]int64 // key -> create revision, while the key exists
	values  map[string]string
}

func newPatchWorld(t *testing.T, seed uint64) *patchWorld {
	return &patchWorld{t: t, rnd: rand.New(rand.NewPCG(seed, 1)), m: (&Store{}).NewMirror(MirrorOptions{}),
		created: map[string]int64{}, values: map[string]string{}}
}

func (w *patchWorld) event(typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if w.m.applyEvent(typ, kv) {
		w.m.stale = true
	}
	w.m.rev = w.rev
}

func (w *patchWorld) put(key, value string) {
	w.rev++
	cr, ok := w.created[key]
	if !ok {
		cr = w.rev
		w.created[key] = cr
	}
	w.values[key] = value
	w.event(mvccpb.PUT, &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: cr, ModRevision: w.rev})
}

func (w *patchWorld) del(key string) {
	if _, ok := w.created[key]; !ok {
		return
	}
	w.rev++
	delete(w.created, key)
	delete(w.values, key)
	w.event(mvccpb.DELETE, &mvccpb.KeyValue{Key: []byte(key), ModRevision: w.rev})
}

func (w *patchWorld) pick(n int) int { return w.rnd.IntN(n) }

// The world: networks n1 and n2, n3 newer than n1 with n1's VNI (left out, and back
// when it gets a VNI of its own), a network that never exists; groups g1, g2, one
// invalid and one that never exists; three hosts; a router with an interface on
// ports[0], whose router ports follow it between two L3 hosts, and a gateway on an
// external network; a floating IP on ports[2]; and a pool of port IDs where ports[i]
// and ports[i+20] share their device names.
type patchFixture struct {
	nets, groups []string
	router, ext  string
	ports        []string
}

func uuidN(i, j int) string { return fmt.Sprintf("%08x-00%02x-4000-8000-%012x", i, j, j) }

func (w *patchWorld) setup() patchFixture {
	f := patchFixture{nets: []string{uuidN(0x100, 1), uuidN(0x100, 2), uuidN(0x100, 3), uuidN(0x100, 4)},
		groups: []string{uuidN(0x200, 1), uuidN(0x200, 2), uuidN(0x200, 3), uuidN(0x200, 4)}, router: uuidN(0x300, 1), ext: uuidN(0x100, 5)}
	for i := range 30 {
		f.ports = append(f.ports, uuidN(i%20, i))
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		w.put(Prefix+KindHosts+"/"+h, jsonOf(w.t, api.Host{Name: h, TunnelIP: "192.0.2." + h[1:], TunnelType: api.TunnelVXLAN, L3: h != "h3"}))
		w.put(Prefix+kindAlive+"/"+h, "")
	}
	w.network(f, 0, 1)
	w.network(f, 1, 2)
	w.network(f, 2, 1)
	for i, name := range []string{"g1", "g2", "b d"} {
		w.put(Prefix+KindGroups+"/"+f.groups[i], jsonOf(w.t, api.SecurityGroup{ID: f.groups[i], Name: name}))
	}
	w.put(Prefix+KindNetworks+"/"+f.ext, jsonOf(w.t, api.Network{ID: f.ext, Name: "public", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1",
		MTU: 1500, External: true, Provider: &api.Provider{Type: api.ProviderFlat, Physnet: "physnet1"}}))
	w.router(f, "h1", 0)
	fip := uuidN(0x400, 1)
	w.put(Prefix+KindFloatingIPs+"/"+fip, jsonOf(w.t, api.FloatingIP{ID: fip, NetworkID: f.ext, IP: "203.0.113.20",
		PortID: f.ports[2], FixedIP: "10.1.0.2", RouterID: f.router}))
	return f
}

func (w *patchWorld) router(f patchFixture, host string, port int) {
	w.put(Prefix+KindRouters+"/"+f.router, jsonOf(w.t, api.Router{ID: f.router, Name: "r", Host: host,
		Gateway:    &api.RouterGateway{NetworkID: f.ext, IP: "203.0.113.5"},
		Interfaces: []api.RouterInterface{{NetworkID: f.nets[0], PortID: f.ports[port], IP: "10.1.0.1", CIDR: "10.1.0.0/24"}}}))
}

func (w *patchWorld) network(f patchFixture, i int, vni uint32) {
	w.put(Prefix+KindNetworks+"/"+f.nets[i], jsonOf(w.t, api.Network{ID: f.nets[i], Name: fmt.Sprint("n", i), VNI: vni,
		CIDR: fmt.Sprintf("10.%d.0.0/24", i+1), MTU: 1450}))
}

// randomPort puts a port record under ports[i]: mostly valid, with MACs, IPs and
// device names that collide, sometimes invalid, undecodable or on a network or with
// groups that are not there.
func (w *patchWorld) randomPort(f patchFixture, i int) {
	id := f.ports[i]
	key := Prefix + KindPorts + "/" + id
	switch r := w.pick(100); {
	case r < 4:
		w.put(key, `{"id":`)
		return
	case r < 7:
		w.put(key, jsonOf(w.t, api.Port{ID: f.ports[(i+1)%len(f.ports)], Name: "p", NetworkID: f.nets[0], Host: "h1", MAC: "fa:16:3e:00:00:01", FixedIPs: []string{"10.1.0.9"}}))
		return
	}
	n := []int{0, 0, 0, 1, 1, 1, 2, 3}[w.pick(8)]
	mac := fmt.Sprintf("fa:16:3e:00:00:%02x", w.pick(6))
	if w.pick(10) == 0 {
		mac = strings.ToUpper(mac)
	}
	ips := []string{fmt.Sprintf("10.%d.0.%d", n+1, 2+w.pick(6))}
	if w.pick(20) == 0 {
		ips = []string{"10.99.0.1"} // outside the network's CIDR: invalid
	}
	var groups []string
	for _, g := range f.groups {
		if w.pick(3) == 0 {
			groups = append(groups, g)
		}
	}
	p := api.Port{ID: id, Name: "p", NetworkID: f.nets[n], Host: fmt.Sprint("h", 1+w.pick(3)), MAC: mac, FixedIPs: ips, SecurityGroups: groups}
	if i < 2 && w.pick(2) == 0 {
		p.DeviceOwner, p.DeviceID = api.DeviceOwnerRouterInterface, f.router
	}
	w.put(key, jsonOf(w.t, p))
}

func (w *patchWorld) randomPortOp(f patchFixture) {
	i := w.pick(len(f.ports))
	key := Prefix + KindPorts + "/" + f.ports[i]
	switch r := w.pick(100); {
	case r < 25:
		w.del(key)
	case r < 32:
		if v, ok := w.values[key]; ok {
			w.put(key, v) // the same value again
			return
		}
		fallthrough
	default:
		w.randomPort(f, i)
	}
}

// randomOther changes something else than ports: the patch must give way to a build.
func (w *patchWorld) randomOther(f patchFixture) {
	switch w.pick(7) {
	case 0:
		w.network(f, 2, uint32([]int{1, 3}[w.pick(2)]))
	case 1:
		if w.pick(2) == 0 {
			w.del(Prefix + KindNetworks + "/" + f.nets[1])
		} else {
			w.network(f, 1, 2)
		}
	case 2:
		key := Prefix + KindGroups + "/" + f.groups[1]
		if w.pick(2) == 0 {
			w.del(key)
		} else {
			w.put(key, jsonOf(w.t, api.SecurityGroup{ID: f.groups[1], Name: "g2"}))
		}
	case 3, 4:
		key := Prefix + kindAlive + "/h1"
		if _, ok := w.created[key]; ok {
			w.del(key)
		} else {
			w.put(key, "")
		}
	case 5:
		w.router(f, fmt.Sprint("h", 1+w.pick(2)), w.pick(2))
	case 6:
		w.put(Prefix+KindHosts+"/h3", jsonOf(w.t, api.Host{Name: "h3", TunnelIP: "192.0.2." + []string{"3", "1"}[w.pick(2)], TunnelType: api.TunnelVXLAN}))
	}
}

func (w *patchWorld) randomStatusOp(f patchFixture) {
	id := f.ports[w.pick(len(f.ports))]
	key := statusKey("h1", id)
	switch w.pick(3) {
	case 0:
		w.del(key)
	case 1:
		w.put(key, `[`)
	default:
		w.put(key, jsonOf(w.t, api.PortStatus{PortID: id, Host: "h1", State: api.StatusActive}))
	}
}

// portDiff is differingPorts as a set.
func portDiff(a, b State) map[string]bool {
	diff := map[string]bool{}
	for _, id := range differingPorts(a, b) {
		diff[id] = true
	}
	return diff
}

// notPortsOrStatuses is st without what a Delta that is not All may leave unsaid.
func notPortsOrStatuses(st State) State {
	st.Ports, st.Statuses, st.Gen, st.Revision = nil, nil, 0, 0
	st.Problems = slices.DeleteFunc(slices.Clone(st.Problems), func(p Problem) bool { return p.Kind == KindPorts || p.Kind == KindStatus })
	if len(st.Problems) == 0 {
		st.Problems = nil
	}
	return st
}

// After every step of random changes, the mirror's State (patched where it can be)
// equals a build from scratch, no State handed out earlier changed, and a Delta that
// is not All names exactly the ports that differ; a Delta across several builds names
// all of theirs. No port a State pointed at when it was handed out changed since, in
// whatever later State still points at it, and a patched State shares the ports it
// did not change with the one before (that sharing is what makes a patch cheap).
func TestPatchEqualsBuild(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			w := newPatchWorld(t, seed)
			f := w.setup()
			for i := range 25 {
				w.randomPort(f, i)
			}
			type past struct {
				st, copy State
				ports    map[string]bool // the Delta from the build before; nil: All
			}
			var history []past
			var patchedSteps, portSteps int
			// handed are deep copies of every port a State pointed at when handed out.
			handed := map[*api.Port]api.Port{}
			for step := range 2500 {
				portsOnly := true
				switch r := w.pick(100); {
				case r < 70:
					w.randomPortOp(f)
				case r < 80:
					for range 2 + w.pick(5) {
						w.randomPortOp(f)
					}
				case r < 90:
					w.randomStatusOp(f)
					if w.pick(2) == 0 {
						w.randomPortOp(f)
					}
				default:
					portsOnly = false
					w.randomOther(f)
					if w.pick(2) == 0 {
						w.randomPortOp(f)
					}
				}
				var prev State
				if len(history) > 0 {
					prev = history[len(history)-1].st
				}
				st, d := w.m.SharedSince(prev.Gen)
				want := w.m.recs.build(w.rev)
				got := st
				got.Gen = 0
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("step %d: patched State differs from a build:\n got %+v\nwant %+v\ndiff %v", step, got, want, portDiff(got, want))
				}
				for i, h := range history {
					if !reflect.DeepEqual(h.st, h.copy) {
						t.Fatalf("step %d: the State of %d steps ago changed after it was handed out", step, len(history)-i)
					}
				}
				for id, p := range st.Ports {
					if was, ok := handed[p]; !ok {
						handed[p] = clonePort(*p)
					} else if !reflect.DeepEqual(*p, was) {
						t.Fatalf("step %d: port %s changed in place after a State held it:\n was %+v\n now %+v", step, id, was, *p)
					}
				}
				if !d.All {
					for id, p := range prev.Ports {
						if q, ok := st.Ports[id]; ok && !d.Ports[id] && q != p {
							t.Fatalf("step %d: port %s is not in the delta but was copied, not shared", step, id)
						}
					}
				}
				if st.Gen == prev.Gen && !d.Empty() {
					t.Fatalf("step %d: same generation %d, delta %+v", step, st.Gen, d)
				}
				if !d.All {
					if diff := portDiff(prev, st); !maps.Equal(diff, d.Ports) && !(len(diff) == 0 && len(d.Ports) == 0) {
						t.Fatalf("step %d: delta %v, the ports that differ %v", step, d.Ports, diff)
					}
					if a, b := notPortsOrStatuses(prev), notPortsOrStatuses(st); !reflect.DeepEqual(a, b) {
						t.Fatalf("step %d: delta not All, but more than ports differ:\n%+v\n%+v", step, a, b)
					}
				}
				if portsOnly && len(history) > 0 {
					portSteps++
					if !d.All {
						patchedSteps++
					} else {
						// Only a port that a router's interface or a floating IP names,
						// changing in the State, makes the mirror build a port change
						// whole.
						named := []string{f.ports[2]}
						for _, in := range w.m.recs.routers[f.router].v.Interfaces {
							named = append(named, in.PortID)
						}
						diff := portDiff(prev, st)
						if !slices.ContainsFunc(named, func(id string) bool {
							a, okA := prev.Ports[id]
							b, okB := st.Ports[id]
							return diff[id] && (okA != okB || !reflect.DeepEqual(a, b))
						}) {
							t.Fatalf("step %d: a change of ports %v only, and the delta is All", step, diff)
						}
					}
				}
				if st.Gen == prev.Gen && len(history) > 0 {
					continue
				}
				var ports map[string]bool
				if !d.All {
					ports = d.Ports
				}
				history = append(history, past{st: st, copy: st.Clone(), ports: ports})
				if len(history) > maxDeltas+4 {
					history = history[1:]
				}
				// A reader some builds behind.
				back := w.pick(len(history))
				old := history[len(history)-1-back]
				_, d = w.m.SharedSince(old.st.Gen)
				union, all := map[string]bool{}, false
				for _, h := range history[len(history)-back:] {
					all = all || h.ports == nil
					maps.Copy(union, h.ports)
				}
				all = all || back > maxDeltas
				switch {
				case back == 0 && !d.Empty():
					t.Fatalf("step %d: a reader up to date gets %+v", step, d)
				case all != d.All:
					t.Fatalf("step %d: %d builds behind (a full one among them: %v), delta All %v", step, back, all, d.All)
				case !all && !maps.Equal(union, d.Ports) && !(len(union) == 0 && len(d.Ports) == 0):
					t.Fatalf("step %d: %d builds behind, delta %v, the builds' deltas %v", step, back, d.Ports, union)
				case !all:
					for id := range portDiff(old.st, st) {
						if !d.Ports[id] {
							t.Fatalf("step %d: %d builds behind, port %s differs but is not in the delta %v", step, back, id, d.Ports)
						}
					}
				}
			}
			if patchedSteps < portSteps*9/10 {
				t.Fatalf("only %d of %d port changes patched", patchedSteps, portSteps)
			}
			t.Logf("%d of %d port changes patched; %d problems at the end", patchedSteps, portSteps, len(w.m.Shared().Problems))
		})
	}
}

// Many ports changed at once are built whole: the reader recomputes them all anyway.
func TestPatchGivesWayToBulk(t *testing.T) {
	t.Parallel()
	w := newPatchWorld(t, 7)
	f := w.setup()
	f.ports = nil
	for i := range 400 {
		f.ports = append(f.ports, uuidN(0x1000+i, i))
	}
	for i := range f.ports {
		w.randomPort(f, i)
	}
	st0, _ := w.m.SharedSince(0)
	for i := range 99 {
		w.randomPort(f, i)
	}
	st1, d := w.m.SharedSince(st0.Gen)
	if d.All || len(d.Ports) == 0 {
		t.Fatalf("99 of 400 ports changed: delta %+v", d)
	}
	for i := range 101 {
		w.randomPort(f, i)
	}
	st2, d := w.m.SharedSince(st1.Gen)
	if !d.All {
		t.Fatalf("101 of 400 ports changed: delta %+v", d)
	}
	if got, want := st2, w.m.recs.build(w.rev); got.Gen != st1.Gen+1 || !reflect.DeepEqual(withoutGen(got), want) {
		t.Fatalf("after the bulk change: gen %d after %d, state differs from a build", got.Gen, st1.Gen)
	}
}

func withoutGen(st State) State { st.Gen = 0; return st }

// Verify finds a patched State that went wrong, and the next read builds it whole.
func TestVerifyCatchesABadPatch(t *testing.T) {
	t.Parallel()
	w, _, st0 := newVerifyWorld(t, 3)
	if err := w.m.Verify(); err != nil {
		t.Fatal(err)
	}
	// Lose what the index knows of a kept port's claims: a newer port with its MAC then
	// gets in.
	old := st0.Ports[slices.Sorted(maps.Keys(st0.Ports))[0]]
	w.m.mu.Lock()
	for c, h := range w.m.ix.holder {
		if h == old.ID {
			delete(w.m.ix.holder, c)
		}
	}
	w.m.mu.Unlock()
	ip := old.FixedIPs[0][:strings.LastIndex(old.FixedIPs[0], ".")] + ".200"
	twin := api.Port{ID: uuidN(0x500, 1), Name: "twin", NetworkID: old.NetworkID, Host: "h1", MAC: old.MAC, FixedIPs: []string{ip}}
	w.put(Prefix+KindPorts+"/"+twin.ID, jsonOf(t, twin))
	st1, d := w.m.SharedSince(st0.Gen)
	if d.All || !d.Ports[twin.ID] {
		t.Fatalf("delta %+v", d)
	}
	err := w.m.Verify()
	if err == nil || !strings.Contains(err.Error(), twin.ID) {
		t.Fatalf("Verify = %v, want the twin named", err)
	}
	st2, d := w.m.SharedSince(st1.Gen)
	if !d.All || !reflect.DeepEqual(withoutGen(st2), w.m.recs.build(w.rev)) {
		t.Fatalf("after Verify: delta %+v", d)
	}
	if err := w.m.Verify(); err != nil {
		t.Fatal(err)
	}
}

// newVerifyWorld is a patch world with 20 random ports, and its State.
func newVerifyWorld(t *testing.T, seed uint64) (*patchWorld, patchFixture, State) {
	w := newPatchWorld(t, seed)
	f := w.setup()
	for i := range 20 {
		w.randomPort(f, i)
	}
	st, _ := w.m.SharedSince(0)
	return w, f, st
}

// Verify builds outside the mirror's lock: while it builds, changes are applied and
// read, and what it compares is the State and records of the moment it started, so
// the changes made meanwhile are no difference.
func TestVerifyLeavesTheMirrorServing(t *testing.T) {
	t.Parallel()
	w, f, st0 := newVerifyWorld(t, 4)
	building, release := make(chan struct{}), make(chan struct{})
	w.m.verifyHook = func() { close(building); <-release }
	verified := make(chan error, 1)
	go func() { verified <- w.m.Verify() }()
	<-building
	applied := make(chan State, 1)
	go func() {
		for i := range 10 {
			w.randomPort(f, 20+i%10) // a patch's worth of ports, applied while Verify builds
		}
		st1, _ := w.m.SharedSince(st0.Gen)
		applied <- st1
	}()
	select {
	case st1 := <-applied:
		if st1.Gen == st0.Gen {
			t.Errorf("while Verify built: still gen %d; want a patched State", st1.Gen)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("changes and reads waited for Verify's build")
	}
	close(release)
	if err := <-verified; err != nil {
		t.Fatalf("Verify of the State it started from: %v", err)
	}
	w.m.verifyHook = nil
	if err := w.m.Verify(); err != nil {
		t.Fatalf("Verify of the State after: %v", err)
	}
}
