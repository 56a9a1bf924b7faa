package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lanes-net/lanes/internal/ovsproc"
)

// flowWatch follows one table of a bridge through an OpenFlow flow monitor (one
// `ovs-ofctl monitor` for the whole run): the switch reports each flow added or
// deleted as its bundle commits, so the time a flow appeared is read as it happens,
// not found by polling dumps, whose own runs (a process and a dump each) would be
// part of what is timed.
type flowWatch struct {
	mu     sync.Mutex
	events map[string]time.Time // "ADDED dl_dst" or "DELETED dl_dst" -> when read
	wake   chan struct{}        // closed and renewed at each event
	done   chan struct{}
	err    error
	cancel func()
}

var monitorEvent = regexp.MustCompile(`event=(ADDED|DELETED|MODIFIED)\b.*\bdl_dst=([0-9a-f:]{17})`)

// watchFlows starts a monitor of table on br and returns once the switch has
// answered it (its reply to the monitor request is printed first).
func watchFlows(tb testing.TB, o *ovsproc.OVS, br string, table int) *flowWatch {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ovs-ofctl", "-O", "OpenFlow15", "monitor", "unix:"+o.MgmtSocket(br), fmt.Sprintf("watch:table=%d,!initial", table))
	cmd.Env = append(os.Environ(), o.Env()...)
	// ovs-ofctl prints the reply to the request on stdout and the updates that
	// follow on stderr: both are read, as one stream.
	out, pw, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		out.Close()
		tb.Fatal(err)
	}
	w := &flowWatch{events: map[string]time.Time{}, wake: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		defer out.Close()
		first := true
		var last string // what the tool said last, for when it ends
		for sc.Scan() {
			now := time.Now()
			last = sc.Text()
			if first {
				first = false
				close(ready)
			}
			if strings.Contains(last, "event=PAUSED") {
				// The switch drops updates while its backlog to us is full: the
				// times read from here on would be wrong.
				w.mu.Lock()
				w.err = fmt.Errorf("ovs-ofctl monitor %s: paused by the switch, updates lost", br)
				close(w.wake)
				w.wake = make(chan struct{})
				w.mu.Unlock()
			}
			if m := monitorEvent.FindStringSubmatch(sc.Text()); m != nil {
				w.mu.Lock()
				w.events[m[1]+" "+m[2]] = now
				close(w.wake)
				w.wake = make(chan struct{})
				w.mu.Unlock()
			}
		}
		w.mu.Lock()
		w.err = fmt.Errorf("ovs-ofctl monitor %s ended: %v: %s", br, cmd.Wait(), last)
		close(w.wake)
		w.mu.Unlock()
	}()
	w.cancel = cancel
	tb.Cleanup(w.stop)
	select {
	case <-ready:
	case <-w.done:
		tb.Fatal(w.err)
	case <-time.After(30 * time.Second):
		tb.Fatalf("ovs-ofctl monitor %s: no reply in 30 s", br)
	}
	return w
}

// when waits until the flow to dl_dst mac has been reported with event (ADDED or
// DELETED) and returns when that was read, then forgets it (the next add of the same
// MAC is a new event).
func (w *flowWatch) when(tb testing.TB, event, mac string, within time.Duration) time.Time {
	tb.Helper()
	deadline := time.After(within)
	key := event + " " + mac
	for {
		w.mu.Lock()
		t, ok := w.events[key]
		wake, err := w.wake, w.err
		if ok {
			delete(w.events, key)
		}
		w.mu.Unlock()
		switch {
		case ok:
			return t
		case err != nil:
			tb.Fatal(err)
		}
		select {
		case <-wake:
		case <-deadline:
			tb.Fatalf("no %s of a flow to %s within %s", event, mac, within)
		}
	}
}

// stop ends the monitor; it may be called more than once.
func (w *flowWatch) stop() {
	w.cancel()
	<-w.done
}
