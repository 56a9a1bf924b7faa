// Package ovsproc runs private Open vSwitch instances (ovsdb-server + ovs-vswitchd with
// their own run, log and database directory) inside network namespaces, for tests,
// benchmarks and the lab. It never looks up processes by name: other OVS instances may
// run on the same machine, and only PIDs from our own pidfiles are ever signalled.
package ovsproc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vishvananda/netns"

	"github.com/lanes-net/lanes/internal/nsexec"
)

// NetnsDir is where `ip netns` keeps its bind mounts.
const NetnsDir = nsexec.NetnsDir

// Netns is a named network namespace created through `ip netns add`, so that the
// iproute2 tools and other processes can find it by name.
type Netns struct {
	Name string
}

// RandomSuffix returns n random hex digits, used to make names unique per run.
func RandomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)[:n]
}

// NewNetns creates a namespace named prefix + "-" + 6 random hex digits and brings its
// loopback up (tcp controllers and local daemons need it).
func NewNetns(prefix string) (*Netns, error) {
	var lastErr error
	for range 5 {
		name := prefix + "-" + RandomSuffix(6)
		if _, err := os.Stat(filepath.Join(NetnsDir, name)); err == nil {
			continue
		}
		if out, err := run(context.Background(), nil, "ip", "netns", "add", name); err != nil {
			lastErr = fmt.Errorf("ip netns add %s: %w: %s", name, err, out)
			continue
		}
		ns := &Netns{Name: name}
		if out, err := run(context.Background(), nil, "ip", "-n", name, "link", "set", "lo", "up"); err != nil {
			_ = ns.Delete()
			return nil, fmt.Errorf("netns %s: lo up: %w: %s", name, err, out)
		}
		return ns, nil
	}
	return nil, fmt.Errorf("create netns with prefix %q: %w", prefix, lastErr)
}

// Exists reports whether the namespace's bind mount is still present.
func (n *Netns) Exists() bool {
	_, err := os.Stat(filepath.Join(NetnsDir, n.Name))
	return err == nil
}

// Command returns a command that runs name inside the namespace (`ip netns exec`).
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Exec runs a command inside the namespace and returns its combined output.
func (n *Netns) Exec(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := run(ctx, nil, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("netns %s: %s %v: %w: %s", n.Name, name, args, err, out)
	}
	return out, nil
}

// Handle opens the namespace; the caller closes the handle.
func (n *Netns) Handle() (netns.NsHandle, error) {
	h, err := netns.GetFromName(n.Name)
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", n.Name, err)
	}
	return h, nil
}

// Do runs fn on a thread switched into the namespace (see nsexec.Do). Use it for
// netlink calls that act on the calling thread's namespace (e.g. taps) and for
// sockets, which keep the namespace they were made in.
func (n *Netns) Do(fn func() error) error { return nsexec.DoPath(n.Name, fn) }

// Delete removes the namespace. Deleting one that is already gone is not an error.
// The kernel frees the namespace once no process remains inside it, so stop daemons
// running there first.
func (n *Netns) Delete() error {
	if !n.Exists() {
		return nil
	}
	if out, err := run(context.Background(), nil, "ip", "netns", "del", n.Name); err != nil {
		if !n.Exists() {
			return nil
		}
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, out)
	}
	return nil
}

const cmdTimeout = 60 * time.Second

// run executes a command with extra environment and returns trimmed combined output.
// Output goes to a buffer, so commands must not leave daemons holding the pipe (see
// runDaemon for those).
func run(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	// A detached child keeping the pipe open must not hang us forever.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return string(bytes.TrimSpace(buf.Bytes())), err
}
