package ofsync_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// withUnderlay gives the host what the userspace datapath needs to really send
// VXLAN (as ovsdb/underlay.go and hostwire's EnsureUnderlay build it on a lanes host):
// br-phy forwarding NORMAL with the host's tunnel
// IP on its internal port, a second port to flood out of, and static neighbour
// entries for the remote hosts, so that a trace ends in tnl_push(...) datapath
// actions instead of "neighbor cache miss".
func (h *host) withUnderlay(remotes ...string) {
	t, o := h.t, h.o
	t.Helper()
	vsctl(t, o, "add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev",
		"fail_mode=secure", "protocols=OpenFlow10,OpenFlow13,OpenFlow15", "other_config:datapath-id="+nextDPID(),
		"--", "add-port", "br-phy", "uplink", "--", "set", "interface", "uplink", "type=internal")
	if _, err := o.Ofctl("add-flow", "br-phy", "priority=0,actions=NORMAL"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ip", "addr", "add", "172.31.0.1/24", "dev", "br-phy"},
		{"ip", "link", "set", "br-phy", "up"},
	} {
		if out, err := o.Netns.Exec(args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	for i, ip := range remotes {
		if _, err := o.Appctl("tnl/arp/set", "br-phy", ip, fmt.Sprintf("aa:bb:cc:00:00:%02x", i+2)); err != nil {
			t.Fatal(err)
		}
	}
}

// dpPort is a port's datapath port number (what "Datapath actions" print).
func (h *host) dpPort(name string) string {
	h.t.Helper()
	out, err := h.o.Appctl("dpif/show")
	if err != nil {
		h.t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(name) + ` \d+/(\d+):`).FindStringSubmatch(out)
	if m == nil {
		h.t.Fatalf("port %s not in dpif/show:\n%s", name, out)
	}
	return m[1]
}

func (h *host) trace(br flows.Bridge, flow string, generate bool) string {
	h.t.Helper()
	out, err := h.o.Trace(string(br), flow, generate)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

var (
	tnlPush   = regexp.MustCompile(`tnl_push\(tnl_port\(\d+\),header\(.*?ipv4\(src=([0-9.]+),dst=([0-9.]+),.*?vxlan\(flags=0x8000000,vni=(0x[0-9a-f]+)\)\)`)
	dpActions = regexp.MustCompile(`(?m)^Datapath actions: (.*)$`)
	finalFlow = regexp.MustCompile(`(?m)^Final flow: (.*)$`)
)

// tunnelsOut lists "dst/vni" of every VXLAN encapsulation in the datapath actions.
func tunnelsOut(t testing.TB, trace string) []string {
	t.Helper()
	da := dpActions.FindStringSubmatch(trace)
	if da == nil {
		t.Fatalf("no datapath actions in trace:\n%s", trace)
	}
	var out []string
	for _, m := range tnlPush.FindAllStringSubmatch(da[1], -1) {
		if m[1] != "172.31.0.1" {
			t.Errorf("tunnel source %s, want 172.31.0.1", m[1])
		}
		out = append(out, m[2]+"/"+m[3])
	}
	slices.Sort(out)
	return out
}

func datapathActions(t testing.TB, trace string) string {
	t.Helper()
	da := dpActions.FindStringSubmatch(trace)
	if da == nil {
		t.Fatalf("no datapath actions in trace:\n%s", trace)
	}
	return da[1]
}

// outputs lists the datapath ports of plain output actions (not the ones inside
// tnl_push).
func outputs(actions string) []string {
	actions = tnlPush.ReplaceAllString(actions, "")
	var out []string
	for _, a := range strings.Split(actions, ",") {
		a = strings.TrimSpace(a)
		if a != "" && strings.Trim(a, "0123456789") == "" {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// TestTrace: the pipeline the controller installs forwards like Neutron's, checked
// with ofproto/trace on both bridges.
func TestTrace(t *testing.T) {
	h := newHost(t, []string{hostB, hostC}, map[string]uint16{"vm1": 1, "vm2": 2, "vm3": 1})
	h.withUnderlay(hostB, hostC)
	const round = 3
	state := h.baseState()
	state.LocalPorts = append(state.LocalPorts, h.lport("vm3", netA, "fa:16:3e:00:00:03", "10.0.0.3"))
	state.RemotePorts = append(state.RemotePorts, rport("rc2", netB, hostC, "fa:16:3e:00:00:c2", "10.1.0.32"))
	set := render(t, state)
	for _, b := range bridges {
		br, _ := h.open(b, round)
		syncConnected(t, br, set.Flows(b))
		sameSet(t, string(b), h.dump(b), rendered(set.Flows(b), round))
	}
	const vm1MAC = "fa:16:3e:00:00:01"
	vm1, vm2, vm3 := h.dpPort("vm1"), h.dpPort("vm2"), h.dpPort("vm3")
	fromInt := func(vlan uint16, rest string) string {
		return fmt.Sprintf("in_port=%d,dl_vlan=%d,%s", h.patchInt, vlan, rest)
	}

	t.Run("known unicast to its tunnel", func(t *testing.T) {
		tr := h.trace(flows.BrTun, fromInt(1, "dl_src="+vm1MAC+",dl_dst=fa:16:3e:00:00:b1,ip,nw_src=10.0.0.1,nw_dst=10.0.0.21"), false)
		if got, want := tunnelsOut(t, tr), []string{hostB + "/0x64"}; !slices.Equal(got, want) {
			t.Fatalf("tunnels = %q, want %q\n%s", got, want, tr)
		}
		// The OpenFlow side: table 20's l2pop flow, untagged, tun_id = VNI, B's port.
		if !strings.Contains(tr, fmt.Sprintf("pop_vlan\n    set_field:0x64->tun_id\n    output:%d", h.tunnels[hostB])) {
			t.Errorf("no l2pop output to port %d in trace:\n%s", h.tunnels[hostB], tr)
		}
		if ff := finalFlow.FindStringSubmatch(tr); ff == nil || !strings.Contains(ff[1], "tun_id=0x64") || !strings.Contains(ff[1], "vlan_tci=0x0000") {
			t.Errorf("final flow %q: want tun_id=0x64, untagged", ff)
		}
		if o := outputs(datapathActions(t, tr)); len(o) > 1 { // br-phy's own uplink flood only
			t.Errorf("extra outputs %q", o)
		}
	})

	for _, tc := range []struct{ name, dst string }{
		{"unknown unicast floods", "fa:16:3e:99:99:99"},
		{"broadcast floods", "ff:ff:ff:ff:ff:ff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// net-a (VLAN 1) has remote ports on B and C; net-b (VLAN 2) on B and C too
			// (rb2, rc2), with its own VNI.
			tr := h.trace(flows.BrTun, fromInt(1, "dl_src="+vm1MAC+",dl_dst="+tc.dst+",ip"), false)
			if got, want := tunnelsOut(t, tr), []string{hostB + "/0x64", hostC + "/0x64"}; !slices.Equal(got, want) {
				t.Fatalf("net-a tunnels = %q, want %q\n%s", got, want, tr)
			}
			if strings.Contains(tr, `bridge("br-int")`) {
				t.Errorf("flood went back to br-int:\n%s", tr)
			}
			tr = h.trace(flows.BrTun, fromInt(2, "dl_src=fa:16:3e:00:00:02,dl_dst="+tc.dst+",ip"), false)
			if got, want := tunnelsOut(t, tr), []string{hostB + "/0xc8", hostC + "/0xc8"}; !slices.Equal(got, want) {
				t.Fatalf("net-b tunnels = %q, want %q\n%s", got, want, tr)
			}
		})
	}

	t.Run("flood only where the network has ports", func(t *testing.T) {
		// A VLAN with no flood flow (no network) goes nowhere.
		tr := h.trace(flows.BrTun, fromInt(9, "dl_src="+vm1MAC+",dl_dst=ff:ff:ff:ff:ff:ff,ip"), false)
		if da := datapathActions(t, tr); da != "drop" {
			t.Errorf("unknown VLAN: datapath actions %q, want drop\n%s", da, tr)
		}
	})

	t.Run("tunnel ingress learns and reaches br-int", func(t *testing.T) {
		const src = "fa:16:3e:00:0b:99" // a MAC the store does not know
		tr := h.trace(flows.BrTun, fmt.Sprintf("in_port=%d,tun_id=0x64,tun_src=%s,tun_dst=172.31.0.1,dl_src=%s,dl_dst=%s,ip",
			h.tunnels[hostB], hostB, src, vm1MAC), true)
		if !strings.Contains(tr, "push_vlan:0x8100\n    set_field:4097->vlan_vid\n    goto_table:10") {
			t.Errorf("VNI 0x64 not mapped to VLAN 1:\n%s", tr)
		}
		if !strings.Contains(tr, fmt.Sprintf("output:%d", h.patchInt)) || !strings.Contains(tr, `bridge("br-int")`) {
			t.Errorf("not sent to patch-int:\n%s", tr)
		}
		// br-int does not know vm1's MAC yet, so NORMAL floods VLAN 1: vm1 and vm3, never
		// vm2 (VLAN 2).
		o := outputs(datapathActions(t, tr))
		if !slices.Contains(o, vm1) || !slices.Contains(o, vm3) || slices.Contains(o, vm2) {
			t.Errorf("br-int outputs %q, want vm1 %s and vm3 %s, not vm2 %s\n%s", o, vm1, vm3, vm2, tr)
		}
		learned := ""
		for _, f := range h.dump(flows.BrTun) {
			if strings.Contains(f, "dl_dst="+src) {
				learned = f
			}
		}
		want := fmt.Sprintf("cookie=%#x, table=20, hard_timeout=300, priority=1,vlan_tci=0x0001/0x0fff,dl_dst=%s actions=set_field:0->vlan_tci,set_field:0x64->tun_id,output:%d",
			uint64(flows.LearnedCookie.WithRound(round)), src, h.tunnels[hostB])
		if learned != want {
			t.Errorf("learned flow\n got %q\nwant %q", learned, want)
		}
		// The learned entry now sends unicast to that MAC to B.
		tr = h.trace(flows.BrTun, fromInt(1, "dl_src="+vm1MAC+",dl_dst="+src+",ip"), false)
		if got, want := tunnelsOut(t, tr), []string{hostB + "/0x64"}; !slices.Equal(got, want) {
			t.Errorf("after learning, tunnels = %q, want %q\n%s", got, want, tr)
		}
	})

	t.Run("unknown VNI dropped", func(t *testing.T) {
		tr := h.trace(flows.BrTun, fmt.Sprintf("in_port=%d,tun_id=0x999,tun_src=%s,tun_dst=172.31.0.1,dl_src=fa:16:3e:00:0b:98,dl_dst=%s,ip",
			h.tunnels[hostB], hostB, vm1MAC), true)
		if da := datapathActions(t, tr); da != "drop" {
			t.Errorf("datapath actions %q, want drop\n%s", da, tr)
		}
		if strings.Contains(tr, `bridge("br-int")`) {
			t.Errorf("reached br-int:\n%s", tr)
		}
		for _, f := range h.dump(flows.BrTun) {
			if strings.Contains(f, "fa:16:3e:00:0b:98") {
				t.Errorf("learned from an unknown VNI: %s", f)
			}
		}
	})

	t.Run("ARP responder", func(t *testing.T) {
		tr := h.trace(flows.BrTun, fromInt(1, "arp,arp_op=1,dl_src="+vm1MAC+",dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.1,arp_tpa=10.0.0.21,arp_sha="+vm1MAC+",arp_tha=00:00:00:00:00:00"), false)
		if !strings.Contains(tr, "IN_PORT") {
			t.Fatalf("no IN_PORT output:\n%s", tr)
		}
		ff := finalFlow.FindStringSubmatch(tr)
		if ff == nil {
			t.Fatalf("no final flow:\n%s", tr)
		}
		for _, want := range []string{
			"dl_src=fa:16:3e:00:00:b1", "dl_dst=" + vm1MAC, "arp_op=2", "arp_spa=10.0.0.21", "arp_tpa=10.0.0.1",
			"arp_sha=fa:16:3e:00:00:b1", "arp_tha=" + vm1MAC, "dl_vlan=1",
		} {
			if !strings.Contains(ff[1], want) {
				t.Errorf("final flow lacks %s: %s", want, ff[1])
			}
		}
		// The reply goes back into br-int on VLAN 1 and reaches vm1 (NORMAL floods, vm1's
		// MAC being unknown there), never a tunnel.
		if got := tunnelsOut(t, tr); len(got) != 0 {
			t.Errorf("ARP request left on tunnels %q", got)
		}
		if o := outputs(datapathActions(t, tr)); !slices.Contains(o, vm1) || slices.Contains(o, vm2) {
			t.Errorf("reply outputs %q, want vm1 %s and not vm2 %s\n%s", o, vm1, vm2, tr)
		}
		// An ARP for an IP nobody announced is flooded to net-a's tunnels instead.
		tr = h.trace(flows.BrTun, fromInt(1, "arp,arp_op=1,dl_src="+vm1MAC+",dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.1,arp_tpa=10.0.0.99,arp_sha="+vm1MAC), false)
		if got, want := tunnelsOut(t, tr), []string{hostB + "/0x64", hostC + "/0x64"}; !slices.Equal(got, want) {
			t.Errorf("unanswered ARP: tunnels = %q, want %q\n%s", got, want, tr)
		}
	})

	reachesNormal := regexp.MustCompile(`(?m)^\s*60\. priority 3.*\n\s+NORMAL`)
	vm1Port := h.ports["vm1"]
	for _, tc := range []struct {
		name   string
		flow   string
		normal bool
	}{
		{"ARP with its own IP", "arp,arp_op=1,dl_src=" + vm1MAC + ",dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.1,arp_tpa=10.0.0.3,arp_sha=" + vm1MAC, true},
		{"ARP with a foreign IP", "arp,arp_op=1,dl_src=" + vm1MAC + ",dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.3,arp_tpa=10.0.0.21,arp_sha=" + vm1MAC, false},
		{"ARP with a foreign MAC", "arp,arp_op=1,dl_src=fa:16:3e:66:66:66,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.0.0.1,arp_tpa=10.0.0.3,arp_sha=fa:16:3e:66:66:66", false},
		{"IP with its own MAC", "ip,dl_src=" + vm1MAC + ",dl_dst=fa:16:3e:00:00:03,nw_src=10.0.0.1,nw_dst=10.0.0.3", true},
		{"IP with a foreign MAC", "ip,dl_src=fa:16:3e:66:66:66,dl_dst=fa:16:3e:00:00:03,nw_src=10.0.0.1,nw_dst=10.0.0.3", false},
	} {
		t.Run("br-int "+tc.name, func(t *testing.T) {
			tr := h.trace(flows.BrInt, fmt.Sprintf("in_port=%d,%s", vm1Port, tc.flow), false)
			if got := reachesNormal.MatchString(tr); got != tc.normal {
				t.Errorf("reaches NORMAL = %v, want %v\n%s", got, tc.normal, tr)
			}
			da := datapathActions(t, tr)
			if tc.normal && (da == "drop" || slices.Contains(outputs(da), vm2)) {
				t.Errorf("datapath actions %q: want delivery within VLAN 1 only (vm2 is %s)", da, vm2)
			}
			if !tc.normal && da != "drop" {
				t.Errorf("datapath actions %q, want drop\n%s", da, tr)
			}
		})
	}
}
