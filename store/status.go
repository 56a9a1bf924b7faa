package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/lanes-net/lanes/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotBound is wrapped when a host reports the status of a port bound to another host.
var ErrNotBound = errors.New("port not bound to this host")

// SetPortStatus stores what st.Host reports about st.PortID. The write is one
// transaction that requires the port to still exist, unchanged since it was read, and
// be bound to st.Host: a status can never outlive its port, and a host the port has
// moved away from cannot overwrite the new host's report. Updated defaults to now.
func (s *Store) SetPortStatus(ctx context.Context, st api.PortStatus) error {
	if err := validateStatus(&st); err != nil {
		return err
	}
	if st.Updated.IsZero() {
		st.Updated = time.Now().UTC()
	}
	return s.update(ctx, "status of port "+st.PortID, func(pl *plan) error {
		var p api.Port
		ok, err := pl.getJSON(pPorts+st.PortID, &p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("port %s: %w", st.PortID, ErrNotFound)
		}
		if p.Host != st.Host {
			return fmt.Errorf("status of port %s from host %s: %w (bound to %s)", st.PortID, st.Host, ErrNotBound, p.Host)
		}
		return pl.put(pStatus+st.PortID, st)
	})
}

// validateStatus checks a status's own fields, as written and as read back.
func validateStatus(st *api.PortStatus) error {
	switch {
	case st.PortID == "" || !IsUUID(st.PortID):
		return &api.FieldError{Field: "status.port_id", Value: st.PortID, Reason: "not a port ID"}
	case st.Host == "":
		return &api.FieldError{Field: "status.host", Reason: "must be set"}
	}
	switch st.State {
	case api.StatusBuild, api.StatusActive, api.StatusError, api.StatusDown:
	default:
		return &api.FieldError{Field: "status.state", Value: st.State, Reason: "must be BUILD, ACTIVE, ERROR or DOWN"}
	}
	return nil
}

// GetPortStatus returns the last status reported for a port (ErrNotFound if none).
func (s *Store) GetPortStatus(ctx context.Context, portID string) (api.PortStatus, error) {
	var st api.PortStatus
	ok, err := s.reader(ctx).getJSON(pStatus+portID, &st)
	if err != nil {
		return api.PortStatus{}, err
	}
	if !ok {
		return api.PortStatus{}, fmt.Errorf("status of port %q: %w", portID, ErrNotFound)
	}
	return st, nil
}

// ListPortStatus returns every reported status, sorted by port ID.
func (s *Store) ListPortStatus(ctx context.Context) ([]api.PortStatus, error) {
	sts, err := listJSON[api.PortStatus](ctx, s, pStatus)
	sort.Slice(sts, func(i, j int) bool { return sts[i].PortID < sts[j].PortID })
	return sts, err
}

// WaitPortActive waits until the port (by ID or name) is reported ACTIVE and returns
// its status. When its host reports ERROR it returns the status and an error wrapping
// ErrPortFailed with the host's reason; when the port is deleted, ErrNotFound. It
// watches rather than polls, and reads again if the watch breaks.
func (s *Store) WaitPortActive(ctx context.Context, portRef string) (api.PortStatus, error) {
	p, err := s.GetPort(ctx, portRef)
	if err != nil {
		return api.PortStatus{}, err
	}
	pk, sk := pPorts+p.ID, pStatus+p.ID
	check := func(b []byte) (api.PortStatus, bool, error) {
		var st api.PortStatus
		if err := json.Unmarshal(b, &st); err != nil {
			return st, true, fmt.Errorf("decode %s: %w", sk, err)
		}
		switch st.State {
		case api.StatusActive:
			return st, true, nil
		case api.StatusError:
			return st, true, fmt.Errorf("port %s on host %s: %w: %s", p.ID, st.Host, ErrPortFailed, st.Reason)
		}
		return st, false, nil
	}
	for {
		// Both keys at one revision, so the watch below misses nothing.
		resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(pk), clientv3.OpGet(sk)).Commit()
		if err != nil {
			return api.PortStatus{}, fmt.Errorf("wait for port %s: %w", p.ID, err)
		}
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return api.PortStatus{}, fmt.Errorf("port %s: %w", p.ID, ErrNotFound)
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			if st, done, err := check(kvs[0].Value); done {
				return st, err
			}
		}
		st, done, err := s.watchPort(ctx, pk, sk, resp.Header.Revision+1, check)
		if done {
			return st, err
		}
		if ctx.Err() != nil {
			return api.PortStatus{}, fmt.Errorf("wait for port %s: %w", p.ID, ctx.Err())
		}
	}
}

// watchPort follows the port and status keys from rev; done false means the watch
// broke and the caller should read again.
func (s *Store) watchPort(ctx context.Context, pk, sk string, rev int64,
	check func([]byte) (api.PortStatus, bool, error)) (api.PortStatus, bool, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	pw := s.cli.Watch(wctx, pk, clientv3.WithRev(rev))
	sw := s.cli.Watch(wctx, sk, clientv3.WithRev(rev))
	for {
		select {
		case wr, ok := <-pw:
			if !ok || wr.Err() != nil {
				return api.PortStatus{}, false, nil
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					return api.PortStatus{}, true, fmt.Errorf("port %s deleted while waiting: %w", pk[len(pPorts):], ErrNotFound)
				}
			}
		case wr, ok := <-sw:
			if !ok || wr.Err() != nil {
				return api.PortStatus{}, false, nil
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				if st, done, err := check(ev.Kv.Value); done {
					return st, true, err
				}
			}
		}
	}
}
