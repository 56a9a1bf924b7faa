package ofsync_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// unicastFlows is n table-20 l2pop flows, as n remote ports spread over 4000
// networks and 8 tunnels would give (one owner per flow).
func unicastFlows(n int) []flows.Flow {
	tb, err := flows.NewTunBridge("vxlan")
	if err != nil {
		panic(err)
	}
	fs := make([]flows.Flow, n)
	for i := range n {
		vlan := uint16(1 + i%4000)
		mac := net.HardwareAddr{0xfa, 0x16, 0x3e, byte(i >> 16), byte(i >> 8), byte(i)}
		c := flows.MakeCookie(0, flows.CatRemotePort, fmt.Sprintf("port-%d", i))
		fs[i] = tb.InstallUnicastToTun(c, vlan, 1000+uint32(vlan), uint32(2+i%8), mac)
	}
	return fs
}

var flowCount = regexp.MustCompile(`flow_count=(\d+)`)

func countFlows(tb testing.TB, o *ovsproc.OVS, br string) int {
	tb.Helper()
	out, err := o.Ofctl15("dump-aggregate", br)
	if err != nil {
		tb.Fatal(err)
	}
	m := flowCount.FindStringSubmatch(out)
	if m == nil {
		tb.Fatalf("dump-aggregate: %s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// BenchmarkInstall times installing N flows into a fresh bridge with Sync (one
// bundle over the management socket) against `ovs-ofctl --bundle add-flows` of the
// same flows' text into another fresh bridge of the same OVS.
func BenchmarkInstall(b *testing.B) {
	o := ovsproc.ForTest(b)
	h := &host{t: b, o: o}
	const round = 1
	var table []string
	for _, n := range []int{1000, 10000, 50000} {
		fs := unicastFlows(n)
		var text strings.Builder
		for _, f := range fs {
			text.WriteString(strings.TrimSpace(f.WithRound(round).String()))
			text.WriteByte('\n')
		}
		file := filepath.Join(b.TempDir(), "flows.txt")
		if err := os.WriteFile(file, []byte(text.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			var ours, ofctl time.Duration
			for i := range b.N {
				b.StopTimer()
				brOurs, brOfctl := fmt.Sprintf("bo%d-%d", n, i), fmt.Sprintf("bc%d-%d", n, i)
				addBridge(b, o, brOurs)
				addBridge(b, o, brOfctl)
				br, closeFn := h.open(flows.Bridge(brOurs), round)
				syncConnected(b, br, nil) // connected, older rounds swept: the bridge is ready
				b.StartTimer()

				start := time.Now()
				if err := br.Sync(fs); err != nil {
					b.Fatal(err)
				}
				ours += time.Since(start)

				start = time.Now()
				if out, err := o.Ofctl15("--bundle", "add-flows", brOfctl, file); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
				ofctl += time.Since(start)

				b.StopTimer()
				if got := countFlows(b, o, brOurs); got != n {
					b.Fatalf("%s holds %d flows, want %d", brOurs, got, n)
				}
				if got := countFlows(b, o, brOfctl); got != n {
					b.Fatalf("%s holds %d flows, want %d", brOfctl, got, n)
				}
				closeFn()
				vsctl(b, o, "del-br", brOurs, "--", "del-br", brOfctl)
				b.StartTimer()
			}
			oursRate := float64(n*b.N) / ours.Seconds()
			ofctlRate := float64(n*b.N) / ofctl.Seconds()
			b.ReportMetric(oursRate, "sync-flows/s")
			b.ReportMetric(ofctlRate, "ofctl-flows/s")
			b.ReportMetric(oursRate/ofctlRate, "sync/ofctl")
			table = append(table, fmt.Sprintf("| %6d | %9.0f ms | %9.0f | %9.0f ms | %9.0f | %5.2f |", n,
				float64(ours.Milliseconds())/float64(b.N), oursRate,
				float64(ofctl.Milliseconds())/float64(b.N), ofctlRate, oursRate/ofctlRate))
		})
	}
	// Printed, not logged: a parent benchmark's log is not shown without -v.
	head := fmt.Sprintf("| %6s | %12s | %9s | %12s | %9s | %5s |", "flows", "Sync", "flows/s", "ovs-ofctl", "flows/s", "ratio")
	fmt.Printf("BenchmarkInstall: N flows into a fresh bridge (netdev datapath)\n%s\n%s\n%s\n",
		head, regexp.MustCompile(`[^|]`).ReplaceAllString(head, "-"), strings.Join(table, "\n"))
}
