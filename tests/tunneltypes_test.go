package tests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/lab"
)

// TestTunnelTypes: networks carry their own tunnel type between hosts that accept
// several: a geneve network and a vxlan network between the same two hosts each get
// their own tunnel, and traffic of each goes through its own.
func TestTunnelTypes(t *testing.T) {
	l := newLab(t, 2, withTunnelTypes("vxlan,geneve"))
	h1 := l.Host("h1")
	ctl(t, l, h1, "network", "create", "vx", "--cidr", "10.0.0.0/24")
	ctl(t, l, h1, "network", "create", "gn", "--cidr", "10.0.0.0/24", "--type", "geneve")
	a1, _ := vm(t, l, "h1", "a1", "vx", "10.0.0.1")
	vm(t, l, "h2", "a2", "vx", "10.0.0.2")
	g1, _ := vm(t, l, "h1", "g1", "gn", "10.0.0.1")
	vm(t, l, "h2", "g2", "gn", "10.0.0.2")
	eventually(t, 10*time.Second, "both tunnels to h2", func() error {
		got := tunnelPorts(t, l, h1)
		if !slices.Equal(got, []string{"geneve-ac1f0002", "vxlan-ac1f0002"}) {
			return fmt.Errorf("tunnels %v", got)
		}
		return nil
	})
	for _, c := range []struct {
		from *lab.VM
		name string
	}{{a1, "vxlan"}, {g1, "geneve"}} {
		eventually(t, 10*time.Second, c.name+" network ping", func() error { return ping(l, c.from, "10.0.0.2") })
	}
	// The geneve network's traffic arrived at h2 through the geneve table (6).
	h2 := l.Host("h2")
	before := table6Packets(t, l, h2)
	if err := ping(l, g1, "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	// OVS's revalidators bring datapath counters into the flows within a second or so.
	eventually(t, 5*time.Second, "h2's GENEVE_TUN_TO_LV to count the ping", func() error {
		if after := table6Packets(t, l, h2); after <= before {
			return fmt.Errorf("%d packets before the ping, %d after", before, after)
		}
		return nil
	})
}

// table6Packets sums the packet counters of br-tun's table 6 (GENEVE_TUN_TO_LV) flows
// that match a tunnel ID.
func table6Packets(t *testing.T, l *lab.Lab, h *lab.Host) int {
	out, err := l.OVS(h).Ofctl("dump-flows", "br-tun", "table=6")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "tun_id=") {
			continue
		}
		for _, f := range strings.Split(line, ", ") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(f), "n_packets="); ok {
				k, _ := strconv.Atoi(v)
				n += k
			}
		}
	}
	return n
}
