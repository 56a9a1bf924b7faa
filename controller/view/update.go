package view

import "github.com/lanes-net/lanes/store"

// Changes says what a View changed from the one it was updated from, so that the
// steps after it redo only those owners.
type Changes struct {
	// All: computed from scratch; compare everything.
	All bool
	// Remote are the IDs of the remote ports that came, changed or left (v.Remote).
	Remote map[string]bool
	// Members are the IDs of the groups whose Members changed.
	Members map[string]bool
}

// Update derives the view of st from prev, the view of an earlier state of the same
// mirror, and d, what differs between the two states. It equals Compute(self, st).
func Update(prev *View, self string, st store.State, d store.Delta) *View {
	v := Compute(self, st)
	v.Changes = Changes{All: true}
	return v
}
