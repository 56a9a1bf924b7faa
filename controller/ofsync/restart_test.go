package ofsync_test

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
)

// bigState is baseState with n more remote ports on net-a, so that a full replay is
// a bundle of a few thousand flows and takes long enough to be observed.
func (h *host) bigState(n int) flows.Desired {
	d := h.baseState()
	for i := range n {
		host := []string{hostB, hostC}[i%2]
		d.RemotePorts = append(d.RemotePorts, rport(fmt.Sprintf("big%d", i), netA, host,
			fmt.Sprintf("fa:16:3e:01:%02x:%02x", i>>8, i&0xff), fmt.Sprintf("10.0.%d.%d", 8+i>>8, i&0xff)))
	}
	return d
}

var cookiePrefix = regexp.MustCompile(`^cookie=(0x[0-9a-f]+), `)

// keys returns the flows.Flow Key-equivalent of dump lines: table, priority and
// match, without cookie (it carries the round) and actions (learn() carries it too).
func keys(lines []string) map[string]bool {
	m := make(map[string]bool, len(lines))
	for _, l := range lines {
		k, _, _ := strings.Cut(cookiePrefix.ReplaceAllString(l, ""), " actions=")
		m[k] = true
	}
	return m
}

func roundOf(t testing.TB, line string) uint16 {
	t.Helper()
	m := cookiePrefix.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no cookie in %q", line)
	}
	c, err := strconv.ParseUint(m[1], 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	return flows.Cookie(c).Round()
}

// TestRestartKeepsFlows: a new controller process (new Bridge, next round) takes over
// the flows of the previous one without any desired flow ever missing from the
// switch, then holds only its own round; the flows the old round had and the new
// state no longer wants are gone.
func TestRestartKeepsFlows(t *testing.T) {
	h := newHost(t, []string{hostB, hostC}, map[string]uint16{"vm1": 1, "vm2": 2})
	const oldRound, newRound = 41, 42

	desired := h.bigState(1500)
	old := desired
	old.RemotePorts = append(slices.Clone(desired.RemotePorts), rport("stale", netA, hostC, "fa:16:3e:00:0e:e1", "10.0.0.99"))
	oldSet, newSet := render(t, old), render(t, desired)

	closers := map[flows.Bridge]func(){}
	for _, b := range bridges {
		br, closeFn := h.open(b, oldRound)
		syncConnected(t, br, oldSet.Flows(b))
		closers[b] = closeFn
		h.waitDump(b, rendered(oldSet.Flows(b), oldRound), 5*time.Second)
	}

	// Watch both bridges while the old controller stops and the new one takes over.
	var (
		mu                sync.Mutex
		failure           string
		dumps, duringSync int
		syncStart         time.Time
		syncEnd           time.Time
	)
	want := map[flows.Bridge]map[string]bool{}
	for _, b := range bridges {
		want[b] = keys(rendered(newSet.Flows(b), 0))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, b := range bridges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				lines, err := h.o.DumpFlows(string(b))
				mu.Lock()
				if err != nil {
					failure = err.Error()
				} else {
					dumps++
					if !syncStart.IsZero() && start.After(syncStart) && (syncEnd.IsZero() || start.Before(syncEnd)) {
						duringSync++
					}
					got := keys(lines)
					for f := range want[b] {
						if !got[f] && failure == "" {
							failure = fmt.Sprintf("%s: desired flow %s missing from a dump of %d flows", b, f, len(lines))
						}
					}
				}
				mu.Unlock()
			}
		}()
	}

	for _, b := range bridges {
		closers[b]()
	}
	mu.Lock()
	syncStart = time.Now()
	mu.Unlock()
	for _, b := range bridges {
		br, _ := h.open(b, newRound)
		syncConnected(t, br, newSet.Flows(b))
	}
	mu.Lock()
	syncEnd = time.Now()
	target := dumps + 4
	mu.Unlock()
	// A few more dumps after the new round committed.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := dumps
		mu.Unlock()
		if n >= target {
			break
		}
	}
	close(stop)
	wg.Wait()
	if failure != "" {
		t.Fatal(failure)
	}
	t.Logf("%d dumps, %d of them started while the new controller connected and synced (%v)", dumps, duringSync, syncEnd.Sub(syncStart))
	if dumps < 6 {
		t.Errorf("only %d dumps", dumps)
	}

	for _, b := range bridges {
		got := h.dump(b)
		sameSet(t, string(b)+" after restart", got, rendered(newSet.Flows(b), newRound))
		for _, l := range got {
			if r := roundOf(t, l); r != newRound {
				t.Errorf("%s: flow of round %d left: %s", b, r, l)
			}
			if strings.Contains(l, "fa:16:3e:00:0e:e1") || strings.Contains(l, "10.0.0.99") {
				t.Errorf("%s: stale flow left: %s", b, l)
			}
		}
	}
}

// TestVswitchdRestart: ovs-vswitchd restarts with no flows; the Bridge reconnects by
// itself and replays the whole pipeline, and keeps syncing afterwards.
func TestVswitchdRestart(t *testing.T) {
	h := newHost(t, []string{hostB, hostC, hostD}, map[string]uint16{"vm1": 1, "vm2": 2})
	const round = 5
	set := render(t, h.baseState())
	br := map[flows.Bridge]*ofsync.Bridge{}
	for _, b := range bridges {
		br[b], _ = h.open(b, round)
		syncConnected(t, br[b], set.Flows(b))
	}
	for i := range 2 {
		if err := h.o.RestartVswitchd(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for _, b := range bridges {
			h.waitDump(b, rendered(set.Flows(b), round), 20*time.Second)
		}
		t.Logf("restart %d: pipeline back after %v", i+1, time.Since(start))
	}
	// Still in sync: a change goes out as usual.
	next := h.baseState()
	next.Tunnels = append(next.Tunnels, h.tunnel(hostD))
	next.RemotePorts = append(next.RemotePorts, rport("rd1", netA, hostD, "fa:16:3e:00:00:d1", "10.0.0.41"))
	nextSet := render(t, next)
	for _, b := range bridges {
		syncConnected(t, br[b], nextSet.Flows(b))
		sameSet(t, string(b), h.dump(b), rendered(nextSet.Flows(b), round))
	}
}

// TestConnectLate: the Bridge is opened before its OVS bridge exists (lanesd may
// start before ovs-vswitchd has created the bridge and its management socket); it
// keeps trying and installs the desired flows once the bridge appears, even after
// the first round of connection attempts has failed.
func TestConnectLate(t *testing.T) {
	h := newHost(t, nil, nil)
	const name = "br-late"
	late, _ := h.open(name, 1)
	fs := []flows.Flow{{
		Bridge: flows.BrTun, Table: 0, Priority: 0,
		Cookie: flows.MakeCookie(0, flows.CatSetup, ""),
	}}
	if err := late.Sync(fs); err == nil {
		t.Fatal("Sync before the bridge exists succeeded")
	}
	// Long enough for ofnet's initial connection attempts to give up; this is the
	// scenario under test, not a synchronisation.
	time.Sleep(2 * time.Second)
	addBridge(t, h.o, name)
	syncConnected(t, late, fs)
	h.waitDump(name, rendered(fs, 1), 5*time.Second)
}
