package ovsproc

import (
	"context"
	"errors"
	"fmt"
	"github.com/lanes-net/lanes/internal/ovstool"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultSchema is the vswitch schema shipped with the distribution's OVS.
const DefaultSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// Binaries that Start needs.
var Binaries = []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"}

// Options configure Start.
type Options struct {
	// Netns runs both daemons inside this namespace (vswitchd mirrors the kernel
	// routes and creates its internal-port taps there). Nil means the caller's
	// namespace; only do that in a namespace that holds no other vswitchd.
	Netns *Netns
	// Dir holds conf.db, sockets, pidfiles and logs. Empty means a new directory
	// under os.TempDir(). It must be short: unix socket paths are limited to 107 bytes.
	Dir string
	// KeepDir keeps Dir (logs, database) after Stop.
	KeepDir bool
	// Schema defaults to DefaultSchema.
	Schema string
}

// OVS is a private ovsdb-server + ovs-vswitchd pair.
type OVS struct {
	Dir   string
	Netns *Netns

	keepDir bool
	mu      sync.Mutex
	stopped bool
}

// Start creates the database and starts ovsdb-server and ovs-vswitchd, both in the
// instance's own run directory and namespace. On error everything already started is
// stopped.
func Start(opts Options) (*OVS, error) {
	o := &OVS{Dir: opts.Dir, Netns: opts.Netns, keepDir: opts.KeepDir}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "lanes-ovs-")
		if err != nil {
			return nil, fmt.Errorf("ovs run dir: %w", err)
		}
		o.Dir = d
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("ovs run dir: %w", err)
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("ovs run dir: %w", err)
	}
	o.Dir = abs
	if len(o.MgmtSocket("br-phy-abcdef")) > 100 {
		return nil, fmt.Errorf("ovs run dir %s: too long for unix socket paths", o.Dir)
	}
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	fail := func(err error) (*OVS, error) {
		return nil, errors.Join(err, o.Stop())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := run(ctx, o.Env(), "ovsdb-tool", "create", o.path("conf.db"), schema); err != nil {
		return fail(fmt.Errorf("ovsdb-tool create: %w: %s", err, out))
	}
	if err := o.startDaemon("ovsdb-server", o.path("conf.db"),
		"--remote=punix:"+o.path("db.sock"),
		"--pidfile="+o.path("ovsdb-server.pid"),
		"--unixctl="+o.path("ovsdb-server.ctl"),
		"-vconsole:off", "--log-file="+o.path("ovsdb-server.log"),
		"--detach", "--no-chdir"); err != nil {
		return fail(err)
	}
	if _, err := o.Vsctl("--no-wait", "init"); err != nil {
		return fail(err)
	}
	if err := o.StartVswitchd(); err != nil {
		return fail(err)
	}
	return o, nil
}

// Attach returns a handle on daemons that an earlier Start (possibly in another
// process, e.g. a lab "up") left running in dir, so they can be inspected or stopped.
func Attach(dir string, ns *Netns, keepDir bool) *OVS {
	return &OVS{Dir: dir, Netns: ns, keepDir: keepDir}
}

func (o *OVS) path(name string) string { return filepath.Join(o.Dir, name) }

// Env points the OVS tools at this instance's directory.
func (o *OVS) Env() []string {
	return []string{"OVS_RUNDIR=" + o.Dir, "OVS_LOGDIR=" + o.Dir, "OVS_DBDIR=" + o.Dir}
}

// DBSocketPath is the filesystem path of the database socket.
func (o *OVS) DBSocketPath() string { return o.path("db.sock") }

// DBEndpoint is the OVSDB endpoint for clients: "unix:<dir>/db.sock".
func (o *OVS) DBEndpoint() string { return "unix:" + o.DBSocketPath() }

// MgmtSocket is the bridge's always-present OpenFlow management socket.
func (o *OVS) MgmtSocket(bridge string) string { return o.path(bridge + ".mgmt") }

// VswitchdCtl is vswitchd's unixctl socket (for ovs-appctl -t).
func (o *OVS) VswitchdCtl() string { return o.path("ovs-vswitchd.ctl") }

// LogFile returns the path of a daemon's log ("ovs-vswitchd" or "ovsdb-server").
func (o *OVS) LogFile(daemon string) string { return o.path(daemon + ".log") }

// Tools is this instance as OVS's clients see it. They all talk over unix sockets,
// which work across network namespaces, so they run from the caller's namespace.
func (o *OVS) Tools() ovstool.Tools { return ovstool.Tools{RunDir: o.Dir, Env: o.Env()} }

func (o *OVS) toolCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cmdTimeout)
}

// Vsctl runs ovs-vsctl against this instance's database.
func (o *OVS) Vsctl(args ...string) (string, error) {
	ctx, cancel := o.toolCtx()
	defer cancel()
	return o.Tools().Vsctl(ctx, args...)
}

// Ofctl runs ovs-ofctl with OVS_RUNDIR set, so a bare bridge name resolves to
// <dir>/<bridge>.mgmt. Pass "-O", "OpenFlow15" yourself or use Ofctl15.
func (o *OVS) Ofctl(args ...string) (string, error) {
	ctx, cancel := o.toolCtx()
	defer cancel()
	return o.Tools().Ofctl(ctx, args...)
}

// Ofctl15 is Ofctl with -O OpenFlow15.
func (o *OVS) Ofctl15(args ...string) (string, error) {
	return o.Ofctl(append([]string{"-O", "OpenFlow15"}, args...)...)
}

// Appctl runs ovs-appctl against vswitchd.
func (o *OVS) Appctl(args ...string) (string, error) {
	ctx, cancel := o.toolCtx()
	defer cancel()
	return o.Tools().Appctl(ctx, args...)
}

// DumpFlows returns the bridge's flows as ovs-ofctl prints them without statistics
// or port names, one trimmed line per flow, header dropped.
func (o *OVS) DumpFlows(bridge string) ([]string, error) {
	out, err := o.Ofctl15("dump-flows", "--no-stats", "--no-names", bridge)
	if err != nil {
		return nil, err
	}
	var flows []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "OFPST_FLOW reply") || strings.HasPrefix(l, "NXST_FLOW reply") {
			continue
		}
		flows = append(flows, l)
	}
	return flows, nil
}

// Trace runs ofproto/trace; with generate the packet is really processed (learn
// actions take effect).
func (o *OVS) Trace(bridge, flow string, generate bool) (string, error) {
	args := []string{"ofproto/trace", bridge, flow}
	if generate {
		args = append(args, "-generate")
	}
	return o.Appctl(args...)
}

// StartVswitchd starts ovs-vswitchd (again). --detach returns once it is ready.
func (o *OVS) StartVswitchd() error {
	return o.startDaemon("ovs-vswitchd", o.DBEndpoint(),
		"--pidfile="+o.path("ovs-vswitchd.pid"),
		"--unixctl="+o.VswitchdCtl(),
		"-vconsole:off", "--log-file="+o.path("ovs-vswitchd.log"),
		"--detach", "--no-chdir")
}

// StopVswitchd stops ovs-vswitchd and waits until it is really gone.
func (o *OVS) StopVswitchd() error { return o.stopDaemon("ovs-vswitchd") }

// RestartVswitchd stops and starts ovs-vswitchd (it forgets every OpenFlow flow).
func (o *OVS) RestartVswitchd() error {
	if err := o.StopVswitchd(); err != nil {
		return err
	}
	return o.StartVswitchd()
}

// StopOVSDB stops ovsdb-server (for client reconnect tests); StartOVSDB restarts it on
// the same database.
func (o *OVS) StopOVSDB() error { return o.stopDaemon("ovsdb-server") }

// StartOVSDB starts ovsdb-server on the existing database.
func (o *OVS) StartOVSDB() error {
	return o.startDaemon("ovsdb-server", o.path("conf.db"),
		"--remote=punix:"+o.path("db.sock"),
		"--pidfile="+o.path("ovsdb-server.pid"),
		"--unixctl="+o.path("ovsdb-server.ctl"),
		"-vconsole:off", "--log-file="+o.path("ovsdb-server.log"),
		"--detach", "--no-chdir")
}

// Stop stops both daemons and removes the directory unless KeepDir was set. It is
// idempotent.
func (o *OVS) Stop() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return nil
	}
	err := errors.Join(o.stopDaemon("ovs-vswitchd"), o.stopDaemon("ovsdb-server"))
	if err != nil {
		return err
	}
	o.stopped = true
	if !o.keepDir {
		if err := os.RemoveAll(o.Dir); err != nil {
			return fmt.Errorf("remove %s: %w", o.Dir, err)
		}
	}
	return nil
}

// PID returns the live PID of a daemon ("ovs-vswitchd" or "ovsdb-server") from its
// pidfile, or 0 when it is not running.
func (o *OVS) PID(daemon string) int {
	pid, err := o.readPID(daemon)
	if err != nil || pid == 0 || !Alive(pid) {
		return 0
	}
	return pid
}

func (o *OVS) startDaemon(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if o.Netns != nil {
		cmd = o.Netns.Command(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
	}
	cmd.Env = append(os.Environ(), o.Env()...)
	// Output goes to a file, not a pipe: the detached daemon must not hold our pipe.
	outPath := o.path(name + ".start.out")
	f, err := os.Create(outPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(outPath)
		return fmt.Errorf("start %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	if o.PID(name) == 0 {
		return fmt.Errorf("start %s: no live process behind %s", name, o.path(name+".pid"))
	}
	return nil
}

func (o *OVS) readPID(daemon string) (int, error) {
	b, err := os.ReadFile(o.path(daemon + ".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pidfile %s: %w", o.path(daemon+".pid"), err)
	}
	return pid, nil
}

// ours checks that pid is our daemon (its command line names our pidfile), so a
// recycled PID or another OVS instance is never signalled.
func (o *OVS) ours(pid int, daemon string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return strings.Contains(string(b), "--pidfile="+o.path(daemon+".pid"))
}

func (o *OVS) stopDaemon(daemon string) error {
	pid, err := o.readPID(daemon)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !Alive(pid) || !o.ours(pid, daemon) {
		_ = os.Remove(o.path(daemon + ".pid"))
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s (pid %d): %w", daemon, pid, err)
	}
	if !waitGone(pid, 10*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, 5*time.Second) {
			return fmt.Errorf("stop %s (pid %d): still running", daemon, pid)
		}
	}
	// On SIGKILL the daemon cannot remove its pidfile; a stale one would confuse the
	// next start's check.
	_ = os.Remove(o.path(daemon + ".pid"))
	return nil
}

// Alive is false for a missing process and for a zombie: PID 1 here reaps orphans
// slowly, and a zombie no longer holds sockets or files.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may contain spaces or parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	st := s[i+2]
	return st != 'Z' && st != 'X'
}

// Exited reports whether every thread of process pid has ended. A process whose main
// thread returned is a zombie (Alive says false) while its other threads still run
// and hold what it had open, its listening sockets included: a successor started then
// finds its ports taken.
func Exited(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X' {
			return false
		}
	}
	return true
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !Alive(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return !Alive(pid)
}

// Missing lists the OVS binaries not found in $PATH.
func Missing() []string {
	var m []string
	for _, b := range Binaries {
		if _, err := exec.LookPath(b); err != nil {
			m = append(m, b)
		}
	}
	for _, b := range []string{"ip"} {
		if _, err := exec.LookPath(b); err != nil {
			m = append(m, b)
		}
	}
	return m
}
