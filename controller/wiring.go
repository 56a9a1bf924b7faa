package controller

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/hostwire"
)

// Port retry pacing: a port that cannot be wired is retried with exponential backoff,
// so one broken port never makes the host spin.
const (
	retryMin = 200 * time.Millisecond
	retryMax = 30 * time.Second
)

// wireStep makes the kernel plumbing of local ports (tap, qbr, veth) where it changed,
// in one pass over the host's links. It remembers what it realised, so a reconcile only
// touches ports whose plumbing changed, and which ports failed, to retry them with
// backoff while the others go ahead.
type wireStep struct {
	log      *slog.Logger
	host     *hostwire.Host
	tapUID   uint32
	tapGID   uint32
	realized map[string]hostwire.PortSpec
	failures map[string]*failure
}

type failure struct {
	err   error
	tries int
	next  time.Time
}

// wireResult is what the wiring step achieved.
type wireResult struct {
	Wired map[string]bool // local ports whose plumbing is in place
	// Failed are local ports that could not be wired, with why; they are retried at Next.
	Failed map[string]error
	// Left are ports this step had wired that are no longer local: their devices go
	// once their qvo has left br-int.
	Left []string
	Next time.Time // earliest retry due; zero: none
}

func newWireStep(log *slog.Logger, host *hostwire.Host, tapUID, tapGID int) *wireStep {
	return &wireStep{log: log, host: host, tapUID: uint32(tapUID), tapGID: uint32(tapGID),
		realized: map[string]hostwire.PortSpec{}, failures: map[string]*failure{}}
}

// Sync wires the view's local ports on networks with a local VLAN. On a full pass it
// checks every port again (someone may have deleted a tap by hand).
func (s *wireStep) Sync(v *view.View, vlans map[string]uint16, full bool) (wireResult, error) {
	if full {
		clear(s.realized)
	}
	res := wireResult{Wired: map[string]bool{}, Failed: map[string]error{}}
	local := map[string]bool{}
	now := time.Now()
	var todo []hostwire.PortSpec
	for _, p := range v.Local {
		local[p.ID] = true
		if _, ok := vlans[p.NetworkID]; !ok {
			continue
		}
		spec := hostwire.PortSpec{ID: p.ID, MAC: p.MAC, MTU: v.Networks[p.NetworkID].MTU, TapOwner: s.tapUID, TapGroup: s.tapGID}
		if r, ok := s.realized[p.ID]; ok && r == spec {
			res.Wired[p.ID] = true
			continue
		}
		if f := s.failures[p.ID]; f != nil && now.Before(f.next) {
			res.Failed[p.ID] = f.err
			continue
		}
		todo = append(todo, spec)
	}
	for id := range s.realized {
		if !local[id] {
			res.Left = append(res.Left, id)
			delete(s.realized, id)
		}
	}
	for id := range s.failures {
		if !local[id] {
			delete(s.failures, id)
		}
	}
	var err error
	if len(todo) > 0 {
		var failed map[string]error
		failed, err = s.host.EnsurePorts(todo)
		if err != nil {
			err = fmt.Errorf("wire ports: %w", err)
			failed = map[string]error{}
			for _, spec := range todo {
				failed[spec.ID] = err
			}
		}
		for _, spec := range todo {
			if perr, bad := failed[spec.ID]; bad {
				res.Failed[spec.ID] = s.portFailed(spec.ID, fmt.Errorf("wire %s: %w", api.TapName(spec.ID), perr))
				continue
			}
			s.realized[spec.ID] = spec
			delete(s.failures, spec.ID)
			res.Wired[spec.ID] = true
		}
	}
	for _, f := range s.failures {
		if res.Next.IsZero() || f.next.Before(res.Next) {
			res.Next = f.next
		}
	}
	if err == nil && len(res.Failed) > 0 {
		err = fmt.Errorf("%d ports not wired", len(res.Failed))
	}
	return res, err
}

// Invalidate forgets that the port with device ID devID is wired (its devices changed
// behind lanesd's back), so the next pass checks it again.
func (s *wireStep) Invalidate(devID string) {
	for id := range s.realized {
		if hostwire.DeviceID(id) == devID {
			delete(s.realized, id)
		}
	}
}

func (s *wireStep) portFailed(id string, err error) error {
	f := s.failures[id]
	if f == nil {
		f = &failure{}
		s.failures[id] = f
	}
	f.err = err
	f.tries++
	d := retryMin << min(f.tries, 8)
	f.next = time.Now().Add(min(d, retryMax))
	s.log.Warn("port failed; will retry", "port", id, "tries", f.tries, "in", time.Until(f.next).Round(time.Millisecond), "err", err)
	return err
}

// pruneStep deletes the kernel devices of ports that are no longer bound here, after
// their qvo left br-int. On a full pass it also looks for leftovers in the kernel (a
// port deleted while lanesd was down).
type pruneStep struct {
	log  *slog.Logger
	host *hostwire.Host
}

// Sync removes the devices of gone (port IDs) that the view does not hold locally.
func (s *pruneStep) Sync(v *view.View, gone []string, full bool) {
	local := map[string]bool{}
	for _, p := range v.Local {
		local[hostwire.DeviceID(p.ID)] = true
	}
	for _, id := range gone {
		if local[hostwire.DeviceID(id)] {
			continue
		}
		if err := s.host.DeletePort(id); err != nil {
			s.log.Warn("unwire port", "port", id, "err", err)
		}
	}
	if !full {
		return
	}
	present, err := s.host.ListPorts()
	if err != nil {
		s.log.Warn("list kernel ports", "err", err)
		return
	}
	for _, ps := range present {
		if !local[ps.DeviceID] {
			if err := s.host.DeletePort(ps.DeviceID); err != nil {
				s.log.Warn("remove leftover port", "device", ps.DeviceID, "err", err)
			}
		}
	}
}
