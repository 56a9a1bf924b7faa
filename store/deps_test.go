package store

import (
	"os/exec"
	"strings"
	"testing"
)

// Store clients (lanesctl, an agent using an external cluster) must not link etcd's
// server; the embedded server lives in etcdembed.
func TestNoEtcdServerLinked(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v: %s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "go.etcd.io/etcd/server/") {
			t.Errorf("store links %s", p)
		}
	}
}
