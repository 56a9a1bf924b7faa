package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/diag"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/ovstool"
	"github.com/lanes-net/lanes/ovsdb"
)

// forgetFor is how long the learned entries of a MAC that left are deleted again.
const forgetFor = 3 * time.Second

// flowStep computes both bridges' flows from the view and keeps the switches holding
// exactly them (ofsync: one atomic bundle per change); it also forgets learned
// entries of MACs that left, and checks that the switches did not lose flows.
type flowStep struct {
	log        *slog.Logger
	m          *Metrics
	tools      ovstool.Tools
	tunnelType string
	brInt      *ofsync.Bridge
	brTun      *ofsync.Bridge
	forget     *forgetter

	// builder rebuilds only the owners whose input changed since the last Sync
	// (flows.Builder); connects is each bridge's connection count then.
	builder  flows.Builder
	connects [2]int
	// tunnels is the tunnel list the builder got last, made from tunnelsFrom (the
	// OVSDB rows of that pass): handed to it again while neither they nor the
	// view's tunnels changed, it skips comparing a thousand tunnels per event.
	tunnels     []flows.Tunnel
	tunnelsFrom map[view.TunnelKey]ovsdb.TunnelPort
}

// flowInput is what the flows depend on besides the view.
type flowInput struct {
	PatchInt int // patch-int's ofport on br-tun
	VLANs    map[string]uint16
	OVS      ovsResult
	// Full recomputes the flows from scratch too and checks that the incremental
	// result equals it (start, periodic resync).
	Full bool
}

// Sync installs the flows of v and returns the set installed (or tried).
func (s *flowStep) Sync(v *view.View, in flowInput) (flows.Set, error) {
	full := s.reconnected() || in.Full // in this order: reconnected also notes the counts
	set, err := s.compute(v, in, full)
	if err != nil {
		s.forget.Missed()
		return flows.Set{}, fmt.Errorf("compute flows: %w", err)
	}
	// The bridges' bundles go out side by side: each has its own connection, and
	// a Set is immutable.
	intDone := make(chan error, 1)
	go func() { intDone <- s.brInt.SyncSet(set) }()
	tunErr := s.brTun.SyncSet(set)
	if tunErr == nil {
		s.forget.Update(v)
	} else {
		s.forget.Missed()
	}
	intErr := <-intDone
	s.countFlows()
	return set, errors.Join(tunErr, intErr)
}

// compute builds the flow set of v: from the remote ports the view says changed
// when it says which (the Builder keeps the others), else from the whole view. When
// full, it computes the set from scratch as well: the incremental set must equal
// the full one, and if it ever does not, that is a bug worth an error in the log,
// and the full set is what gets installed.
func (s *flowStep) compute(v *view.View, in flowInput, full bool) (flows.Set, error) {
	fromScratch := s.builder.Owners() == 0 // on start, or after an error: nothing to compare with
	var set flows.Set
	var err error
	var d *flows.Desired
	if fromScratch || v.Changes.All {
		d = desired(v, in, s.tunnelType)
		set, err = s.builder.Build(d)
	} else {
		tunnels := s.tunnels
		if v.Changes.Tunnels || tunnels == nil || !sameMap(in.OVS.Tunnels, s.tunnelsFrom) {
			tunnels = tunnelsOf(v, in)
		}
		d = desiredOf(v, in, s.tunnelType, v.Changes.Remote, tunnels)
		set, err = s.builder.Update(d, v.Changes.Remote)
	}
	s.tunnels, s.tunnelsFrom = d.Tunnels, in.OVS.Tunnels
	if err != nil {
		s.tunnels = nil
	}
	if !full || fromScratch {
		return set, err
	}
	fresh, want, ferr := scratch(v, in, s.tunnelType)
	if ferr != nil {
		s.builder = flows.Builder{}
		return flows.Set{}, ferr
	}
	if err == nil {
		err = set.Same(want)
	}
	if err != nil {
		s.log.Error("incremental flows differ from a full recompute: installing the full set", "err", err)
		s.builder = fresh
		return want, nil
	}
	return set, nil
}

// Verify reports how set, the flows a pass derived for v and in incrementally,
// differ from those computed from scratch. It reads its arguments, which are never
// changed once handed out, and nothing of the step's changing state, so it runs
// beside the loop (check.go).
func (s *flowStep) Verify(v *view.View, in flowInput, set flows.Set) error {
	_, want, err := scratch(v, in, s.tunnelType)
	if err != nil {
		return fmt.Errorf("compute flows from scratch: %w", err)
	}
	return set.Same(want)
}

// scratch computes the flows of v and in from nothing, with the Builder that holds them.
func scratch(v *view.View, in flowInput, tunnelType string) (flows.Builder, flows.Set, error) {
	var b flows.Builder
	set, err := b.Build(desired(v, in, tunnelType))
	return b, set, err
}

// reconnected reports whether a bridge connected again since the last call: its
// replay is a full recompute's occasion too. The first connection is not: the flows
// of start are computed from scratch anyway, and checking them again there would
// delay the convergence after a restart.
func (s *flowStep) reconnected() bool {
	again := false
	for i, b := range s.bridges() {
		if n := b.Connects(); n != s.connects[i] {
			again = again || s.connects[i] > 0
			s.connects[i] = n
		}
	}
	return again
}

// desired is the flows' input: this host's networks with their VLANs, the tunnels to
// live peers, and the local and remote ports of those networks.
func desired(v *view.View, in flowInput, tunnelType string) *flows.Desired {
	d := desiredOf(v, in, tunnelType, nil, tunnelsOf(v, in))
	d.RemotePorts = make([]flows.RemotePort, 0, len(v.Remote))
	for _, r := range v.Remote {
		d.RemotePorts = append(d.RemotePorts, remotePort(r))
	}
	return d
}

// desiredOf is desired with, of the remote ports, only those in remote that the view
// has (for flows.Builder.Update), and the tunnels given (tunnelsOf): the networks and
// local ports are few.
func desiredOf(v *view.View, in flowInput, tunnelType string, remote map[string]bool, tunnels []flows.Tunnel) *flows.Desired {
	d := &flows.Desired{TunnelType: tunnelType, PatchIntOfport: uint32(in.PatchInt), Tunnels: tunnels}
	for id, n := range v.Networks {
		if vlan, ok := in.VLANs[id]; ok {
			d.Networks = append(d.Networks, flows.Network{ID: n.ID, VNI: n.VNI, LocalVLAN: vlan, TunnelType: n.Type()})
		}
	}
	slices.SortFunc(d.Networks, func(x, y flows.Network) int { return int(x.LocalVLAN) - int(y.LocalVLAN) })
	for _, p := range v.Local {
		if _, ok := in.VLANs[p.NetworkID]; !ok {
			continue
		}
		lp := flows.LocalPort{ID: p.ID, NetworkID: p.NetworkID, Ofport: uint32(in.OVS.Ofports[p.ID]), MAC: p.HW, IPs: p.Addrs,
			PortSecurityDisabled: !p.PortSecurityEnabled(), DHCP: servesDHCP(v.Networks[p.NetworkID]),
			DHCPv6: servesDHCPv6(v.Networks[p.NetworkID])}
		for _, pair := range p.Pairs {
			lp.AllowedAddressPairs = append(lp.AllowedAddressPairs, flows.AddressPair{Prefix: pair.Prefix, MAC: pair.HW})
		}
		d.LocalPorts = append(d.LocalPorts, lp)
	}
	for id := range remote {
		if r, ok := v.RemoteByID(id); ok {
			d.RemotePorts = append(d.RemotePorts, remotePort(r))
		}
	}
	return d
}

// tunnelsOf lists the tunnels the view wants that OVSDB has given an ofport.
func tunnelsOf(v *view.View, in flowInput) []flows.Tunnel {
	ts := make([]flows.Tunnel, 0, len(in.OVS.Tunnels))
	for k, t := range in.OVS.Tunnels {
		if _, ok := v.Tunnels[k]; ok && t.Ofport > 0 {
			if addr, err := netip.ParseAddr(k.IP); err == nil {
				ts = append(ts, flows.Tunnel{RemoteIP: addr, Ofport: uint32(t.Ofport), Type: k.Type})
			}
		}
	}
	return ts
}

func remotePort(r *view.RemotePort) flows.RemotePort {
	return flows.RemotePort{ID: r.ID, NetworkID: r.NetworkID, MAC: r.HW, IPs: r.Addrs, HostIP: r.HostIP, Router: r.IsRouterInterface()}
}

// Check compares, per bridge, how many flows of this round the switch holds with how
// many were installed, and replays a bridge that holds fewer: Neutron's canary idea,
// for both bridges and every flow (OVS restarts are seen as reconnects; this catches
// flows deleted by hand). Learned flows are not counted, so they cannot mask a loss.
func (s *flowStep) Check(ctx context.Context) {
	for _, b := range s.bridges() {
		st := b.Status()
		if !st.Connected || st.Installed == 0 {
			continue
		}
		n, learned, err := diag.FlowCounts(ctx, s.tools, b.Name, st.Round)
		if err != nil {
			s.log.Warn("flow count", "bridge", b.Name, "err", err)
			continue
		}
		s.countLearned(b.Name, learned) // metrics.go
		// The count runs beside the reconcile loop: a bundle that committed while
		// ovs-ofctl counted makes the two figures incomparable, so this round is
		// skipped rather than a replay started on a false loss.
		if now := b.Status(); now.Commits != st.Commits || now.Installed != st.Installed {
			continue
		}
		if n < st.Installed {
			s.log.Warn("bridge lost flows: replaying", "bridge", b.Name, "in_switch", n, "installed", st.Installed)
			if err := b.Replay(); err != nil {
				s.log.Warn("replay", "bridge", b.Name, "err", err)
			}
		}
	}
}

func (s *flowStep) bridges() []*ofsync.Bridge { return []*ofsync.Bridge{s.brInt, s.brTun} }

// countFlows publishes installed flows per bridge and table.
func (s *flowStep) countFlows() {
	for _, b := range s.bridges() {
		st := b.Status()
		for _, t := range flows.Tables(flows.Bridge(b.Name)) {
			s.m.Flows.WithLabelValues(b.Name, strconv.Itoa(int(t.ID)), t.Name).Set(float64(st.FlowsPerTable[t.ID]))
		}
	}
}

// forgetter deletes br-tun's learned entries of MACs that no longer belong to any
// port of this host's networks, so they stop pointing at the host they left. OVS's
// revalidators replay learn() for datapath flows that carried packets just before the
// delete and would bring an entry back once, so it deletes them again, on its own
// timer, for forgetFor.
type forgetter struct {
	ctx context.Context
	log *slog.Logger
	br  *ofsync.Bridge

	mu sync.Mutex
	// macs and refs are the last view's remote ports: their MACs by port ID, and how
	// many ports have each MAC, so that a view that says which remote ports changed
	// costs those only.
	macs   map[string]*macOfPort
	refs   map[mac]int
	pass   uint64            // numbers the passes over whole views, for macOfPort.mark
	leftAt map[mac]time.Time // MACs that left, and when
	timer  *time.Timer
	// missed: a view went by unseen, so the next one's Changes do not say what
	// changed since the last one seen.
	missed bool
}

// mac is an Ethernet address as a map key (the view's are 6 bytes: it parses them).
type mac [6]byte

// macOfPort is a remote port's MAC; mark is the number of the last pass over a whole
// view that had the port, so that the ports it lacks are found without a set.
type macOfPort struct {
	mac  mac
	mark uint64
}

func (m mac) hw() net.HardwareAddr { return net.HardwareAddr(slices.Clone(m[:])) }

func macOf(hw net.HardwareAddr) mac {
	var m mac
	copy(m[:], hw)
	return m
}

func newForgetter(ctx context.Context, log *slog.Logger, br *ofsync.Bridge) *forgetter {
	return &forgetter{ctx: ctx, log: log, br: br, macs: map[string]*macOfPort{}, refs: map[mac]int{}, leftAt: map[mac]time.Time{}}
}

// Update records the view's remote MACs and forgets the learned entries of those that
// left: of the remote ports v.Changes names, or of all when it names none. A remote
// MAC that became local stays.
func (f *forgetter) Update(v *view.View) {
	local := make(map[mac]bool, len(v.Local))
	for _, p := range v.Local {
		local[macOf(p.HW)] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var maybeLeft, came []mac
	set := func(id string, now mac, there bool) {
		old, had := f.macs[id]
		if had && there && old.mac == now {
			old.mark = f.pass
			return
		}
		if had {
			delete(f.macs, id)
			if f.refs[old.mac]--; f.refs[old.mac] <= 0 {
				delete(f.refs, old.mac)
			}
			maybeLeft = append(maybeLeft, old.mac)
		}
		if there {
			f.macs[id] = &macOfPort{now, f.pass}
			f.refs[now]++
			came = append(came, now)
		}
	}
	if v.Changes.All || f.missed {
		f.missed = false
		f.pass++
		for _, p := range v.Remote {
			set(p.ID, macOf(p.HW), true)
		}
		if len(f.macs) > len(v.Remote) { // some left: those this pass did not mark
			for id, m := range f.macs {
				if m.mark != f.pass {
					set(id, mac{}, false)
				}
			}
		}
		for m := range f.leftAt {
			came = append(came, m) // back if the view has it
		}
	} else {
		for id := range v.Changes.Remote {
			var hw net.HardwareAddr
			p, ok := v.RemoteByID(id)
			if ok {
				hw = p.HW
			}
			set(id, macOf(hw), ok)
		}
	}
	for m := range local {
		came = append(came, m)
	}
	t := time.Now()
	for _, m := range maybeLeft {
		if f.refs[m] == 0 && !local[m] {
			f.leftAt[m] = t
		}
	}
	for _, m := range came {
		if f.refs[m] > 0 || local[m] {
			delete(f.leftAt, m) // back: its l2pop entry wins anyway
		}
	}
	// The MACs that left in this update are forgotten now, and all that left within
	// forgetFor again on the timer. Forgetting them all on every pass cost a bundle
	// of as many deletes per pass as MACs left in the last seconds (at 50k flows,
	// tens of ms).
	var now []net.HardwareAddr
	listed := map[mac]bool{} // once, however many ports had it
	for _, m := range maybeLeft {
		if at, ok := f.leftAt[m]; ok && at == t && !listed[m] {
			listed[m] = true
			now = append(now, m.hw())
		}
	}
	f.forget(now)
	f.armLocked()
}

// Missed notes a view that Update did not see (its flows did not go in).
func (f *forgetter) Missed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.missed = true
}

// forgetLocked forgets again every MAC that left within forgetFor, and drops the
// older ones.
func (f *forgetter) forgetLocked() {
	var gone []net.HardwareAddr
	for m, at := range f.leftAt {
		if time.Since(at) > forgetFor {
			delete(f.leftAt, m)
			continue
		}
		gone = append(gone, m.hw())
	}
	f.forget(gone)
	f.armLocked()
}

func (f *forgetter) forget(macs []net.HardwareAddr) {
	if err := f.br.Forget(macs); err != nil && !errors.Is(err, ofsync.ErrNotConnected) {
		f.log.Warn("forget learned MACs", "err", err)
	}
}

// armLocked starts the timer of forgetLocked while MACs that left are recent.
func (f *forgetter) armLocked() {
	if len(f.leftAt) > 0 && f.timer == nil && f.ctx.Err() == nil {
		f.timer = time.AfterFunc(forgetFor/4, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.timer = nil
			f.forgetLocked()
		})
	}
}

// bundleMetrics makes ofsync's bundle outcomes metrics.
type bundleMetrics struct{ m *Metrics }

func (b bundleMetrics) Bundle(bridge string, n int, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	b.m.Bundles.WithLabelValues(bridge, result).Inc()
	b.m.BundleSeconds.WithLabelValues(bridge).Observe(d.Seconds())
}

func (b bundleMetrics) Connected(bridge string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	b.m.OpenFlowConnected.WithLabelValues(bridge).Set(v)
}
