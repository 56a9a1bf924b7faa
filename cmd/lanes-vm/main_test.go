package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

// TestStartListStop runs the binary: two VMs on two ports of a host namespace whose
// qvo ends share a Linux bridge (standing in for br-int), ping, list, stop.
func TestStartListStop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and taps")
	}
	host := ovsproc.NetnsForTest(t)
	bin := filepath.Join(t.TempDir(), "lanes-vm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	state := t.TempDir()
	h, err := hostwire.OpenPath(host.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := host.Exec("ip", "link", "add", "brtest", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Exec("ip", "link", "set", "brtest", "up"); err != nil {
		t.Fatal(err)
	}
	suffix := ovsproc.RandomSuffix(6)
	var vms []string
	for i, id := range []string{"11111111-1111-1111", "22222222-2222-2222"} {
		if err := h.EnsurePort(hostwire.PortSpec{ID: id, MAC: "fa:16:3e:00:00:0" + string(rune('1'+i)), MTU: 1450}); err != nil {
			t.Fatal(err)
		}
		d := hostwire.DevicesOf(id)
		if _, err := host.Exec("ip", "link", "set", d.Qvo, "master", "brtest"); err != nil {
			t.Fatal(err)
		}
		vm := "ltvm" + string(rune('a'+i)) + "-" + suffix
		vms = append(vms, vm)
		t.Cleanup(func() { _ = exec.Command(bin, "stop", "--state-dir", state, "--netns", vm).Run() })
		out, err := exec.Command(bin, "start", "--state-dir", state, "--host-netns", host.Name, "--tap", d.Tap,
			"--netns", vm, "--mac", "fa:16:3e:00:00:0"+string(rune('1'+i)), "--ip", "10.1.0."+string(rune('1'+i))+"/24", "--mtu", "1450").CombinedOutput()
		if err != nil {
			t.Fatalf("start: %v\n%s", err, out)
		}
	}
	// No firewall in this namespace's iptables: plain bridging.
	if out, err := exec.Command("ip", "netns", "exec", vms[0], "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.1.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "list", "--state-dir", state).CombinedOutput()
	if err != nil || strings.Count(string(out), "running") != 2 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	// A second start of the same VM is refused.
	if out, err := exec.Command(bin, "start", "--state-dir", state, "--host-netns", host.Name, "--tap", "tap11111111-11",
		"--netns", vms[0], "--mac", "fa:16:3e:00:00:01", "--ip", "10.1.0.1/24").CombinedOutput(); err == nil {
		t.Fatalf("second start accepted:\n%s", out)
	}
	for _, vm := range vms {
		if out, err := exec.Command(bin, "stop", "--state-dir", state, "--netns", vm).CombinedOutput(); err != nil {
			t.Fatalf("stop: %v\n%s", err, out)
		}
		if _, err := os.Stat("/var/run/netns/" + vm); err == nil {
			t.Errorf("namespace %s still exists after stop", vm)
		}
	}
	if out, _ := exec.Command(bin, "list", "--state-dir", state).CombinedOutput(); strings.Contains(string(out), "ltvm") {
		t.Errorf("list after stop:\n%s", out)
	}
}
