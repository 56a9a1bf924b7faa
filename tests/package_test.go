package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestDebPackage builds the package as `make deb` does, checks its contents and
// dependencies, installs it with dpkg into an empty root and runs what it installed:
// lanesd --version, and the unit's ExecStart line with --check-config.
func TestDebPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a package")
	}
	if os.Geteuid() != 0 {
		t.Skip("dpkg --root needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("make", "-C", "..", "deb")
	debs, _ := filepath.Glob("../bin/lanes_*.deb")
	if len(debs) == 0 {
		t.Fatal("make deb made no package")
	}
	sort.Slice(debs, func(i, j int) bool { return modTime(debs[i]) > modTime(debs[j]) })
	deb := debs[0]

	contents := run("dpkg", "-c", deb)
	for _, f := range []string{"./usr/sbin/lanesd", "./usr/bin/lanesctl", "./lib/systemd/system/lanesd.service", "./etc/lanes/lanesd.json"} {
		if !strings.Contains(contents, " "+f+"\n") {
			t.Errorf("package lacks %s:\n%s", f, contents)
		}
	}
	depends := run("dpkg-deb", "-f", deb, "Depends")
	for _, d := range []string{"openvswitch-switch", "iptables", "ipset"} {
		if !strings.Contains(depends, d) {
			t.Errorf("Depends %q lacks %s", depends, d)
		}
	}
	if conf := run("dpkg-deb", "-I", deb, "conffiles"); !strings.Contains(conf, "/etc/lanes/lanesd.json") {
		t.Errorf("the config is not a conffile: %q", conf)
	}

	// An empty root with its own dpkg database; the dependencies are the host's
	// business, not this root's.
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	run("dpkg", "--root="+root, "--log=/dev/null", "--force-depends", "--force-script-chrootless", "-i", deb)
	if st := run("dpkg", "--root="+root, "-s", "lanes"); !strings.Contains(st, "Status: install ok installed") {
		t.Errorf("dpkg -s: %s", st)
	}
	if out := run(filepath.Join(root, "usr/sbin/lanesd"), "--version"); !strings.HasPrefix(out, "lanesd ") || strings.Contains(out, "commit unknown") {
		t.Errorf("lanesd --version: %q", out)
	}
	if out := run(filepath.Join(root, "usr/bin/lanesctl"), "version", "--socket", filepath.Join(root, "none.sock")); !strings.HasPrefix(out, "lanesctl ") {
		t.Errorf("lanesctl version: %q", out)
	}
	unit, err := os.ReadFile(filepath.Join(root, "lib/systemd/system/lanesd.service"))
	if err != nil {
		t.Fatal(err)
	}
	var exec0 []string
	for _, l := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(l, "ExecStart="); ok {
			exec0 = strings.Fields(rest)
		}
	}
	if len(exec0) == 0 || !strings.Contains(string(unit), "Type=notify") || !strings.Contains(string(unit), "WatchdogSec=") {
		t.Fatalf("unit:\n%s", unit)
	}
	// The installed files, found under root.
	for i, a := range exec0 {
		if strings.HasPrefix(a, "/") {
			exec0[i] = filepath.Join(root, a)
		}
	}
	if out := run(exec0[0], append(exec0[1:], "--check-config")...); !strings.Contains(out, "configuration valid") {
		t.Errorf("ExecStart --check-config: %q", out)
	}
}

// make install on a plain host: the same files under PREFIX, the unit pointing there.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make")
	}
	dest := t.TempDir()
	if out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX=/opt/lanes").CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/lanesd.service"))
	if err != nil || !strings.Contains(string(unit), "ExecStart=/opt/lanes/sbin/lanesd --config /etc/lanes/lanesd.json") {
		t.Fatalf("unit: %v\n%s", err, unit)
	}
	out, err := exec.Command(filepath.Join(dest, "opt/lanes/sbin/lanesd"), "--config", filepath.Join(dest, "etc/lanes/lanesd.json"), "--check-config").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration valid") {
		t.Errorf("installed lanesd --check-config: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dest, "opt/lanes/bin/lanesctl")); err != nil {
		t.Error(err)
	}
}

func modTime(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.ModTime().UnixNano()
}
