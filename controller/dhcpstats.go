package controller

import (
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
)

// dhcpStats is a responder's per-port record for lanesctl status (DHCPv4's and
// DHCPv6's each keep one): how many requests were answered, released and refused,
// and the last verdict.
type dhcpStats struct {
	mu sync.Mutex
	m  map[string]*api.DHCPReport // by port ID
}

func newDHCPStats() *dhcpStats { return &dhcpStats{m: map[string]*api.DHCPReport{}} }

// note records verdict kind against port id, with last as its summary.
func (s *dhcpStats) note(id, kind, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[id]
	if r == nil {
		r = &api.DHCPReport{}
		s.m[id] = r
	}
	switch kind {
	case dhcpAnswered:
		r.Answered++
	case dhcpReleased:
		r.Released++
	default:
		r.Refused++
	}
	r.Last, r.LastAt = last, time.Now().UTC()
}

// get is port id's record so far (zero when it has none).
func (s *dhcpStats) get(id string) api.DHCPReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.m[id]; r != nil {
		return *r
	}
	return api.DHCPReport{}
}

// keep drops the records of ports not in keep: ports that left the host.
func (s *dhcpStats) keep(keep map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.m {
		if !keep[id] {
			delete(s.m, id)
		}
	}
}
