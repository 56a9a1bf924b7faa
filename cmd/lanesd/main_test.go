package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("LANESD_TEST_MAIN") == "1" {
		os.Args = append([]string{"lanesd"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func lanesd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LANESD_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// The command line contract: help on stdout with exit 0, a bad flag exit 2, the
// version, and the example config of deploy/ valid as shipped.
func TestCommandLine(t *testing.T) {
	out, _, code := lanesd(t, "--help")
	if code != 0 || !strings.HasPrefix(out, "usage: lanesd") || !strings.Contains(out, "-iptables-backend") || !strings.Contains(out, "-log-format") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if _, stderr, code := lanesd(t, "--no-such-flag"); code != 2 || !strings.Contains(stderr, "see lanesd --help") {
		t.Errorf("bad flag: exit %d, %q", code, stderr)
	}
	if out, _, code := lanesd(t, "--version"); code != 0 || !strings.HasPrefix(out, "lanesd ") || !strings.Contains(out, "commit ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	if out, stderr, code := lanesd(t, "--config", "../../deploy/lanesd.json", "--check-config"); code != 0 || !strings.Contains(out, "configuration valid (host cmp1") {
		t.Errorf("example config: exit %d, %q %q", code, out, stderr)
	}
	if _, stderr, code := lanesd(t, "--config", "../../deploy/lanesd.json", "--iptables-backend", "xtables", "--check-config"); code == 0 || !strings.Contains(stderr, "iptables-backend") {
		t.Errorf("bad backend: exit %d, %q", code, stderr)
	}
	if _, stderr, code := lanesd(t, "--config", "../../deploy/lanesd.json", "--log-format", "xml", "--check-config"); code == 0 || !strings.Contains(stderr, "--log-format") {
		t.Errorf("bad log format: exit %d, %q", code, stderr)
	}
}
