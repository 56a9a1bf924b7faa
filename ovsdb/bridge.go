package ovsdb

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/ovn-kubernetes/libovsdb/model"
	ovs "github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// Datapath types.
const (
	DatapathSystem = "system"
	DatapathNetdev = "netdev"
)

// Fail modes.
const (
	FailSecure     = "secure"
	FailStandalone = "standalone"
)

// Protocols every lanes bridge speaks: OpenFlow15 for ofnet, OpenFlow10 so that a
// plain `ovs-ofctl dump-flows` works, OpenFlow13 for tools that ask for it.
var Protocols = []string{"OpenFlow10", "OpenFlow13", "OpenFlow15"}

// BridgeSpec is the desired state of a bridge.
type BridgeSpec struct {
	Name string
	// DatapathType is "system" (kernel) or "netdev" (userspace).
	DatapathType string
	// DatapathID is 16 hex digits (other_config:datapath-id); empty leaves it to OVS.
	DatapathID string
	// ExternalIDs are set to these values; other keys (e.g. the controller's round)
	// are left alone.
	ExternalIDs map[string]string
	// FailMode is "secure" (the default, for br-int and br-tun) or "standalone"
	// (br-phy, which forwards NORMAL without a controller).
	FailMode string
}

var dpidRe = regexp.MustCompile(`^[0-9a-fA-F]{16}$`)

func (s *BridgeSpec) normalize() (BridgeSpec, error) {
	n := *s
	if n.Name == "" {
		return n, fmt.Errorf("bridge: empty name")
	}
	switch n.DatapathType {
	case DatapathSystem, DatapathNetdev:
	default:
		return n, fmt.Errorf("bridge %s: datapath type %q: want system or netdev", n.Name, n.DatapathType)
	}
	if n.DatapathID != "" {
		if !dpidRe.MatchString(n.DatapathID) {
			return n, fmt.Errorf("bridge %s: datapath-id %q: want 16 hex digits", n.Name, n.DatapathID)
		}
		n.DatapathID = strings.ToLower(n.DatapathID)
	}
	switch n.FailMode {
	case "":
		n.FailMode = FailSecure
	case FailSecure, FailStandalone:
	default:
		return n, fmt.Errorf("bridge %s: fail mode %q: want secure or standalone", n.Name, n.FailMode)
	}
	return n, nil
}

func (s *BridgeSpec) otherConfig() map[string]string {
	m := map[string]string{"disable-in-band": "true"}
	if s.DatapathID != "" {
		m["datapath-id"] = s.DatapathID
	}
	return m
}

func dpType(t string) string {
	if t == "" {
		return DatapathSystem
	}
	return t
}

func bridgeMatches(b *bridge, spec *BridgeSpec) bool {
	return b != nil && dpType(b.DatapathType) == spec.DatapathType &&
		b.FailMode != nil && *b.FailMode == spec.FailMode &&
		sameSet(b.Protocols, Protocols) &&
		hasKeys(b.OtherConfig, spec.otherConfig()) &&
		hasKeys(b.ExternalIDs, spec.ExternalIDs)
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// EnsureBridge creates the bridge or converges it to spec: fail_mode, protocols
// OpenFlow10/13/15, datapath type, other_config datapath-id and disable-in-band=true,
// and the given external_ids. Other other_config and external_ids keys are kept.
func (b *Batch) EnsureBridge(spec BridgeSpec) *Batch {
	n, err := spec.normalize()
	if err != nil {
		b.err = err
		return b
	}
	return b.add("", func(p *planner) error { return p.ensureBridge(&n) })
}

func (p *planner) ensureBridge(spec *BridgeSpec) error {
	p.checks = append(p.checks, func(s *snapshot) bool { return bridgeMatches(s.bridges[spec.Name], spec) })
	if p.newBridges[spec.Name] != nil {
		return fmt.Errorf("bridge %s ensured twice in one batch", spec.Name)
	}
	cur := p.s.bridges[spec.Name]
	if cur == nil {
		if p.s.ports[spec.Name] != nil {
			return fmt.Errorf("bridge %s: a port of that name exists on another bridge", spec.Name)
		}
		nb := &bridge{UUID: p.named("bridge"), Name: spec.Name, DatapathType: spec.DatapathType,
			FailMode: ptr(spec.FailMode), Protocols: slices.Clone(Protocols),
			OtherConfig: spec.otherConfig(), ExternalIDs: spec.ExternalIDs}
		p.newBridges[spec.Name] = nb
		p.newBridgeOrder = append(p.newBridgeOrder, spec.Name)
		// Like ovs-vsctl add-br: the bridge's own internal port (OpenFlow LOCAL).
		p.createPort(&portSpec{bridge: spec.Name, name: spec.Name, ifType: "internal"})
		return nil
	}
	if bridgeMatches(cur, spec) {
		return nil
	}
	m := &bridge{UUID: cur.UUID, DatapathType: spec.DatapathType, FailMode: ptr(spec.FailMode), Protocols: slices.Clone(Protocols)}
	var fields []any
	if dpType(cur.DatapathType) != spec.DatapathType {
		fields = append(fields, &m.DatapathType)
	}
	if cur.FailMode == nil || *cur.FailMode != spec.FailMode {
		fields = append(fields, &m.FailMode)
	}
	if !sameSet(cur.Protocols, Protocols) {
		fields = append(fields, &m.Protocols)
	}
	if len(fields) > 0 {
		if err := p.update(m, fields...); err != nil {
			return fmt.Errorf("bridge %s: %w", spec.Name, err)
		}
	}
	var muts []model.Mutation
	muts = append(muts, mapKeyMutations(&m.OtherConfig, cur.OtherConfig, spec.otherConfig())...)
	muts = append(muts, mapKeyMutations(&m.ExternalIDs, cur.ExternalIDs, spec.ExternalIDs)...)
	if len(muts) > 0 {
		o, err := p.c.c.Where(m).Mutate(m, muts...)
		if err != nil {
			return fmt.Errorf("bridge %s: %w", spec.Name, err)
		}
		p.extraMutations = append(p.extraMutations, o...)
	}
	return nil
}

// mapKeyMutations sets the keys of want in a map column, leaving other keys alone:
// delete the keys, then insert them, because an insert never overwrites a key.
func mapKeyMutations(field *map[string]string, cur, want map[string]string) []model.Mutation {
	set := map[string]string{}
	var keys []string
	for k, v := range want {
		if w, ok := cur[k]; !ok || w != v {
			set[k] = v
			keys = append(keys, k)
		}
	}
	if len(set) == 0 {
		return nil
	}
	slices.Sort(keys)
	return []model.Mutation{
		{Field: field, Mutator: ovs.MutateOperationDelete, Value: keys},
		{Field: field, Mutator: ovs.MutateOperationInsert, Value: set},
	}
}

// EnsureBridge applies one BridgeSpec in one transaction, or none if in place.
func (c *Client) EnsureBridge(ctx context.Context, spec BridgeSpec) error {
	_, err := c.NewBatch().EnsureBridge(spec).Commit(ctx)
	return err
}

// DeleteBridge removes a bridge with its ports; a missing bridge is no error.
func (c *Client) DeleteBridge(ctx context.Context, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.awaitConnected(ctx); err != nil {
		return err
	}
	s, err := c.snapshot(ctx)
	if err != nil {
		return err
	}
	b := s.bridges[name]
	if b == nil {
		return nil
	}
	if s.root == nil {
		return fmt.Errorf("no Open_vSwitch row: %w", ErrNotFound)
	}
	r := &openvSwitch{UUID: s.root.UUID}
	// Ports and interfaces are not root rows: ovsdb-server collects them.
	ops, err := c.c.Where(r).Mutate(r, model.Mutation{Field: &r.Bridges, Mutator: ovs.MutateOperationDelete, Value: []string{b.UUID}})
	if err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	if _, err := c.transact(ctx, ops); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return c.awaitCache(ctx, "bridge "+name+" deleted", func() bool {
		s, err := c.snapshot(ctx)
		return err == nil && s.bridges[name] == nil
	})
}

// Bridges lists the names of all bridges (from the cache).
func (c *Client) Bridges(ctx context.Context) ([]string, error) {
	s, err := c.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for n := range s.bridges {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// BridgeExternalID returns one external_ids value of a bridge (from the cache).
func (c *Client) BridgeExternalID(ctx context.Context, bridgeName, key string) (string, bool, error) {
	_, b, err := c.bridgeSnapshot(ctx, bridgeName)
	if err != nil {
		return "", false, err
	}
	v, ok := b.ExternalIDs[key]
	return v, ok, nil
}

// SetBridgeExternalID sets one external_ids key of a bridge in one transaction
// (delete + insert in one mutate), or sends nothing if it already has that value.
func (c *Client) SetBridgeExternalID(ctx context.Context, bridgeName, key, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.awaitConnected(ctx); err != nil {
		return err
	}
	_, b, err := c.bridgeSnapshot(ctx, bridgeName)
	if err != nil {
		return err
	}
	want := map[string]string{key: value}
	m := &bridge{UUID: b.UUID}
	muts := mapKeyMutations(&m.ExternalIDs, b.ExternalIDs, want)
	if len(muts) == 0 {
		return nil
	}
	ops, err := c.c.Where(m).Mutate(m, muts...)
	if err != nil {
		return fmt.Errorf("bridge %s external_ids: %w", bridgeName, err)
	}
	if _, err := c.transact(ctx, ops); err != nil {
		return fmt.Errorf("bridge %s external_ids:%s: %w", bridgeName, key, err)
	}
	return c.awaitCache(ctx, "bridge "+bridgeName+" external_ids:"+key, func() bool {
		s, err := c.snapshot(ctx)
		return err == nil && s.bridges[bridgeName] != nil && s.bridges[bridgeName].ExternalIDs[key] == value
	})
}

// bridgeSnapshot reads the cache and finds a bridge in it.
func (c *Client) bridgeSnapshot(ctx context.Context, name string) (*snapshot, *bridge, error) {
	s, err := c.snapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	b := s.bridges[name]
	if b == nil {
		return nil, nil, fmt.Errorf("bridge %s: %w", name, ErrNotFound)
	}
	return s, b, nil
}
