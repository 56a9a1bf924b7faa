package ofsync_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// TestBundleRefusedNamesFlow: a bundle the switch refuses (here a table over its
// flow limit, which OVS finds only at commit) changes nothing in the switch, and the
// error names the flow that failed; the next bundle on the same bridge works.
func TestBundleRefusedNamesFlow(t *testing.T) {
	o := ovsproc.ForTest(t)
	h := &host{t: t, o: o}
	const br = "blimit"
	addBridge(t, o, br)
	vsctl(t, o, "--", "--id=@ft", "create", "Flow_Table", "flow_limit=5", "overflow_policy=refuse",
		"--", "set", "Bridge", br, "flow_tables:20=@ft")
	b, _ := h.open(flows.Bridge(br), 1)
	few := unicastFlows(3)
	syncConnected(t, b, few)
	if got := countFlows(t, o, br); got != 3 {
		t.Fatalf("%d flows after the first bundle, want 3", got)
	}

	many := unicastFlows(8)
	err := b.Sync(many)
	if err == nil {
		t.Fatal("a bundle over the table's flow limit committed")
	}
	t.Logf("refused: %v", err)
	namesRefused(t, err, many[3:])
	if got := countFlows(t, o, br); got != 3 {
		t.Fatalf("%d flows after a refused bundle, want the 3 of before", got)
	}

	// Within the limit again: the bridge still takes bundles.
	if err := b.Sync(unicastFlows(5)); err != nil {
		t.Fatalf("bundle within the limit: %v", err)
	}
	if got := countFlows(t, o, br); got != 5 {
		t.Fatalf("%d flows, want 5", got)
	}
}

// TestLargeBundle: a bundle large enough to be encoded on several goroutines (a
// restart's) installs exactly its flows, and one the switch refuses names a flow of
// its own past the limit, with the switch's reason: the chunks' xids follow each
// other, so an error maps back to its message.
func TestLargeBundle(t *testing.T) {
	o := ovsproc.ForTest(t)
	h := &host{t: t, o: o}
	const br, limit = "blarge", 12000
	addBridge(t, o, br)
	vsctl(t, o, "--", "--id=@ft", "create", "Flow_Table", fmt.Sprintf("flow_limit=%d", limit), "overflow_policy=refuse",
		"--", "set", "Bridge", br, "flow_tables:20=@ft")
	b, _ := h.open(flows.Bridge(br), 1)
	fs := unicastFlows(10000)
	syncConnected(t, b, fs)
	sameSet(t, br, h.dump(flows.Bridge(br)), rendered(fs, 1))

	many := unicastFlows(15000)
	err := b.Sync(many)
	if err == nil {
		t.Fatalf("a bundle over the table's limit of %d committed", limit)
	}
	namesRefused(t, err, many[10000:])
	if got := countFlows(t, o, br); got != len(fs) {
		t.Fatalf("%d flows after a refused bundle, want the %d of before", got, len(fs))
	}
}

// namesRefused fails unless err names one of the flows (in round 1) and the
// switch's reason, a full table.
func namesRefused(t *testing.T, err error, fs []flows.Flow) {
	t.Helper()
	for _, f := range fs {
		if strings.Contains(err.Error(), f.WithRound(1).Key()) && strings.Contains(err.Error(), "table") {
			return
		}
	}
	t.Fatalf("error does not name a refused flow and the reason: %.300s", err)
}
