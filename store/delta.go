package store

// Delta says what differs between two States of one Mirror, so that a reader updates
// what it derived from the first for the owners that changed instead of deriving all
// of it again. A Delta that is not All is exact: every port whose record (kept or
// left out) or problems differ is in Ports, and nothing else differs but statuses.
type Delta struct {
	// All: records other than ports changed (networks, groups, hosts, routers,
	// floating IPs, a host's liveness), or the reader is too far behind (a relist,
	// or more builds than the mirror remembers): compare everything.
	All bool
	// Ports are the IDs of the ports that came, changed or left.
	Ports map[string]bool
}

// Empty reports whether nothing differs.
func (d Delta) Empty() bool { return !d.All && len(d.Ports) == 0 }

// SharedSince returns the current state like Shared, and what differs in it from the
// state of build generation gen (State.Gen) that the caller derived its own state
// from. A gen of 0 (nothing derived yet) gets All.
func (m *Mirror) SharedSince(gen uint64) (State, Delta) {
	st := m.Shared()
	if gen != 0 && gen == st.Gen {
		return st, Delta{}
	}
	return st, Delta{All: true}
}
