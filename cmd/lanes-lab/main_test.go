package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the tests run this binary as lanes-lab itself, to see main's exit code.
func TestMain(m *testing.M) {
	if os.Getenv("LANES_LAB_TEST_MAIN") == "1" {
		os.Args = append([]string{"lanes-lab"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func labMain(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LANES_LAB_TEST_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), 0
}

// Help exits 0 and lists the commands and every flag; so does each command's.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"up", "--help"}, {"down", "-h"}, {"vm", "--help"}, {"lanesd", "--help"}} {
		out, code := labMain(t, args...)
		if code != 0 {
			t.Errorf("lanes-lab %v: exit %d\n%s", args, code, out)
		}
		for _, want := range []string{"-dir", "-hosts", "-tunnel-type", "-bin", "-l3", "-name"} {
			if !strings.Contains(out, want) {
				t.Errorf("lanes-lab %v does not list %s:\n%s", args, want, out)
			}
		}
	}
	if out, code := labMain(t, "--help"); !strings.Contains(out, "up ") || !strings.Contains(out, "down") || code != 0 {
		t.Errorf("lanes-lab --help lacks the commands:\n%s", out)
	}
	if out, code := labMain(t, "frobnicate"); code == 0 || !strings.Contains(out, "unknown command") {
		t.Errorf("unknown command: exit %d, %s", code, out)
	}
}
