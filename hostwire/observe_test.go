package hostwire

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/ovsproc"
)

// The observer hears of every bulk write Apply makes, and of nothing when an Apply
// has nothing to write.
func TestFirewallObserve(t *testing.T) {
	skipUnlessKernel(t)
	th := newTestHost(t, ovsproc.NetnsForTest(t))
	var mu sync.Mutex
	var seen []string
	fw, err := NewFirewall(th.h, FirewallOptions{Observe: func(what string, took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if took <= 0 || err != nil {
			t.Errorf("%s: took %s, err %v", what, took, err)
		}
		seen = append(seen, what)
	}})
	if err != nil {
		t.Fatal(err)
	}
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		slices.Sort(out)
		return out
	}
	st := fwState(1, 2)
	if _, err := fw.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if got, want := take(), []string{"IPv4/filter", "IPv4/raw", "IPv6/filter", "IPv6/raw", "ipset"}; !slices.Equal(got, want) {
		t.Errorf("first apply observed %v, want %v", got, want)
	}
	if _, err := fw.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if got := take(); len(got) != 0 {
		t.Errorf("no-op apply observed %v", got)
	}
	st.Members["web"][testNet] = append(st.Members["web"][testNet], "10.9.9.9")
	if _, err := fw.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if got := take(); !slices.Equal(got, []string{"ipset"}) {
		t.Errorf("member change observed %v, want [ipset]", got)
	}
}
