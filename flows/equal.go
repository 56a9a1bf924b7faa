package flows

import (
	"bytes"
	"reflect"
)

// Equal reports whether f and g are the same flow, field by field: a controller
// that recomputes a set compares an owner's flows with those it installed without
// rendering either. Addresses compare by value (a nil and an empty MAC are equal, as
// they print the same).
func (f Flow) Equal(g Flow) bool { return f.equal(&g) }

// equal is Equal without copying either flow: a diff of a whole set compares tens
// of thousands of pairs.
func (f *Flow) equal(g *Flow) bool {
	if f.Bridge != g.Bridge || f.Table != g.Table || f.Priority != g.Priority || f.Cookie != g.Cookie ||
		len(f.Actions) != len(g.Actions) || !f.Match.equal(&g.Match) {
		return false
	}
	for i, a := range f.Actions {
		if !actionEqual(a, g.Actions[i]) {
			return false
		}
	}
	return true
}

// Equal reports whether m and n match the same packets in the same way.
func (m Match) Equal(n Match) bool { return m.equal(&n) }

func (m *Match) equal(n *Match) bool {
	return m.InPort == n.InPort && m.EthType == n.EthType && m.TunID == n.TunID && m.VLAN == n.VLAN &&
		bytes.Equal(m.EthSrc, n.EthSrc) && bytes.Equal(m.EthDst, n.EthDst) && bytes.Equal(m.EthDstMask, n.EthDstMask) &&
		m.ARPSpa == n.ARPSpa && m.ARPTpa == n.ARPTpa && m.ARPOp == n.ARPOp &&
		m.IPProto == n.IPProto && m.TpSrc == n.TpSrc && m.TpDst == n.TpDst &&
		m.ICMPv6Type == n.ICMPv6Type && m.NDTarget == n.NDTarget && m.IPv6Src == n.IPv6Src &&
		bytes.Equal(m.NDSll, n.NDSll) && bytes.Equal(m.NDTll, n.NDTll)
}

// actionEqual compares two actions by type and value. Every action type is listed
// (TestActionEqualKnowsEveryAction checks that), so that none goes through reflect,
// which made a diff of a whole set several times slower; a type added without being
// listed still compares exactly, by reflect.
func actionEqual(a, b Action) bool {
	switch a := a.(type) {
	case SetEthSrc:
		b, ok := b.(SetEthSrc)
		return ok && bytes.Equal(a.MAC, b.MAC)
	case SetARPSha:
		b, ok := b.(SetARPSha)
		return ok && bytes.Equal(a.MAC, b.MAC)
	case PushVLAN, SetVLANVID, PopVLAN, SetTunID, Output, OutputInPort, Normal, GotoTable,
		SetARPOp, SetARPSpa, Move, SetIPv6Src, SetICMPv6Type, SetNDReserved, SetNDOptionsType,
		Resubmit, Controller, Learn:
		// Comparable types: the interfaces compare type and value.
		return a == b
	}
	return reflect.DeepEqual(a, b)
}

// EachOwner calls fn for every owner with flows on bridge b, in Owners order, with
// the owner's flows themselves rather than a copy: a Set is immutable, so fn may keep
// them but must not modify them. A caller that reuses an owner's flows from one Set
// to the next lets a diff see them unchanged by identity.
func (s Set) EachOwner(b Bridge, fn func(Owner, []Flow)) {
	if bs := s.bridges[b]; bs != nil {
		for o, fs := range bs.owners.All() {
			fn(o, fs)
		}
	}
}

// FlowsEqual reports whether a and b are the same flows in the same order, by
// identity first (a Builder's Sets share the slices of owners that did not change),
// without copying a flow.
func FlowsEqual(a, b []Flow) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	for i := range a {
		if !a[i].equal(&b[i]) {
			return false
		}
	}
	return true
}
