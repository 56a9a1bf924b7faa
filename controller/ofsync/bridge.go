package ofsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"time"

	"antrea.io/libOpenflow/openflow15"
	"antrea.io/ofnet/ofctrl"

	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/flows/ofbind"
)

// ErrNotConnected is returned by Sync while the bridge has no OpenFlow connection;
// the desired set is kept and installed as soon as the switch connects.
var ErrNotConnected = errors.New("no OpenFlow connection")

// Observer receives the outcome of every bundle (metrics).
type Observer interface {
	Bundle(bridge string, flows int, d time.Duration, err error)
	Connected(bridge string, up bool)
}

// Bridge is the OpenFlow side of one OVS bridge.
type Bridge struct {
	Name  string
	sock  string
	round uint16
	log   *slog.Logger
	obs   Observer
	ctrl  *ofctrl.Controller

	mu sync.Mutex
	sw *ofctrl.OFSwitch
	// desired is the last set given to Sync; nil until then, so that nothing is
	// swept before the caller has read its whole desired state. desiredOf is the
	// flows.Set it came from (SyncSet), so that a Set derived from it is taken in
	// owner by owner.
	desired   *Flows
	desiredOf flows.Set
	// installed is what the switch holds, as far as committed bundles tell;
	// perTable counts its flows by table, for Status, which runs on every Sync: each
	// committed plan adds its counts (Plan.counts), so that a change costs its owners.
	// inSync: installed is desired, so a change of a few owners is diffed for those
	// owners alone.
	installed Flows
	perTable  map[uint8]int
	inSync    bool
	fastDiffs int // diffs of the changed owners alone (a test asks)
	// needFull is set by a new connection: the next push re-adds everything.
	needFull bool
	connects int
	// commits counts the bundles committed, so that a reader of the switch can tell
	// whether one landed while it read (Status.Commits).
	commits int
	lastErr error

	connected chan *ofctrl.OFSwitch
	done      chan struct{}

	// clientMode is closed once ofnet's Connect has switched the controller to client
	// mode (it asks the app for its retry settings right after): before that,
	// Controller.Delete would take the server-mode path and never stop the dialling.
	clientMode     chan struct{}
	clientModeOnce sync.Once

	// live holds the switches ofnet has connected and not yet disconnected; closing
	// waits for it to drain (see stop).
	liveMu sync.Mutex
	live   map[*ofctrl.OFSwitch]bool
	gone   chan struct{}

	punt punt // packet-in, packet-out and meters (packet.go)

	fc *flowConn // flow-mod bundles (ofconn.go)
}

// Open starts connecting to the bridge's management socket (<ovs rundir>/<bridge>.mgmt)
// and keeps reconnecting until ctx ends. round stamps every flow's cookie.
func Open(ctx context.Context, name, mgmtSocket string, round uint16, log *slog.Logger, obs Observer) *Bridge {
	b := &Bridge{
		Name: name, sock: mgmtSocket, round: round, log: log.With("bridge", name), obs: obs,
		connected:  make(chan *ofctrl.OFSwitch, 4),
		done:       make(chan struct{}),
		clientMode: make(chan struct{}),
		live:       map[*ofctrl.OFSwitch]bool{},
		gone:       make(chan struct{}, 1),
		fc:         &flowConn{sock: mgmtSocket},
	}
	b.ctrl = ofctrl.NewController(&app{b: b})
	go b.dial(ctx)
	go b.loop(ctx)
	return b
}

// Round is the generation stamped on this controller's cookies.
func (b *Bridge) Round() uint16 { return b.round }

func (b *Bridge) dial(ctx context.Context) {
	// Connect blocks. With MaxRetry 0 it dials until Delete (stop) and, once
	// connected, ofnet redials by itself after every disconnect. It must be called
	// only once per Controller: a second call would wait forever for a connection
	// request that ofnet sends only on the first.
	err := b.ctrl.Connect(b.sock)
	if ctx.Err() == nil {
		b.log.Error("openflow connect gave up", "socket", b.sock, "err", err)
	}
}

// stop deletes the ofnet controller and disconnects its switch. ofnet keeps
// switches in a process-global map keyed by datapath ID and hands an entry still in
// it to the next connection with that DPID, together with the old app: a Bridge
// opened after this one closed (a restart within one process, a test) would never
// hear of its connection. Delete alone does not remove the entry: ofnet's reader
// ignores the "use of closed network connection" that Delete causes, so the switch
// would only be dropped when its next echo request failed, seconds later.
func (b *Bridge) stop() {
	<-b.clientMode
	b.ctrl.Delete()
	b.liveMu.Lock()
	sws := make([]*ofctrl.OFSwitch, 0, len(b.live))
	for sw := range b.live {
		sws = append(sws, sw)
	}
	b.liveMu.Unlock()
	for _, sw := range sws {
		// Disconnect can block if the stream shut down meanwhile; it then reports the
		// disconnect on its own.
		go sw.Disconnect()
	}
	deadline := time.After(5 * time.Second)
	for {
		b.liveMu.Lock()
		n := len(b.live)
		b.liveMu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-b.gone:
		case <-deadline:
			b.log.Warn("openflow connection still registered after close")
			return
		}
	}
}

func (b *Bridge) loop(ctx context.Context) {
	defer close(b.done)
	defer b.fc.closeConn()
	defer b.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case sw := <-b.connected:
			// Meters first: the flows that name them work without, unmetered.
			if err := b.pushMeters(sw); err != nil && !errors.Is(err, ErrNotConnected) {
				b.log.Error("meters after connect", "err", err)
			}
			b.mu.Lock()
			b.sw = sw
			b.connects++
			b.needFull = true
			err := b.pushLocked(nil)
			n := b.installed.Len()
			b.mu.Unlock()
			if err != nil && !errors.Is(err, ErrNotConnected) {
				b.log.Error("replay after connect failed", "err", err)
			} else if err == nil {
				b.log.Info("flows replayed after connect", "flows", n)
			}
		}
	}
}

// Wait blocks until the bridge's goroutines have stopped after ctx ended.
func (b *Bridge) Wait() { <-b.done }

// SyncSet makes the switch hold exactly this bridge's flows of s (stamped with this
// round). Only the owners whose flows changed since the last committed bundle are
// rendered and diffed; when s was derived from the set of the last SyncSet and that
// one is installed (flows.Set.Changed), only the owners that changed are even looked
// at. It returns once the bundle committed, or ErrNotConnected (the set is kept and
// pushed on connect).
func (b *Bridge) SyncSet(s flows.Set) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := flows.Bridge(b.Name)
	if changed, ok := s.Changed(br, b.desiredOf); ok && b.desired != nil {
		next, pairs := b.desired.with(s, br, changed, b.round)
		if !b.inSync || b.needFull {
			pairs = nil // the installed flows are not the ones these owners changed from
		}
		b.desired, b.desiredOf, b.inSync = &next, s, false
		return b.pushLocked(pairs)
	}
	// Under the lock: a push fills the render caches of the entries indexFrom reuses.
	idx := indexFrom(b.desired, s, br, b.round)
	b.desiredOf = s
	return b.syncLocked(idx)
}

// Sync is SyncSet for a list of flows, each owned by its cookie.
func (b *Bridge) Sync(desired []flows.Flow) error {
	return b.sync(IndexFlows(desired, b.round))
}

func (b *Bridge) sync(idx Flows) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.desiredOf = flows.Set{}
	return b.syncLocked(idx)
}

func (b *Bridge) syncLocked(idx Flows) error {
	if b.desired == nil {
		// First desired state of this process: re-add all and sweep older rounds.
		b.needFull = true
	}
	b.desired, b.inSync = &idx, false
	return b.pushLocked(nil)
}

// Replay re-adds every desired flow and sweeps other rounds, in one bundle: for a
// switch that lost flows behind the controller's back (a hand-run del-flows), which
// its cache cannot see.
func (b *Bridge) Replay() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.needFull = true
	return b.pushLocked(nil)
}

// pushLocked sends what turns the installed flows into the desired ones. Given
// pairs, the installed and desired entries of the owners that can differ between the
// two (installed was the desired set those owners changed from), the diff and the
// flow counts look at them alone; nil pairs means a diff of every owner.
func (b *Bridge) pushLocked(pairs []pair) error {
	if b.sw == nil || !b.sw.IsReady() {
		b.lastErr = ErrNotConnected
		return ErrNotConnected
	}
	if b.desired == nil {
		return nil
	}
	var plan Plan
	if pairs != nil {
		b.fastDiffs++
		plan = diffPairs(pairs)
	} else {
		plan = Diff(b.installed, *b.desired, b.needFull)
	}
	if b.perTable == nil {
		b.perTable = map[uint8]int{}
	}
	if plan.Empty() {
		// Equal flows: the desired entries are installed (an owner whose flows were
		// only reordered may count differently from Sync's list of flows).
		applyCounts(b.perTable, plan)
		b.installed, b.inSync = *b.desired, true
		return nil
	}
	start := time.Now()
	err := b.send(plan)
	if b.obs != nil {
		b.obs.Bundle(b.Name, len(plan.Add)+len(plan.Delete), time.Since(start), err)
	}
	b.lastErr = err
	if err != nil {
		return fmt.Errorf("%s: bundle of %d adds, %d deletes: %w", b.Name, len(plan.Add), len(plan.Delete), err)
	}
	b.installed, b.inSync = *b.desired, true
	b.commits++
	applyCounts(b.perTable, plan)
	b.needFull = false
	b.log.Debug("bundle committed", "adds", len(plan.Add), "deletes", len(plan.Delete), "sweep", plan.Sweep, "took", time.Since(start))
	return nil
}

// send delivers a plan as one atomic bundle: deletes, adds, then the round sweep.
func (b *Bridge) send(p Plan) error {
	nd, na := len(p.Delete), len(p.Add)
	sweep := SweepMasks(b.round)
	n := nd + na
	if p.Sweep {
		n += len(sweep)
	}
	// Each FlowMod is made as it is written, not all of them first: while lanesd
	// encodes the rest of a restart's 31k flows, the switch is already taking in
	// the first.
	mod := func(i int) (*openflow15.FlowMod, error) {
		switch {
		case i < nd:
			return ofbind.FlowMod(p.Delete[i], openflow15.FC_DELETE_STRICT)
		case i < nd+na:
			return ofbind.FlowMod(p.Add[i-nd], openflow15.FC_ADD)
		}
		cm := sweep[i-nd-na]
		return ofbind.DeleteByCookie(cm[0], cm[1]), nil
	}
	return b.fc.bundle(n, mod, func(i int) string {
		switch {
		case i < nd:
			return "delete " + p.Delete[i].Key()
		case i < nd+na:
			return p.Add[i-nd].Key()
		}
		return fmt.Sprintf("sweep of other rounds %d", i-nd-na)
	})
}

// Forget deletes the learned table-20 entries of the given MACs, in one bundle.
func (b *Bridge) Forget(macs []net.HardwareAddr) error {
	if len(macs) == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sw == nil || !b.sw.IsReady() {
		return ErrNotConnected
	}
	return b.fc.bundle(len(macs), func(i int) (*openflow15.FlowMod, error) { return ofbind.ForgetLearned(macs[i]), nil },
		func(i int) string { return "forget learned " + macs[i].String() })
}

// Status is a snapshot for lanesctl status and metrics.
type Status struct {
	Connected bool
	Round     uint16
	// FlowsPerTable counts installed flows (learned flows are the switch's, not counted).
	FlowsPerTable map[uint8]int
	Installed     int
	LastError     string
	// Commits counts the bundles committed since the bridge was opened.
	Commits int
}

// Connects counts the connections made so far: a caller that sees it change knows
// the switch was replayed and may recompute what it gives Sync from scratch.
func (b *Bridge) Connects() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connects
}

// Status reports the connection and the installed flows.
func (b *Bridge) Status() Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Status{Connected: b.sw != nil && b.sw.IsReady(), Round: b.round, FlowsPerTable: maps.Clone(b.perTable), Commits: b.commits}
	if st.FlowsPerTable == nil {
		st.FlowsPerTable = map[uint8]int{}
	}
	for _, n := range b.perTable {
		st.Installed += n
	}
	if b.lastErr != nil {
		st.LastError = b.lastErr.Error()
	}
	return st
}

// Installed returns the flows the switch holds, as last committed.
func (b *Bridge) Installed() []flows.Flow {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.installed.All()
}

// app adapts ofnet's callbacks; none of them may block (they run on the switch's
// receive goroutine).
type app struct{ b *Bridge }

func (a *app) SwitchConnected(sw *ofctrl.OFSwitch) {
	a.b.log.Info("openflow connected")
	// ofnet gave the connection a random controller ID; the flows that punt packets
	// to lanesd name flows.ControllerID.
	if err := sw.Send(openflow15.NewSetControllerID(flows.ControllerID)); err != nil {
		a.b.log.Warn("set controller ID", "err", err)
	}
	a.b.liveMu.Lock()
	a.b.live[sw] = true
	a.b.liveMu.Unlock()
	if a.b.obs != nil {
		a.b.obs.Connected(a.b.Name, true)
	}
	select {
	case a.b.connected <- sw:
	default:
	}
}

func (a *app) SwitchDisconnected(sw *ofctrl.OFSwitch) {
	a.b.log.Warn("openflow disconnected")
	a.b.liveMu.Lock()
	delete(a.b.live, sw)
	a.b.liveMu.Unlock()
	select {
	case a.b.gone <- struct{}{}:
	default:
	}
	if a.b.obs != nil {
		a.b.obs.Connected(a.b.Name, false)
	}
}
func (a *app) PacketRcvd(_ *ofctrl.OFSwitch, p *ofctrl.PacketIn)           { a.b.packetIn(p) }
func (a *app) MultipartReply(*ofctrl.OFSwitch, *openflow15.MultipartReply) {}
func (a *app) FlowGraphEnabledOnSwitch() bool                              { return false }
func (a *app) TLVMapEnabledOnSwitch() bool                                 { return false }
func (a *app) PortStatusRcvd(*openflow15.PortStatus)                       {}

// MaxRetry 0 makes ofnet dial until the controller is deleted: lanesd may start
// before ovs-vswitchd has created the bridge. ofnet calls it right after switching
// to client mode, which stop waits for.
func (a *app) MaxRetry() int {
	a.b.clientModeOnce.Do(func() { close(a.b.clientMode) })
	return 0
}

// RetryInterval is short: after an ovs-vswitchd restart the bridge has no flows
// until the replay.
func (a *app) RetryInterval() time.Duration { return 250 * time.Millisecond }
