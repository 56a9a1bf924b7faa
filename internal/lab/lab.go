// Package lab builds a multi-host lanes lab on one machine: every host is a network
// namespace with its own ovsdb-server + ovs-vswitchd (netdev datapath) and its own
// lanesd; an underlay namespace joins the hosts' NICs on a Linux bridge, and a second
// bridge carries the management network (etcd, lanesctl) so that the store never
// depends on the overlay it programs. The end-to-end tests and `make demo` share it.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lanes-net/lanes/hostwire"
	"github.com/lanes-net/lanes/internal/nsexec"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/internal/pki"
)

// Config describes a lab.
type Config struct {
	// Name prefixes every namespace ("<name>-h1", "<name>-ul"); it must be unique on the
	// machine while the lab runs.
	Name string `json:"name"`
	// Dir holds per-host OVS directories, lanesd logs, sockets and the etcd data.
	Dir string `json:"dir"`
	// BinDir holds lanesd, lanesctl and lanes-vm.
	BinDir     string `json:"bin_dir"`
	Hosts      int    `json:"hosts"`
	TunnelType string `json:"tunnel_type"`
	// TunnelTypes, when set, is every host's --tunnel-types (the types it accepts).
	TunnelTypes string `json:"tunnel_types,omitempty"`
	// UnderlayMTU of the hosts' NICs; VMs get this minus the tunnel overhead.
	UnderlayMTU int `json:"underlay_mtu"`
	// UnderlayIPv6 makes the underlay IPv6 only: the hosts' tunnel IPs are
	// fd00:31::<n>/64 and no IPv4 address is on the underlay at all, so every tunnel
	// has an IPv6 outer header (the management network, which carries etcd and
	// lanesctl, stays IPv4: it is not the underlay).
	UnderlayIPv6 bool `json:"underlay_ipv6,omitempty"`
	// EtcdMembers > 0 runs an external etcd cluster of that many members (BinDir/etcd),
	// each in its own namespace on the management network, instead of the member
	// host 1's lanesd embeds. Up starts it.
	EtcdMembers int `json:"etcd_members"`
	// EtcdCompaction is the external members' periodic auto-compaction retention;
	// empty means lanes' embedded etcd's (etcdembed.DefaultCompactionRetention, 5m).
	// Benchmarks shorten it so that compaction happens within their run.
	EtcdCompaction string `json:"etcd_compaction,omitempty"`
	// LanesdLogLevel is every lanesd's --log-level; empty is lanesd's default (info).
	LanesdLogLevel string `json:"lanesd_log_level,omitempty"`
	// LanesdEnv is added to every lanesd's environment (e.g. GOMEMLIMIT=100MiB).
	LanesdEnv []string `json:"lanesd_env,omitempty"`
	// Secure runs etcd as in production: TLS on every client and peer URL, a client
	// certificate per host and for the operator (Dir/pki, made with lanesctl pki), and
	// etcd authentication with lanes' roles. With external members Up runs
	// InitStore; with the embedded member the caller does, once host 1's lanesd runs.
	Secure bool `json:"secure"`
	// L3 names the hosts whose lanesd runs with --l3 (h1, h2, ...). They get a br-ex
	// with a NIC, ex0, on the external network: a bridge in the Outside namespace,
	// which stands for the internet at OutsideIP.
	L3 []string `json:"l3,omitempty"`
}

// The lab's external network, as seen from the Outside namespace.
const (
	ExternalCIDR = "203.0.113.0/24"
	OutsideIP    = "203.0.113.1"
)

// Outside is the namespace behind the L3 hosts' br-ex ("" without L3 hosts).
func (l *Lab) Outside() string {
	if len(l.L3) == 0 {
		return ""
	}
	return l.Name + "-out"
}

func (l *Lab) isL3(h *Host) bool {
	for _, n := range l.L3 {
		if n == h.Name {
			return true
		}
	}
	return false
}

// Host is one compute host of the lab.
type Host struct {
	Name     string `json:"name"`
	Netns    string `json:"netns"`
	OVSDir   string `json:"ovs_dir"`
	TunnelIP string `json:"tunnel_ip"` // without prefix (see tunnelCIDR)
	MgmtIP   string `json:"mgmt_ip"`
	// Dir holds lanesd's socket, pidfile and log.
	Dir string `json:"dir"`
}

// Lab is a running lab. Its description is saved in Dir/lab.json so that another
// process (`lanes-lab down`) can find and remove everything.
type Lab struct {
	Config
	Underlay string        `json:"underlay"`
	HostList []*Host       `json:"hosts_list"`
	Members  []*EtcdMember `json:"etcd_members_list"`
	VMs      []*VM         `json:"vms"`
}

// VM is a fake VM: a namespace whose eth0 is joined to a host tap by lanes-vm.
type VM struct {
	Name  string `json:"name"`
	Host  string `json:"host"`
	Netns string `json:"netns"`
	Tap   string `json:"tap"`
	MAC   string `json:"mac"`
	IP    string `json:"ip"` // with prefix length
}

const (
	underlayNet  = "172.31.0." // tunnel IPs: 172.31.0.<n>/24 on br-phy
	underlayNet6 = "fd00:31::" // with UnderlayIPv6: fd00:31::<n>/64 on br-phy
	mgmtNet      = "10.255.0." // management IPs: 10.255.0.<n>/24 on mgmt0
	// EtcdPort is where host 1's embedded etcd listens for clients.
	EtcdPort = 2379
)

// EtcdEndpoints are the client URLs of the lab's etcd on the management network:
// every external member, or host 1's embedded one.
func (l *Lab) EtcdEndpoints() []string {
	if len(l.Members) == 0 {
		return []string{fmt.Sprintf("%s://%s1:%d", l.scheme(), mgmtNet, EtcdPort)}
	}
	var eps []string
	for _, m := range l.Members {
		eps = append(eps, l.ClientURL(m))
	}
	return eps
}

// EtcdEndpoint is EtcdEndpoints as one --etcd value.
func (l *Lab) EtcdEndpoint() string { return strings.Join(l.EtcdEndpoints(), ",") }

// Up creates the lab: namespaces, underlay and management bridges, one OVS per host.
// lanesd is started separately (StartLanesd) so tests can control it. On error,
// everything made so far is removed.
func Up(cfg Config) (l *Lab, err error) {
	if cfg.Hosts < 1 {
		return nil, errors.New("lab: at least one host")
	}
	if cfg.TunnelType == "" {
		cfg.TunnelType = "vxlan"
	}
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	cfg.Dir = abs
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	l = &Lab{Config: cfg, Underlay: cfg.Name + "-ul"}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Down())
		}
	}()
	if err := l.save(); err != nil {
		return nil, err
	}
	if err := addNetns(l.Underlay); err != nil {
		return nil, err
	}
	for _, br := range []string{"ubr0", "mbr0"} {
		if err := ipIn(l.Underlay, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0"); err != nil {
			return nil, err
		}
		if err := ipIn(l.Underlay, "link", "set", br, "mtu", strconv.Itoa(cfg.UnderlayMTU), "up"); err != nil {
			return nil, err
		}
	}
	if out := l.Outside(); out != "" {
		if err := addNetns(out); err != nil {
			return nil, err
		}
		if err := ipIn(out, "link", "add", "ext0", "type", "bridge", "stp_state", "0", "forward_delay", "0"); err != nil {
			return nil, err
		}
		if err := ipIn(out, "addr", "add", OutsideIP+"/24", "dev", "ext0"); err != nil {
			return nil, err
		}
		if err := ipIn(out, "link", "set", "ext0", "up"); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= cfg.Hosts; i++ {
		h := &Host{
			Name:     fmt.Sprintf("h%d", i),
			Netns:    fmt.Sprintf("%s-h%d", cfg.Name, i),
			TunnelIP: fmt.Sprintf("%s%d", underlayNet, i),
			MgmtIP:   fmt.Sprintf("%s%d", mgmtNet, i),
			Dir:      filepath.Join(cfg.Dir, fmt.Sprintf("h%d", i)),
		}
		if cfg.UnderlayIPv6 {
			h.TunnelIP = fmt.Sprintf("%s%x", underlayNet6, i)
		}
		h.OVSDir = filepath.Join(h.Dir, "ovs")
		l.HostList = append(l.HostList, h)
		if err := l.save(); err != nil {
			return nil, err
		}
		if err := l.addHost(h); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	for i := 1; i <= cfg.EtcdMembers; i++ {
		m := &EtcdMember{
			Name:  fmt.Sprintf("e%d", i),
			Netns: fmt.Sprintf("%s-e%d", cfg.Name, i),
			IP:    fmt.Sprintf("%s%d", mgmtNet, memberBase+i),
			Dir:   filepath.Join(cfg.Dir, fmt.Sprintf("e%d", i)),
		}
		l.Members = append(l.Members, m)
		if err := l.save(); err != nil {
			return nil, err
		}
		if err := l.addMember(m); err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", m.Name, err)
		}
	}
	if cfg.Secure {
		if err := l.makePKI(); err != nil {
			return nil, err
		}
	}
	if len(l.Members) > 0 {
		for _, m := range l.Members {
			if err := l.StartEtcd(m); err != nil {
				return nil, err
			}
		}
		if err := l.waitEtcd(60 * time.Second); err != nil {
			return nil, err
		}
		if cfg.Secure {
			if err := l.InitStore(); err != nil {
				return nil, err
			}
		}
	}
	return l, l.save()
}

func (l *Lab) addHost(h *Host) error {
	if err := os.MkdirAll(h.Dir, 0o755); err != nil {
		return err
	}
	if err := addNetns(h.Netns); err != nil {
		return err
	}
	// eth1 is the underlay NIC (it goes into br-phy; lanesd puts the tunnel IP on
	// br-phy); mgmt0 carries etcd and lanesctl traffic in the kernel.
	mtu := strconv.Itoa(l.UnderlayMTU)
	for _, link := range []struct{ dev, peer, br string }{
		{"eth1", h.Name + "-ul", "ubr0"},
		{"mgmt0", h.Name + "-mg", "mbr0"},
	} {
		if err := ip("link", "add", link.dev, "netns", h.Netns, "mtu", mtu, "type", "veth",
			"peer", "name", link.peer, "netns", l.Underlay, "mtu", mtu); err != nil {
			return err
		}
		if err := ipIn(l.Underlay, "link", "set", link.peer, "master", link.br, "up"); err != nil {
			return err
		}
		if err := ipIn(h.Netns, "link", "set", link.dev, "up"); err != nil {
			return err
		}
	}
	if err := ipIn(h.Netns, "addr", "add", h.MgmtIP+"/24", "dev", "mgmt0"); err != nil {
		return err
	}
	// IPv6 is off in the hosts' namespaces, or it would add DAD and router
	// solicitations to every capture of the underlay. With an IPv6 underlay lanesd
	// turns it on where it is needed, on br-phy (hostwire.UnderlaySpec), as on a
	// host whose other devices have no IPv6.
	if _, err := (&ovsproc.Netns{Name: h.Netns}).Exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
		return err
	}
	o, err := ovsproc.Start(ovsproc.Options{Netns: &ovsproc.Netns{Name: h.Netns}, Dir: h.OVSDir, KeepDir: true})
	if err != nil || !l.isL3(h) {
		return err
	}
	// The L3 host's external NIC in br-ex, as an operator sets up a network host.
	if err := ip("link", "add", "ex0", "netns", h.Netns, "type", "veth", "peer", "name", "ex-"+h.Name, "netns", l.Outside()); err != nil {
		return err
	}
	if err := ipIn(l.Outside(), "link", "set", "ex-"+h.Name, "master", "ext0", "up"); err != nil {
		return err
	}
	if err := ipIn(h.Netns, "link", "set", "ex0", "up"); err != nil {
		return err
	}
	// The outside's packets cross OVS's userspace datapath: their checksums must be
	// complete when they leave the kernel (see hostwire.DisableTxChecksum).
	for _, c := range []struct{ ns, dev string }{{l.Outside(), "ext0"}, {l.Outside(), "ex-" + h.Name}, {h.Netns, "ex0"}} {
		if err := nsexec.DoPath(nsexec.Path(c.ns), func() error { return hostwire.DisableTxChecksum(c.dev) }); err != nil {
			return err
		}
	}
	_, err = o.Vsctl("--may-exist", "add-br", "br-ex", "--", "set", "bridge", "br-ex", "datapath_type=netdev", "fail_mode=standalone",
		"--", "--may-exist", "add-port", "br-ex", "ex0")
	return err
}

// Load reads the description of a lab that an earlier Up saved in dir.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("lab.json: %w", err)
	}
	return l, nil
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.Dir, "lab.json"), b, 0o644)
}

// Host returns the host named name ("h1"...).
func (l *Lab) Host(name string) *Host {
	for _, h := range l.HostList {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// OVS returns a handle on the host's OVS daemons.
func (l *Lab) OVS(h *Host) *ovsproc.OVS {
	return ovsproc.Attach(h.OVSDir, &ovsproc.Netns{Name: h.Netns}, true)
}

// Socket is the path of the host's lanesd local socket (for `lanesctl status`).
func (h *Host) Socket() string { return filepath.Join(h.Dir, "lanesd.sock") }

func (h *Host) pidFile() string { return filepath.Join(h.Dir, "lanesd.pid") }

// LogFile is where the host's lanesd writes its log.
func (h *Host) LogFile() string { return filepath.Join(h.Dir, "lanesd.log") }

// MetricsAddr is the host's lanesd metrics listener (inside the host namespace).
func (h *Host) MetricsAddr() string { return h.MgmtIP + ":9477" }

// tunnelCIDR is the host's tunnel IP with the underlay's prefix length, what lanesd
// puts on br-phy.
func (l *Lab) tunnelCIDR(h *Host) string {
	if l.UnderlayIPv6 {
		return h.TunnelIP + "/64"
	}
	return h.TunnelIP + "/24"
}

// LanesdArgs is the command line of the host's lanesd.
func (l *Lab) LanesdArgs(h *Host) []string {
	args := []string{
		"--host", h.Name,
		"--tunnel-ip", l.tunnelCIDR(h),
		"--tunnel-type", l.TunnelType,
		"--tunnel-types", l.TunnelTypes,
		"--datapath", "netdev",
		"--underlay-nic", "eth1",
		"--underlay-mtu", strconv.Itoa(l.UnderlayMTU),
		"--ovs-rundir", h.OVSDir,
		"--socket", h.Socket(),
		"--metrics", h.MetricsAddr(),
	}
	if l.LanesdLogLevel != "" {
		args = append(args, "--log-level", l.LanesdLogLevel)
	}
	if l.isL3(h) {
		args = append(args, "--l3", "--bridge-mapping", "physnet1:br-ex")
	}
	if l.Secure {
		c := l.CredsOf(pki.Host, h.Name)
		args = append(args, "--etcd-cacert", c.CACert, "--etcd-cert", c.Cert, "--etcd-key", c.Key)
	} else {
		args = append(args, "--etcd-insecure")
	}
	if h.Name == "h1" && len(l.Members) == 0 {
		s := l.scheme()
		args = append(args,
			"--etcd-embed-dir", filepath.Join(h.Dir, "etcd"),
			"--etcd-listen", fmt.Sprintf("%s://127.0.0.1:%d,%s://%s:%d", s, EtcdPort, s, h.MgmtIP, EtcdPort),
			"--etcd-peer", fmt.Sprintf("%s://127.0.0.1:%d", s, EtcdPort+1))
		if l.Secure {
			crt, key := l.pkiFile(pki.Server, "server")
			args = append(args, "--etcd-server-cert", crt, "--etcd-server-key", key)
		}
	} else {
		args = append(args, "--etcd", l.EtcdEndpoint())
	}
	return args
}

// StartLanesd starts the host's lanesd in its namespace, detached (it outlives the
// caller, as a system service would), logging to LogFile.
func (l *Lab) StartLanesd(h *Host) error {
	if pid := h.LanesdPID(); pid != 0 {
		return fmt.Errorf("lanesd on %s already runs (pid %d)", h.Name, pid)
	}
	if err := l.startDetached(h.Netns, "lanesd", l.LanesdArgs(h), h.LogFile(), h.pidFile(), l.LanesdEnv...); err != nil {
		return fmt.Errorf("start lanesd on %s: %w", h.Name, err)
	}
	return nil
}

// startDetached starts one of the lab's binaries inside a namespace, in a session of
// its own (it outlives the caller, as a system service would), appending its output
// to logFile and its PID to pidFile.
func (l *Lab) startDetached(netns, bin string, args []string, logFile, pidFile string, env ...string) error {
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, filepath.Join(l.BinDir, bin)}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return os.WriteFile(pidFile, []byte(strconv.Itoa(pid)), 0o644)
}

// LanesdPID is the PID of the host's running lanesd, or 0.
func (h *Host) LanesdPID() int {
	b, err := os.ReadFile(h.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !ovsproc.Alive(pid) {
		return 0
	}
	return pid
}

// StopLanesd sends SIGTERM (lanesd leaves the data path running) and waits until the
// process is gone; SIGKILL after the timeout.
func (l *Lab) StopLanesd(h *Host) error {
	pid := h.LanesdPID()
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	// Until every thread is gone, not just the main one: the embedded etcd's
	// listeners close last.
	for !ovsproc.Exited(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return os.Remove(h.pidFile())
}

// Exec runs a command inside the host's namespace and returns its combined output.
func (l *Lab) Exec(h *Host, name string, args ...string) (string, error) {
	return (&ovsproc.Netns{Name: h.Netns}).Exec(name, args...)
}

// Ctl runs lanesctl on host h against the lab's store, as the lab's operator.
func (l *Lab) Ctl(h *Host, args ...string) (string, error) {
	if l.Secure {
		c := l.CredsOf(pki.Operator, Operator)
		return l.CtlAs(h, &c, args...)
	}
	return l.CtlAs(h, nil, args...)
}

// CtlAs runs lanesctl on host h with the given TLS files (nil: none).
func (l *Lab) CtlAs(h *Host, c *Creds, args ...string) (string, error) {
	full := []string{"--etcd", l.EtcdEndpoint(), "--socket", h.Socket()}
	if !l.Secure {
		full = append(full, "--etcd-insecure")
	}
	if c != nil {
		for _, f := range [][2]string{{"--etcd-cacert", c.CACert}, {"--etcd-cert", c.Cert}, {"--etcd-key", c.Key}} {
			if f[1] != "" {
				full = append(full, f[0], f[1])
			}
		}
	}
	return l.Exec(h, filepath.Join(l.BinDir, "lanesctl"), append(full, args...)...)
}

// Down stops every lanesd and VM of the lab, its OVS daemons, and deletes its
// namespaces and directory. It works on a half-made lab and twice in a row.
func (l *Lab) Down() error {
	var errs []error
	for _, vm := range l.VMs {
		errs = append(errs, l.StopVM(vm))
	}
	for _, h := range l.HostList {
		errs = append(errs, l.StopLanesd(h))
		if _, err := os.Stat(filepath.Join(h.OVSDir, "conf.db")); err == nil {
			errs = append(errs, l.OVS(h).Stop())
		}
		errs = append(errs, (&ovsproc.Netns{Name: h.Netns}).Delete())
	}
	for _, m := range l.Members {
		errs = append(errs, l.KillEtcd(m), (&ovsproc.Netns{Name: m.Netns}).Delete())
	}
	errs = append(errs, (&ovsproc.Netns{Name: l.Underlay}).Delete())
	if out := l.Outside(); out != "" {
		errs = append(errs, (&ovsproc.Netns{Name: out}).Delete())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.RemoveAll(l.Dir)
}

func addNetns(name string) error {
	ns := &ovsproc.Netns{Name: name}
	if ns.Exists() {
		return fmt.Errorf("netns %s already exists (is another lab with this name running?)", name)
	}
	if err := ip("netns", "add", name); err != nil {
		return err
	}
	return ipIn(name, "link", "set", "lo", "up")
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipIn(ns string, args ...string) error { return ip(append([]string{"-n", ns}, args...)...) }

// StartVM starts a fake VM on host h attached to tap (made by that host's lanesd).
func (l *Lab) StartVM(h *Host, name, tap, mac, ipCIDR string, mtu int) (*VM, error) {
	vm := &VM{Name: name, Host: h.Name, Netns: h.Netns + "-" + name, Tap: tap, MAC: mac, IP: ipCIDR}
	l.VMs = append(l.VMs, vm)
	if err := l.save(); err != nil {
		return nil, err
	}
	out, err := exec.Command(filepath.Join(l.BinDir, "lanes-vm"), "start", "--state-dir", l.vmDir(),
		"--host-netns", h.Netns, "--tap", tap, "--netns", vm.Netns,
		"--mac", mac, "--ip", ipCIDR, "--mtu", strconv.Itoa(mtu)).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("lanes-vm start %s: %w: %s", name, err, out)
	}
	return vm, nil
}

// vmDir holds the fake VMs' pidfiles and logs, so they go with the lab.
func (l *Lab) vmDir() string { return filepath.Join(l.Dir, "vms") }

// StopVM stops a fake VM and deletes its namespace.
func (l *Lab) StopVM(vm *VM) error {
	out, err := exec.Command(filepath.Join(l.BinDir, "lanes-vm"), "stop", "--state-dir", l.vmDir(), "--netns", vm.Netns).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lanes-vm stop %s: %w: %s", vm.Name, err, out)
	}
	return nil
}

// VMExec runs a command inside a VM's namespace.
func (l *Lab) VMExec(vm *VM, name string, args ...string) (string, error) {
	return (&ovsproc.Netns{Name: vm.Netns}).Exec(name, args...)
}
