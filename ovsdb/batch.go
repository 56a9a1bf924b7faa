package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ovn-kubernetes/libovsdb/model"
	ovs "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Batch collects changes that Commit applies in ONE transaction, so a logical change
// of the controller (e.g. "port X moved to VLAN 5 and tunnel Y is gone") is atomic.
// Changes are planned at Commit time against the cache; a batch whose changes are all
// in place sends no write transaction.
type Batch struct {
	c       *Client
	intents []func(p *planner) error
	ports   map[string]bool // port names, to refuse two changes to one port
	err     error
}

// NewBatch starts an empty batch.
func (c *Client) NewBatch() *Batch { return &Batch{c: c, ports: map[string]bool{}} }

func (b *Batch) add(portName string, f func(p *planner) error) *Batch {
	if portName != "" {
		if b.ports[portName] {
			b.err = errors.Join(b.err, fmt.Errorf("port %s changed twice in one batch", portName))
			return b
		}
		b.ports[portName] = true
	}
	b.intents = append(b.intents, f)
	return b
}

// Result of a committed batch.
type Result struct {
	// Ofports of every port the batch ensured, by port name, read back from the
	// server after vswitchd has handled the change.
	Ofports map[string]int
	// Changed is false when everything was already in place (no write transaction).
	Changed bool
}

// Commit plans every change against the cache, sends them as one transaction, waits
// until the cache shows them and reads back the ofports of the ensured ports.
func (b *Batch) Commit(ctx context.Context) (Result, error) {
	if b.err != nil {
		return Result{}, b.err
	}
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.awaitConnected(ctx); err != nil {
		return Result{}, err
	}
	s, err := c.snapshot(ctx)
	if err != nil {
		return Result{}, err
	}
	p := newPlanner(c, s)
	for _, f := range b.intents {
		if err := f(p); err != nil {
			return Result{}, err
		}
	}
	ops, err := p.finish()
	if err != nil {
		return Result{}, err
	}
	res := Result{Ofports: map[string]int{}}
	if len(ops) > 0 {
		if _, err := c.transact(ctx, ops); err != nil {
			return Result{}, err
		}
		res.Changed = true
		err := c.awaitCache(ctx, "the committed change", func() bool {
			s2, err := c.snapshot(ctx)
			if err != nil {
				return false
			}
			for _, chk := range p.checks {
				if !chk(s2) {
					return false
				}
			}
			return true
		})
		if err != nil {
			return res, err
		}
	}
	// Ports untouched by this batch and already numbered need no read-back.
	var read []string
	for _, name := range p.readback {
		if i := s.ifaces[name]; len(ops) == 0 && i != nil && i.Ofport != nil && *i.Ofport > 0 {
			res.Ofports[name] = *i.Ofport
			continue
		}
		read = append(read, name)
	}
	if len(read) > 0 {
		// The server numbered these interfaces; the cache follows, and the next
		// snapshot must list it again rather than wait for its event.
		defer c.invalidate()
		got, err := c.readOfports(ctx, read)
		for k, v := range got {
			res.Ofports[k] = v
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// ofportWaitMS bounds the server-side wait for vswitchd to number a new interface.
const ofportWaitMS = 10000

// ErrPortFailed is wrapped when vswitchd could not create an interface (ofport -1).
var ErrPortFailed = errors.New("vswitchd could not create the interface")

// readOfports asks the server, in one transaction, for the ofports of interfaces:
// per interface a wait until ofport is set (vswitchd has handled the row) and a
// select. Reading the cache right after a write could see the row without its ofport.
func (c *Client) readOfports(ctx context.Context, names []string) (map[string]int, error) {
	timeout := ofportWaitMS
	var ops []ovs.Operation
	for _, n := range names {
		where := []ovs.Condition{{Column: "name", Function: ovs.ConditionEqual, Value: n}}
		ops = append(ops,
			ovs.Operation{Op: ovs.OperationWait, Table: tableInterface, Where: where,
				Until: string(ovs.WaitConditionNotEqual), Columns: []string{"ofport"},
				Rows: []ovs.Row{{"ofport": ovs.OvsSet{GoSet: []any{}}}}, Timeout: &timeout},
			ovs.Operation{Op: ovs.OperationSelect, Table: tableInterface, Where: where,
				Columns: []string{"name", "ofport", "error"}})
	}
	res, err := c.transact(ctx, ops)
	if err != nil {
		return nil, fmt.Errorf("read ofports of %v: %w", names, err)
	}
	out := map[string]int{}
	var errs []error
	for k, n := range names {
		rows := res[2*k+1].Rows
		if len(rows) == 0 {
			errs = append(errs, fmt.Errorf("interface %s: %w", n, ErrNotFound))
			continue
		}
		of, ok := rowInt(rows[0]["ofport"])
		if !ok {
			errs = append(errs, fmt.Errorf("interface %s: no ofport", n))
			continue
		}
		if of < 0 {
			msg, _ := rowString(rows[0]["error"])
			errs = append(errs, fmt.Errorf("interface %s: %w: %s", n, ErrPortFailed, msg))
		}
		out[n] = of
	}
	// The cache has its own connection, so the reply can overtake vswitchd's update
	// of these rows. Waiting for it keeps what a caller reads next (a snapshot, a
	// list of ports) at least as new as the numbers returned here. A row gone from
	// the cache was deleted since: there is nothing newer to wait for.
	if err := c.awaitCache(ctx, "the ofports read back", func() bool {
		s, err := c.snapshot(ctx)
		if err != nil {
			return false
		}
		for n := range out {
			if i := s.ifaces[n]; i != nil && i.Ofport == nil {
				return false
			}
		}
		return true
	}); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// Ofport reads an interface's ofport from the server, waiting until vswitchd has
// numbered it.
func (c *Client) Ofport(ctx context.Context, name string) (int, error) {
	m, err := c.readOfports(ctx, []string{name})
	return m[name], err
}

func rowInt(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		return int(x), true
	case int:
		return x, true
	case ovs.OvsSet:
		if len(x.GoSet) == 1 {
			return rowInt(x.GoSet[0])
		}
	}
	return 0, false
}

func rowString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case ovs.OvsSet:
		if len(x.GoSet) == 1 {
			return rowString(x.GoSet[0])
		}
	}
	return "", false
}

// planner turns intents into operations against one snapshot.
type planner struct {
	c *Client
	s *snapshot

	ifaceIns, portIns, updates, deletes []ovs.Operation
	// mutations of existing bridges' port sets, by bridge name
	addPorts, delPorts map[string][]string
	newBridges         map[string]*bridge
	newBridgeOrder     []string
	extraMutations     []ovs.Operation

	checks   []func(*snapshot) bool
	readback []string
	reserved map[string]map[int]bool // bridge -> ofport_requests chosen in this batch
	n        int
}

func newPlanner(c *Client, s *snapshot) *planner {
	return &planner{c: c, s: s, addPorts: map[string][]string{}, delPorts: map[string][]string{},
		newBridges: map[string]*bridge{}, reserved: map[string]map[int]bool{}}
}

// named returns a fresh named-uuid for a row inserted in this transaction.
func (p *planner) named(kind string) string {
	p.n++
	return "lanes_" + kind + strconv.Itoa(p.n)
}

func (p *planner) finish() ([]ovs.Operation, error) {
	ops := append([]ovs.Operation{}, p.ifaceIns...)
	ops = append(ops, p.portIns...)
	var newBrUUIDs []string
	for _, name := range p.newBridgeOrder {
		nb := p.newBridges[name]
		o, err := p.c.c.Create(nb)
		if err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		ops = append(ops, o...)
		newBrUUIDs = append(newBrUUIDs, nb.UUID)
	}
	for name, b := range p.s.bridges {
		add, del := p.addPorts[name], p.delPorts[name]
		if len(add) == 0 && len(del) == 0 {
			continue
		}
		m := &bridge{UUID: b.UUID}
		var muts []model.Mutation
		if len(del) > 0 {
			muts = append(muts, model.Mutation{Field: &m.Ports, Mutator: ovs.MutateOperationDelete, Value: del})
		}
		if len(add) > 0 {
			muts = append(muts, model.Mutation{Field: &m.Ports, Mutator: ovs.MutateOperationInsert, Value: add})
		}
		o, err := p.c.c.Where(m).Mutate(m, muts...)
		if err != nil {
			return nil, fmt.Errorf("bridge %s ports: %w", name, err)
		}
		ops = append(ops, o...)
	}
	if len(newBrUUIDs) > 0 {
		if p.s.root == nil {
			return nil, fmt.Errorf("no Open_vSwitch row (database not initialised?): %w", ErrNotFound)
		}
		r := &openvSwitch{UUID: p.s.root.UUID}
		o, err := p.c.c.Where(r).Mutate(r, model.Mutation{Field: &r.Bridges, Mutator: ovs.MutateOperationInsert, Value: newBrUUIDs})
		if err != nil {
			return nil, fmt.Errorf("register bridges: %w", err)
		}
		ops = append(ops, o...)
	}
	ops = append(ops, p.updates...)
	ops = append(ops, p.extraMutations...)
	ops = append(ops, p.deletes...)
	return ops, nil
}

// portSpec is the desired state of a single-interface port. Nil maps and a nil
// ofportRequest leave those columns alone; non-nil ones must match exactly.
type portSpec struct {
	bridge        string
	name          string
	ifType        string // "" is a system (kernel) device
	options       map[string]string
	ofportRequest *int
	manageTag     bool
	tag           *int
	portOther     map[string]string
	portExt       map[string]string
	ifaceExt      map[string]string
	readback      bool
}

// portMatches reports whether the port is in place exactly as spec wants.
func portMatches(s *snapshot, ps *portSpec) bool {
	pt := s.portOn(ps.bridge, ps.name)
	if pt == nil || len(pt.Interfaces) != 1 {
		return false
	}
	i := s.ifaceByID[pt.Interfaces[0]]
	if i == nil || i.Name != ps.name || normType(i.Type) != normType(ps.ifType) || !mapsEqual(i.Options, ps.options) {
		return false
	}
	if ps.ofportRequest != nil && !intPtrEqual(i.OfportRequest, ps.ofportRequest) {
		return false
	}
	if ps.ifaceExt != nil && !mapsEqual(i.ExternalIDs, ps.ifaceExt) {
		return false
	}
	if ps.manageTag && !intPtrEqual(pt.Tag, ps.tag) {
		return false
	}
	if ps.portOther != nil && !mapsEqual(pt.OtherConfig, ps.portOther) {
		return false
	}
	if ps.portExt != nil && !mapsEqual(pt.ExternalIDs, ps.portExt) {
		return false
	}
	return true
}

func normType(t string) string {
	if t == "system" {
		return ""
	}
	return t
}

// bridgeExists reports whether the bridge is in the cache or created in this batch.
func (p *planner) bridgeExists(name string) bool {
	return p.s.bridges[name] != nil || p.newBridges[name] != nil
}

// ensurePort plans creating or converging one port.
func (p *planner) ensurePort(ps *portSpec) error {
	if !p.bridgeExists(ps.bridge) {
		return fmt.Errorf("port %s: bridge %s: %w", ps.name, ps.bridge, ErrNotFound)
	}
	p.checks = append(p.checks, func(s *snapshot) bool { return portMatches(s, ps) })
	if ps.readback {
		p.readback = append(p.readback, ps.name)
	}
	if portMatches(p.s, ps) {
		return nil
	}
	pt := p.s.portOn(ps.bridge, ps.name)
	var i *iface
	if pt != nil && len(pt.Interfaces) == 1 {
		i = p.s.ifaceByID[pt.Interfaces[0]]
	}
	if pt == nil || i == nil || i.Name != ps.name {
		// Missing, on another bridge, or not a simple port: replace it. Deleting and
		// inserting the same name in one transaction is fine, indexes are checked
		// at commit.
		if old := p.s.ports[ps.name]; old != nil {
			p.deletePortRows(old)
		} else if oi := p.s.ifaces[ps.name]; oi != nil {
			return fmt.Errorf("port %s: an interface of that name belongs to another port", ps.name)
		}
		p.createPort(ps)
		return nil
	}
	// Converge in place: keeps the ofport and avoids a flap of the device.
	ni := &iface{UUID: i.UUID, Type: ps.ifType, Options: nonNil(ps.options), OfportRequest: ps.ofportRequest, ExternalIDs: nonNil(ps.ifaceExt)}
	var fields []any
	if normType(i.Type) != normType(ps.ifType) {
		fields = append(fields, &ni.Type)
	}
	if !mapsEqual(i.Options, ps.options) {
		fields = append(fields, &ni.Options)
	}
	if ps.ofportRequest != nil && !intPtrEqual(i.OfportRequest, ps.ofportRequest) {
		fields = append(fields, &ni.OfportRequest)
	}
	if ps.ifaceExt != nil && !mapsEqual(i.ExternalIDs, ps.ifaceExt) {
		fields = append(fields, &ni.ExternalIDs)
	}
	if len(fields) > 0 {
		if err := p.update(ni, fields...); err != nil {
			return fmt.Errorf("port %s: %w", ps.name, err)
		}
	}
	np := &port{UUID: pt.UUID, Tag: ps.tag, OtherConfig: nonNil(ps.portOther), ExternalIDs: nonNil(ps.portExt)}
	var pf []any
	if ps.manageTag && !intPtrEqual(pt.Tag, ps.tag) {
		pf = append(pf, &np.Tag)
	}
	if ps.portOther != nil && !mapsEqual(pt.OtherConfig, ps.portOther) {
		pf = append(pf, &np.OtherConfig)
	}
	if ps.portExt != nil && !mapsEqual(pt.ExternalIDs, ps.portExt) {
		pf = append(pf, &np.ExternalIDs)
	}
	if len(pf) > 0 {
		if err := p.update(np, pf...); err != nil {
			return fmt.Errorf("port %s: %w", ps.name, err)
		}
	}
	return nil
}

// update adds an Update of the listed columns of m (which carries a real UUID).
func (p *planner) update(m model.Model, fields ...any) error {
	o, err := p.c.c.Where(m).Update(m, fields...)
	if err != nil {
		return err
	}
	p.updates = append(p.updates, o...)
	return nil
}

func (p *planner) createPort(ps *portSpec) {
	ni := &iface{UUID: p.named("iface"), Name: ps.name, Type: ps.ifType, Options: ps.options,
		OfportRequest: ps.ofportRequest, ExternalIDs: ps.ifaceExt}
	np := &port{UUID: p.named("port"), Name: ps.name, Interfaces: []string{ni.UUID},
		OtherConfig: ps.portOther, ExternalIDs: ps.portExt}
	if ps.manageTag {
		np.Tag = ps.tag
	}
	// Create errors only on programming mistakes (wrong table); the model is ours.
	o, err := p.c.c.Create(ni)
	if err != nil {
		panic(fmt.Sprintf("ovsdb: create interface op: %v", err))
	}
	p.ifaceIns = append(p.ifaceIns, o...)
	o, err = p.c.c.Create(np)
	if err != nil {
		panic(fmt.Sprintf("ovsdb: create port op: %v", err))
	}
	p.portIns = append(p.portIns, o...)
	if nb := p.newBridges[ps.bridge]; nb != nil {
		nb.Ports = append(nb.Ports, np.UUID)
	} else {
		p.addPorts[ps.bridge] = append(p.addPorts[ps.bridge], np.UUID)
	}
}

// deletePortRows removes a port from its bridge and deletes its rows (ovsdb-server
// would garbage-collect them, but explicit deletes make the intent visible).
func (p *planner) deletePortRows(pt *port) {
	if b := p.s.portBridge[pt.UUID]; b != nil {
		p.delPorts[b.Name] = append(p.delPorts[b.Name], pt.UUID)
	}
	p.deletes = append(p.deletes, ovs.Operation{Op: ovs.OperationDelete, Table: tablePort,
		Where: []ovs.Condition{{Column: "_uuid", Function: ovs.ConditionEqual, Value: ovs.UUID{GoUUID: pt.UUID}}}})
	for _, iu := range pt.Interfaces {
		p.deletes = append(p.deletes, ovs.Operation{Op: ovs.OperationDelete, Table: tableInterface,
			Where: []ovs.Condition{{Column: "_uuid", Function: ovs.ConditionEqual, Value: ovs.UUID{GoUUID: iu}}}})
	}
}

// DeletePort removes a port from the bridge; a port that is not there is no error.
func (b *Batch) DeletePort(bridgeName, name string) *Batch {
	return b.add(name, func(p *planner) error {
		p.checks = append(p.checks, func(s *snapshot) bool { return s.portOn(bridgeName, name) == nil })
		if pt := p.s.portOn(bridgeName, name); pt != nil {
			p.deletePortRows(pt)
		}
		return nil
	})
}

// DeletePort removes a port from the bridge in one transaction; a port that is not
// there is no error (and no transaction).
func (c *Client) DeletePort(ctx context.Context, bridgeName, name string) error {
	_, err := c.NewBatch().DeletePort(bridgeName, name).Commit(ctx)
	return err
}
