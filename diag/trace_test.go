package diag

import (
	"os"
	"slices"
	"testing"
)

// TestParseTrace reads ofproto/trace output recorded from OVS 3.1.
func TestParseTrace(t *testing.T) {
	out, err := os.ReadFile("testdata/trace-remote.txt")
	if err != nil {
		t.Fatal(err)
	}
	steps, dp := parseTrace(string(out))
	if dp != "push_vlan(vid=1,pcp=0),3,pop_vlan,7" || len(steps) != 3 {
		t.Fatalf("datapath %q, %d steps", dp, len(steps))
	}
	s := steps[2]
	if s.bridge != "br-tun" || s.table != 20 || s.match != "dl_vlan=1,dl_dst=fa:16:3e:9e:fe:f4" || s.cookie != 0x1053868484a93 ||
		!slices.Equal(s.actions, []string{"pop_vlan", "set_field:0x64->tun_id", "output:16386"}) {
		t.Errorf("step %+v", s)
	}
	if steps[1].match != "" || steps[1].table != 60 {
		t.Errorf("step without match: %+v", steps[1])
	}
}
