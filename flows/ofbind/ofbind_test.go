package ofbind

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"antrea.io/libOpenflow/openflow15"

	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/flows/internal/golden"
)

// ofpParse decodes marshalled OpenFlow messages with `ovs-ofctl ofp-parse`, one
// output line per message.
func ofpParse(t *testing.T, msgs ...interface{ MarshalBinary() ([]byte, error) }) []string {
	t.Helper()
	ofctl, err := exec.LookPath("ovs-ofctl")
	if err != nil {
		t.Skip("ovs-ofctl not installed; it is the reference decoder")
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	file := filepath.Join(t.TempDir(), "msgs.bin")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ofctl, "ofp-parse", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ovs-ofctl ofp-parse: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

// ofpPrinted matches ofp-print's one-line FlowMod. It prints the same match and
// actions as dump-flows, but frames them differently: "ADD table:4 <match>
// cookie:0x1 actions=..." instead of " cookie=0x1, table=4, <match> actions=...".
// Table 0 and cookie 0 are left out as in dump-flows.
var ofpPrinted = regexp.MustCompile(`^OFPT_FLOW_MOD \(OF1\.5\) \(xid=0x0\): (ADD|DEL_STRICT) (?:table:(\d+) )?(.*?) ?(?:cookie:(0x[0-9a-f]+(?:/0xffffffffffffffff)?) )?actions=(.*)$`)

// asDumpLine rewrites an ofp-print FlowMod line into dump-flows form.
func asDumpLine(line string) (cmd, dump string, ok bool) {
	m := ofpPrinted.FindStringSubmatch(line)
	if m == nil {
		return "", "", false
	}
	var b strings.Builder
	b.WriteByte(' ')
	if m[4] != "" {
		fmt.Fprintf(&b, "cookie=%s, ", m[4])
	}
	if m[2] != "" {
		fmt.Fprintf(&b, "table=%s, ", m[2])
	}
	b.WriteString(m[3])
	if !strings.HasSuffix(b.String(), " ") {
		b.WriteByte(' ')
	}
	return m[1], b.String() + "actions=" + m[5], true
}

// TestBindingAgreesWithRenderer encodes every flow of every golden scenario and
// checks that OVS decodes the bytes to exactly the text Flow.String() renders.
func TestBindingAgreesWithRenderer(t *testing.T) {
	for _, sc := range golden.Scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			s, err := sc.Desired.Flows()
			if err != nil {
				t.Fatal(err)
			}
			var fs []flows.Flow
			var msgs []interface{ MarshalBinary() ([]byte, error) }
			for _, b := range []flows.Bridge{flows.BrTun, flows.BrInt} {
				for _, f := range s.Flows(b) {
					fm, err := FlowMod(f, openflow15.FC_ADD)
					if err != nil {
						t.Fatal(err)
					}
					fm.Xid = 0
					fs, msgs = append(fs, f), append(msgs, fm)
				}
			}
			lines := ofpParse(t, msgs...)
			if len(lines) != len(fs) {
				t.Fatalf("%d flows decoded to %d lines:\n%s", len(fs), len(lines), strings.Join(lines, "\n"))
			}
			for i, f := range fs {
				cmd, got, ok := asDumpLine(lines[i])
				if !ok || cmd != "ADD" || got != f.String() {
					t.Errorf("ovs-ofctl decoded\n%s\nwant\n%s", lines[i], f.String())
				}
			}
		})
	}
}

func TestDeletes(t *testing.T) {
	s, err := golden.Scenarios[1].Desired.Flows()
	if err != nil {
		t.Fatal(err)
	}
	f := s.Flows(flows.BrInt)[0]
	del, err := FlowMod(f, openflow15.FC_DELETE_STRICT)
	if err != nil {
		t.Fatal(err)
	}
	del.Xid = 0
	byRound := DeleteByCookie(flows.Cookie(0).WithRound(3), flows.RoundMask)
	byRound.Xid = 0

	lines := ofpParse(t, del, byRound)
	// A delete carries no actions (ofp-print shows "drop") and its cookie is a filter
	// with a full mask.
	want := strings.Replace(f.String(), "cookie=0x1cbf29ce484,", "cookie=0x1cbf29ce484/0xffffffffffffffff,", 1)
	want = strings.TrimSuffix(want, flows.ActionsString(f.Actions)) + "drop"
	if cmd, got, ok := asDumpLine(lines[0]); !ok || cmd != "DEL_STRICT" || got != want {
		t.Errorf("delete strict decoded\n%s\nwant\n%s", lines[0], want)
	}
	// A non-strict delete ignores the priority (ofp-print shows ofnet's default 1000).
	if want := "DEL table:255 priority=1000 cookie:0x3000000000000/0xffff000000000000 actions=drop"; !strings.HasSuffix(lines[1], want) {
		t.Errorf("delete by cookie decoded\n%s\nwant suffix\n%s", lines[1], want)
	}
}

func TestRefusesZeroCookie(t *testing.T) {
	if _, err := FlowMod(flows.Flow{Bridge: flows.BrInt, Table: flows.Transient}, openflow15.FC_ADD); err == nil {
		t.Fatal("cookie 0 accepted")
	}
}
