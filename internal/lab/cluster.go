package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lanes-net/lanes/internal/nsexec"
	"github.com/lanes-net/lanes/internal/ovsproc"
	"github.com/lanes-net/lanes/internal/pki"
	"github.com/lanes-net/lanes/store"
)

// EtcdMember is one member of the lab's external etcd cluster: an etcd process in
// its own namespace on the management network, as members on their own machines
// would be.
type EtcdMember struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	IP    string `json:"ip"`
	Dir   string `json:"dir"`
}

const (
	// memberBase + i is member i's management address (hosts use 1..).
	memberBase = 200
	peerPort   = EtcdPort + 1
	// Operator is the lab operator's etcd user, whose certificate Ctl uses.
	Operator = "admin"
)

func (m *EtcdMember) pidFile() string { return filepath.Join(m.Dir, "etcd.pid") }

// LogFile is where the member's etcd writes its log.
func (m *EtcdMember) LogFile() string { return filepath.Join(m.Dir, "etcd.log") }

// PID is the PID of the member's running etcd, or 0.
func (m *EtcdMember) PID() int {
	b, err := os.ReadFile(m.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !ovsproc.Alive(pid) {
		return 0
	}
	return pid
}

func (l *Lab) scheme() string {
	if l.Secure {
		return "https"
	}
	return "http"
}

// ClientURL is the member's client URL.
func (l *Lab) ClientURL(m *EtcdMember) string {
	return fmt.Sprintf("%s://%s:%d", l.scheme(), m.IP, EtcdPort)
}

func (l *Lab) peerURL(m *EtcdMember) string {
	return fmt.Sprintf("%s://%s:%d", l.scheme(), m.IP, peerPort)
}

// Member returns the member named name ("e1"...).
func (l *Lab) Member(name string) *EtcdMember {
	for _, m := range l.Members {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// addMember makes the member's namespace with its leg on the management bridge.
func (l *Lab) addMember(m *EtcdMember) error {
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return err
	}
	if err := addNetns(m.Netns); err != nil {
		return err
	}
	peer := m.Name + "-mg"
	if err := ip("link", "add", "mgmt0", "netns", m.Netns, "type", "veth", "peer", "name", peer, "netns", l.Underlay); err != nil {
		return err
	}
	if err := ipIn(l.Underlay, "link", "set", peer, "master", "mbr0", "up"); err != nil {
		return err
	}
	if err := ipIn(m.Netns, "link", "set", "mgmt0", "up"); err != nil {
		return err
	}
	return ipIn(m.Netns, "addr", "add", m.IP+"/24", "dev", "mgmt0")
}

// EtcdArgs is the command line of a member's etcd: etcd's own flags, as a member on
// its own machine would run them.
func (l *Lab) EtcdArgs(m *EtcdMember) []string {
	var cluster []string
	for _, o := range l.Members {
		cluster = append(cluster, o.Name+"="+l.peerURL(o))
	}
	args := []string{
		"--name", m.Name,
		"--data-dir", filepath.Join(m.Dir, "data"),
		"--listen-client-urls", l.ClientURL(m),
		"--advertise-client-urls", l.ClientURL(m),
		"--listen-peer-urls", l.peerURL(m),
		"--initial-advertise-peer-urls", l.peerURL(m),
		"--initial-cluster", strings.Join(cluster, ","),
		"--initial-cluster-state", "new",
		"--initial-cluster-token", l.Name,
		"--log-level", "warn",
		// As lanes' embedded etcd: without compaction every revision stays and the db
		// grows with the churn until etcd refuses writes (NOSPACE).
		"--auto-compaction-mode", "periodic",
		"--auto-compaction-retention", cmp.Or(l.EtcdCompaction, "5m"),
	}
	if l.Secure {
		crt, key := l.pkiFile(pki.Server, m.Name)
		ca := filepath.Join(l.PKIDir(), pki.CACert)
		args = append(args,
			"--cert-file", crt, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
			"--peer-cert-file", crt, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth")
	}
	return args
}

// StartEtcd starts the member's etcd, detached, logging to LogFile. A member started
// again after KillEtcd rejoins with its data.
func (l *Lab) StartEtcd(m *EtcdMember) error {
	if pid := m.PID(); pid != 0 {
		return fmt.Errorf("etcd %s already runs (pid %d)", m.Name, pid)
	}
	if err := l.startDetached(m.Netns, "etcd", l.EtcdArgs(m), m.LogFile(), m.pidFile()); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	return nil
}

// KillEtcd kills the member's etcd with SIGKILL (a crash, a power cut) and waits until
// it is gone.
func (l *Lab) KillEtcd(m *EtcdMember) error {
	pid := m.PID()
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(10 * time.Second)
	for ovsproc.Alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd %s (pid %d) survived SIGKILL", m.Name, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return os.Remove(m.pidFile())
}

// Creds are the TLS files of one etcd client; the zero value is no TLS.
type Creds = store.ClientTLS

// PKIDir holds the lab's CA and certificates (Secure labs).
func (l *Lab) PKIDir() string { return filepath.Join(l.Dir, "pki") }

func (l *Lab) pkiFile(kind pki.Kind, cn string) (crt, key string) {
	base := filepath.Join(l.PKIDir(), pki.Base(kind, cn))
	return base + ".crt", base + ".key"
}

// CredsOf returns the certificate files of an identity of a Secure lab: a host name
// (pki.Host), Operator (pki.Operator) or root (pki.Admin).
func (l *Lab) CredsOf(kind pki.Kind, cn string) Creds {
	crt, key := l.pkiFile(kind, cn)
	return Creds{CACert: filepath.Join(l.PKIDir(), pki.CACert), Cert: crt, Key: key}
}

// makePKI writes the lab's CA with `lanesctl pki`, as an operator would: a server
// certificate per member (and the embedded one's for host 1), a certificate per host,
// the operator's and root's.
func (l *Lab) makePKI() error {
	ctl := filepath.Join(l.BinDir, "lanesctl")
	run := func(args ...string) error {
		out, err := exec.Command(ctl, append(args, "--dir", l.PKIDir())...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("lanesctl %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("pki", "init", "--san", mgmtNet+"1"); err != nil {
		return err
	}
	for _, m := range l.Members {
		if err := run("pki", "issue-server", m.Name, "--san", m.IP); err != nil {
			return err
		}
	}
	for _, h := range l.HostList {
		if err := run("pki", "issue-host", h.Name); err != nil {
			return err
		}
	}
	return run("pki", "issue-operator", Operator)
}

// InitStore runs `lanesctl store init` with root's certificate: every host of the lab
// gets its role, Operator the operator role, and etcd authentication goes on.
func (l *Lab) InitStore() error {
	args := []string{"store", "init", "--operator", Operator}
	for _, h := range l.HostList {
		args = append(args, "--host", h.Name)
	}
	c := l.CredsOf(pki.Admin, store.RootUser)
	out, err := l.CtlAs(l.HostList[0], &c, args...)
	if err != nil {
		return fmt.Errorf("store init: %w: %s", err, out)
	}
	return nil
}

// DialMgmt opens a TCP connection from inside host 1's namespace, on the management
// network, for clients that run in the test process.
func (l *Lab) DialMgmt(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := nsexec.DoPath(l.HostList[0].Netns, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// OpenStore opens a store client in the test process with creds (nil: the lab
// default), connected over the management network.
func (l *Lab) OpenStore(ctx context.Context, creds *Creds) (*store.Store, error) {
	opts := []store.Option{store.WithDialer(l.DialMgmt), store.AllowInsecure(!l.Secure)}
	if creds == nil && l.Secure {
		c := l.CredsOf(pki.Operator, Operator)
		creds = &c
	}
	if creds != nil {
		opts = append(opts, store.WithTLS(*creds))
	}
	return store.Open(ctx, l.EtcdEndpoints(), opts...)
}

// EtcdLeader returns the member that currently leads the cluster.
func (l *Lab) EtcdLeader(ctx context.Context) (*EtcdMember, error) {
	c := l.CredsOf(pki.Admin, store.RootUser)
	var creds *Creds
	if l.Secure {
		creds = &c
	}
	st, err := l.OpenStore(ctx, creds)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var errs []error
	for _, m := range l.Members {
		if m.PID() == 0 {
			continue
		}
		resp, err := st.Client().Status(ctx, l.ClientURL(m))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		if resp.Leader != 0 && resp.Leader == resp.Header.MemberId {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no member leads: %w", errors.Join(errs...))
}

// waitEtcd waits until the cluster answers through OpenStore.
func (l *Lab) waitEtcd(d time.Duration) error {
	deadline := time.Now().Add(d)
	c := l.CredsOf(pki.Admin, store.RootUser)
	var creds *Creds
	if l.Secure {
		creds = &c
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := l.OpenStore(ctx, creds)
		cancel()
		if err == nil {
			st.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd cluster not ready after %s: %w", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DefragEtcd defragments each running member whose db file is at least minFree and
// half free, the rule of lanes' embedded etcd (etcdembed's periodic defrag), which a
// packaged etcd does not run itself: for an external cluster the operator's job, here
// the caller's. It returns how many members it defragmented.
func (l *Lab) DefragEtcd(ctx context.Context, minFree int64) (int, error) {
	c := l.CredsOf(pki.Admin, store.RootUser)
	var creds *Creds
	if l.Secure {
		creds = &c
	}
	st, err := l.OpenStore(ctx, creds)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	n := 0
	for _, m := range l.Members {
		if m.PID() == 0 {
			continue
		}
		resp, err := st.Client().Status(ctx, l.ClientURL(m))
		if err != nil {
			return n, fmt.Errorf("etcd %s status: %w", m.Name, err)
		}
		if free := resp.DbSize - resp.DbSizeInUse; free < minFree || free < resp.DbSize/2 {
			continue
		}
		if _, err := st.Client().Defragment(ctx, l.ClientURL(m)); err != nil {
			return n, fmt.Errorf("etcd %s defrag: %w", m.Name, err)
		}
		n++
	}
	return n, nil
}
