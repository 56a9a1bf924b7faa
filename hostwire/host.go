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
	"strings"

	"github.com/vishvananda/netns"

	"github.com/lanes-net/lanes/internal/nsexec"
)

// Host runs kernel operations inside one network namespace, on a thread that stays
// in it (nsexec.Thread), because taps, /proc/sys/net and child processes all take the
// namespace of the calling thread. Operations are serialised on that thread.
type Host struct {
	t *nsexec.Thread
}

// ErrClosed is returned by operations on a closed Host.
var ErrClosed = nsexec.ErrClosed

// Open returns a Host for the namespace ns; the caller keeps ownership of ns. Pass
// netns.None() for the caller's current namespace.
func Open(ns netns.NsHandle) (*Host, error) {
	if !ns.IsOpen() {
		cur, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("open current netns: %w", err)
		}
		defer cur.Close()
		ns = cur
	}
	t, err := nsexec.Start(ns)
	if err != nil {
		return nil, err
	}
	return &Host{t: t}, nil
}

// OpenPath opens a Host for the namespace bind-mounted at path (e.g.
// /var/run/netns/NAME) or named NAME under /var/run/netns; "" means the current one.
func OpenPath(path string) (*Host, error) {
	if path == "" {
		return Open(netns.None())
	}
	ns, err := netns.GetFromPath(nsexec.Path(path))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsexec.Path(path), err)
	}
	defer ns.Close()
	return Open(ns)
}

// Close stops the namespace thread. Pending operations finish first.
func (h *Host) Close() error {
	h.t.Close()
	return nil
}

// Do runs fn on the host's namespace thread. fn must not call Do (it would deadlock).
func (h *Host) Do(fn func() error) error { return h.t.Do(fn) }

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
