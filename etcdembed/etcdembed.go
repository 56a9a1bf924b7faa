// Package etcdembed runs a single-member etcd server inside the calling process: the
// store lanesd serves when one host is the whole cluster (or the first host of a small
// lab). It lives apart from store/ so that store clients (lanesctl, the agent talking
// to an external cluster) do not link etcd's server.
package etcdembed

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ReadyTimeout bounds how long Start waits for the server to serve.
var ReadyTimeout = 60 * time.Second

// Server is a single-member etcd server running inside this process.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	closing   *atomic.Bool
	closeOnce sync.Once
}

// benignWarnings are logged at every start of a single-member loopback server.
var benignWarnings = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
	// A second server in one process (tests) cannot register its metrics again.
	"etcdserver: failed to register grpc metrics": true,
}

// quietCore drops every log entry once the server is closing.
type quietCore struct {
	zapcore.Core
	closing *atomic.Bool
}

func (c quietCore) With(f []zapcore.Field) zapcore.Core { return quietCore{c.Core.With(f), c.closing} }

func (c quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.closing.Load() || benignWarnings[e.Message] {
		return ce
	}
	return c.Core.Check(e, ce)
}

// ServerTLS names the files of a member's TLS: its certificate (used on the client
// and the peer URLs, and as the client certificate towards peers) and the CA whose
// client certificates it accepts.
type ServerTLS struct {
	CACert, Cert, Key string
}

// Option tunes Start.
type Option func(*embed.Config)

// WithTLS serves every client and peer URL over TLS and requires client certificates
// signed by t.CACert; with authentication on (store.SetupAccess) a client
// certificate's common name is its etcd user.
func WithTLS(t ServerTLS) Option {
	return func(cfg *embed.Config) {
		info := transport.TLSInfo{CertFile: t.Cert, KeyFile: t.Key, TrustedCAFile: t.CACert, ClientCertAuth: true}
		cfg.ClientTLSInfo = info
		cfg.PeerTLSInfo = info
	}
}

// Start starts a single-member etcd with its data in dataDir, serving clients on
// clientURLs (one or more, comma-separated) and peers on peerURL (all like
// http://127.0.0.1:2379, or https:// with WithTLS; etcd refuses unix:// peer URLs).
// It returns once the server is ready to serve, or an error after ReadyTimeout. A
// data dir from an earlier run is reused, state included.
func Start(dataDir, clientURLs, peerURL string, opts ...Option) (*Server, error) {
	var cus []url.URL
	for _, s := range strings.Split(clientURLs, ",") {
		cu, err := url.Parse(s)
		if err != nil || cu.Host == "" {
			return nil, fmt.Errorf("embedded etcd client URL %q: want scheme://host:port", s)
		}
		cus = append(cus, *cu)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd peer URL %q: %w", peerURL, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "lanes"
	cfg.Dir = dataDir
	cfg.ListenClientUrls = cus
	cfg.AdvertiseClientUrls = cus
	cfg.ListenPeerUrls = []url.URL{*pu}
	cfg.AdvertisePeerUrls = []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	for _, o := range opts {
		o(cfg)
	}
	if !cfg.ClientTLSInfo.Empty() {
		// A plain URL next to TLS ones would serve the store without a certificate.
		for _, u := range append(append([]url.URL(nil), cus...), *pu) {
			if u.Scheme != "https" {
				return nil, fmt.Errorf("embedded etcd URL %s: with TLS every client and peer URL must be https", u.String())
			}
		}
	}
	// etcd logs every request at info; lanes only wants to hear about trouble, and not
	// about the "server closed" errors every shutdown logs.
	closing := new(atomic.Bool)
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	lc.Encoding = "console"
	lc.DisableStacktrace = true
	lc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	lg, err := lc.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return quietCore{c, closing} }))
	if err != nil {
		return nil, fmt.Errorf("embedded etcd logger: %w", err)
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	// NewConfig leaves this 0 (only the flag sets the default), which logs every request.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", dataDir, err)
	}
	t := time.NewTimer(ReadyTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: %w", dataDir, err)
	case <-t.C:
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s: not ready after %s", dataDir, ReadyTimeout)
	}
	var eps []string
	for _, cu := range cus {
		eps = append(eps, cu.String())
	}
	return &Server{etcd: e, endpoints: eps, closing: closing}, nil
}

// Endpoints are the client URLs to give store.Open.
func (e *Server) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Err reports a fatal error of the running server.
func (e *Server) Err() <-chan error { return e.etcd.Err() }

// Close stops the server; its data stays in the data dir. Calling it again is harmless.
func (e *Server) Close() {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.etcd.Close()
	})
}
