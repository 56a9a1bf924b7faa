// Command lanes-vm is a fake hypervisor for tests and the demo: it attaches a network
// namespace (the "VM") to a port's host-side tap by copying Ethernet frames between
// the tap and a tap named eth0 inside the namespace.
//
//	lanes-vm start --host-netns H --tap T --netns VMNS --mac M --ip IP/prefix [--gw GW] [--mtu N]
//	lanes-vm stop --netns VMNS
//	lanes-vm list
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lanes-net/lanes/hostwire/fakevm"
	"github.com/lanes-net/lanes/internal/ovsproc"
)

const readyTimeout = 15 * time.Second

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  lanes-vm start --host-netns H --tap T --netns VMNS --mac M --ip IP/prefix [--gw GW] [--mtu N] [--foreground]
  lanes-vm stop --netns VMNS
  lanes-vm list
all take --state-dir DIR (default /run/lanes-vm): pidfiles, configs and logs`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var cfg fakevm.Config
	stateDir := fs.String("state-dir", "/run/lanes-vm", "pidfiles, configs and logs")
	fs.StringVar(&cfg.HostNetns, "host-netns", "", "namespace (name or path) holding the tap; empty = current")
	fs.StringVar(&cfg.Tap, "tap", "", "host-side tap the VM attaches to")
	fs.StringVar(&cfg.VMNetns, "netns", "", "VM namespace name (created if missing)")
	fs.StringVar(&cfg.MAC, "mac", "", "eth0 MAC")
	fs.StringVar(&cfg.IP, "ip", "", "eth0 address/prefix (empty: none, for a DHCP client in the VM)")
	fs.StringVar(&cfg.GW, "gw", "", "default gateway")
	fs.IntVar(&cfg.MTU, "mtu", 0, "eth0 MTU")
	fg := fs.Bool("foreground", false, "run in the foreground instead of detaching")
	readyFd := fs.Int("ready-fd", 0, "internal: report readiness on this fd")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "start":
		switch {
		case *readyFd > 0 || *fg:
			err = runVM(*stateDir, cfg, *readyFd)
		default:
			err = start(*stateDir, cfg)
		}
	case "stop":
		err = stop(*stateDir, cfg.VMNetns)
	case "list":
		err = list(*stateDir)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanes-vm:", err)
		os.Exit(1)
	}
}

func paths(dir, vm string) (pid, conf, log string) {
	b := filepath.Join(dir, vm)
	return b + ".pid", b + ".json", b + ".log"
}

// start re-executes this program detached (own session, output to the log file) and
// returns once the child reports that eth0 is up and frames flow.
func start(dir string, cfg fakevm.Config) error {
	if cfg.VMNetns == "" {
		return errors.New("--netns is required")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pidf, _, logf := paths(dir, cfg.VMNetns)
	if pid := readPid(pidf); pid > 0 && ovsproc.Alive(pid) {
		return fmt.Errorf("VM %s already runs as pid %d", cfg.VMNetns, pid)
	}
	log, err := os.OpenFile(logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{"start", "--ready-fd", "3"}, os.Args[2:]...)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = log, log, []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start VM process: %w", err)
	}
	w.Close()
	go func() { _ = cmd.Wait() }()
	_ = r.SetReadDeadline(time.Now().Add(readyTimeout))
	line, _ := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) != "ok" {
		_ = cmd.Process.Kill()
		tail, _ := os.ReadFile(logf)
		return fmt.Errorf("VM %s did not come up: %s (log %s):\n%s", cfg.VMNetns, strings.TrimSpace(line), logf, lastLines(string(tail), 5))
	}
	fmt.Println(cmd.Process.Pid)
	return nil
}

// runVM is the VM process: attach, report readiness, copy frames until signalled.
func runVM(dir string, cfg fakevm.Config, readyFd int) error {
	var ready *os.File
	if readyFd > 0 {
		ready = os.NewFile(uintptr(readyFd), "ready")
	}
	vm, err := fakevm.Start(cfg)
	if err != nil {
		if ready != nil {
			fmt.Fprintf(ready, "error: %v\n", err)
		}
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pidf, conf, _ := paths(dir, cfg.VMNetns)
	if err := os.WriteFile(pidf, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	if b, err := json.Marshal(cfg); err == nil {
		_ = os.WriteFile(conf, b, 0o644)
	}
	fmt.Fprintf(os.Stderr, "%s VM %s attached to %s\n", time.Now().Format(time.RFC3339), cfg.VMNetns, cfg.Tap)
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- vm.Wait() }()
	select {
	case s := <-sig:
		fmt.Fprintf(os.Stderr, "%s stopping on %v\n", time.Now().Format(time.RFC3339), s)
		return vm.Close()
	case err := <-done:
		return fmt.Errorf("frame copy stopped: %w", err)
	}
}

// stop kills the VM process by its pidfile and deletes its namespace.
func stop(dir, vm string) error {
	if vm == "" {
		return errors.New("--netns is required")
	}
	pidf, conf, _ := paths(dir, vm)
	if pid := readPid(pidf); pid > 0 && ovsproc.Alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for ovsproc.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if ovsproc.Alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_ = os.Remove(pidf)
	_ = os.Remove(conf)
	return fakevm.DeleteNetns(vm)
}

func list(dir string) error {
	pids, _ := filepath.Glob(filepath.Join(dir, "*.pid"))
	fmt.Printf("%-24s %-8s %-7s %-16s %s\n", "VM", "PID", "STATE", "TAP", "IP")
	for _, p := range pids {
		vm := strings.TrimSuffix(filepath.Base(p), ".pid")
		pid := readPid(p)
		state := "dead"
		if ovsproc.Alive(pid) {
			state = "running"
		}
		var cfg fakevm.Config
		_, conf, _ := paths(dir, vm)
		if b, err := os.ReadFile(conf); err == nil {
			_ = json.Unmarshal(b, &cfg)
		}
		fmt.Printf("%-24s %-8d %-7s %-16s %s\n", vm, pid, state, cfg.Tap, cfg.IP)
	}
	return nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive treats zombies as dead: PID 1 here may reap orphans late.

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
