package store

import (
	"testing"
	"time"
)

// TakeReceived says when the oldest change not yet taken arrived: the first list,
// then a watch event, each once; a change that arrives later is a new batch.
func TestMirrorTakeReceived(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	start := time.Now()
	m := s.NewMirror(MirrorOptions{})
	runMirror(t, m)
	if at := m.TakeReceived(); at.Before(start) || at.After(time.Now()) {
		t.Fatalf("first list received at %s, started at %s", at, start)
	}
	if at := m.TakeReceived(); !at.IsZero() {
		t.Fatalf("nothing new, yet received at %s", at)
	}
	beforeWrite := time.Now()
	n := mustNet(t, s, "net", "10.0.0.0/24")
	waitState(t, m, "the network", func(st State) bool { return st.Networks[n.ID].VNI == n.VNI })
	first := m.TakeReceived()
	if first.Before(beforeWrite) || first.After(time.Now()) {
		t.Fatalf("network received at %s, written after %s", first, beforeWrite)
	}
	// Two changes before the next take: the older one's arrival counts.
	n2 := mustNet(t, s, "net2", "10.0.1.0/24")
	waitState(t, m, "net2", func(st State) bool { return st.Networks[n2.ID].VNI == n2.VNI })
	second := m.TakeReceived()
	n3 := mustNet(t, s, "net3", "10.0.2.0/24")
	waitState(t, m, "net3", func(st State) bool { return st.Networks[n3.ID].VNI == n3.VNI })
	mid := time.Now()
	n4 := mustNet(t, s, "net4", "10.0.3.0/24")
	waitState(t, m, "net4", func(st State) bool { return st.Networks[n4.ID].VNI == n4.VNI })
	if third := m.TakeReceived(); !third.After(second) || !third.Before(mid) {
		t.Fatalf("batch of net3 and net4 received at %s: want net3's arrival, after net2's (%s), before net4's write (%s)", third, second, mid)
	}
}
