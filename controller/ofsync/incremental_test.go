package ofsync_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
)

// TestSyncSetIncremental: sets made by Builder.Update, each handed to SyncSet, go
// out as diffs of their changed owners alone, and after every one the switch holds
// exactly the flows of a from-scratch computation (a set of a full Build, derived
// from the last one too, goes the same way); a full replay afterwards finds
// nothing to correct, and the flow counts match the switch.
func TestSyncSetIncremental(t *testing.T) {
	h := newHost(t, []string{hostB, hostC, hostD}, map[string]uint16{"vm1": 1, "vm2": 2})
	const round = 9
	br := map[flows.Bridge]*ofsync.Bridge{}
	for _, b := range bridges {
		br[b], _ = h.open(b, round)
	}
	var fb flows.Builder
	state := h.baseState()
	set, err := fb.Build(&state)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bridges {
		syncSetConnected(t, br[b], set)
	}
	r := rand.New(rand.NewPCG(19, 14))
	hosts := []string{hostB, hostC, hostD}
	nets := []flows.Network{netA, netB}
	for step := range 40 {
		changed := map[string]bool{}
		what := ""
		switch k := r.IntN(3); {
		case k == 0 || len(state.RemotePorts) < 2:
			id := fmt.Sprint("rx", step)
			p := rport(id, nets[r.IntN(2)], hosts[r.IntN(3)], fmt.Sprintf("fa:16:3e:00:10:%02x", step), fmt.Sprintf("10.0.1.%d", step+2))
			state.RemotePorts = append(slices.Clone(state.RemotePorts), p)
			changed[id], what = true, "add "+id
		case k == 1:
			i := r.IntN(len(state.RemotePorts))
			changed[state.RemotePorts[i].ID], what = true, "delete "+state.RemotePorts[i].ID
			state.RemotePorts = slices.Delete(slices.Clone(state.RemotePorts), i, i+1)
		default:
			state.RemotePorts = slices.Clone(state.RemotePorts)
			i := r.IntN(len(state.RemotePorts))
			state.RemotePorts[i].HostIP = rport("", netA, hosts[r.IntN(3)], "fa:16:3e:00:00:01", "10.0.0.1").HostIP
			changed[state.RemotePorts[i].ID], what = true, "move "+state.RemotePorts[i].ID
		}
		part := state
		part.RemotePorts = slices.DeleteFunc(slices.Clone(state.RemotePorts), func(p flows.RemotePort) bool { return !changed[p.ID] })
		if step == 20 {
			// The ports waiting for a tunnel to D get their flows, in a full build.
			state.Tunnels = append(slices.Clone(state.Tunnels), h.tunnel(hostD))
			set, err = fb.Build(&state)
		} else {
			set, err = fb.Update(&part, changed)
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", step, what, err)
		}
		want := render(t, state)
		for _, b := range bridges {
			if err := br[b].SyncSet(set); err != nil {
				t.Fatalf("step %d (%s): %s: %v", step, what, b, err)
			}
			sameSet(t, fmt.Sprintf("step %d (%s): %s", step, what, b), h.dump(b), rendered(want.Flows(b), round))
		}
	}
	if n := br[flows.BrTun].FastDiffs(); n < 40 {
		t.Errorf("br-tun: %d of 40 changes diffed by their owners alone", n)
	}
	for _, b := range bridges {
		before := h.dump(b)
		if err := br[b].Replay(); err != nil {
			t.Fatal(err)
		}
		sameSet(t, string(b)+" after a full replay", h.dump(b), before)
		if st := br[b].Status(); st.Installed != len(before) {
			t.Errorf("%s: %d flows installed, the switch holds %d", b, st.Installed, len(before))
		}
	}
}
