package store

import (
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// EmbeddedReadyTimeout bounds how long StartEmbedded waits for the server to serve.
var EmbeddedReadyTimeout = 60 * time.Second

// Embedded is a single-member etcd server running inside this process.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
}

// StartEmbedded starts a single-member etcd with its data in dataDir, serving clients
// on clientURL and peers on peerURL (both like http://127.0.0.1:2379; etcd refuses
// unix:// peer URLs). It returns once the server is ready to serve, or an error after
// EmbeddedReadyTimeout. A data dir from an earlier run is reused, state included.
func StartEmbedded(dataDir, clientURL, peerURL string) (*Embedded, error) {
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd client URL %q: %w", clientURL, err)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd peer URL %q: %w", peerURL, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "lanes"
	cfg.Dir = dataDir
	cfg.ListenClientUrls = []url.URL{*cu}
	cfg.AdvertiseClientUrls = []url.URL{*cu}
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd logs every request at info; lanes only wants to hear about trouble. Close
	// still logs a few benign "server closed" errors.
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", dataDir, err)
	}
	t := time.NewTimer(EmbeddedReadyTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dataDir, err)
	case <-t.C:
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready after %s", dataDir, EmbeddedReadyTimeout)
	}
	return &Embedded{etcd: e, endpoints: []string{cu.String()}}, nil
}

// Endpoints are the client URLs to give Open.
func (e *Embedded) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Err reports a fatal error of the running server.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the server; its data stays in the data dir.
func (e *Embedded) Close() { e.etcd.Close() }
