package tests

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/lab"
)

// The IPv6 half of TestOverlay: the same matrix as its IPv4 subtests, over the
// addresses the VMs configured themselves by SLAAC from lanesd's router
// advertisements, and over their link-local addresses.

// v6Of is a VM's SLAAC address as the store recorded it for its port: the port's
// IPv6 fixed IP.
func v6Of(t testing.TB, p vmPort) netip.Addr {
	t.Helper()
	for _, s := range p.FixedIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
			return a
		}
	}
	t.Fatalf("port %s has no IPv6 fixed IP: %v", p.Name, p.FixedIPs)
	return netip.Addr{}
}

// llOf is the link-local address a VM's kernel gives eth0.
func llOf(t testing.TB, p vmPort) netip.Addr {
	t.Helper()
	mac, err := net.ParseMAC(p.MAC)
	if err != nil {
		t.Fatal(err)
	}
	return api.LinkLocal(mac)
}

// waitSLAAC polls until the VM's eth0 holds addr as a usable (not tentative)
// address: the VM heard an RA for the prefix and finished duplicate address
// detection.
func waitSLAAC(t testing.TB, l *lab.Lab, vm *lab.VM, addr netip.Addr) {
	t.Helper()
	eventually(t, 20*time.Second, vm.Name+" configures "+addr.String()+" by SLAAC", func() error {
		out, err := l.VMExec(vm, "ip", "-6", "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, " "+addr.String()+"/64 ") && !strings.Contains(line, "tentative") {
				return nil
			}
		}
		return fmt.Errorf("eth0 has %q", out)
	})
}

// ping6 sends one echo request to a global or (on eth0) link-local address.
func ping6(l *lab.Lab, from *lab.VM, to netip.Addr) error {
	dst := to.String()
	if to.IsLinkLocalUnicast() {
		dst += "%eth0"
	}
	_, err := l.VMExec(from, "ping", "-6", "-c", "1", "-W", "1", dst)
	return err
}

// listen6 starts a TCP listener on port in a VM, over IPv6; it goes with the test.
func listen6(t testing.TB, vm *lab.VM, port string) {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", vm.Netns, "nc", "-6", "-l", "-k", "-p", port)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
}
