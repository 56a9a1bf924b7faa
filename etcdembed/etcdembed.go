// Package etcdembed runs a single-member etcd server inside the calling process: the
// store lanesd serves when one host is the whole cluster (or the first host of a small
// lab). It lives apart from store/ so that store clients (lanesctl, the agent talking
// to an external cluster) do not link etcd's server.
package etcdembed

import (
	"fmt"
	"log/slog"
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
	stop      chan struct{}
	stopped   chan struct{}
}

// Compaction and defragmentation defaults. Every change writes a revision and etcd
// keeps all of them until compacted, so without compaction the db grows with the
// churn (ports, statuses, leases) until it hits its quota and refuses writes
// (NOSPACE); compaction frees pages that only a defrag gives back to the disk.
// Five minutes of history is ample for the store's watchers, which list again when
// they fall behind a compaction.
const (
	DefaultCompactionMode      = "periodic"
	DefaultCompactionRetention = "5m"
	DefaultDefragEvery         = 10 * time.Minute
	// DefaultDefragMinFree is how much of the db file must be free before a defrag,
	// which blocks writes while it copies the db.
	DefaultDefragMinFree = 16 << 20
)

// defrag is the periodic defragmentation a Server runs.
type defrag struct {
	every   time.Duration
	minFree int64
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
type Option func(*options)

type options struct {
	cfg    *embed.Config
	defrag defrag
}

// WithCompaction sets etcd's auto-compaction: mode "periodic" keeps the revisions of
// the last retention (a duration such as "5m"), mode "revision" the last retention
// revisions (a count such as "10000").
func WithCompaction(mode, retention string) Option {
	return func(o *options) {
		o.cfg.AutoCompactionMode, o.cfg.AutoCompactionRetention = mode, retention
	}
}

// WithDefrag checks the db every interval and defragments it once at least minFree
// bytes of it, and half of it, are free. An interval of 0 turns it off.
func WithDefrag(every time.Duration, minFree int64) Option {
	return func(o *options) { o.defrag = defrag{every: every, minFree: minFree} }
}

// WithTLS serves every client and peer URL over TLS and requires client certificates
// signed by t.CACert; with authentication on (store.SetupAccess) a client
// certificate's common name is its etcd user.
func WithTLS(t ServerTLS) Option {
	return func(o *options) {
		info := transport.TLSInfo{CertFile: t.Cert, KeyFile: t.Key, TrustedCAFile: t.CACert, ClientCertAuth: true}
		o.cfg.ClientTLSInfo = info
		o.cfg.PeerTLSInfo = info
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
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = DefaultCompactionMode, DefaultCompactionRetention
	o := &options{cfg: cfg, defrag: defrag{every: DefaultDefragEvery, minFree: DefaultDefragMinFree}}
	for _, opt := range opts {
		opt(o)
	}
	switch cfg.AutoCompactionMode {
	case "periodic", "revision":
	default:
		return nil, fmt.Errorf("embedded etcd compaction mode %q: want periodic or revision", cfg.AutoCompactionMode)
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
	srv := &Server{etcd: e, endpoints: eps, closing: closing, stop: make(chan struct{}), stopped: make(chan struct{})}
	go srv.defragLoop(o.defrag)
	return srv, nil
}

// DBSize returns the db file's size and how much of it holds data.
func (e *Server) DBSize() (size, inUse int64) {
	be := e.etcd.Server.Backend()
	return be.Size(), be.SizeInUse()
}

// Defragment gives the db's free pages back to the disk now. It blocks writes while
// it copies the db.
func (e *Server) Defragment() error {
	if err := e.etcd.Server.Backend().Defrag(); err != nil {
		return fmt.Errorf("embedded etcd defrag: %w", err)
	}
	return nil
}

func (e *Server) defragLoop(d defrag) {
	defer close(e.stopped)
	if d.every <= 0 {
		return
	}
	t := time.NewTicker(d.every)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		size, inUse := e.DBSize()
		if free := size - inUse; free < d.minFree || free < size/2 {
			continue
		}
		start := time.Now()
		if err := e.Defragment(); err != nil {
			slog.Warn("embedded etcd defrag", "err", err)
			continue
		}
		after, _ := e.DBSize()
		slog.Info("embedded etcd defragmented", "before", size, "after", after, "took", time.Since(start))
	}
}

// Endpoints are the client URLs to give store.Open.
func (e *Server) Endpoints() []string { return append([]string(nil), e.endpoints...) }

// Err reports a fatal error of the running server.
func (e *Server) Err() <-chan error { return e.etcd.Err() }

// Close stops the server; its data stays in the data dir. Calling it again is harmless.
func (e *Server) Close() {
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.stopped
		e.closing.Store(true)
		e.etcd.Close()
	})
}
