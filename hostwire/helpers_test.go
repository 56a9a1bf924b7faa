package hostwire

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/ovsproc"
)

// skipUnlessKernel skips tests that need root and the kernel tools.
func skipUnlessKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, bridges, taps and iptables rules")
	}
	for _, b := range []string{"ip", "iptables-restore", "ip6tables-restore", "iptables-save", "ipset"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s in $PATH", b)
		}
	}
}

// testHost is a host namespace with a Host and a Firewall on it.
type testHost struct {
	ns *ovsproc.Netns
	h  *Host
	fw *Firewall
}

func newTestHost(t testing.TB, ns *ovsproc.Netns) *testHost {
	t.Helper()
	h, err := OpenPath(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.EnsureSysctls(); err != nil {
		t.Fatal(err)
	}
	fw, err := NewFirewall(h, FirewallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &testHost{ns: ns, h: h, fw: fw}
}

func (th *testHost) sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := th.ns.Exec(name, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

func (th *testHost) apply(t testing.TB, st FirewallState) ApplyStats {
	t.Helper()
	s, err := th.fw.Apply(context.Background(), st)
	if err != nil {
		t.Fatalf("apply firewall: %v", err)
	}
	return s
}

// counter returns the packet counter of the first rule of chain whose text contains
// every one of the given substrings (iptables-save -c).
func (th *testHost) counter(t testing.TB, fam Family, table, chain string, contains ...string) int {
	t.Helper()
	bin := "iptables-save"
	if fam == V6 {
		bin = "ip6tables-save"
	}
	out := th.sh(t, bin, "-c", "-t", table)
	re := regexp.MustCompile(`^\[(\d+):\d+\] -A (\S+) (.*)$`)
next:
	for _, l := range strings.Split(out, "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil || m[2] != chain {
			continue
		}
		for _, c := range contains {
			if !strings.Contains(m[3], c) {
				continue next
			}
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	t.Fatalf("no rule in %s %s containing %q:\n%s", table, chain, contains, out)
	return 0
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (after %v)", what, err, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func portID(n int) string { return fmt.Sprintf("%08x-%04x-4000-8000-%012x", 0xa0000000+n, n, n) }

func macOf(n int) string { return fmt.Sprintf("fa:16:3e:00:%02x:%02x", n>>8, n&0xff) }

// testNet is the network of the test ports: remote groups are scoped per network.
const testNet = "c0ffee00-0000-4000-8000-000000000001"
