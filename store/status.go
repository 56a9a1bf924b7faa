package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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
		return pl.put(statusKey(st.Host, st.PortID), st)
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

// GetPortStatus returns the last status the port's host reported (ErrNotFound if
// none, or if the port does not exist).
func (s *Store) GetPortStatus(ctx context.Context, portID string) (api.PortStatus, error) {
	var p api.Port
	r := s.reader(ctx)
	ok, err := r.getJSON(pPorts+portID, &p)
	if err != nil {
		return api.PortStatus{}, err
	}
	var st api.PortStatus
	if ok {
		ok, err = r.getJSON(statusKey(p.Host, portID), &st)
		if err != nil {
			return api.PortStatus{}, err
		}
	}
	if !ok {
		return api.PortStatus{}, fmt.Errorf("status of port %q: %w", portID, ErrNotFound)
	}
	return st, nil
}

// ListPortStatus returns every reported status, sorted by port ID.
func (s *Store) ListPortStatus(ctx context.Context) ([]api.PortStatus, error) {
	resp, err := s.cli.Get(ctx, pStatus, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", pStatus, err)
	}
	sts := make([]api.PortStatus, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if _, _, ok := parseStatusKey(string(kv.Key)); !ok {
			continue
		}
		var st api.PortStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		sts = append(sts, st)
	}
	sort.Slice(sts, func(i, j int) bool { return sts[i].PortID < sts[j].PortID })
	return sts, nil
}

// parseStatusKey splits /lanes/v1/status/<host>/<port id>; false for anything else,
// such as a key of the layout before per-host prefixes.
func parseStatusKey(key string) (host, portID string, ok bool) {
	rest, ok := strings.CutPrefix(key, pStatus)
	if !ok {
		return "", "", false
	}
	host, portID, ok = strings.Cut(rest, "/")
	if !ok || host == "" || portID == "" || strings.Contains(portID, "/") {
		return "", "", false
	}
	return host, portID, true
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
	pk := pPorts + p.ID
	check := func(sk string, b []byte) (api.PortStatus, bool, error) {
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
		// The port says which host's status key to follow; both are read at one
		// revision, so the watch below misses nothing.
		resp, err := s.cli.Get(ctx, pk)
		if err != nil {
			return api.PortStatus{}, fmt.Errorf("wait for port %s: %w", p.ID, err)
		}
		if len(resp.Kvs) == 0 {
			return api.PortStatus{}, fmt.Errorf("port %s: %w", p.ID, ErrNotFound)
		}
		if err := json.Unmarshal(resp.Kvs[0].Value, &p); err != nil {
			return api.PortStatus{}, fmt.Errorf("decode %s: %w", pk, err)
		}
		rev := resp.Header.Revision
		sk := statusKey(p.Host, p.ID)
		sresp, err := s.cli.Get(ctx, sk, clientv3.WithRev(rev))
		if errors.Is(err, rpctypes.ErrCompacted) {
			continue // compacted between the two reads: read both again
		}
		if err != nil {
			return api.PortStatus{}, fmt.Errorf("wait for port %s: %w", p.ID, err)
		}
		if len(sresp.Kvs) > 0 {
			if st, done, err := check(sk, sresp.Kvs[0].Value); done {
				return st, err
			}
		}
		st, done, err := s.watchPort(ctx, pk, sk, p.Host, rev+1, check)
		if done {
			return st, err
		}
		if ctx.Err() != nil {
			return api.PortStatus{}, fmt.Errorf("wait for port %s: %w", p.ID, ctx.Err())
		}
	}
}

// watchPort follows the port and its host's status key from rev; done false means the
// watch broke, or the port moved to another host, and the caller should read again.
func (s *Store) watchPort(ctx context.Context, pk, sk, host string, rev int64,
	check func(string, []byte) (api.PortStatus, bool, error)) (api.PortStatus, bool, error) {
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
				var p api.Port
				if json.Unmarshal(ev.Kv.Value, &p) == nil && p.Host != host {
					return api.PortStatus{}, false, nil
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
				if st, done, err := check(sk, ev.Kv.Value); done {
					return st, true, err
				}
			}
		}
	}
}
