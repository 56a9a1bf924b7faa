package ovsproc

import (
	"os"
	"strings"
	"testing"
)

// SkipUnlessCapable skips the test unless it runs as root with the OVS tools and
// iproute2 installed.
func SkipUnlessCapable(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and runs a private Open vSwitch")
	}
	if m := Missing(); len(m) > 0 {
		t.Skipf("needs Open vSwitch and iproute2; missing from $PATH: %s", strings.Join(m, ", "))
	}
}

// NetnsForTest creates a namespace (prefix "lt" + random suffix) that is deleted when
// the test ends, even if it fails.
func NetnsForTest(t testing.TB) *Netns {
	t.Helper()
	SkipUnlessCapable(t)
	ns, err := NewNetns("lt")
	if err != nil {
		t.Fatalf("netns: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}

// ForTest starts a private OVS in a fresh namespace. Cleanup stops both daemons,
// removes the run directory (kept, with its logs, when the test failed) and deletes
// the namespace.
func ForTest(t testing.TB) *OVS {
	t.Helper()
	ns := NetnsForTest(t) // registered first, so it runs after the OVS cleanup
	return ForTestIn(t, ns)
}

// ForTestIn starts a private OVS inside an existing namespace.
func ForTestIn(t testing.TB, ns *Netns) *OVS {
	t.Helper()
	SkipUnlessCapable(t)
	o, err := Start(Options{Netns: ns})
	if err != nil {
		t.Fatalf("start ovs: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			o.keepDir = true
			t.Logf("ovs logs kept in %s", o.Dir)
		}
		if err := o.Stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return o
}
