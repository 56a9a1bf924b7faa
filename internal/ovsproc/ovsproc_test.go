package ovsproc

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	SkipUnlessCapable(t)
	ns, err := NewNetns("lt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	o, err := Start(Options{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Stop() })

	br := "br-" + RandomSuffix(6)
	if _, err := o.Vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
		"protocols=OpenFlow10,OpenFlow13,OpenFlow15", "fail_mode=secure"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.MgmtSocket(br)); err != nil {
		t.Fatalf("mgmt socket: %v", err)
	}
	// The internal port must appear inside the namespace, not in ours.
	if out, err := ns.Exec("ip", "link", "show", br); err != nil {
		t.Fatalf("bridge internal port not in netns: %v", err)
	} else if !strings.Contains(out, br) {
		t.Fatalf("ip link show %s: %s", br, out)
	}

	if _, err := o.Ofctl15("add-flow", br, "table=0,priority=5,in_port=1,actions=drop"); err != nil {
		t.Fatal(err)
	}
	flows, err := o.DumpFlows(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 || !strings.Contains(flows[0], "priority=5,in_port=1 actions=drop") {
		t.Fatalf("flows = %q", flows)
	}
	tr, err := o.Trace(br, "in_port=1,dl_type=0x0800", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tr, "Datapath actions: drop") {
		t.Fatalf("trace:\n%s", tr)
	}

	old := o.PID("ovs-vswitchd")
	if old == 0 {
		t.Fatal("no vswitchd pid")
	}
	if err := o.StopVswitchd(); err != nil {
		t.Fatal(err)
	}
	if Alive(old) {
		t.Fatalf("vswitchd %d still alive after StopVswitchd", old)
	}
	if err := o.StartVswitchd(); err != nil {
		t.Fatal(err)
	}
	if n := o.PID("ovs-vswitchd"); n == 0 || n == old {
		t.Fatalf("vswitchd pid after restart = %d (before %d)", n, old)
	}
	// A restart forgets OpenFlow flows; the bridge itself comes back from the DB.
	flows, err = o.DumpFlows(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 0 {
		t.Fatalf("flows after restart = %q", flows)
	}

	dbPID, vsPID, dir := o.PID("ovsdb-server"), o.PID("ovs-vswitchd"), o.Dir
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := o.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if Alive(dbPID) || Alive(vsPID) {
		t.Fatalf("daemons alive after Stop: ovsdb-server %v, vswitchd %v", Alive(dbPID), Alive(vsPID))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("run dir %s still there: %v", dir, err)
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if ns.Exists() {
		t.Fatal("netns still exists")
	}
	if err := ns.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestForTest(t *testing.T) {
	o := ForTest(t)
	if _, err := o.Vsctl("add-br", "br-x", "--", "set", "bridge", "br-x", "datapath_type=netdev"); err != nil {
		t.Fatal(err)
	}
	out, err := o.Vsctl("list-br")
	if err != nil || out != "br-x" {
		t.Fatalf("list-br = %q, %v", out, err)
	}
}

func TestExited(t *testing.T) {
	if Exited(os.Getpid()) {
		t.Fatal("this process counts as exited")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if Exited(pid) {
		t.Fatal("a running child counts as exited")
	}
	_ = cmd.Process.Kill()
	// Killed but not yet reaped: a zombie whose only thread ended.
	deadline := time.Now().Add(5 * time.Second)
	for !Exited(pid) {
		if time.Now().After(deadline) {
			t.Fatal("a killed child never counted as exited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !Exited(pid) {
		t.Fatal("a reaped child counts as running")
	}
}
