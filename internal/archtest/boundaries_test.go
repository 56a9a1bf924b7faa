package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/lanes-net/lanes/"

// forbidden maps a package to import-path prefixes it must not link, with the reason.
var forbidden = map[string]map[string]string{
	// lanesctl and agents using an external cluster are store clients; the embedded
	// server lives in etcdembed.
	"store": {"go.etcd.io/etcd/server/": "etcd's server belongs to etcdembed"},
	// ovsdb speaks OVSDB only; kernel devices and addresses are hostwire's.
	"ovsdb": {
		"github.com/vishvananda/netlink": "netlink belongs to hostwire",
		"github.com/vishvananda/netns":   "namespaces belong to hostwire",
	},
	// flows is pure: no sockets, no store.
	"flows": {
		"go.etcd.io/":                "flows knows nothing about etcd",
		"github.com/ovn-kubernetes/": "flows knows nothing about OVSDB",
		"github.com/vishvananda/":    "flows knows nothing about the kernel",
		module + "store":             "flows knows nothing about the store",
		module + "ovsdb":             "flows knows nothing about OVSDB",
		module + "hostwire":          "flows knows nothing about the kernel",
		module + "controller":        "flows is below the controller",
	},
}

func TestBoundaries(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	for pkg, rules := range forbidden {
		out, err := exec.Command(goBin, "list", "-deps", module+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v: %s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for prefix, why := range rules {
				if strings.HasPrefix(dep, prefix) {
					t.Errorf("%s links %s: %s", pkg, dep, why)
				}
			}
		}
	}
}
