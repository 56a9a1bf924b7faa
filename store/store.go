// Package store keeps lanes' desired state in etcd v3: typed CRUD of networks, ports,
// security groups, host registrations and port status, with every create, update and
// delete (and the allocations it makes) in one transaction, so a failure writes nothing.
//
// Keys (values are JSON unless noted):
//
//	/lanes/v1/networks/<id>                  api.Network
//	/lanes/v1/ports/<id>                     api.Port (network and groups stored as IDs)
//	/lanes/v1/secgroups/<id>                 api.SecurityGroup
//	/lanes/v1/hosts/<name>                   api.Host: where the host's tunnels end (kept until deleted)
//	/lanes/v1/alive/<name>                   "", attached to the host's lease: its agent is alive
//	/lanes/v1/status/<host>/<port id>        api.PortStatus, written by the port's host
//
// Everything a host writes is under its own name (its host key, its alive key and its
// status prefix), so an etcd role can grant exactly that and nothing else (see
// RolePerms).
//
// Index and allocation keys, whose existence enforces uniqueness (a create compares their
// create revision with 0) and whose values (plain text) name the owner:
//
//	/lanes/v1/names/<kind>/<name>            -> id (networks, ports, secgroups)
//	/lanes/v1/alloc/vni/<vni>                -> network id
//	/lanes/v1/alloc/ip/<network id>/<ip>     -> port id
//	/lanes/v1/alloc/mac/<network id>/<mac>   -> port id
//	/lanes/v1/alloc/dev/<first 11 of id>     -> port id (device names must not collide)
//	/lanes/v1/refs/net/<network id>/<port id>  a port on the network
//	/lanes/v1/refs/sg/<group id>/port/<port id>   a port using the group
//	/lanes/v1/refs/sg/<group id>/sg/<group id>    a rule of another group naming it as remote
//
// Writes are optimistic: every key read while planning a change is compared (mod
// revision) in the transaction that makes it; when the transaction fails the change is
// planned again from fresh reads, which then report the conflict as a clear error (for
// example the IP another client just took).
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Prefix is the root of every key lanes writes.
const Prefix = "/lanes/v1/"

const (
	pNetworks = Prefix + "networks/"
	pPorts    = Prefix + "ports/"
	pGroups   = Prefix + "secgroups/"
	pHosts    = Prefix + "hosts/"
	pAlive    = Prefix + "alive/"
	// pSeen holds each host's last heartbeat (seen.go): no lease, so it outlives the
	// agent; no mirror keeps it, so a heartbeat never costs a reconcile.
	pSeen     = Prefix + "seen/"
	pStatus   = Prefix + "status/"
	pNames    = Prefix + "names/"
	pAllocVNI = Prefix + "alloc/vni/"
	pAllocIP  = Prefix + "alloc/ip/"
	pAllocMAC = Prefix + "alloc/mac/"
	pAllocDev = Prefix + "alloc/dev/"
	pRefsNet  = Prefix + "refs/net/"
	pRefsSG   = Prefix + "refs/sg/"
)

var (
	// ErrNotFound is wrapped when the resource named by the caller does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInUse is wrapped when a delete is refused because something still uses the resource.
	ErrInUse = errors.New("in use")
	// ErrConflict is wrapped when concurrent writers kept changing what a write depends on.
	ErrConflict = errors.New("concurrent modification")
	// ErrPortFailed is wrapped by WaitPortActive when the port's host reports ERROR.
	ErrPortFailed = errors.New("port failed")
)

// maxAttempts bounds how often a write is re-planned after losing a race.
const maxAttempts = 32

// Store is a typed client of lanes' state in etcd. It is safe for concurrent use.
type Store struct {
	cli *clientv3.Client
}

// Option tunes Open.
type Option func(*openOptions)

type openOptions struct {
	tls      ClientTLS
	insecure bool
	dial     dialFunc
}

// WithTLS authenticates with the given files (https endpoints).
func WithTLS(t ClientTLS) Option { return func(o *openOptions) { o.tls = t } }

// AllowInsecure accepts plain http endpoints on non-loopback addresses.
func AllowInsecure(ok bool) Option { return func(o *openOptions) { o.insecure = ok } }

// WithDialer makes the client's TCP connections with dial (for example inside a
// network namespace).
func WithDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *openOptions) { o.dial = dial }
}

// Open connects to etcd and checks that it answers before returning. Endpoints must
// be https unless they are on loopback or AllowInsecure is given (CheckEndpoints).
// With TLS, a certificate either side refuses is reported at once, wrapping ErrTLS.
func Open(ctx context.Context, endpoints []string, opts ...Option) (*Store, error) {
	var o openOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := CheckEndpoints(endpoints, o.tls.Enabled(), o.insecure); err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if o.tls.Enabled() || strings.HasPrefix(endpoints[0], "https://") {
		var err error
		if tlsCfg, err = o.tls.Config(); err != nil {
			return nil, err
		}
		if err := probeTLS(ctx, endpoints, tlsCfg, o.tls, o.dial); err != nil {
			return nil, err
		}
	}
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	lc.Encoding = "console"
	lg, err := lc.Build()
	if err != nil {
		return nil, fmt.Errorf("etcd client logger: %w", err)
	}
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		// A member that vanished without closing its connections (a partition, a
		// powered-off host) is noticed and left for another one.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsCfg,
		Logger:               lg,
	}
	if o.dial != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(o.dial)}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	// clientv3.New does not wait for a connection; a read proves the endpoints answer.
	// A member without a leader says so at once (instead of holding the read until its
	// request timeout), which is retried until ctx ends and then reported as the cause.
	var last error
	for {
		_, err := cli.Get(clientv3.WithRequireLeader(ctx), Prefix, clientv3.WithCountOnly())
		if err == nil {
			return &Store{cli: cli}, nil
		}
		if transient(err) && ctx.Err() == nil {
			last = err
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		cli.Close()
		switch {
		case ctx.Err() != nil && last != nil:
			return nil, fmt.Errorf("etcd at %v: %w (until the time ran out)", endpoints, last)
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("etcd at %v: no member answered: %w", endpoints, err)
		}
		return nil, fmt.Errorf("etcd at %v: %w", endpoints, err)
	}
}

// New wraps an existing client (the caller keeps ownership; Close closes it).
func New(cli *clientv3.Client) *Store { return &Store{cli: cli} }

// Client is the underlying etcd client, for tools that need raw access.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close closes the etcd client.
func (s *Store) Close() error { return s.cli.Close() }

// Dump returns every key under Prefix with its value, at one revision, but the
// hosts' heartbeats (seen.go), which change by themselves every minute. Meant for
// debugging and tests.
func (s *Store) Dump(ctx context.Context) (map[string]string, int64, error) {
	resp, err := s.cli.Get(ctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("dump %s: %w", Prefix, err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), pSeen) {
			out[string(kv.Key)] = string(kv.Value)
		}
	}
	return out, resp.Header.Revision, nil
}

// NewUUID returns a random (version 4) UUID in canonical lower-case form.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms (it panics itself since Go 1.24).
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// IsUUID reports whether s is a canonical lower-case UUID.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// plan collects the compares and operations of one transaction while it is being
// planned. Every key read through it is compared by mod revision, so the transaction
// applies only if nothing it read has changed meanwhile. A key read twice gives the
// first value again: a newer value could only fail the guard, and acting on it could
// turn a lost race into an error for the caller instead of a new plan.
type plan struct {
	s    *Store
	ctx  context.Context
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	seen map[string]bool
	read map[string][]byte
	// newGroups are security groups this transaction creates, which reads (from
	// etcd) cannot find yet.
	newGroups []string
	// allocated are the address keys (pAllocIP...) this transaction hands out, which
	// a listing (from etcd) cannot show yet.
	allocated []string
}

func (p *plan) guardRev(key string, modRev int64) {
	if p.seen[key] {
		return
	}
	p.seen[key] = true
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.ModRevision(key), "=", modRev))
}

// get reads key and guards it; it returns nil, nil when the key is absent (and the
// guard then requires it to stay absent).
func (p *plan) get(key string) ([]byte, error) {
	if v, ok := p.read[key]; ok {
		return v, nil
	}
	resp, err := p.s.cli.Get(p.ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		p.guardRev(key, 0)
		p.remember(key, nil)
		return nil, nil
	}
	p.guardRev(key, resp.Kvs[0].ModRevision)
	p.remember(key, resp.Kvs[0].Value)
	return resp.Kvs[0].Value, nil
}

func (p *plan) remember(key string, v []byte) {
	if p.read == nil {
		p.read = map[string][]byte{}
	}
	p.read[key] = v
}

func (p *plan) getJSON(key string, v any) (bool, error) {
	b, err := p.get(key)
	if err != nil || b == nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

// absent requires key not to exist when the transaction applies.
func (p *plan) absent(key string) { p.guardRev(key, 0) }

// exists requires key to exist when the transaction applies, whatever its revision.
func (p *plan) exists(key string) {
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.CreateRevision(key), ">", 0))
}

// noneUnder requires that no key exists under prefix when the transaction applies.
func (p *plan) noneUnder(prefix string) {
	p.cmps = append(p.cmps, clientv3.Compare(clientv3.CreateRevision(prefix), "=", 0).WithPrefix())
}

func (p *plan) put(key string, v any, opts ...clientv3.OpOption) error {
	var val string
	switch x := v.(type) {
	case string:
		val = x
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		val = string(b)
	}
	p.ops = append(p.ops, clientv3.OpPut(key, val, opts...))
	return nil
}

func (p *plan) del(key string, opts ...clientv3.OpOption) {
	p.ops = append(p.ops, clientv3.OpDelete(key, opts...))
}

// keysUnder lists the keys (not values) under prefix, without guarding them.
func (p *plan) keysUnder(prefix string) ([]string, error) {
	resp, err := p.s.cli.Get(p.ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = strings.TrimPrefix(string(kv.Key), prefix)
	}
	return out, nil
}

// unavailableFor bounds how long a write keeps retrying while etcd cannot commit it:
// long enough to ride out a leader election or the loss of one member, short enough
// that a lost quorum is reported instead of waited out.
const unavailableFor = 15 * time.Second

// update plans a change with build and applies it in one transaction, planning again
// from fresh reads when a guard fails. build returns the error to give the caller when
// the change is refused. While etcd is unavailable (no leader, a member gone, a
// connection lost) it retries with backoff for up to unavailableFor. A commit that
// failed that way may still have been applied, so before planning again it checks
// whether the store already holds what the transaction wrote: a create that did go
// through is then reported as done, not as a conflict with itself.
func (s *Store) update(ctx context.Context, what string, build func(p *plan) error) error {
	var since time.Time
	backoff := 50 * time.Millisecond
	// unavailable waits before the next try; it returns the error to give up with.
	unavailable := func(err error) error {
		if !transient(err) || ctx.Err() != nil {
			return err
		}
		if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) > unavailableFor {
			return fmt.Errorf("etcd unavailable for %s: %w", unavailableFor.Round(time.Second), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		return nil
	}
	var pending []clientv3.Op // the ops of a commit whose outcome is unknown
	for attempt := 0; attempt < maxAttempts; {
		if pending != nil {
			done, err := s.applied(ctx, pending)
			if err != nil {
				if err := unavailable(err); err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				continue
			}
			if done {
				return nil
			}
			pending = nil
		}
		p := &plan{s: s, ctx: ctx, seen: map[string]bool{}}
		if err := build(p); err != nil {
			if !transient(err) {
				return err
			}
			if err := unavailable(err); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			continue
		}
		// Without a leader a member fails the request at once instead of holding it
		// for its request timeout; the backoff above then gives the election time.
		resp, err := s.cli.Txn(clientv3.WithRequireLeader(ctx)).If(p.cmps...).Then(p.ops...).Commit()
		if err != nil {
			if err := unavailable(err); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if !errors.Is(err, rpctypes.ErrNoLeader) {
				pending = p.ops
			}
			continue
		}
		if resp.Succeeded {
			return nil
		}
		attempt++
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return fmt.Errorf("%s: %w: gave up after %d attempts", what, ErrConflict, maxAttempts)
}

// transient reports whether err says etcd could not serve the request now (no
// leader, a member stopping, a connection lost, a request timed out inside etcd),
// as opposed to refusing it.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	if st, ok := status.FromError(err); ok {
		return st.Code() == codes.Unavailable
	}
	return false
}

// applied reports whether every put of ops holds its value and every deleted key or
// range is gone: the store is as if the transaction had committed.
func (s *Store) applied(ctx context.Context, ops []clientv3.Op) (bool, error) {
	reads := make([]clientv3.Op, 0, len(ops))
	for _, op := range ops {
		switch {
		case op.IsPut():
			reads = append(reads, clientv3.OpGet(string(op.KeyBytes())))
		case op.IsDelete():
			opts := []clientv3.OpOption{clientv3.WithCountOnly()}
			if end := op.RangeBytes(); len(end) > 0 {
				opts = append(opts, clientv3.WithRange(string(end)))
			}
			reads = append(reads, clientv3.OpGet(string(op.KeyBytes()), opts...))
		default:
			return false, nil
		}
	}
	resp, err := s.cli.Txn(ctx).Then(reads...).Commit()
	if err != nil {
		return false, err
	}
	for i, op := range ops {
		rr := resp.Responses[i].GetResponseRange()
		switch {
		case op.IsPut():
			if len(rr.Kvs) == 0 || !bytes.Equal(rr.Kvs[0].Value, op.ValueBytes()) {
				return false, nil
			}
		case rr.Count != 0:
			return false, nil
		}
	}
	return true, nil
}

// listJSON decodes every value under prefix into a new T.
func listJSON[T any](ctx context.Context, s *Store, prefix string) ([]T, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func nameKey(kind, name string) string { return pNames + kind + "/" + name }

// statusKey is where host reports the status of a port. Keys of the layout before
// per-host prefixes (status/<port id>) are ignored by readers, deleted with their port,
// and removed by SetupAccess.
func statusKey(host, portID string) string { return pStatus + host + "/" + portID }
