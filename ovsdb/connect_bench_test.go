package ovsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// benchTunnels is the number of tunnel ports on br-tun: one per peer host at 1k hosts.
const benchTunnels = 1000

// BenchmarkConnect times Connect (until the cache holds every row) on a switch with
// benchTunnels VXLAN ports, against a same-run anchor: a raw JSON-RPC monitor of the
// same tables and columns that decodes the whole reply into generic JSON values.
// The ratio (connect/anchor) is what to compare across machines; anchor-cond-ms is
// the same with monitor_cond, the request Connect sends. Most of an anchor's time
// is the server's: -tagfocus=phase=connect narrows a -cpuprofile to Connect.
func BenchmarkConnect(b *testing.B) {
	o := ovsproc.ForTest(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	benchTunnelSwitch(b, ctx, o, benchTunnels)

	// One warm-up of each, so neither pays for the server's first-use costs.
	if _, err := rawMonitor(ctx, o.DBSocketPath()); err != nil {
		b.Fatal(err)
	}
	c, err := Connect(ctx, o.DBEndpoint())
	if err != nil {
		b.Fatal(err)
	}
	c.Close()

	var connWall, connCPU, rawWall, rawCPU, condWall time.Duration
	b.ResetTimer()
	for range b.N {
		var c *Client
		var err error
		cpu0, t0 := selfCPU(), time.Now()
		// The label follows the goroutines Connect starts, so a -cpuprofile can be
		// narrowed to Connect with -tagfocus=phase=connect.
		pprof.Do(ctx, pprof.Labels("phase", "connect"), func(ctx context.Context) {
			c, err = Connect(ctx, o.DBEndpoint())
		})
		if err != nil {
			b.Fatal(err)
		}
		connWall += time.Since(t0)
		connCPU += selfCPU() - cpu0
		b.StopTimer()
		if n := countTunnels(b, ctx, c); n != benchTunnels {
			b.Fatalf("cache holds %d tunnel ports, want %d", n, benchTunnels)
		}
		c.Close()

		var rows int
		cpu0, t0 = selfCPU(), time.Now()
		pprof.Do(ctx, pprof.Labels("phase", "anchor"), func(ctx context.Context) {
			rows, err = rawMonitor(ctx, o.DBSocketPath())
		})
		if err != nil {
			b.Fatal(err)
		}
		rawWall += time.Since(t0)
		rawCPU += selfCPU() - cpu0
		if rows < 2*benchTunnels {
			b.Fatalf("raw monitor: %d rows, want at least %d", rows, 2*benchTunnels)
		}
		t0 = time.Now()
		if rows, err := rawMonitorMethod(ctx, o.DBSocketPath(), "monitor_cond"); err != nil || rows < 2*benchTunnels {
			b.Fatalf("raw monitor_cond: %d rows, %v", rows, err)
		}
		condWall += time.Since(t0)
		b.StartTimer()
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(float64((connWall/n).Microseconds())/1000, "connect-ms")
	b.ReportMetric(float64((connCPU/n).Microseconds())/1000, "connect-cpu-ms")
	b.ReportMetric(float64((rawWall/n).Microseconds())/1000, "anchor-ms")
	b.ReportMetric(float64((rawCPU/n).Microseconds())/1000, "anchor-cpu-ms")
	b.ReportMetric(float64((condWall/n).Microseconds())/1000, "anchor-cond-ms")
	b.ReportMetric(float64(connWall)/float64(rawWall), "connect/anchor")
}

// benchTunnelSwitch makes br-int and br-tun and n VXLAN tunnel ports on br-tun in
// one transaction.
func benchTunnelSwitch(b *testing.B, ctx context.Context, o *ovsproc.OVS, n int) {
	b.Helper()
	c, err := Connect(ctx, o.DBEndpoint())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, s := range []BridgeSpec{
		{Name: api.BrInt, DatapathType: DatapathNetdev, DatapathID: "0000000000000001"},
		{Name: api.BrTun, DatapathType: DatapathNetdev, DatapathID: "0000000000000002"},
	} {
		if err := c.EnsureBridge(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	if _, _, err := c.EnsurePatchPair(ctx, api.BrInt, api.BrTun, "patch-tun", "patch-int"); err != nil {
		b.Fatal(err)
	}
	bt := c.NewBatch()
	for i := range n {
		bt.EnsureTunnelPort(api.BrTun, api.TunnelVXLAN, "10.0.0.1", fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))
	}
	if _, err := bt.Commit(ctx); err != nil {
		b.Fatal(err)
	}
}

func countTunnels(b *testing.B, ctx context.Context, c *Client) int {
	b.Helper()
	tps, err := c.ListTunnelPorts(ctx, api.BrTun)
	if err != nil {
		b.Fatal(err)
	}
	return len(tps)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawMonitor opens the socket, sends one monitor request for monitorColumns and
// decodes the reply into generic JSON values; it returns the number of rows.
func rawMonitor(ctx context.Context, sock string) (int, error) {
	return rawMonitorMethod(ctx, sock, "monitor")
}

// rawMonitorMethod is rawMonitor with "monitor" (rows keyed "new") or
// "monitor_cond" (rows keyed "initial", columns at their defaults left out).
func rawMonitorMethod(ctx context.Context, sock, method string) (int, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return 0, fmt.Errorf("dial %s: %w", sock, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	reqs := map[string]any{}
	for t, cols := range monitorColumns {
		reqs[t] = map[string]any{"columns": cols}
	}
	req := map[string]any{"method": method, "id": 1,
		"params": []any{"Open_vSwitch", nil, reqs}}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return 0, fmt.Errorf("monitor request: %w", err)
	}
	dec := json.NewDecoder(conn)
	for {
		var msg struct {
			ID     any                                  `json:"id"`
			Method string                               `json:"method"`
			Result map[string]map[string]map[string]any `json:"result"`
			Error  any                                  `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			return 0, fmt.Errorf("monitor reply: %w", err)
		}
		if msg.Method != "" { // e.g. an echo from the server
			continue
		}
		if msg.Error != nil {
			return 0, fmt.Errorf("monitor: %v", msg.Error)
		}
		rows := 0
		for _, t := range msg.Result {
			rows += len(t)
		}
		return rows, nil
	}
}

// BenchmarkConnectOvsdbClient prints ovsdb-client's time for a dump of the whole
// database, a looser second anchor: it includes fork+exec and every column.
func BenchmarkConnectOvsdbClient(b *testing.B) {
	o := ovsproc.ForTest(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	benchTunnelSwitch(b, ctx, o, benchTunnels)
	var wall time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "ovsdb-client", "-f", "json", "dump", o.DBEndpoint(), "Open_vSwitch")
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("ovsdb-client dump: %v", err)
		}
		wall += time.Since(t0)
		if n := strings.Count(string(out), "vxlan-"); n < benchTunnels {
			b.Fatalf("dump names %d tunnels", n)
		}
	}
	b.ReportMetric(float64((wall/time.Duration(b.N)).Microseconds())/1000, "dump-ms")
}
