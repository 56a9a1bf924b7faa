package hostwire

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/lanes-net/lanes/internal/nsexec"
)

// RouterSpec is a router as Neutron's legacy L3 agent builds it: a network namespace
// holding one qr- device per attached network and a qg- device on the external network,
// each one end of a veth pair whose other end (Peer) is a port of br-int or br-ex (the
// L3 agent's ovs_use_veth layout, which the userspace datapath needs: its internal
// ports cannot leave vswitchd's namespace).
type RouterSpec struct {
	Namespace  string // qrouter-<router id>
	Interfaces []RouterDevice
	Gateway    *RouterDevice // nil: no external gateway
	// NextHop is the external network's gateway, the router's default route.
	NextHop     netip.Addr
	SNAT        bool
	FloatingIPs []FloatingIP
}

// RouterDevice is one leg of a router.
type RouterDevice struct {
	Dev  string // qr-... or qg-..., inside the namespace
	Peer string // the veth end plugged into OVS, in the host's namespace
	MAC  net.HardwareAddr
	Addr netip.Prefix // the router's address and the network's prefix length
	MTU  int
}

// FloatingIP translates FIP (on qg-) to a fixed IP behind a qr- device.
type FloatingIP struct {
	FIP, Fixed netip.Addr
}

func run(stdin string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out), nil
}

// NamespaceExists reports whether the named namespace is mounted at its path in this
// process's mount namespace. A file there that is no namespace mount is stale: left by
// an `ip netns add` whose mount namespace is gone (a lanesd started by `ip netns exec`
// that died), and it makes `ip netns add` fail.
func NamespaceExists(name string) bool {
	var st unix.Statfs_t
	return unix.Statfs(nsexec.Path(name), &st) == nil && st.Type == unix.NSFS_MAGIC
}

// RouterNamespaces lists the qrouter- namespaces mounted in this mount namespace.
func RouterNamespaces() ([]string, error) {
	ents, err := os.ReadDir(nsexec.NetnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "qrouter-") && NamespaceExists(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// EnsureRouter makes the router's namespace, devices, addresses, default route and NAT
// match spec; devices of the namespace that spec no longer names are deleted (with
// their OVS-side peers). The caller plugs the peers into OVS afterwards.
func EnsureRouter(spec RouterSpec) error {
	ns := spec.Namespace
	if !NamespaceExists(ns) {
		if err := os.Remove(nsexec.Path(ns)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stale namespace file: %w", err)
		}
		if err := run("", "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	if err := run("", "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	// Forwarding in the router's namespace only; the host's own setting is untouched.
	if err := run("", "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	devs := append([]RouterDevice(nil), spec.Interfaces...)
	if spec.Gateway != nil {
		devs = append(devs, *spec.Gateway)
	}
	want := map[string]bool{}
	for _, d := range devs {
		want[d.Dev] = true
	}
	have, err := output("ip", "-n", ns, "-o", "link", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(have, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if (strings.HasPrefix(name, "qr-") || strings.HasPrefix(name, "qg-")) && !want[name] {
			if err := run("", "ip", "-n", ns, "link", "del", name); err != nil {
				return err
			}
		}
	}
	for _, d := range devs {
		if _, err := os.Stat("/sys/class/net/" + d.Peer); err != nil {
			if err := run("", "ip", "link", "add", d.Peer, "type", "veth", "peer", "name", d.Dev, "netns", ns); err != nil {
				return err
			}
		}
		if err := run("", "ip", "link", "set", d.Peer, "mtu", fmt.Sprint(d.MTU), "up"); err != nil {
			return err
		}
		if err := DisableTxChecksum(d.Peer); err != nil {
			return err
		}
		if err := nsexec.DoPath(nsexec.Path(ns), func() error { return DisableTxChecksum(d.Dev) }); err != nil {
			return err
		}
		if err := run("", "ip", "-n", ns, "link", "set", d.Dev, "address", d.MAC.String(), "mtu", fmt.Sprint(d.MTU), "up"); err != nil {
			return err
		}
		addrs := []string{d.Addr.String()}
		if spec.Gateway != nil && d.Dev == spec.Gateway.Dev {
			// The floating IPs sit on qg- as /32s: the kernel answers ARP for them
			// on the external network, as Neutron's legacy router does.
			for _, f := range spec.FloatingIPs {
				addrs = append(addrs, netip.PrefixFrom(f.FIP, 32).String())
			}
		}
		if err := syncAddrs(ns, d.Dev, addrs); err != nil {
			return err
		}
	}
	if spec.Gateway != nil && spec.NextHop.IsValid() {
		if err := run("", "ip", "-n", ns, "route", "replace", "default", "via", spec.NextHop.String(), "dev", spec.Gateway.Dev); err != nil {
			return err
		}
	}
	return run(RouterNAT(spec), "ip", "netns", "exec", ns, "iptables-restore")
}

// syncAddrs leaves exactly addrs (IPv4 prefixes) on dev.
func syncAddrs(ns, dev string, addrs []string) error {
	out, err := output("ip", "-n", ns, "-4", "-o", "addr", "show", "dev", dev)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				have[f[i+1]] = true
			}
		}
	}
	want := map[string]bool{}
	for _, a := range addrs {
		want[a] = true
		if !have[a] {
			if err := run("", "ip", "-n", ns, "addr", "add", a, "dev", dev); err != nil {
				return err
			}
		}
	}
	for a := range have {
		if !want[a] {
			if err := run("", "ip", "-n", ns, "addr", "del", a, "dev", dev); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteRouter removes a router's namespace; its veths, and so their OVS-side peers'
// devices, go with it.
func DeleteRouter(ns string) error {
	if !NamespaceExists(ns) {
		return nil
	}
	return run("", "ip", "netns", "del", ns)
}

// RouterNAT is the router namespace's nat table in Neutron's chain layout with a
// lanes- prefix: floating IPs DNAT in PREROUTING (and OUTPUT, for the router's own
// traffic) and SNAT in float-snat; everything else leaving qg- is SNATed to the
// router's external address when SNAT is on. Traffic between the router's own networks
// is never translated.
func RouterNAT(spec RouterSpec) string {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, c := range []string{"lanes-l3-agent-OUTPUT", "lanes-l3-agent-POSTROUTING", "lanes-l3-agent-PREROUTING",
		"lanes-l3-agent-float-snat", "lanes-l3-agent-snat", "lanes-postrouting-bottom"} {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	b.WriteString("-A PREROUTING -j lanes-l3-agent-PREROUTING\n")
	b.WriteString("-A OUTPUT -j lanes-l3-agent-OUTPUT\n")
	b.WriteString("-A POSTROUTING -j lanes-l3-agent-POSTROUTING\n")
	b.WriteString("-A POSTROUTING -j lanes-postrouting-bottom\n")
	b.WriteString("-A lanes-postrouting-bottom -m comment --comment \"Perform source NAT on outgoing traffic.\" -j lanes-l3-agent-snat\n")
	if g := spec.Gateway; g != nil {
		fmt.Fprintf(&b, "-A lanes-l3-agent-POSTROUTING ! -o %s -m conntrack ! --ctstate DNAT -j ACCEPT\n", g.Dev)
		fips := append([]FloatingIP(nil), spec.FloatingIPs...)
		sort.Slice(fips, func(i, j int) bool { return fips[i].FIP.Less(fips[j].FIP) })
		for _, f := range fips {
			fmt.Fprintf(&b, "-A lanes-l3-agent-PREROUTING -d %s/32 -j DNAT --to-destination %s\n", f.FIP, f.Fixed)
			fmt.Fprintf(&b, "-A lanes-l3-agent-OUTPUT -d %s/32 -j DNAT --to-destination %s\n", f.FIP, f.Fixed)
			fmt.Fprintf(&b, "-A lanes-l3-agent-float-snat -s %s/32 -j SNAT --to-source %s\n", f.Fixed, f.FIP)
		}
		b.WriteString("-A lanes-l3-agent-snat -j lanes-l3-agent-float-snat\n")
		if spec.SNAT {
			fmt.Fprintf(&b, "-A lanes-l3-agent-snat -o %s -j SNAT --to-source %s\n", g.Dev, g.Addr.Addr())
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
