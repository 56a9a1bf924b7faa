package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// TestDemo runs `make demo`'s script twice (the second run replaces the first lab),
// checks that its output holds what an operator looks at, then uses the running lab
// for the host-local tools (status, flows, trace) and the metrics endpoint, and
// finally runs `make demo-down`'s script and checks nothing is left.
func TestDemo(t *testing.T) {
	ovsproc.SkipUnlessCapable(t)
	dir, err := os.MkdirTemp("", "lt-demo-")
	if err != nil {
		t.Fatal(err)
	}
	name := "ltd" + ovsproc.RandomSuffix(5)
	env := append(os.Environ(), "BIN="+binDir, "LANES_DEMO_DIR="+dir, "LANES_DEMO_NAME="+name)
	demo := func(arg string) string {
		cmd := exec.Command("../scripts/demo.sh", arg)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("demo.sh %s: %v\n%s", arg, err, out)
		}
		return string(out)
	}
	down := func() {
		demo("down")
		for _, ns := range []string{"h1", "h2", "h3", "ul", "h1-a1", "h3-a2", "h1-b1", "h2-b2"} {
			if (&ovsproc.Netns{Name: name + "-" + ns}).Exists() {
				t.Errorf("namespace %s-%s left behind", name, ns)
			}
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("lab dir %s left behind", dir)
		}
	}
	t.Cleanup(func() {
		if l, err := lab.Load(dir); err == nil {
			_ = l.Down()
		}
	})

	start := time.Now()
	demo("up")
	out := demo("up") // twice: the second replaces the first
	t.Logf("demo up took %s (twice)", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{
		"a1 -> 10.0.0.13 (a2, net-a, across hosts h1 -> h3): reachable",
		"b1 -> 10.0.0.12 (b2, net-b, across hosts h1 -> h2): reachable",
		"a2 -> 10.0.0.11 (a1 (not b1), net-a): reachable",
		"a1 -> 10.0.0.12 (b2 is in net-b: isolated): unreachable",
		"(a2, net-a, across hosts h1 -> h3): reachable", "(b2 is in net-b, same prefix: isolated): unreachable",
		"a2: fd00:a::", "(SLAAC)",
		"Host h1: what an operator checks", "Host h2: what an operator checks", "Host h3: what an operator checks",
		"lanes-vm start", // the VM processes
		"qbr",            // brctl show
		"PHYSDEV match --physdev-out tap",
		"Bridge br-int", "tag: 1", "Port patch-tun", "Bridge br-tun", "Port vxlan-ac1f0003", "type: vxlan",
		"table=22, priority=1,dl_vlan=1", "table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.13",
		"=> leaves through vxlan-ac1f0003 to host h3, VNI 100 (network net-a)",
		"ip netns exec " + name + "-h1-a1 bash",
		"a2 -> outside 203.0.113.1 (SNAT to the router's external IP): reachable",
		"(a1's floating IP): reachable",
		"-A lanes-l3-agent-snat -o qg-", "-A lanes-l3-agent-PREROUTING -d 203.0.113.11/32 -j DNAT --to-destination 10.0.0.11",
		"qr-", // ip -br addr in the router's namespace
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}

	l, err := lab.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("status", func(t *testing.T) { testStatus(t, l) })
	t.Run("flows", func(t *testing.T) { testFlows(t, l) })
	t.Run("trace", func(t *testing.T) { testTrace(t, l) })
	t.Run("metrics", func(t *testing.T) { testMetrics(t, l) })
	down()
}

func localCtl(t *testing.T, l *lab.Lab, host string, v any, args ...string) {
	t.Helper()
	out := ctl(t, l, l.Host(host), append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("lanesctl %v: %v\n%s", args, err, out)
	}
}

func testStatus(t *testing.T, l *lab.Lab) {
	var st api.StatusReport
	localCtl(t, l, "h1", &st, "status")
	if st.Host != "h1" || st.TunnelIP != "172.31.0.1" || len(st.Bridges) != 2 {
		t.Fatalf("status: %+v", st)
	}
	for _, b := range st.Bridges {
		if !b.Connected || b.Flows == 0 {
			t.Errorf("bridge %s: connected %v, %d flows", b.Name, b.Connected, b.Flows)
		}
	}
	if len(st.Ports) != 2 {
		t.Errorf("h1 ports: %+v", st.Ports)
	}
	for _, p := range st.Ports {
		if p.State != "ACTIVE" || p.Ofport <= 0 || p.VLAN == 0 {
			t.Errorf("port %+v", p)
		}
	}
	peers := map[string]string{}
	for _, tn := range st.Tunnels {
		peers[tn.Port] = tn.PeerHost
	}
	if peers["vxlan-ac1f0002"] != "h2" || peers["vxlan-ac1f0003"] != "h3" || len(peers) != 2 {
		t.Errorf("tunnels: %+v", st.Tunnels)
	}
	flood := map[string]string{}
	for _, n := range st.Networks {
		flood[n.Name] = strings.Join(n.FloodTo, ",")
	}
	if flood["net-a"] != "h3" || flood["net-b"] != "h2" {
		t.Errorf("flood lists: %v", flood)
	}
	if len(st.LastReconcile.Errors) != 0 {
		t.Errorf("reconcile errors: %v", st.LastReconcile.Errors)
	}
}

func testFlows(t *testing.T, l *lab.Lab) {
	var lines []api.FlowLine
	localCtl(t, l, "h1", &lines, "flows", "br-tun", "--table", "FLOOD_TO_TUN")
	owners := map[string]bool{}
	for _, fl := range lines {
		if fl.Table != 22 || fl.TableName != "FLOOD_TO_TUN" {
			t.Errorf("flow outside table 22: %+v", fl)
		}
		owners[fl.Owner] = true
	}
	if !owners["network net-a"] || !owners["network net-b"] || !owners["bridge setup"] {
		t.Errorf("table 22 owners: %v", owners)
	}
	localCtl(t, l, "h1", &lines, "flows", "br-tun", "--port", "a2")
	// table 20 unicast; table 21 ARP responder, ND responder for its link-local and
	// its SLAAC address.
	if len(lines) != 4 {
		t.Errorf("flows of remote port a2: %+v", lines)
	}
	for _, fl := range lines {
		if fl.Owner != "remote port a2 on h3" {
			t.Errorf("owner %q", fl.Owner)
		}
	}
	localCtl(t, l, "h1", &lines, "flows", "br-int", "--port", "a1")
	if len(lines) == 0 {
		t.Error("no br-int flows owned by local port a1")
	}
	dhcp := 0
	for _, fl := range lines {
		switch {
		case fl.Owner != "local port a1":
			t.Errorf("a1 flow %+v", fl)
		case fl.TableName == "TRANSIENT" || fl.TableName == "DHCP_IPV4" || fl.TableName == "DHCP_IPV6": // its DHCP, DHCPv6 and RS to lanesd
			dhcp++
		case fl.TableName != "LOCAL_SWITCHING" && fl.TableName != "ARP_SPOOF" && fl.TableName != "MAC_SPOOF":
			t.Errorf("a1 flow %+v", fl)
		}
	}
	if dhcp != 5 {
		t.Errorf("a1 has %d DHCP flows, want 5 (table 60: DHCP, DHCPv6, RS; table 77; table 78)", dhcp)
	}
	if out, err := l.Ctl(l.Host("h1"), "flows", "br-tun", "--table", "99"); err == nil || !strings.Contains(out, "table") {
		t.Errorf("flows --table 99: want an error naming the table, got %q %v", out, err)
	}
}

func testTrace(t *testing.T, l *lab.Lab) {
	port := func(name string) vmPort {
		var ps []struct {
			api.Port
			Tap string `json:"tap"`
		}
		localCtl(t, l, "h1", &ps, "port", "show", name)
		return vmPort{ID: ps[0].ID, Name: ps[0].Name, MAC: ps[0].MAC, FixedIPs: ps[0].FixedIPs}
	}
	a2, b2 := port("a2"), port("b2")
	a2v6 := fixedIP(a2, false)
	a2mac, _ := net.ParseMAC(a2.MAC)
	for _, c := range []struct {
		name, dst string
		extra     []string
		result    string
		tunnel    string
		dest      string
	}{
		{"remote", "10.0.0.13", []string{"--proto", "tcp", "--dst-port", "22"}, "leaves through vxlan-ac1f0003 to host h3, VNI 100 (network net-a)", "vxlan-ac1f0003", "port a2 on host h3"},
		{"remote closed port", "10.0.0.13", []string{"--proto", "tcp", "--dst-port", "80"}, "dropped by the firewall, ingress of a2", "", "port a2 on host h3"},
		{"unknown", "10.0.0.99", nil, "unreachable: 10.0.0.99 is not on network net-a", "", "unknown"},
		{"cross-tenant", "10.0.0.12", nil, "unreachable: 10.0.0.12 is not on network net-a", "", "unknown"},
		// The same over IPv6: the demo's group admits ICMPv6, not TCP/22 over IPv6.
		{"remote IPv6", a2v6, nil, "leaves through vxlan-ac1f0003 to host h3, VNI 100 (network net-a)", "vxlan-ac1f0003", "port a2 on host h3"},
		{"remote IPv6 link-local", api.LinkLocal(a2mac).String(), nil, "leaves through vxlan-ac1f0003", "vxlan-ac1f0003", "port a2 on host h3"},
		{"remote IPv6 closed port", a2v6, []string{"--proto", "tcp", "--dst-port", "22"}, "dropped by the firewall, ingress of a2", "", "port a2 on host h3"},
		{"cross-tenant IPv6", fixedIP(b2, false), nil, "unreachable: " + fixedIP(b2, false) + " is not on network net-a", "", "unknown"},
	} {
		var r api.TraceReport
		localCtl(t, l, "h1", &r, append([]string{"trace", "--from-port", "a1", "--dst-ip", c.dst}, c.extra...)...)
		if r.Network != "net-a" || r.VNI != 100 || !strings.HasPrefix(r.Result, c.result) || r.Destination != c.dest {
			t.Errorf("%s: network %s VNI %d destination %q result %q", c.name, r.Network, r.VNI, r.Destination, r.Result)
		}
		if c.tunnel != "" && (r.Tunnel != c.tunnel || r.PeerHost != "h3") {
			t.Errorf("%s: tunnel %q peer %q", c.name, r.Tunnel, r.PeerHost)
		}
		if c.name == "cross-tenant" && !strings.Contains(strings.Join(r.Steps, "\n"), "b2 in network net-b (VNI 200)") {
			t.Errorf("cross-tenant trace does not name b2 in net-b: %v", r.Steps)
		}
	}
	// Local: b1 to... a1 and b1 are alone on h1 in their networks, so trace on h2's
	// side is remote too; a local destination needs two ports of one network on one
	// host: add one.
	var p vmPort
	localCtl(t, l, "h1", &p, "port", "create", "a9", "--network", "net-a", "--host", "h1", "--ip", "10.0.0.19", "--sg", "demo", "--wait")
	var r api.TraceReport
	localCtl(t, l, "h1", &r, "trace", "--from-port", "a1", "--dst-ip", "10.0.0.19")
	if r.Destination != "local port a9" || !strings.HasPrefix(r.Result, "delivered on this host by br-int (NORMAL) to local port a9") {
		t.Errorf("local: destination %q result %q", r.Destination, r.Result)
	}
}

// testMetrics reads h1's /metrics from inside its namespace.
func testMetrics(t *testing.T, l *lab.Lab) {
	h := l.Host("h1")
	var body string
	eventually(t, 10*time.Second, "metrics", func() error {
		var err error
		body, err = getIn(h.Netns, "http://"+h.MetricsAddr()+"/metrics")
		return err
	})
	var st api.StatusReport
	localCtl(t, l, "h1", &st, "status")
	active := 0
	for _, p := range st.Ports {
		if p.State == "ACTIVE" {
			active++
		}
	}
	want := map[string]func(float64) bool{
		`lanes_ports{status="ACTIVE"}`:                                      func(v float64) bool { return int(v) == active && active > 0 },
		`lanes_ports{status="ERROR"}`:                                       func(v float64) bool { return v == 0 },
		`lanes_flows{bridge="br-tun",table="22",table_name="FLOOD_TO_TUN"}`: func(v float64) bool { return v == 3 },
		`lanes_openflow_connected{bridge="br-int"}`:                         func(v float64) bool { return v == 1 },
		`lanes_openflow_bundles_total{bridge="br-tun",result="ok"}`:         func(v float64) bool { return v >= 1 },
		`lanes_openflow_bundle_seconds_count{bridge="br-tun"}`:              func(v float64) bool { return v >= 1 },
		`lanes_reconcile_seconds_count`:                                     func(v float64) bool { return v >= 1 },
		`lanes_tunnel_ports`:                                                func(v float64) bool { return v == 2 },
		`lanes_watch_lag_seconds_count{outcome="ok"}`:                       func(v float64) bool { return v >= 1 },
		`lanes_firewall_apply_seconds_count{table="IPv4/filter"}`:           func(v float64) bool { return v >= 1 },
		`lanes_store_revision`:                                              func(v float64) bool { return v > 0 },
		`go_goroutines`:                                                     func(v float64) bool { return v > 0 },
		`process_resident_memory_bytes`:                                     func(v float64) bool { return v > 0 },
	}
	if !strings.Contains(body, `lanes_build_info{commit="`) {
		t.Errorf("/metrics has no lanes_build_info")
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			v, _ := strconv.ParseFloat(f[1], 64)
			got[f[0]] = v
		}
	}
	for k, ok := range want {
		v, present := got[k]
		if !present || !ok(v) {
			t.Errorf("metric %s = %v (present %v)", k, v, present)
		}
	}
}

// getIn does an HTTP GET from inside a network namespace: the socket is created on a
// thread switched into it, and keeps its namespace afterwards.
func getIn(ns, url string) (string, error) {
	var conn net.Conn
	addr := strings.TrimPrefix(url, "http://")
	addr = addr[:strings.Index(addr, "/")]
	err := (&ovsproc.Netns{Name: ns}).Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	req, _ := http.NewRequest("GET", url, nil)
	if err := req.Write(conn); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(b.String()))
	}
	return b.String(), nil
}
