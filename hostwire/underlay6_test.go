package hostwire

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/ovsdb"
)

// TestUnderlayIPv6 is TestUnderlay with IPv6 tunnel IPs in namespaces whose IPv6 is
// off by default (as in the lab): the address lands on br-phy without DAD (usable at
// once, not tentative), IPv6 is turned on there and off on the NIC, and a VXLAN
// tunnel between the hosts carries IPv4 frames, vswitchd resolving the remote's MAC
// by neighbour discovery through br-phy (tnl/neigh) with nothing configured by hand.
// A frame that needs more than the 70 bytes of VXLAN over IPv6 does not pass.
func TestUnderlayIPv6(t *testing.T) {
	skipUnlessKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	o1, o2 := ovsproc.ForTest(t), ovsproc.ForTest(t)
	if out, err := exec.Command("ip", "link", "add", "eth1", "netns", o1.Netns.Name, "type", "veth",
		"peer", "name", "eth1", "netns", o2.Netns.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	tips := []string{"fd00:31::1", "fd00:31::2"}
	hosts := []*testHost{}
	for i, o := range []*ovsproc.OVS{o1, o2} {
		th := newTestHost(t, o.Netns)
		hosts = append(hosts, th)
		cidr := tips[i] + "/64"
		if i == 0 {
			// The first host starts with its tunnel IP on the NIC, as a real host would.
			th.sh(t, "sysctl", "-qw", "net.ipv6.conf.eth1.disable_ipv6=0")
			th.sh(t, "ip", "addr", "add", cidr, "dev", "eth1", "nodad")
		}
		th.sh(t, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
		db, err := ovsdb.Connect(ctx, o.DBEndpoint())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		if err := db.EnsureUnderlay(ctx, ovsdb.UnderlaySpec{NIC: "eth1", DatapathID: "00000000000000f" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
		spec := UnderlaySpec{NIC: "eth1", Bridge: api.BrPhy, CIDR: cidr}
		if err := th.h.EnsureUnderlay(ctx, spec); err != nil {
			t.Fatal(err)
		}
		addrs := th.sh(t, "ip", "-o", "-6", "addr", "show")
		if !strings.Contains(addrs, "br-phy    inet6 "+cidr+" scope global nodad") || strings.Contains(addrs, "eth1 ") {
			t.Fatalf("addresses (want %s on br-phy, usable, and no IPv6 on eth1):\n%s", cidr, addrs)
		}
		for _, l := range strings.Split(addrs, "\n") {
			if strings.Contains(l, cidr) && (strings.Contains(l, "tentative") || strings.Contains(l, "dadfailed")) {
				t.Fatalf("the tunnel IP is not usable yet: %s", l)
			}
		}
		if v := strings.TrimSpace(th.sh(t, "sysctl", "-n", "net.ipv6.conf.eth1.disable_ipv6")); v != "1" {
			t.Errorf("eth1 disable_ipv6 = %s, want 1", v)
		}
		if link := th.sh(t, "ip", "link", "show", "eth1"); !strings.Contains(link, "NOARP") || !strings.Contains(link, ",UP") {
			t.Fatalf("eth1: %s", link)
		}
		links := linkSummary(t, o.Netns)
		if err := th.h.EnsureUnderlay(ctx, spec); err != nil {
			t.Fatal(err)
		}
		if again := linkSummary(t, o.Netns); again != links {
			t.Errorf("repeat changed links:\n%s\n--\n%s", links, again)
		}
		if again := th.sh(t, "ip", "-o", "-6", "addr", "show"); again != addrs {
			t.Errorf("repeat changed addresses:\n%s\n--\n%s", addrs, again)
		}

		// The tunnel: br-tun with a VXLAN port to the other host and an internal port
		// standing for a VM.
		if err := db.EnsureBridge(ctx, ovsdb.BridgeSpec{Name: api.BrTun, DatapathType: ovsdb.DatapathNetdev, DatapathID: "00000000000000e" + strconv.Itoa(i), FailMode: ovsdb.FailStandalone}); err != nil {
			t.Fatal(err)
		}
		tp, err := db.EnsureTunnelPort(ctx, api.BrTun, api.TunnelVXLAN, tips[i], tips[1-i])
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := api.TunnelPortName(api.TunnelVXLAN, tips[1-i]); tp.Name != want || tp.Ofport <= 0 {
			t.Fatalf("tunnel %+v, want %s with an ofport", tp, want)
		}
		if _, err := o.Vsctl("add-port", api.BrTun, "vm0", "--", "set", "interface", "vm0", "type=internal"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := o.Netns.Exec("ip", "link", "show", "vm0"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("vm0 did not appear")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The VM's MTU is what VXLAN over IPv6 leaves of the underlay's 1500.
		th.sh(t, "ip", "link", "set", "vm0", "mtu", strconv.Itoa(1500-api.TunnelOverhead(api.TunnelVXLAN, api.IPv6Underlay)), "up")
		th.sh(t, "ip", "addr", "add", "10.9.0."+strconv.Itoa(i+1)+"/24", "dev", "vm0")
	}
	if out, err := o1.Netns.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", tips[1]); err != nil {
		t.Fatalf("ping6 across the underlay: %v\n%s", err, out)
	}
	// The first packet may go while the tunnel's neighbour is unresolved; ping retries.
	if out, err := o1.Netns.Exec("ping", "-c", "3", "-i", "0.2", "-w", "10", "10.9.0.2"); err != nil || !strings.Contains(out, " 0% packet loss") && !strings.Contains(out, "3 received") {
		t.Fatalf("ping through the IPv6 tunnel: %v\n%s", err, out)
	}
	neigh, err := o1.Appctl("tnl/neigh/show")
	if err != nil {
		t.Fatal(err)
	}
	mac2 := strings.TrimSpace(hosts[1].sh(t, "cat", "/sys/class/net/br-phy/address"))
	if !strings.Contains(neigh, tips[1]) || !strings.Contains(neigh, mac2) {
		t.Errorf("tnl/neigh/show lacks %s at br-phy's MAC %s:\n%s", tips[1], mac2, neigh)
	}
	// 1430 bytes of IP fit; 1431 do not (DF set: nothing fragments them).
	if out, err := o1.Netns.Exec("ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1402", "10.9.0.2"); err != nil {
		t.Errorf("a 1430-byte packet: %v\n%s", err, out)
	}
	th1 := hosts[0]
	th1.sh(t, "ip", "link", "set", "vm0", "mtu", "1500")
	if out, err := o1.Netns.Exec("ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1403", "10.9.0.2"); err == nil {
		t.Errorf("a 1431-byte packet crossed a 1500 IPv6 underlay:\n%s", out)
	}
}
