package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
)

// TestDHCPv6 runs ISC dhclient -6 in fake VMs on two hosts of one dhcpv6-stateful
// network: each gets its own port's IPv6 address and the subnet's DNS servers from
// its own host's lanesd, which records the answers in lanesctl status; neither host
// answers for the other's port.
func TestDHCPv6(t *testing.T) {
	if _, err := exec.LookPath("dhclient"); err != nil {
		t.Skip("needs dhclient (isc-dhcp-client)")
	}
	l := newLab(t, 2)
	h1 := l.Host("h1")
	ctl(t, l, h1, "network", "create", "v6net", "--cidr", "10.6.0.0/24", "--ipv6-cidr", "fd00:6::/64",
		"--ipv6-address-mode", "dhcpv6-stateful", "--ipv6-dns", "fd00:6::53")
	want := map[string]string{"a1": "fd00:6::11", "a2": "fd00:6::12"}
	vms := map[string]*lab.VM{}
	for name, host := range map[string]string{"a1": "h1", "a2": "h2"} {
		vm, vp := bareVM(t, l, host, name, "v6net", strings.Replace(want[name], "fd00:6::", "10.6.0.", 1), "", "--ip", want[name], "--sg", "default")
		if !contains(vp.FixedIPs, want[name]) {
			t.Fatalf("port %s: fixed IPs %v, want %s among them", name, vp.FixedIPs, want[name])
		}
		vms[name] = vm
	}
	for _, h := range l.HostList {
		eventually(t, 15*time.Second, h.Name+"'s table 78 flow for its port", func() error {
			if fs := grep(dumpFlows(t, l, h, "br-int"), "table=78", "priority=100", "controller(id=19521"); len(fs) != 1 {
				return fmt.Errorf("%d port flows in table 78, want 1", len(fs))
			}
			return nil
		})
	}

	for name, vm := range vms {
		lease := dhclient6(t, l, vm)
		if lease["reason"] != "BOUND6" || lease["new_ip6_address"] != want[name] || lease["new_dhcp6_name_servers"] != "fd00:6::53" {
			t.Errorf("%s: lease %v, want %s and DNS fd00:6::53", name, lease, want[name])
		}
		if out, err := l.VMExec(vm, "ip", "-6", "addr", "show", "dev", "eth0"); err != nil || !strings.Contains(out, want[name]+"/") {
			t.Errorf("%s: eth0 lacks %s: %v\n%s", name, want[name], err, out)
		}
	}

	// Each host's status has a DHCPv6 record for its own port only, with the answers.
	for host, name := range map[string]string{"h1": "a1", "h2": "a2"} {
		var rep api.StatusReport
		localCtl(t, l, host, &rep, "status")
		for _, p := range rep.Ports {
			if p.Name != name {
				t.Errorf("%s's status lists %s, a port of another host", host, p.Name)
				continue
			}
			if r := p.DHCPv6; r == nil || r.Address != want[name] || r.Answered < 2 || !strings.Contains(r.Last, "REPLY "+want[name]) {
				t.Errorf("%s: DHCPv6 record of %s: %+v", host, name, r)
			}
		}
	}
}

// dhclient6Script records what dhclient -6 was told; its environment is dhclient's
// own, so the output path is written into the script.
const dhclient6Script = `#!/bin/sh
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6)
	[ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad
	;;
*) exit 0 ;;
esac
env | grep -E '^(reason|new_ip6_address|new_dhcp6_name_servers)=' >"%[1]s.tmp"
mv "%[1]s.tmp" "%[1]s"
exit 0
`

// dhclient6 waits for the VM's link-local address to leave DAD, runs ISC dhclient -6
// in it (own config, lease, pid and script files) until it has a lease, stops it and
// returns what its script recorded.
func dhclient6(t *testing.T, l *lab.Lab, vm *lab.VM) map[string]string {
	t.Helper()
	eventually(t, 10*time.Second, vm.Name+"'s link-local address", func() error {
		out, err := l.VMExec(vm, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link")
		if err != nil || !strings.Contains(out, "fe80::") || strings.Contains(out, "tentative") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script, conf := filepath.Join(dir, "script"), filepath.Join(dir, "dhclient.conf")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(dhclient6Script, out)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("request dhcp6.name-servers;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(dir, "log")
	log, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("ip", "netns", "exec", vm.Netns, "dhclient", "-6", "-d", "-v", "-cf", conf,
		"-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "-sf", script, "eth0")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // our own child, by its pid
		_ = cmd.Wait()
	}()
	var b []byte
	eventually(t, 30*time.Second, vm.Name+"'s DHCPv6 lease", func() error {
		if b, err = os.ReadFile(out); err != nil {
			text, _ := os.ReadFile(logf)
			return fmt.Errorf("no lease yet:\n%s", text)
		}
		return nil
	})
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}
