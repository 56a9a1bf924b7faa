package main

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/api"
)

// serveStatus answers /status on a unix socket with r, as lanesd does.
func serveStatus(t *testing.T, r api.StatusReport) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "lanesd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(r) })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sock
}

// A status with warnings never ends in "no errors"; the checks and warnings are shown.
func TestStatusShowsWarnings(t *testing.T) {
	r := api.StatusReport{Version: "v1.2.3 (commit abc)", Host: "h1",
		Ready:    &api.Readiness{Checks: []api.ReadyCheck{{Name: "store", OK: false, Detail: "etcd did not answer"}, {Name: "lease", OK: true}}},
		Warnings: []string{"network jumbo (j): MTU 8950 is above the 1450", "not ready: store: etcd did not answer"}}
	out, code, err := call("--socket", serveStatus(t, r), "status")
	if code != 0 {
		t.Fatal(err)
	}
	for _, want := range []string{"lanesd v1.2.3", "store  FAILED  etcd did not answer", "WARNINGS", "MTU 8950", ": no errors; 2 warnings"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	r.Ready, r.Warnings = &api.Readiness{Ready: true, Checks: []api.ReadyCheck{{Name: "store", OK: true}}}, nil
	if out, _, _ := call("--socket", serveStatus(t, r), "status"); !strings.Contains(out, ": no errors\n") || strings.Contains(out, "WARNINGS") {
		t.Errorf("healthy status:\n%s", out)
	}
	out, _, err = call("--socket", serveStatus(t, r), "version")
	if err != nil || !strings.Contains(out, "lanesd   v1.2.3 (commit abc)") {
		t.Errorf("version: %q, %v", out, err)
	}
}
