package ovsdb

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/ovn-kubernetes/libovsdb/client"
)

// libovsdbReference monitors the four tables with libovsdb's own cache, as Connect
// did before it had a monitor of its own: the reference for the row conversion.
func libovsdbReference(t *testing.T, ctx context.Context, endpoint string) client.Client {
	t.Helper()
	dbm, err := clientModel()
	if err != nil {
		t.Fatal(err)
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxElapsedTime = 0
	c, err := client.NewOVSDBClient(dbm, client.WithEndpoint(endpoint), client.WithReconnect(10*time.Second, bo))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ovsRow, br, pt, ifc := &openvSwitch{}, &bridge{}, &port{}, &iface{}
	if _, err := c.Monitor(ctx, c.NewMonitor(
		client.WithTable(ovsRow, &ovsRow.Bridges),
		client.WithTable(br, &br.Name, &br.DatapathType, &br.DatapathID, &br.FailMode, &br.Protocols,
			&br.Ports, &br.OtherConfig, &br.ExternalIDs),
		client.WithTable(pt, &pt.Name, &pt.Interfaces, &pt.Tag, &pt.OtherConfig, &pt.ExternalIDs),
		client.WithTable(ifc, &ifc.Name, &ifc.Type, &ifc.Options, &ifc.Ofport, &ifc.OfportRequest,
			&ifc.Error, &ifc.ExternalIDs),
	)); err != nil {
		t.Fatal(err)
	}
	return c
}

// referenceRows lists libovsdb's cache into a rowCache.
func referenceRows(ctx context.Context, c client.Client) (rowCache, error) {
	var roots []openvSwitch
	var brs []bridge
	var ps []port
	var ifs []iface
	for _, l := range []any{&roots, &brs, &ps, &ifs} {
		if err := c.List(ctx, l); err != nil {
			return rowCache{}, err
		}
	}
	rc := newRowCache()
	for i := range roots {
		rc.roots[roots[i].UUID] = &roots[i]
	}
	for i := range brs {
		rc.bridges[brs[i].UUID] = &brs[i]
	}
	for i := range ps {
		rc.ports[ps[i].UUID] = &ps[i]
	}
	for i := range ifs {
		rc.ifaces[ifs[i].UUID] = &ifs[i]
	}
	return rc, nil
}

// freshRows loads the tables with a new monitor connection: the full computation
// the followed cache must equal.
func freshRows(ctx context.Context, endpoint string) (rowCache, error) {
	m, err := startMonitor(endpoint, slog.Default(), func() {})
	if err != nil {
		return rowCache{}, err
	}
	defer m.close()
	if err := m.wait(ctx); err != nil {
		return rowCache{}, err
	}
	return m.copyRows(), nil
}

func (m *monitor) copyRows() rowCache {
	m.mu.Lock()
	defer m.mu.Unlock()
	rc := newRowCache()
	for k, v := range m.rows.roots {
		rc.roots[k] = v
	}
	for k, v := range m.rows.bridges {
		rc.bridges[k] = v
	}
	for k, v := range m.rows.ports {
		rc.ports[k] = v
	}
	for k, v := range m.rows.ifaces {
		rc.ifaces[k] = v
	}
	return rc
}

// diffRows describes how two caches differ, "" when they are equal.
func diffRows(a, b rowCache) string {
	var out []string
	out = append(out, diffTable("Open_vSwitch", a.roots, b.roots)...)
	out = append(out, diffTable("Bridge", a.bridges, b.bridges)...)
	out = append(out, diffTable("Port", a.ports, b.ports)...)
	out = append(out, diffTable("Interface", a.ifaces, b.ifaces)...)
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func diffTable[T any](table string, a, b map[string]*T) []string {
	var out []string
	for id, ra := range a {
		rb, ok := b[id]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %s: only in the first: %+v", table, id, *ra))
		case !reflect.DeepEqual(sortedSets(ra), sortedSets(rb)):
			out = append(out, fmt.Sprintf("%s %s:\n\t%#v\n\t%#v", table, id, *ra, *rb))
		}
	}
	for id, rb := range b {
		if _, ok := a[id]; !ok {
			out = append(out, fmt.Sprintf("%s %s: only in the second: %+v", table, id, *rb))
		}
	}
	return out
}

// sortedSets returns a copy of the row with its sets sorted: sets have no order, and
// the server and libovsdb list them differently.
func sortedSets[T any](r *T) *T {
	cp := *r
	v := reflect.ValueOf(&cp).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String && f.Len() > 0 {
			ss := append([]string(nil), f.Interface().([]string)...)
			sort.Strings(ss)
			f.Set(reflect.ValueOf(ss))
		}
	}
	return &cp
}

// TestMonitorEqualsFullLoad drives OVSDB through random changes by other clients
// (ovs-vsctl, vswitchd's own writes of ofport and error), by the client itself and
// through a restart of ovsdb-server. After every step the cache that followed the
// updates must equal a fresh load, and the rows libovsdb's own cache makes of them,
// down to nil versus empty.
func TestMonitorEqualsFullLoad(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { monitorEqualsFullLoad(t, seed, 100) })
	}
}

func monitorEqualsFullLoad(t *testing.T, seed uint64, steps int) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	ref := libovsdbReference(t, ctx, o.DBEndpoint())
	rng := rand.New(rand.NewPCG(seed, 0))

	ports := map[string]string{} // ports made by this test -> their bridge
	extra := 0
	pick := func() (string, bool) {
		if len(ports) == 0 {
			return "", false
		}
		names := make([]string, 0, len(ports))
		for n := range ports {
			names = append(names, n)
		}
		sort.Strings(names)
		return names[rng.IntN(len(names))], true
	}
	restarts := 0
	kinds := map[string]int{}
	defer func() { t.Logf("steps by kind: %v", kinds) }()
	for step := range steps {
		var what string
		switch k := rng.IntN(12); {
		case k < 3:
			ip := fmt.Sprintf("10.9.%d.%d", rng.IntN(4), rng.IntN(250)+1)
			name, _ := api.TunnelPortName(api.TunnelVXLAN, ip)
			what = "vsctl add tunnel " + name
			vsctl(t, o, "--may-exist", "add-port", api.BrTun, name, "--", "set", "interface", name, "type=vxlan",
				"options:remote_ip="+ip, "options:key=flow", fmt.Sprintf("ofport_request=%d", 100+rng.IntN(5000)),
				"external_ids:seed="+fmt.Sprint(seed))
			ports[name] = api.BrTun
		case k == 3:
			ip := fmt.Sprintf("10.8.%d.%d", rng.IntN(4), rng.IntN(250)+1)
			what = "client tunnel to " + ip
			if _, err := c.EnsureTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, "10.0.0.1", ip); err != nil {
				t.Fatal(err)
			}
			name, _ := api.TunnelPortName(api.TunnelVXLAN, ip)
			ports[name] = api.BrTun
		case k == 4:
			name, ok := pick()
			if !ok {
				continue
			}
			what = "vsctl del-port " + name
			vsctl(t, o, "--if-exists", "del-port", name)
			delete(ports, name)
		case k == 5:
			name, ok := pick()
			if !ok {
				continue
			}
			if rng.IntN(2) == 0 {
				what = "tag " + name
				vsctl(t, o, "set", "port", name, fmt.Sprintf("tag=%d", rng.IntN(4094)+1))
			} else {
				what = "clear tag " + name
				vsctl(t, o, "clear", "port", name, "tag")
			}
		case k == 6:
			name, ok := pick()
			if !ok {
				continue
			}
			table := []string{"port", "interface"}[rng.IntN(2)]
			col := []string{"external_ids", "other_config"}[rng.IntN(2)]
			if table == "interface" && col == "other_config" {
				col = "options"
			}
			key := fmt.Sprintf("k%d", rng.IntN(3))
			if rng.IntN(3) == 0 {
				what = "remove " + table + " " + col + ":" + key
				vsctl(t, o, "remove", table, name, col, key)
			} else {
				what = "set " + table + " " + col + ":" + key
				vsctl(t, o, "set", table, name, col+":"+key+"="+fmt.Sprint(rng.IntN(100)))
			}
		case k == 7:
			br := []string{api.BrInt, api.BrTun}[rng.IntN(2)]
			what = "bridge settings " + br
			vsctl(t, o, "set", "bridge", br, "protocols="+[]string{"OpenFlow13", "OpenFlow10,OpenFlow13,OpenFlow15", "[]"}[rng.IntN(3)],
				"fail_mode="+[]string{"secure", "standalone"}[rng.IntN(2)], "external_ids:x="+fmt.Sprint(rng.IntN(9)))
		case k == 8:
			extra++
			name := fmt.Sprintf("brx%d", extra)
			what = "add bridge " + name
			vsctl(t, o, "add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")
		case k == 9:
			// vswitchd fills Interface.error for a device that does not exist.
			name := fmt.Sprintf("nodev%d", rng.IntN(1000))
			what = "failing system port " + name
			vsctl(t, o, "--may-exist", "add-port", api.BrInt, name)
			ports[name] = api.BrInt
		case k == 10:
			name, ok := pick()
			if !ok {
				continue
			}
			what = "client delete " + name
			if _, err := c.NewBatch().DeletePort(ports[name], name).DeletePort(api.BrInt, "x"+name).Commit(ctx); err != nil {
				t.Fatal(err)
			}
			delete(ports, name)
		case k == 11 && step%4 == 0:
			what = "restart ovsdb-server"
			if err := o.StopOVSDB(); err != nil {
				t.Fatal(err)
			}
			if err := o.StartOVSDB(); err != nil {
				t.Fatal(err)
			}
			// Changed before the client is back: the reload must bring it.
			vsctl(t, o, "set", "bridge", api.BrTun, fmt.Sprintf("external_ids:restarted=%d", step))
			eventually(t, "reconnected", c.Connected)
			restarts++
		default:
			continue
		}
		kinds[strings.Fields(what)[0]]++
		checkMonitor(t, ctx, o, c, ref, fmt.Sprintf("step %d (%s)", step, what))
		// A reload hides any update the cache failed to apply: there must be one per
		// connection, no more.
		if n := c.mon.loads.Load(); n != uint64(1+restarts) {
			t.Fatalf("step %d (%s): %d loads after %d server restarts: the monitor reconnected by itself", step, what, n, restarts)
		}
	}
}

// checkMonitor waits until the client's cache equals a fresh load and libovsdb's
// cache, and fails with the difference if it does not within 10 s.
func checkMonitor(t *testing.T, ctx context.Context, o *ovsproc.OVS, c *Client, ref client.Client, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		full, err := freshRows(ctx, o.DBEndpoint())
		if err != nil {
			t.Fatalf("%s: fresh load: %v", what, err)
		}
		got := c.mon.copyRows()
		d := diffRows(got, full)
		if d == "" {
			r, err := referenceRows(ctx, ref)
			if err == nil {
				d = diffRows(got, r)
				if d != "" {
					d = "against libovsdb's cache:\n" + d
				}
			} else {
				d = err.Error()
			}
		} else {
			d = "against a fresh load:\n" + d
		}
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: followed cache differs %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
