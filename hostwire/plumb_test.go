package hostwire

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

func TestPortPlumbing(t *testing.T) {
	skipUnlessKernel(t)
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	id := portID(1)
	d := DevicesOf(id)
	spec := PortSpec{ID: id, MAC: macOf(1), MTU: 1450, TapOwner: 107, TapGroup: 108}
	if err := th.h.EnsurePort(spec); err != nil {
		t.Fatal(err)
	}
	// The bridge's operational state settles asynchronously; wait for it so the
	// comparison below sees only what Ensure does.
	eventually(t, 5*time.Second, "qbr operationally up", func() error {
		if out := th.sh(t, "ip", "link", "show", d.Qbr); !strings.Contains(out, "state UP") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	before := linkState(t, th)
	for _, want := range []string{
		d.Tap + ": <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1450 qdisc",
		d.Qbr + ": <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450",
		"stp_state 0",
		"mcast_snooping 0",
		d.Qvb + "@" + d.Qvo,
		d.Qvo + "@" + d.Qvb,
		"link/ether fe:16:3e:00:00:01",
	} {
		if !strings.Contains(before, want) {
			t.Errorf("ip -d link lacks %q:\n%s", want, before)
		}
	}
	// Through netlink, not `ip -d link`: ip prints the owner and group by name when
	// the host's user database has one (e.g. "group iperf3"), so its text depends on
	// the machine.
	if err := th.h.Do(func() error {
		l, err := netlink.LinkByName(d.Tap)
		if err != nil {
			return err
		}
		tap, ok := l.(*netlink.Tuntap)
		if !ok {
			return fmt.Errorf("%s is a %s, not a tap", d.Tap, l.Type())
		}
		if tap.Mode != netlink.TUNTAP_MODE_TAP || tap.Flags&netlink.TUNTAP_NO_PI == 0 || tap.Flags&netlink.TUNTAP_VNET_HDR == 0 ||
			tap.NonPersist || tap.Owner != 107 || tap.Group != 108 {
			return fmt.Errorf("%s: mode %d flags %#x persist %v owner %d group %d, want a persistent tap, no pi, vnet_hdr, owner 107, group 108",
				d.Tap, tap.Mode, tap.Flags, !tap.NonPersist, tap.Owner, tap.Group)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if !strings.Contains(before, "forward_delay 0 ") {
		t.Errorf("forward delay not 0:\n%s", before)
	}
	for _, dev := range []string{d.Tap, d.Qvb} {
		if out := th.sh(t, "ip", "link", "show", dev); !strings.Contains(out, "master "+d.Qbr) {
			t.Errorf("%s not enslaved to %s: %s", dev, d.Qbr, out)
		}
	}
	sysctl := func(path string) string { return strings.TrimSpace(th.sh(t, "cat", "/proc/sys/net/"+path)) }
	for _, dev := range []string{d.Tap, d.Qbr, d.Qvb, d.Qvo} {
		if v := sysctl("ipv6/conf/" + dev + "/disable_ipv6"); v != "1" {
			t.Errorf("IPv6 on %s: disable_ipv6=%s", dev, v)
		}
	}
	for _, dev := range []string{d.Qbr, d.Qvo} {
		if ign, ann := sysctl("ipv4/conf/"+dev+"/arp_ignore"), sysctl("ipv4/conf/"+dev+"/arp_announce"); ign != "1" || ann != "2" {
			t.Errorf("%s answers ARP for the host: arp_ignore=%s arp_announce=%s", dev, ign, ann)
		}
	}
	if !strings.Contains(before, "ageing_time 0 ") {
		t.Errorf("qbr keeps MAC entries (ageing_time not 0):\n%s", before)
	}

	// Ensure twice: nothing changes.
	if err := th.h.EnsurePort(spec); err != nil {
		t.Fatal(err)
	}
	if after := linkState(t, th); after != before {
		t.Errorf("second Ensure changed links:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Sysctls reset by hand on a complete port are set again by a bulk ensure.
	th.sh(t, "sysctl", "-qw", "net.ipv4.conf."+d.Qvo+".arp_ignore=0")
	if failed, err := th.h.EnsurePorts([]PortSpec{spec}); err != nil || len(failed) > 0 {
		t.Fatal(err, failed)
	}
	if v := sysctl("ipv4/conf/" + d.Qvo + "/arp_ignore"); v != "1" {
		t.Errorf("arp_ignore of %s not repaired: %s", d.Qvo, v)
	}

	// A half-made port (qvb removed by hand, qbr down) is completed.
	th.sh(t, "ip", "link", "del", d.Qvb)
	th.sh(t, "ip", "link", "set", d.Qbr, "down")
	ps, err := th.h.ListPorts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Complete() || ps[0].DeviceID != DeviceID(id) || !ps[0].Tap || ps[0].Qvo || ps[0].Qvb {
		t.Fatalf("ListPorts of a half port = %+v", ps)
	}
	if err := th.h.EnsurePort(spec); err != nil {
		t.Fatal(err)
	}
	if ps, _ = th.h.ListPorts(); len(ps) != 1 || !ps[0].Complete() {
		t.Fatalf("port not completed: %+v", ps)
	}
	if out := th.sh(t, "ip", "link", "show", d.Qvb); !strings.Contains(out, "master "+d.Qbr) || !strings.Contains(out, ",UP") {
		t.Errorf("recreated qvb: %s", out)
	}

	// MTU change is applied in place.
	spec.MTU = 1400
	if err := th.h.EnsurePort(spec); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{d.Tap, d.Qbr, d.Qvb, d.Qvo} {
		if out := th.sh(t, "ip", "link", "show", dev); !strings.Contains(out, "mtu 1400 ") {
			t.Errorf("%s MTU not updated: %s", dev, out)
		}
	}

	// Firewall for the port, then delete everything: nothing of the port remains.
	st := FirewallState{
		Ports: []FirewallPort{{ID: id, NetworkID: testNet, MAC: spec.MAC, FixedIPs: []string{"10.0.0.5"}, PortSecurity: true, SecurityGroups: []string{"g"}}},
		Groups: map[string]*api.SecurityGroup{"g": {ID: "g", Rules: []api.Rule{
			{Direction: api.Ingress, Ethertype: api.IPv4, RemoteGroupID: "g"}}}},
		Members: map[string]map[string][]string{"g": {testNet: {"10.0.0.5"}}},
	}
	th.apply(t, st)
	if out := th.sh(t, "ipset", "list", "-n"); !strings.Contains(out, SetName(V4, "g", testNet)) {
		t.Fatalf("set missing: %s", out)
	}
	for range 2 {
		if err := th.h.DeletePort(id); err != nil {
			t.Fatal(err)
		}
		th.apply(t, FirewallState{})
	}
	assertNoTrace(t, th, id)

	// Delete after the tap was removed by hand.
	if err := th.h.EnsurePort(spec); err != nil {
		t.Fatal(err)
	}
	th.sh(t, "ip", "link", "del", d.Tap)
	if err := th.h.DeletePort(id); err != nil {
		t.Fatal(err)
	}
	assertNoTrace(t, th, id)
	if ps, _ = th.h.ListPorts(); len(ps) != 0 {
		t.Fatalf("ListPorts after delete = %+v", ps)
	}
}

func assertNoTrace(t *testing.T, th *testHost, id string) {
	t.Helper()
	dev := DeviceID(id)
	for _, cmd := range [][]string{
		{"ip", "link"}, {"brctl", "show"}, {"iptables-save"}, {"ip6tables-save"}, {"ipset", "list"},
	} {
		out := th.sh(t, cmd[0], cmd[1:]...)
		if strings.Contains(out, dev) || strings.Contains(out, "lanes4-") {
			t.Errorf("%v still shows port %s:\n%s", cmd, id, out)
		}
	}
}

func TestListPortsIgnoresOtherDevices(t *testing.T) {
	skipUnlessKernel(t)
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	// A bridge named like a qbr but a dummy named like a tap: only the bridge counts.
	th.sh(t, "ip", "link", "add", "qbrdeadbeef-00", "type", "bridge")
	th.sh(t, "ip", "link", "add", "tapdeadbeef-00", "type", "veth", "peer", "name", "xpeer")
	th.sh(t, "ip", "link", "add", "qbrshort", "type", "bridge")
	ps, err := th.h.ListPorts()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || !ps[0].Qbr || ps[0].Tap || ps[0].DeviceID != "deadbeef-00" {
		t.Fatalf("ListPorts = %+v", ps)
	}
	if err := th.h.DeletePort("deadbeef-00xx"); err != nil {
		t.Fatal(err)
	}
}

var timerRe = regexp.MustCompile(`\S+_timer\s+[0-9.]+`)

// linkState is `ip -d link` without the running timers.
func linkState(t *testing.T, th *testHost) string {
	return timerRe.ReplaceAllString(th.sh(t, "ip", "-d", "link", "show"), "")
}
