package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"github.com/lanes-net/lanes/api"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/ovsproc"
)

func setup(t *testing.T) (*ovsproc.OVS, *Client, context.Context) {
	t.Helper()
	o := ovsproc.ForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	c, err := Connect(ctx, o.DBEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return o, c, ctx
}

func vsctl(t *testing.T, o *ovsproc.OVS, args ...string) string {
	t.Helper()
	out, err := o.Vsctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// txDelta runs f and returns how many transactions it sent.
func txDelta(t *testing.T, c *Client, f func() error) uint64 {
	t.Helper()
	before := c.Transactions()
	if err := f(); err != nil {
		t.Fatal(err)
	}
	return c.Transactions() - before
}

func bridges(t *testing.T, c *Client, ctx context.Context) {
	t.Helper()
	for _, s := range []BridgeSpec{
		{Name: api.BrInt, DatapathType: DatapathNetdev, DatapathID: "0000000000000001"},
		{Name: api.BrTun, DatapathType: DatapathNetdev, DatapathID: "0000000000000002"},
	} {
		if err := c.EnsureBridge(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestEnsureBridge(t *testing.T) {
	o, c, ctx := setup(t)
	spec := BridgeSpec{Name: api.BrInt, DatapathType: DatapathNetdev, DatapathID: "00000000000000AB",
		ExternalIDs: map[string]string{"lanes-host": "h1"}}
	if n := txDelta(t, c, func() error { return c.EnsureBridge(ctx, spec) }); n != 1 {
		t.Fatalf("create: %d transactions, want 1", n)
	}
	check := func() {
		t.Helper()
		for col, want := range map[string]string{
			"fail_mode":                    "secure",
			"protocols":                    `[OpenFlow10, OpenFlow13, OpenFlow15]`,
			"datapath_type":                "netdev",
			"other_config:datapath-id":     `"00000000000000ab"`,
			"other_config:disable-in-band": `"true"`,
			"external_ids:lanes-host":      "h1",
			"datapath_id":                  `"00000000000000ab"`,
		} {
			if got := vsctl(t, o, "get", "bridge", api.BrInt, col); got != want {
				t.Errorf("bridge %s: got %s, want %s", col, got, want)
			}
		}
		if got := vsctl(t, o, "list-ports", api.BrInt); got != "" {
			t.Errorf("ports: %q", got)
		}
		if got := vsctl(t, o, "get", "interface", api.BrInt, "type"); got != "internal" {
			t.Errorf("internal interface type %q", got)
		}
	}
	// datapath_id is set by vswitchd, asynchronously.
	vsctl(t, o, "--timeout=10", "wait-until", "bridge", api.BrInt, `datapath_id="00000000000000ab"`)
	check()
	if n := txDelta(t, c, func() error { return c.EnsureBridge(ctx, spec) }); n != 0 {
		t.Fatalf("repeat: %d transactions, want 0", n)
	}

	// Drift made by someone else converges in one transaction; foreign keys stay.
	vsctl(t, o, "set", "bridge", api.BrInt, "fail_mode=standalone", "protocols=OpenFlow13",
		"other_config:datapath-id=0000000000000099", "external_ids:lanes-host=zz", "external_ids:keep=me",
		"other_config:flow-restore-wait=false")
	if err := c.awaitCache(ctx, "drift", func() bool {
		v, _, _ := c.BridgeExternalID(ctx, api.BrInt, "keep")
		return v == "me"
	}); err != nil {
		t.Fatal(err)
	}
	if n := txDelta(t, c, func() error { return c.EnsureBridge(ctx, spec) }); n != 1 {
		t.Fatalf("converge: %d transactions, want 1", n)
	}
	vsctl(t, o, "--timeout=10", "wait-until", "bridge", api.BrInt, `datapath_id="00000000000000ab"`)
	check()
	if got := vsctl(t, o, "get", "bridge", api.BrInt, "external_ids:keep"); got != "me" {
		t.Errorf("foreign external_id lost: %q", got)
	}
	if got := vsctl(t, o, "get", "bridge", api.BrInt, "other_config:flow-restore-wait"); got != `"false"` {
		t.Errorf("foreign other_config lost: %q", got)
	}

	if err := c.EnsureBridge(ctx, BridgeSpec{Name: "x", DatapathType: "bogus"}); err == nil {
		t.Error("bad datapath type accepted")
	}
	if err := c.EnsureBridge(ctx, BridgeSpec{Name: "x", DatapathType: DatapathNetdev, DatapathID: "12"}); err == nil {
		t.Error("bad datapath-id accepted")
	}
	if err := c.DeleteBridge(ctx, api.BrInt); err != nil {
		t.Fatal(err)
	}
	if got := vsctl(t, o, "list-br"); got != "" {
		t.Fatalf("bridges after delete: %q", got)
	}
	if n := txDelta(t, c, func() error { return c.DeleteBridge(ctx, api.BrInt) }); n != 0 {
		t.Fatalf("delete missing bridge: %d transactions", n)
	}
}

func TestBridgeExternalID(t *testing.T) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	if _, ok, err := c.BridgeExternalID(ctx, api.BrInt, "lanes-round"); err != nil || ok {
		t.Fatalf("unset key: ok=%v err=%v", ok, err)
	}
	for _, v := range []string{"1", "2"} {
		if err := c.SetBridgeExternalID(ctx, api.BrInt, "lanes-round", v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := c.BridgeExternalID(ctx, api.BrInt, "lanes-round"); err != nil || !ok || got != v {
			t.Fatalf("get = %q %v %v, want %s", got, ok, err, v)
		}
		if got := vsctl(t, o, "get", "bridge", api.BrInt, "external_ids:lanes-round"); got != `"`+v+`"` {
			t.Fatalf("ovs-vsctl sees %s, want %s", got, v)
		}
	}
	if n := txDelta(t, c, func() error { return c.SetBridgeExternalID(ctx, api.BrInt, "lanes-round", "2") }); n != 0 {
		t.Fatalf("same value: %d transactions", n)
	}
	if _, _, err := c.BridgeExternalID(ctx, "nope", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing bridge: %v", err)
	}
}

func TestPatchPair(t *testing.T) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	pi, pt, err := c.EnsurePatchPair(ctx, api.BrInt, api.BrTun, api.PatchTun, api.PatchInt)
	if err != nil {
		t.Fatal(err)
	}
	if pi != PatchOfport || pt != PatchOfport {
		t.Fatalf("ofports %d %d", pi, pt)
	}
	if got := vsctl(t, o, "get", "interface", api.PatchTun, "options:peer"); got != api.PatchInt {
		t.Fatalf("peer %s", got)
	}
	if got := vsctl(t, o, "port-to-br", api.PatchInt); got != api.BrTun {
		t.Fatalf("patch-int on %s", got)
	}
	n := txDelta(t, c, func() error {
		a, b, err := c.EnsurePatchPair(ctx, api.BrInt, api.BrTun, api.PatchTun, api.PatchInt)
		if err == nil && (a != pi || b != pt) {
			err = fmt.Errorf("ofports changed to %d %d", a, b)
		}
		return err
	})
	if n != 0 {
		t.Fatalf("repeat: %d transactions", n)
	}
	if err := o.RestartVswitchd(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{api.PatchTun, api.PatchInt} {
		of, err := c.Ofport(ctx, name)
		if err != nil || of != PatchOfport {
			t.Fatalf("%s after restart: %d %v", name, of, err)
		}
	}
	if _, _, err := c.EnsurePatchPair(ctx, api.BrInt, "br-none", api.PatchTun, api.PatchInt); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing bridge: %v", err)
	}
}

func TestTunnelPorts(t *testing.T) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	if _, _, err := c.EnsurePatchPair(ctx, api.BrInt, api.BrTun, api.PatchTun, api.PatchInt); err != nil {
		t.Fatal(err)
	}
	tp, err := c.EnsureTunnelPort(ctx, api.BrTun, "vxlan", "172.31.0.1", "172.31.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if tp.Name != "vxlan-ac1f0002" || tp.Ofport != 0x4002 || tp.OfportRequest != 0x4002 {
		t.Fatalf("tunnel %+v", tp)
	}
	got := vsctl(t, o, "get", "interface", tp.Name, "options")
	want := `{df_default="true", key=flow, local_ip="172.31.0.1", remote_ip="172.31.0.2"}`
	if got != want {
		t.Fatalf("options %s, want %s", got, want)
	}
	if got := vsctl(t, o, "get", "interface", tp.Name, "type"); got != "vxlan" {
		t.Fatalf("type %s", got)
	}
	// Same low 14 bits: the second one moves to the next free number.
	tp2, err := c.EnsureTunnelPort(ctx, api.BrTun, "vxlan", "172.31.0.1", "10.9.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if tp2.Ofport != 0x4003 {
		t.Fatalf("colliding tunnel got ofport %d", tp2.Ofport)
	}
	if n := txDelta(t, c, func() error {
		_, err := c.EnsureTunnelPort(ctx, api.BrTun, "vxlan", "172.31.0.1", "172.31.0.2")
		return err
	}); n != 0 {
		t.Fatalf("repeat: %d transactions", n)
	}
	// local_ip change converges in place.
	if _, err := c.EnsureTunnelPort(ctx, api.BrTun, "vxlan", "172.31.0.9", "10.9.0.2"); err != nil {
		t.Fatal(err)
	}
	if got := vsctl(t, o, "get", "interface", tp2.Name, "options:local_ip"); got != `"172.31.0.9"` {
		t.Fatalf("local_ip %s", got)
	}
	if err := o.RestartVswitchd(); err != nil {
		t.Fatal(err)
	}
	if of, err := c.Ofport(ctx, tp2.Name); err != nil || of != 0x4003 {
		t.Fatalf("after restart %d %v", of, err)
	}
	list, err := c.ListTunnelPorts(ctx, api.BrTun)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "vxlan-0a090002" || list[0].RemoteIP != "10.9.0.2" || list[1].Ofport != 0x4002 {
		t.Fatalf("list %+v", list)
	}
	for range 2 {
		if err := c.DeleteTunnelPort(ctx, api.BrTun, "vxlan", "10.9.0.2"); err != nil {
			t.Fatal(err)
		}
	}
	if got := vsctl(t, o, "list-ports", api.BrTun); got != "patch-int\nvxlan-ac1f0002" {
		t.Fatalf("ports after delete: %q", got)
	}
	if _, err := c.EnsureTunnelPort(ctx, api.BrTun, "ipip", "", "10.0.0.1"); err == nil {
		t.Fatal("bad tunnel type accepted")
	}
	// geneve and gre work too.
	for _, typ := range []string{"gre", "geneve"} {
		if _, err := c.EnsureTunnelPort(ctx, api.BrTun, typ, "", "172.31.0.3"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVMPorts(t *testing.T) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	for _, n := range []string{"qvo-a", "qvo-b"} {
		if _, err := o.Netns.Exec("ip", "link", "add", n, "type", "veth", "peer", "name", "qvb"+n[3:]); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Netns.Exec("ip", "link", "set", n, "up"); err != nil {
			t.Fatal(err)
		}
	}
	spec := VMPortSpec{Name: "qvo-a", Tag: 1, IfaceID: "p1", AttachedMAC: "fa:16:3e:00:00:01", IfaceStatus: IfaceActive,
		NetUUID: "n1", NetworkType: "vxlan", SegmentationID: 100}
	of, err := c.EnsureVMPort(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if of <= 0 {
		t.Fatalf("ofport %d", of)
	}
	if got := vsctl(t, o, "get", "port", "qvo-a", "tag"); got != "1" {
		t.Fatalf("tag %s", got)
	}
	// Neutron's keys, exactly.
	if got := vsctl(t, o, "get", "interface", "qvo-a", "external_ids"); got != `{attached-mac="fa:16:3e:00:00:01", iface-id=p1, iface-status=active}` {
		t.Fatalf("external_ids %s", got)
	}
	if got := vsctl(t, o, "get", "port", "qvo-a", "other_config"); got != `{net_uuid=n1, network_type=vxlan, segmentation_id="100", tag="1"}` {
		t.Fatalf("other_config %s", got)
	}
	if n := txDelta(t, c, func() error { _, err := c.EnsureVMPort(ctx, spec); return err }); n != 0 {
		t.Fatalf("repeat: %d transactions", n)
	}
	spec.Tag = 2
	var of2 int
	if n := txDelta(t, c, func() error { var err error; of2, err = c.EnsureVMPort(ctx, spec); return err }); n != 2 {
		t.Fatalf("tag change: %d transactions, want 2 (write + ofport read-back)", n)
	}
	if of2 != of {
		t.Fatalf("ofport changed %d -> %d", of, of2)
	}
	if got := vsctl(t, o, "get", "port", "qvo-a", "tag"); got != "2" {
		t.Fatalf("tag %s", got)
	}
	if got := vsctl(t, o, "get", "port", "qvo-a", "other_config:tag"); got != `"2"` {
		t.Fatalf("other_config:tag %s", got)
	}

	// A batch: second VM port plus a tunnel, one write transaction.
	var res Result
	n := txDelta(t, c, func() error {
		var err error
		res, err = c.NewBatch().
			EnsureVMPort(VMPortSpec{Name: "qvo-b", Tag: 3, NetUUID: "n2"}).
			EnsureTunnelPort(api.BrTun, "vxlan", "", "172.31.0.5").
			Commit(ctx)
		return err
	})
	if n != 2 || !res.Changed || res.Ofports["qvo-b"] <= 0 || res.Ofports["vxlan-ac1f0005"] != 0x4005 {
		t.Fatalf("batch: %d transactions, %+v", n, res)
	}

	list, err := c.ListVMPorts(ctx, api.BrInt)
	if err != nil {
		t.Fatal(err)
	}
	want := spec
	want.Bridge = api.BrInt
	if len(list) != 2 || list[0].VMPortSpec != want || !list[0].Matches(spec) || list[0].Ofport != of ||
		list[1].NetUUID != "n2" || list[1].Tag != 3 || list[1].Ofport != res.Ofports["qvo-b"] {
		t.Fatalf("list %+v", list)
	}
	// Matches is exact: another value, or a key lanes does not write, is a mismatch.
	other := spec
	other.SegmentationID = 101
	if list[0].Matches(other) {
		t.Fatal("matches another segmentation_id")
	}
	vsctl(t, o, "set", "interface", "qvo-a", "external_ids:vm-uuid=x")
	eventually(t, "the foreign key in the cache", func() bool {
		l, err := c.ListVMPorts(ctx, api.BrInt)
		return err == nil && !l[0].Matches(spec) && l[0].VMPortSpec == want
	})
	if n := txDelta(t, c, func() error { _, err := c.EnsureVMPort(ctx, spec); return err }); n == 0 {
		t.Fatal("the foreign key was not removed")
	}
	if got := vsctl(t, o, "get", "interface", "qvo-a", "external_ids"); strings.Contains(got, "vm-uuid") {
		t.Fatalf("external_ids %s", got)
	}

	// Untag.
	if _, err := c.EnsureVMPort(ctx, VMPortSpec{Name: "qvo-b", NetUUID: "n2"}); err != nil {
		t.Fatal(err)
	}
	if got := vsctl(t, o, "get", "port", "qvo-b", "tag"); got != "[]" {
		t.Fatalf("tag after untag %s", got)
	}

	// Missing device: ofport -1 with vswitchd's error.
	if _, err := c.EnsureVMPort(ctx, VMPortSpec{Name: "qvo-missing", Tag: 1}); !errors.Is(err, ErrPortFailed) {
		t.Fatalf("missing device: %v", err)
	}
	if _, err := c.EnsureVMPort(ctx, VMPortSpec{Name: "qvo-a", Tag: 5000}); err == nil {
		t.Fatal("tag 5000 accepted")
	}

	for range 2 {
		if err := c.DeletePort(ctx, api.BrInt, "qvo-a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := txDelta(t, c, func() error { return c.DeletePort(ctx, api.BrInt, "qvo-a") }); n != 0 {
		t.Fatalf("delete missing: %d transactions", n)
	}
	if got := vsctl(t, o, "list-ports", api.BrInt); got != "qvo-b\nqvo-missing" {
		t.Fatalf("ports %q", got)
	}
	if got := vsctl(t, o, "--columns=name", "find", "interface", "name=qvo-a"); got != "" {
		t.Fatalf("interface row left: %q", got)
	}
	if _, err := c.NewBatch().DeletePort(api.BrInt, "x").DeletePort(api.BrInt, "x").Commit(ctx); err == nil {
		t.Fatal("same port twice in a batch accepted")
	}
}

func TestReconnect(t *testing.T) {
	o, c, ctx := setup(t)
	bridges(t, c, ctx)
	if err := o.StopOVSDB(); err != nil {
		t.Fatal(err)
	}
	if err := o.StartOVSDB(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBridgeExternalID(ctx, api.BrTun, "lanes-round", "7"); err != nil {
		t.Fatal(err)
	}
	if got := vsctl(t, o, "get", "bridge", api.BrTun, "external_ids:lanes-round"); got != `"7"` {
		t.Fatalf("after reconnect: %s", got)
	}
}

// TestUnderlay checks the OVSDB half of the netdev underlay (the whole recipe, with
// the tunnel IP and a ping across, is hostwire's TestUnderlay): a standalone netdev
// br-phy holding the NIC, in one transaction and none when repeated, and vswitchd's
// own error for a NIC that does not exist.
func TestUnderlay(t *testing.T) {
	o, c, ctx := setup(t)
	if _, err := o.Netns.Exec("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer"); err != nil {
		t.Fatal(err)
	}
	spec := UnderlaySpec{NIC: "eth1", DatapathID: "00000000000000f1"}
	// The change, then the server-side wait for the new ports' ofports.
	if n := txDelta(t, c, func() error { return c.EnsureUnderlay(ctx, spec) }); n != 2 {
		t.Fatalf("first ensure: %d transactions, want 2", n)
	}
	if n := txDelta(t, c, func() error { return c.EnsureUnderlay(ctx, spec) }); n != 0 {
		t.Fatalf("repeat: %d transactions", n)
	}
	for _, want := range [][2]string{
		{"fail_mode", "standalone"}, {"datapath_type", "netdev"}, {"other_config:datapath-id", `"00000000000000f1"`},
	} {
		if got := vsctl(t, o, "get", "bridge", api.BrPhy, want[0]); got != want[1] {
			t.Errorf("br-phy %s = %s, want %s", want[0], got, want[1])
		}
	}
	if got := vsctl(t, o, "list-ports", api.BrPhy); got != "eth1" {
		t.Fatalf("br-phy ports %q", got)
	}
	err := c.EnsureUnderlay(ctx, UnderlaySpec{Bridge: "br-phy2", NIC: "nosuchnic"})
	if !errors.Is(err, ErrPortFailed) || !strings.Contains(err.Error(), "nosuchnic") {
		t.Fatalf("missing NIC: %v", err)
	}
	if err := c.EnsureUnderlay(ctx, UnderlaySpec{}); err == nil {
		t.Fatal("accepted an empty NIC")
	}
}
