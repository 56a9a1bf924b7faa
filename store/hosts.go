package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lanes-net/lanes/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// hostRetry is how long a registration waits before trying again after etcd refused it.
const hostRetry = time.Second

// HostRegistration keeps a host's key alive under its lease.
type HostRegistration struct {
	s      *Store
	host   api.Host
	ttl    int64
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	lease   clientv3.LeaseID
	renewed time.Time // the last grant or keep-alive answer
}

// RegisterHost writes the host's record (where its tunnels end), and its alive key
// under a new lease of ttl (etcd rounds it up to whole seconds and its minimum), and
// keeps the lease alive until ctx is cancelled or Close is called; the alive key then
// disappears once the TTL runs out, which is how other hosts learn that this host's
// agent is gone. The record stays: liveness is not placement, so peers keep their
// tunnels and flows to a host whose agent is down (its VMs may be fine) until its
// ports move or an operator deletes the host. When the lease is lost (etcd
// unreachable for longer than the TTL) the host registers again under a new lease.
// Registering a name that is already registered takes it over: a restarted host must
// not wait for its previous lease to expire.
func (s *Store) RegisterHost(ctx context.Context, h api.Host, ttl time.Duration) (*HostRegistration, error) {
	h.Alive = false // derived from the key's existence, never stored
	if err := api.ValidateHost(&h); err != nil {
		return nil, err
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	if secs < 1 {
		secs = 1
	}
	r := &HostRegistration{s: s, host: h, ttl: secs, done: make(chan struct{})}
	if err := r.register(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-rctx.Done():
		}
	}()
	go r.run(rctx)
	go r.heartbeat(rctx) // seen.go
	return r, nil
}

func (r *HostRegistration) register(ctx context.Context) error {
	g, err := r.s.cli.Grant(ctx, r.ttl)
	if err != nil {
		return fmt.Errorf("lease for host %s: %w", r.host.Name, err)
	}
	b, err := json.Marshal(r.host)
	if err != nil {
		return fmt.Errorf("encode host %s: %w", r.host.Name, err)
	}
	// A record written by an older lanesd under the lease is detached from it by the
	// plain Put.
	if _, err := r.s.cli.Txn(ctx).Then(
		clientv3.OpPut(pHosts+r.host.Name, string(b)),
		clientv3.OpPut(pAlive+r.host.Name, "", clientv3.WithLease(g.ID)),
	).Commit(); err != nil {
		r.s.cli.Revoke(context.WithoutCancel(ctx), g.ID)
		return fmt.Errorf("register host %s: %w", r.host.Name, err)
	}
	r.mu.Lock()
	r.lease, r.renewed = g.ID, time.Now()
	r.mu.Unlock()
	return nil
}

// SurelyHeld reports whether the lease is surely still alive in etcd: etcd confirmed
// it less than two thirds of the TTL ago. A host that serves something only one host
// may serve (a router) stops when SurelyHeld turns false, which is before etcd expires
// the lease and another host takes over: the third of the TTL left covers the delay
// between etcd's renewal and the answer reaching this host.
func (r *HostRegistration) SurelyHeld() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.renewed) < time.Duration(r.ttl)*time.Second*2/3
}

func (r *HostRegistration) run(ctx context.Context) {
	defer close(r.done)
	for {
		ka, err := r.s.cli.KeepAlive(ctx, r.Lease())
		if err == nil {
			for range ka {
				r.mu.Lock()
				r.renewed = time.Now()
				r.mu.Unlock()
			}
		}
		if ctx.Err() != nil {
			return
		}
		slog.Warn("host lease lost; registering again", "host", r.host.Name, "lease", int64(r.Lease()), "keepalive_err", err)
		for {
			if err := r.register(ctx); err == nil {
				break
			} else if ctx.Err() != nil {
				return
			} else {
				slog.Warn("registering host failed", "host", r.host.Name, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(hostRetry):
			}
		}
	}
}

// Held reports whether etcd renewed the lease within its TTL; once it has not, peers
// may already see this host down. It returns how long ago the last renewal was.
func (r *HostRegistration) Held() (bool, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ago := time.Since(r.renewed)
	return ago < time.Duration(r.ttl)*time.Second, ago
}

// Lease is the current lease of the registration.
func (r *HostRegistration) Lease() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// Close stops the keep-alive; the host is shown down once the TTL ran out. It does not
// revoke the lease, so a restarting host is never even shown down.
func (r *HostRegistration) Close() {
	r.cancel()
	<-r.done
	r.seen(context.Background()) // seen.go: the last heartbeat says when it stopped
}

// Revoke stops the keep-alive and shows the host down at once.
func (r *HostRegistration) Revoke(ctx context.Context) error {
	r.Close()
	if _, err := r.s.cli.Revoke(ctx, r.Lease()); err != nil {
		return fmt.Errorf("revoke lease of host %s: %w", r.host.Name, err)
	}
	return nil
}

// ListHosts returns the registered hosts, alive or not, sorted by name.
func (s *Store) ListHosts(ctx context.Context) ([]api.Host, error) {
	hs, err := listJSON[api.Host](ctx, s, pHosts)
	if err != nil {
		return nil, err
	}
	alive, err := s.cli.Get(ctx, pAlive, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list alive hosts: %w", err)
	}
	up := map[string]bool{}
	for _, kv := range alive.Kvs {
		up[strings.TrimPrefix(string(kv.Key), pAlive)] = true
	}
	seen, err := s.lastSeen(ctx, "")
	if err != nil {
		return nil, err
	}
	for i := range hs {
		hs[i].Alive = up[hs[i].Name]
		hs[i].LastSeen = seen[hs[i].Name]
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	return hs, nil
}

// GetHost returns a registered host, alive or not; ErrNotFound when it never
// registered or was deleted.
func (s *Store) GetHost(ctx context.Context, name string) (api.Host, error) {
	var h api.Host
	rd := s.reader(ctx)
	ok, err := rd.getJSON(pHosts+name, &h)
	if err != nil {
		return api.Host{}, err
	}
	if !ok {
		return api.Host{}, fmt.Errorf("host %q: %w", name, ErrNotFound)
	}
	alive, err := s.cli.Get(ctx, pAlive+name, clientv3.WithCountOnly())
	if err != nil {
		return api.Host{}, fmt.Errorf("get host %s: %w", name, err)
	}
	h.Alive = alive.Count > 0
	seen, err := s.lastSeen(ctx, name)
	if err != nil {
		return api.Host{}, err
	}
	h.LastSeen = seen[name]
	return h, nil
}

// DeleteHost removes a host: peers drop their tunnels and flows to it. A host that
// still has ports bound is refused unless force is set (then its ports stay in the
// store, bound to a host nobody realises, until they are deleted or moved).
func (s *Store) DeleteHost(ctx context.Context, name string, force bool) error {
	if _, err := s.GetHost(ctx, name); err != nil {
		return err
	}
	if !force {
		ports, err := s.ListPorts(ctx)
		if err != nil {
			return err
		}
		var bound []string
		for _, p := range ports {
			if p.Host == name {
				bound = append(bound, p.Name)
			}
		}
		if len(bound) > 0 {
			sort.Strings(bound)
			return &api.FieldError{Field: "host", Value: name, Reason: fmt.Sprintf("%d ports are bound to it (%s): delete or move them first, or force", len(bound), strings.Join(bound, ", "))}
		}
	}
	if _, err := s.cli.Txn(ctx).Then(clientv3.OpDelete(pHosts+name), clientv3.OpDelete(pAlive+name), clientv3.OpDelete(pSeen+name),
		clientv3.OpDelete(pStatus+name+"/", clientv3.WithPrefix())).Commit(); err != nil {
		return fmt.Errorf("delete host %s: %w", name, err)
	}
	return nil
}
