package nsexec

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// freshNetns creates a named namespace holding a veth pair (a link the original
// namespace does not have) and removes it when the test ends.
func freshNetns(t *testing.T) (name, link string) {
	t.Helper()
	skipUnlessRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	name = "nsx-" + hex.EncodeToString(b)
	link = "nsx" + hex.EncodeToString(b)
	if err := NewNamed(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "add", link, "type", "veth", "peer", "name", link+"p").CombinedOutput(); err != nil {
		t.Fatalf("veth in %s: %v: %s", name, err, out)
	}
	return name, link
}

func skipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: setns and new network namespaces")
	}
}

// inode identifies a network namespace.
func inode(t *testing.T, h netns.NsHandle) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The runtime cannot end the main thread: when a goroutine locked to it exits, it parks
// the thread for good instead. That is as safe, but the tests below could not tell a
// parked thread from one handed back to the pool in the wrong namespace. Locking the
// main goroutine during init keeps it on the main thread, so no test goroutine, and
// none that Do starts, ever runs there.
func init() { runtime.LockOSThread() }

// threadsIn lists the IDs of this process's threads whose network namespace has the
// given inode.
func threadsIn(t *testing.T, ino uint64) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("net:[%d]", ino)
	var out []string
	for _, task := range tasks {
		l, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err == nil && l == want {
			out = append(out, task.Name())
		}
	}
	return out
}

// noThreadIn waits for the runtime to end every thread left in the namespace.
func noThreadIn(t *testing.T, ino uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := threadsIn(t, ino)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads %v are still in the namespace", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDo(t *testing.T) {
	name, link := freshNetns(t)
	ns, err := netns.GetFromPath(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	target := inode(t, ns)
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if inode(t, self) == target {
		t.Fatal("the fresh namespace is the test's own")
	}
	if _, err := netlink.LinkByName(link); err == nil {
		t.Fatalf("%s visible outside its namespace", link)
	}

	for range 20 { // many calls, so that threads are reused between them
		var inside uint64
		err := DoPath(name, func() error {
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			inside = inode(t, cur)
			_, err = netlink.LinkByName(link)
			return err
		})
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		if inside != target {
			t.Fatalf("fn ran in namespace %d, want %d", inside, target)
		}
	}
	// Every thread went back: none of the process's threads is left inside.
	if left := threadsIn(t, target); len(left) != 0 {
		t.Fatalf("threads %v left in the namespace", left)
	}
	if _, err := netlink.LinkByName(link); err == nil {
		t.Fatalf("%s visible from the caller after Do", link)
	}

	// fn's error comes back; a panic is re-raised in the caller, the thread back home.
	boom := errors.New("boom")
	if err := Do(ns, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	func() {
		defer func() {
			if p := recover(); p != "fn panicked" {
				t.Fatalf("recovered %v", p)
			}
		}()
		_ = Do(ns, func() error { panic("fn panicked") })
	}()
	if left := threadsIn(t, target); len(left) != 0 {
		t.Fatalf("threads %v left in the namespace after a panic", left)
	}
	if err := DoPath("/nonexistent/netns", func() error { return nil }); err == nil {
		t.Fatal("DoPath into a missing namespace succeeded")
	}
}

// When switching back fails, the thread must not return to the runtime.
func TestDoDiscardsThreadThatCannotReturn(t *testing.T) {
	name, _ := freshNetns(t)
	ns, err := netns.GetFromPath(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	target := inode(t, ns)
	calls := 0
	setns = func(h netns.NsHandle) error {
		calls++
		if calls == 2 { // the way back
			return errors.New("injected")
		}
		return netns.Set(h)
	}
	defer func() { setns = netns.Set }()
	err = Do(ns, func() error { return nil })
	if err == nil || !strings.Contains(err.Error(), "thread discarded") {
		t.Fatalf("Do with a failing return: %v", err)
	}
	noThreadIn(t, target)
}

func TestThread(t *testing.T) {
	name, link := freshNetns(t)
	ns, err := netns.GetFromPath(Path(name))
	if err != nil {
		t.Fatal(err)
	}
	target := inode(t, ns)
	th, err := Start(ns)
	ns.Close() // the thread holds the namespace itself
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := th.Do(func() error { _, err := netlink.LinkByName(link); return err }); err != nil {
			t.Fatalf("Thread.Do: %v", err)
		}
	}
	th.Close()
	th.Close()
	if err := th.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
	noThreadIn(t, target)
}

// BenchmarkDo is the cost of one switch into a namespace and back on a fresh
// goroutine; BenchmarkThreadDo that of one call on a Thread already inside.
func BenchmarkDo(b *testing.B) {
	skipUnlessRoot(b)
	ns, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	for b.Loop() {
		if err := Do(ns, func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkThreadDo(b *testing.B) {
	skipUnlessRoot(b)
	ns, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	th, err := Start(ns)
	ns.Close()
	if err != nil {
		b.Fatal(err)
	}
	defer th.Close()
	for b.Loop() {
		if err := th.Do(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
