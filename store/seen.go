package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SeenEvery is how often a registered host writes its heartbeat: the precision of
// "last seen" for a host whose agent died. Neutron's agents report every 30 s into
// their database; once a minute keeps a large cluster's write rate low, and the
// lease, not this, is what says whether a host is alive.
var SeenEvery = time.Minute

// heartbeat writes the host's last-seen time at registration and then every
// SeenEvery until ctx ends.
func (r *HostRegistration) heartbeat(ctx context.Context) {
	t := time.NewTicker(SeenEvery)
	defer t.Stop()
	for {
		r.seen(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// seen writes the heartbeat once. A failure only makes "last seen" older (etcd down,
// or a host role made before heartbeats existed: `lanesctl store init` adds the key),
// so it is logged at debug level and not retried.
func (r *HostRegistration) seen(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, err := r.s.cli.Put(ctx, pSeen+r.host.Name, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		slog.Debug("host heartbeat not written", "host", r.host.Name, "err", err)
	}
}

// lastSeen reads the heartbeats of every host (name "") or of one.
func (s *Store) lastSeen(ctx context.Context, name string) (map[string]*time.Time, error) {
	key, opts := pSeen+name, []clientv3.OpOption(nil)
	if name == "" {
		opts = append(opts, clientv3.WithPrefix())
	}
	resp, err := s.cli.Get(ctx, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("read host heartbeats: %w", err)
	}
	out := map[string]*time.Time{}
	for _, kv := range resp.Kvs {
		if t, err := time.Parse(time.RFC3339Nano, string(kv.Value)); err == nil {
			out[strings.TrimPrefix(string(kv.Key), pSeen)] = &t
		}
	}
	return out, nil
}
