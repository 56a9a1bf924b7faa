// Package ovstool runs Open vSwitch's command-line clients (ovs-vsctl, ovs-ofctl,
// ovs-appctl) against one OVS instance, found by its run directory. lanesd programs
// OVS over OpenFlow and OVSDB; the tools serve diagnostics (dumps, ofproto/trace) and
// tests, which want exactly what an operator would type.
package ovstool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Tools is one OVS instance as its clients see it. The zero value is the packaged
// instance (/var/run/openvswitch).
type Tools struct {
	// RunDir holds the instance's sockets: db.sock, <bridge>.mgmt, ovs-vswitchd.ctl or
	// ovs-vswitchd.<pid>.ctl.
	RunDir string
	// Env is extra environment for every tool (e.g. OVS_LOGDIR for a private instance).
	Env []string
}

// Ofctl runs ovs-ofctl; a bare bridge name resolves to <RunDir>/<bridge>.mgmt.
func (t Tools) Ofctl(ctx context.Context, args ...string) (string, error) {
	return t.Run(ctx, "ovs-ofctl", args...)
}

// Ofctl15 is Ofctl speaking OpenFlow 1.5, as lanesd does.
func (t Tools) Ofctl15(ctx context.Context, args ...string) (string, error) {
	return t.Ofctl(ctx, append([]string{"-O", "OpenFlow15"}, args...)...)
}

// Appctl runs ovs-appctl against ovs-vswitchd. A vswitchd started with
// --unixctl=<RunDir>/ovs-vswitchd.ctl (a private instance's) is found by path; a
// packaged one through its pidfile in the run directory.
func (t Tools) Appctl(ctx context.Context, args ...string) (string, error) {
	if ctl := filepath.Join(t.RunDir, "ovs-vswitchd.ctl"); exists(ctl) {
		args = append([]string{"-t", ctl}, args...)
	}
	return t.Run(ctx, "ovs-appctl", args...)
}

// Vsctl runs ovs-vsctl against the instance's database.
func (t Tools) Vsctl(ctx context.Context, args ...string) (string, error) {
	return t.Run(ctx, "ovs-vsctl", append([]string{"--db=unix:" + filepath.Join(t.runDir(), "db.sock"), "--timeout=30"}, args...)...)
}

// Run runs one OVS tool and returns its trimmed combined output; a failure carries
// the command line and what the tool said.
func (t Tools) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+t.runDir())
	cmd.Env = append(cmd.Env, t.Env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	// A tool that leaves a child holding the pipe must not hang the caller.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out := strings.TrimSpace(buf.String())
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (t Tools) runDir() string {
	if t.RunDir == "" {
		return "/var/run/openvswitch"
	}
	return t.RunDir
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
