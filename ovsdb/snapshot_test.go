package ovsdb

import "testing"

// The snapshot is listed once per cache event: a reconcile that finds OVSDB unchanged
// copies no row, and a change by another client (an operator's ovs-vsctl) is seen as
// soon as its event arrives.
func TestSnapshotFollowsCacheEvents(t *testing.T) {
	o, c, ctx := setup(t)
	s1, err := c.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := c.snapshot(ctx); err != nil || s2 != s1 {
		t.Fatalf("unchanged cache listed again: %p %p %v", s1, s2, err)
	}
	if _, err := o.Vsctl("add-br", "br-by-hand", "--", "set", "bridge", "br-by-hand", "datapath_type=netdev"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a bridge added by hand in the snapshot", func() bool {
		s, err := c.snapshot(ctx)
		return err == nil && s.bridges["br-by-hand"] != nil && s != s1
	})
}
