package diag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/internal/ovstool"
	"github.com/lanes-net/lanes/store"
)

// errNotYet answers requests that arrive before the first reconcile finished.
var errNotYet = errors.New("lanesd has not finished its first reconcile yet")

// Server answers lanesctl status, flows and trace.
type Server struct {
	// Snapshot returns the last reconcile's outcome; nil before the first.
	Snapshot func() *Snapshot
	Bridges  []*ofsync.Bridge
	Mirror   *store.Mirror
	Tools    ovstool.Tools
	// Health checks readiness live (nil: not reported).
	Health func(context.Context) api.Readiness
}

// Serve listens on a root-only unix socket at path until ctx ends.
func (s *Server) Serve(ctx context.Context, path string, log *slog.Logger) error {
	ln, err := listenUnix(path)
	if err != nil {
		return fmt.Errorf("local socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		snap, err := s.snapshot()
		if err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, s.StatusWithHealth(r.Context(), snap), nil)
	})
	mux.HandleFunc("GET /flows", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		snap, err := s.snapshot()
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := s.Flows(r.Context(), snap, FlowsQuery{Bridge: q.Get("bridge"), Table: q.Get("table"), Port: q.Get("port"), Network: q.Get("network")})
		reply(w, res, err)
	})
	mux.HandleFunc("GET /trace", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		snap, err := s.snapshot()
		if err != nil {
			reply(w, nil, err)
			return
		}
		port, _ := strconv.Atoi(q.Get("dst_port"))
		res, err := s.Trace(r.Context(), snap, api.TraceRequest{FromPort: q.Get("from_port"), DstIP: q.Get("dst_ip"), Proto: q.Get("proto"), DstPort: port,
			DHCP: q.Get("dhcp") == "true"})
		reply(w, res, err)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("local API", "err", err)
		}
	}()
	return nil
}

func (s *Server) snapshot() (*Snapshot, error) {
	if snap := s.Snapshot(); snap != nil {
		return snap, nil
	}
	return nil, errNotYet
}

// reply writes v as JSON, or the error as {"error": ...} with status 400 for bad
// requests, 503 before the first reconcile and 500 otherwise.
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, api.ErrInvalid):
			code = http.StatusBadRequest
		case errors.Is(err, errNotYet):
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		v = map[string]string{"error": err.Error()}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// listenUnix listens on a root-only unix socket, replacing a stale one.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
