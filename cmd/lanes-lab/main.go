// Command lanes-lab starts and removes a multi-host lanes lab on one machine: every
// host a network namespace with its own Open vSwitch and lanesd (host 1 with the
// embedded etcd), joined by an underlay bridge. `make demo` drives it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/internal/lab"
	"github.com/lanes-net/lanes/internal/version"
)

const usage = `usage: lanes-lab <command> [--dir .lab] [flags]

  up [--name lanes-demo] [--hosts 3] [--tunnel-type vxlan] [--bin DIR]
                      start a lab: one namespace per host with its own OVS and lanesd
  down                remove the lab of --dir
  vm HOST NAME TAP MAC IP/PREFIX MTU
                      start a fake VM on a host's tap and record it in the lab
  lanesd start|stop|restart HOST
  version

lanes-lab <command> --help lists the command's flags.
`

func main() {
	err := run(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lanes-lab:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "version", "--version":
		fmt.Println("lanes-lab", version.Get())
		return nil
	}
	fs := flag.NewFlagSet("lanes-lab "+args[0], flag.ContinueOnError)
	fs.SetOutput(os.Stdout)
	fs.Usage = func() {
		fmt.Printf("usage: lanes-lab %s [flags]\n\nflags:\n", args[0])
		fs.PrintDefaults()
	}
	dir := fs.String("dir", ".lab", "lab state directory")
	name := fs.String("name", "lanes-demo", "prefix of the lab's namespaces")
	hosts := fs.Int("hosts", 3, "number of hosts")
	tunnel := fs.String("tunnel-type", "vxlan", "vxlan, gre or geneve")
	self, _ := os.Executable()
	l3 := fs.String("l3", "", "comma-separated hosts that run lanesd --l3, with br-ex on an outside namespace")
	binDir := fs.String("bin", filepath.Dir(self), "directory of lanesd, lanesctl and lanes-vm")
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		fmt.Print("\nflags (every command takes them):\n")
		fs.PrintDefaults()
		return nil
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "up":
		// Running up twice replaces the previous lab.
		if old, err := lab.Load(*dir); err == nil {
			if err := old.Down(); err != nil {
				return fmt.Errorf("remove previous lab: %w", err)
			}
		}
		cfg := lab.Config{Name: *name, Dir: *dir, BinDir: *binDir, Hosts: *hosts, TunnelType: *tunnel}
		if *l3 != "" {
			cfg.L3 = strings.Split(*l3, ",")
		}
		l, err := lab.Up(cfg)
		if err != nil {
			return err
		}
		for _, h := range l.HostList {
			if err := l.StartLanesd(h); err != nil {
				return err
			}
		}
		for _, h := range l.HostList {
			fmt.Printf("%s: netns %s, tunnel IP %s, lanesd log %s\n", h.Name, h.Netns, h.TunnelIP, h.LogFile())
		}
		return nil
	case "down":
		l, err := lab.Load(*dir)
		if err != nil {
			return nil // nothing to remove
		}
		return l.Down()
	case "vm":
		// vm HOST NAME TAP MAC IP/PREFIX MTU: start a fake VM and record it in the lab.
		rest := fs.Args()
		if len(rest) != 6 {
			return errors.New("usage: lanes-lab vm [--dir D] HOST NAME TAP MAC IP/PREFIX MTU")
		}
		l, err := lab.Load(*dir)
		if err != nil {
			return err
		}
		h := l.Host(rest[0])
		if h == nil {
			return fmt.Errorf("no host %q in the lab", rest[0])
		}
		mtu, err := strconv.Atoi(rest[5])
		if err != nil {
			return fmt.Errorf("mtu %q: %w", rest[5], err)
		}
		vm, err := l.StartVM(h, rest[1], rest[2], rest[3], rest[4], mtu)
		if err != nil {
			return err
		}
		fmt.Println(vm.Netns)
		return nil
	case "lanesd":
		// lanesd start|stop|restart HOST
		rest := fs.Args()
		if len(rest) != 2 {
			return errors.New("usage: lanes-lab lanesd [--dir D] start|stop|restart HOST")
		}
		l, err := lab.Load(*dir)
		if err != nil {
			return err
		}
		h := l.Host(rest[1])
		if h == nil {
			return fmt.Errorf("no host %q in the lab", rest[1])
		}
		switch rest[0] {
		case "start":
			return l.StartLanesd(h)
		case "stop":
			return l.StopLanesd(h)
		case "restart":
			if err := l.StopLanesd(h); err != nil {
				return err
			}
			return l.StartLanesd(h)
		}
		return fmt.Errorf("lanesd %s: want start, stop or restart", rest[0])
	}
	return fmt.Errorf("unknown command %q (see lanes-lab --help)", args[0])
}
