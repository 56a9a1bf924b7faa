package store

import "maps"

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

// maxDeltas is how many patched builds a Mirror remembers the changes of: a reader
// further behind than that is told All.
const maxDeltas = 16

// buildDelta is what one patched build changed: the ports whose record in the State
// or problems differ from the build before.
type buildDelta struct {
	gen   uint64
	ports map[string]bool
}

// SharedSince returns the current state like Shared, and what differs in it from the
// state of build generation gen (State.Gen) that the caller derived its own state
// from. A gen of 0 (nothing derived yet) gets All. The Delta is the caller's.
func (m *Mirror) SharedSince(gen uint64) (State, Delta) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.sharedLocked()
	switch {
	case gen != 0 && gen == st.Gen:
		return st, Delta{}
	// The deltas run without a gap up to st.Gen, so they cover (gen, st.Gen] when
	// they start at gen+1 or before.
	case gen == 0 || gen > st.Gen || len(m.deltas) == 0 || m.deltas[0].gen > gen+1:
		return st, Delta{All: true}
	}
	ports := map[string]bool{}
	for _, d := range m.deltas {
		if d.gen > gen {
			maps.Copy(ports, d.ports)
		}
	}
	return st, Delta{Ports: ports}
}
