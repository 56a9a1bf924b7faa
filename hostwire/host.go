// Package hostwire plumbs lanes ports on a compute host: the VM's tap, the per-port
// Linux bridge qbr that carries the iptables firewall, the veth pair qvb/qvo towards
// br-int, the bridge-netfilter sysctls, and the iptables + ipset security-group
// firewall (Neutron's iptables_hybrid structure). It never touches OVS: the controller
// adds qvo to br-int through the ovsdb package.
//
// Every operation runs inside one network namespace, the "host" namespace, so that
// tests and the lab can run several hosts side by side.
package hostwire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host runs kernel operations inside one network namespace. It owns a goroutine that
// is locked to an OS thread switched into that namespace, because taps, /proc/sys/net
// and child processes all take the namespace of the calling thread. Operations are
// serialised on that thread.
type Host struct {
	ns        netns.NsHandle // kept open for extra worker threads (parallel deletes)
	reqs      chan func()
	closeOnce sync.Once
	quit      chan struct{}
}

// ErrClosed is returned by operations on a closed Host.
var ErrClosed = errors.New("hostwire: host closed")

// Open returns a Host for the namespace ns. The handle is duplicated, so the caller
// keeps ownership of ns. Pass netns.None() for the caller's current namespace.
func Open(ns netns.NsHandle) (*Host, error) {
	var target netns.NsHandle
	if ns.IsOpen() {
		fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("duplicate netns handle: %w", err)
		}
		target = netns.NsHandle(fd)
	} else {
		cur, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("open current netns: %w", err)
		}
		target = cur
	}
	h := &Host{ns: target, reqs: make(chan func()), quit: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread has changed namespace, so the runtime must throw
		// it away when this goroutine ends instead of handing it to other goroutines.
		runtime.LockOSThread()
		err := netns.Set(target)
		started <- err
		if err != nil {
			return
		}
		for {
			select {
			case f := <-h.reqs:
				f()
			case <-h.quit:
				return
			}
		}
	}()
	if err := <-started; err != nil {
		target.Close()
		return nil, fmt.Errorf("enter netns: %w", err)
	}
	return h, nil
}

// OpenPath opens a Host for the namespace bind-mounted at path (e.g.
// /var/run/netns/NAME) or named NAME under /var/run/netns; "" means the current one.
func OpenPath(path string) (*Host, error) {
	if path == "" {
		return Open(netns.None())
	}
	if !strings.Contains(path, "/") {
		path = "/var/run/netns/" + path
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer ns.Close()
	return Open(ns)
}

// Close stops the namespace thread. Pending operations finish first.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		close(h.quit)
		h.ns.Close()
	})
	return nil
}

// Do runs fn on the host's namespace thread. fn must not call Do (it would deadlock).
func (h *Host) Do(fn func() error) error {
	done := make(chan error, 1)
	select {
	case h.reqs <- func() { done <- fn() }:
	case <-h.quit:
		return ErrClosed
	}
	return <-done
}

// Exec runs a program inside the host namespace and returns its standard output. The
// child is started on the namespace thread, whose namespace it inherits, and waited
// for outside it, so several programs can run at once.
func (h *Host) Exec(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := h.Do(cmd.Start); err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	if err := cmd.Wait(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// bridgeNfSysctls must be 1 for bridged VM traffic to traverse iptables at all; they
// are per network namespace.
var bridgeNfSysctls = []string{
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

// EnsureSysctls checks and sets net.bridge.bridge-nf-call-iptables and -ip6tables to 1
// in the host namespace. Without them the firewall silently filters nothing.
func (h *Host) EnsureSysctls() error {
	return h.Do(func() error {
		for _, s := range bridgeNfSysctls {
			p := "/proc/sys/" + s
			cur, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s is missing: the br_netfilter module is not loaded (run `modprobe br_netfilter`): %w",
					strings.ReplaceAll(s, "/", "."), err)
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			if strings.TrimSpace(string(cur)) == "1" {
				continue
			}
			if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("set %s=1 (needed for the security groups to filter bridged traffic): %w",
					strings.ReplaceAll(s, "/", "."), err)
			}
		}
		return nil
	})
}

// writeSysctl writes a /proc/sys value on the namespace thread; a missing path is
// reported as os.ErrNotExist.
func writeSysctl(path, value string) error {
	cur, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) == value {
		return nil
	}
	return os.WriteFile(path, []byte(value), 0o644)
}
