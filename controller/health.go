package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/diag"
	"github.com/lanes-net/lanes/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// health answers /readyz and the readiness part of lanesctl status. Every check is
// made at the time of asking: a cached answer would say ready for as long as the
// cache lives after etcd went away.
type health struct {
	st      *store.Store
	reg     *store.HostRegistration
	bridges []*ofsync.Bridge
	// rundir holds the bridges' management sockets: ovs-vswitchd removes a bridge's
	// socket with the bridge, before the OpenFlow client may notice the loss.
	rundir string
	last   func() *diag.Snapshot
}

// storeProbe bounds the store check; /readyz must answer well within a probe's timeout.
const storeProbe = 2 * time.Second

func (h *health) check(ctx context.Context) api.Readiness {
	var r api.Readiness
	add := func(name string, ok bool, detail string) {
		r.Checks = append(r.Checks, api.ReadyCheck{Name: name, OK: ok, Detail: detail})
	}
	// A count-only read that needs a leader: a member cut off from its quorum says so.
	pctx, cancel := context.WithTimeout(ctx, storeProbe)
	_, err := h.st.Client().Get(clientv3.WithRequireLeader(pctx), store.Prefix, clientv3.WithCountOnly())
	cancel()
	if err != nil {
		add("store", false, fmt.Sprintf("etcd did not answer: %v", err))
	} else {
		add("store", true, "")
	}
	if h.reg == nil {
		add("lease", false, "host not registered yet")
	} else if held, ago := h.reg.Held(); !held {
		add("lease", false, fmt.Sprintf("host lease lost: last renewed %s ago; peers see this host down", ago.Round(time.Second)))
	} else {
		add("lease", true, "")
	}
	for _, b := range h.bridges {
		if _, err := os.Stat(filepath.Join(h.rundir, b.Name+".mgmt")); h.rundir != "" && err != nil {
			add(b.Name, false, fmt.Sprintf("bridge missing in ovs-vswitchd: %v", err))
		} else if st := b.Status(); !st.Connected {
			detail := "OpenFlow connection down"
			if st.LastError != "" {
				detail += ": " + st.LastError
			}
			add(b.Name, false, detail)
		} else {
			add(b.Name, true, "")
		}
	}
	switch snap := h.last(); {
	case snap == nil:
		add("reconcile", false, "first reconcile not finished")
	case len(snap.Errors) > 0:
		add("reconcile", false, fmt.Sprintf("last reconcile had %d errors, the first: %s", len(snap.Errors), snap.Errors[0]))
	default:
		add("reconcile", true, "")
	}
	r.Ready = true
	for _, c := range r.Checks {
		r.Ready = r.Ready && c.OK
	}
	return r
}

// readyz answers 200 when every check passes, 503 otherwise, with the checks as JSON.
func (h *health) readyz(w http.ResponseWriter, req *http.Request) {
	r := h.check(req.Context())
	w.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// healthz says the process is up and serving: liveness, not readiness (a restart
// would not bring etcd back).
func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}
