// Package nsexec runs code on an OS thread inside a network namespace. Taps, netlink
// calls without a handle, /proc/sys/net, sockets and child processes all take the
// namespace of the calling thread, and a Go goroutine moves between threads, so the
// goroutine must be locked to its thread while the thread is switched.
//
// The one rule that matters: a thread that may be in the wrong namespace must never
// go back to the runtime's pool, where any goroutine would then run in that namespace.
// So a thread is unlocked only after switching it back succeeded; otherwise its
// goroutine ends while still locked, and the runtime discards the thread.
package nsexec

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netns"
)

// NetnsDir is where `ip netns` keeps its bind mounts.
const NetnsDir = "/var/run/netns"

// Path resolves a namespace name (as `ip netns` knows it) to its bind mount; a value
// containing a slash is already a path.
func Path(name string) string {
	if strings.Contains(name, "/") {
		return name
	}
	return NetnsDir + "/" + name
}

// setns is netns.Set, replaceable by tests to make switching back fail.
var setns = netns.Set

// Do runs fn on a fresh goroutine locked to its OS thread, switched into ns, and
// waits for it. fn must not switch namespaces itself; goroutines it starts do not run
// in ns. A panic in fn is re-raised in the caller.
func Do(ns netns.NsHandle, fn func() error) error {
	return isolated(func() error {
		if err := setns(ns); err != nil {
			return fmt.Errorf("enter netns: %w", err)
		}
		return nil
	}, fn)
}

// DoPath is Do for the namespace named (or bind-mounted at) path, see Path.
func DoPath(path string, fn func() error) error {
	ns, err := netns.GetFromPath(Path(path))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", Path(path), err)
	}
	defer ns.Close()
	return Do(ns, fn)
}

// NewNamed creates a namespace named name, bind-mounted under NetnsDir as
// `ip netns add` does, without moving any thread but a discarded one into it.
func NewNamed(name string) error {
	return isolated(func() error {
		ns, err := netns.NewNamed(name) // moves this thread into the new namespace
		if err != nil {
			return fmt.Errorf("create netns %s: %w", name, err)
		}
		return ns.Close()
	}, func() error { return nil })
}

type result struct {
	err      error
	panicked bool
	panicVal any
}

// isolated runs enter then (if enter succeeded) fn on a new locked goroutine, then
// switches the thread back to the namespace it started in. enter may fail after it
// moved the thread, so switching back is attempted whatever happened.
func isolated(enter, fn func() error) error {
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread() // nothing switched yet
			done <- result{err: fmt.Errorf("open current netns: %w", err)}
			return
		}
		defer orig.Close()
		var r result
		if r.err = enter(); r.err == nil {
			r = call(fn)
		}
		if err := setns(orig); err != nil {
			// Still locked: the runtime ends this thread with the goroutine.
			r.err = errors.Join(r.err, fmt.Errorf("return to the original netns (thread discarded): %w", err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	return wait(done)
}

// call runs fn, turning a panic into a result so that the thread is still switched
// back (or discarded) before the caller re-raises it.
func call(fn func() error) (r result) {
	defer func() {
		if p := recover(); p != nil {
			r = result{panicked: true, panicVal: p}
		}
	}()
	return result{err: fn()}
}

func wait(done <-chan result) error {
	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// ErrClosed is returned by Thread.Do once the thread is closed.
var ErrClosed = errors.New("namespace thread closed")

// Thread is a goroutine locked for its whole life to an OS thread inside one
// namespace, running functions one at a time. It suits a component that does many
// small operations in a namespace (hostwire.Host): it pays for the switch once.
type Thread struct {
	reqs      chan func()
	quit      chan struct{}
	closeOnce sync.Once
}

// Start starts a thread in ns. The caller keeps ownership of ns and may close it as
// soon as Start returns: the thread itself holds the namespace.
func Start(ns netns.NsHandle) (*Thread, error) {
	t := &Thread{reqs: make(chan func()), quit: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: when this goroutine ends the runtime discards the thread,
		// which is in another namespace.
		runtime.LockOSThread()
		if err := setns(ns); err != nil {
			started <- fmt.Errorf("enter netns: %w", err)
			return
		}
		started <- nil
		for {
			select {
			case f := <-t.reqs:
				f()
			case <-t.quit:
				return
			}
		}
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return t, nil
}

// Do runs fn on the thread and waits for it; fn must not call Do (it would deadlock).
// A panic in fn is re-raised in the caller. After Close, Do returns ErrClosed.
func (t *Thread) Do(fn func() error) error {
	done := make(chan result, 1)
	select {
	case t.reqs <- func() { done <- call(fn) }:
	case <-t.quit:
		return ErrClosed
	}
	return wait(done)
}

// Close ends the thread once the function it runs (if any) returns. Calling it again
// is harmless.
func (t *Thread) Close() {
	t.closeOnce.Do(func() { close(t.quit) })
}
