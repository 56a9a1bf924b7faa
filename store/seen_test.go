package store

import (
	"testing"
	"time"

	"github.com/lanes-net/lanes/api"
)

// A host's heartbeat outlives its lease: a host whose agent stopped is listed down
// with the time it was last seen, which is when it stopped; deleting the host takes
// the heartbeat with it.
func TestHostLastSeen(t *testing.T) {
	s := newStore(t)
	before := time.Now()
	r, err := s.RegisterHost(tctx(t), api.Host{Name: "h1", TunnelIP: "192.0.2.1", TunnelType: api.TunnelVXLAN}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "h1 listed alive with a heartbeat", func() bool {
		h, err := s.GetHost(tctx(t), "h1")
		return err == nil && h.Alive && h.LastSeen != nil && !h.LastSeen.Before(before.Add(-time.Second))
	})
	r.Close()
	stopped := time.Now()
	eventually(t, 10*time.Second, "h1 listed down, last seen when it stopped", func() bool {
		hs, err := s.ListHosts(tctx(t))
		if err != nil || len(hs) != 1 || hs[0].Alive || hs[0].LastSeen == nil {
			return false
		}
		d := hs[0].LastSeen.Sub(stopped)
		return d > -time.Second && d < time.Second
	})
	if err := s.DeleteHost(tctx(t), "h1", false); err != nil {
		t.Fatal(err)
	}
	if seen, err := s.lastSeen(tctx(t), ""); err != nil || len(seen) != 0 {
		t.Errorf("heartbeats after the host was deleted: %v %v", seen, err)
	}
}

// A heartbeat written around lanesd that is not a time leaves the host without a
// last-seen time; listing the hosts does not fail on it.
func TestHostLastSeenGarbage(t *testing.T) {
	s := newStore(t)
	registerHost(t, s, "h1", "192.0.2.1")
	eventually(t, 5*time.Second, "h1's heartbeat", func() bool {
		h, err := s.GetHost(tctx(t), "h1")
		return err == nil && h.LastSeen != nil
	})
	// A heartbeat can outlive its host record too (a host deleted around the CLI).
	for k, v := range map[string]string{pSeen + "h1": "yesterday", pSeen + "ghost": "2026-01-01T00:00:00Z"} {
		if _, err := s.Client().Put(tctx(t), k, v); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := s.ListHosts(tctx(t))
	if err != nil || len(hs) != 1 || hs[0].Name != "h1" || hs[0].LastSeen != nil {
		t.Errorf("hosts with a garbage heartbeat: %+v %v", hs, err)
	}
}
