package hostwire

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/ovsdb"
	"github.com/vishvananda/netlink"
)

// TestUnderlay proves the netdev underlay recipe, both halves: two hosts, each its
// own namespace and OVS, linked by a veth pair whose ends are the hosts' NICs inside
// br-phy (ovsdb); each host's tunnel IP moves onto br-phy (hostwire) and they ping
// each other.
func TestUnderlay(t *testing.T) {
	skipUnlessKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	o1, o2 := ovsproc.ForTest(t), ovsproc.ForTest(t)
	if out, err := exec.Command("ip", "link", "add", "eth1", "netns", o1.Netns.Name, "type", "veth",
		"peer", "name", "eth1", "netns", o2.Netns.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	for i, h := range []struct {
		o    *ovsproc.OVS
		cidr string
	}{{o1, "172.31.0.1/24"}, {o2, "172.31.0.2/24"}} {
		th := newTestHost(t, h.o.Netns)
		db, err := ovsdb.Connect(ctx, h.o.DBEndpoint())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		// The first host starts with its IP on the NIC, as a real host would.
		if i == 0 {
			th.sh(t, "ip", "addr", "add", h.cidr, "dev", "eth1")
		}
		if err := db.EnsureUnderlay(ctx, ovsdb.UnderlaySpec{NIC: "eth1", DatapathID: "00000000000000f" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		spec := UnderlaySpec{NIC: "eth1", Bridge: api.BrPhy, CIDR: h.cidr}
		if err := th.h.EnsureUnderlay(ctx, spec); err != nil {
			t.Fatal(err)
		}
		addrs := th.sh(t, "ip", "-o", "-4", "addr", "show")
		if !strings.Contains(addrs, "br-phy    inet "+h.cidr) || strings.Contains(addrs, "eth1    inet") {
			t.Fatalf("addresses:\n%s", addrs)
		}
		if link := th.sh(t, "ip", "link", "show", "eth1"); !strings.Contains(link, "NOARP") || !strings.Contains(link, ",UP") {
			t.Fatalf("eth1: %s", link)
		}
		links := linkSummary(t, h.o.Netns)
		if err := th.h.EnsureUnderlay(ctx, spec); err != nil {
			t.Fatal(err)
		}
		if again := linkSummary(t, h.o.Netns); again != links {
			t.Errorf("repeat changed links:\n%s\n--\n%s", links, again)
		}
		if again := th.sh(t, "ip", "-o", "-4", "addr", "show"); again != addrs {
			t.Errorf("repeat changed addresses:\n%s\n--\n%s", addrs, again)
		}
	}
	if out, err := o1.Netns.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "172.31.0.2"); err != nil {
		t.Fatalf("ping across the underlay: %v\n%s", err, out)
	}
	if out, err := o2.Netns.Exec("ping", "-c", "1", "-W", "2", "172.31.0.1"); err != nil {
		t.Fatalf("ping back: %v\n%s", err, out)
	}
}

// linkSummary lists the namespace's links through netlink. Not `ip link show`: it
// resolves each veth peer's namespace by asking every namespace in /run/netns, and
// the namespaces other tests create and delete meanwhile make its output vary.
func linkSummary(t *testing.T, ns *ovsproc.Netns) string {
	t.Helper()
	nsh, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	nl, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range links {
		a := l.Attrs()
		fmt.Fprintf(&b, "%d %s %s flags=%v raw=%#x mtu=%d master=%d mac=%s oper=%s\n",
			a.Index, a.Name, l.Type(), a.Flags, a.RawFlags, a.MTU, a.MasterIndex, a.HardwareAddr, a.OperState)
	}
	return b.String()
}

func TestUnderlayErrors(t *testing.T) {
	skipUnlessKernel(t)
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	ctx := context.Background()
	for _, c := range []struct {
		spec UnderlaySpec
		want string
	}{
		{UnderlaySpec{NIC: "eth1", Bridge: "br-phy", CIDR: "172.31.0.1"}, "CIDR"},
		{UnderlaySpec{NIC: "eth1", Bridge: "br-phy", CIDR: "fe80::1/64"}, "CIDR"},
		{UnderlaySpec{NIC: "eth1", Bridge: "br-phy", CIDR: "::ffff:172.31.0.1/120"}, "CIDR"},
		{UnderlaySpec{Bridge: "br-phy", CIDR: "172.31.0.1/24"}, "NIC"},
		{UnderlaySpec{NIC: "nosuchnic", Bridge: "br-phy", CIDR: "172.31.0.1/24"}, "nosuchnic"},
	} {
		if err := th.h.EnsureUnderlay(ctx, c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("EnsureUnderlay(%+v) = %v, want an error about %s", c.spec, err, c.want)
		}
	}
	// A bridge device that never appears ends the wait with a clear error.
	th.sh(t, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer")
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := th.h.EnsureUnderlay(sctx, UnderlaySpec{NIC: "eth1", Bridge: "br-none", CIDR: "172.31.0.1/24"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "br-none") {
		t.Fatalf("missing bridge: %v", err)
	}
}
