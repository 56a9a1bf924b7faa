package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/flows"
)

// The local API is JSON over a root-only unix socket: lanesctl status, flows and trace
// ask the lanesd of the host they run on. Its types are the wire format.

// StatusReport answers GET /status.
type StatusReport struct {
	Host          string          `json:"host"`
	TunnelIP      string          `json:"tunnel_ip"`
	TunnelType    string          `json:"tunnel_type"`
	Datapath      string          `json:"datapath"`
	StoreRevision int64           `json:"store_revision"`
	StoreRelists  int             `json:"store_relists"`
	Bridges       []BridgeStatus  `json:"bridges"`
	Ports         []PortReport    `json:"ports"`
	Tunnels       []TunnelReport  `json:"tunnels"`
	Networks      []NetworkReport `json:"networks"`
	Started       time.Time       `json:"started"`
	Converged     time.Time       `json:"converged"` // zero until the first reconcile without errors
	LastReconcile struct {
		At       time.Time `json:"at"`
		Took     string    `json:"took"`
		Revision int64     `json:"revision"`
		Errors   []string  `json:"errors,omitempty"`
	} `json:"last_reconcile"`
}

// BridgeStatus is one bridge's OpenFlow side.
type BridgeStatus struct {
	Name      string         `json:"name"`
	Connected bool           `json:"connected"`
	Round     uint16         `json:"round"`
	Flows     int            `json:"flows"`
	PerTable  map[string]int `json:"flows_per_table"`
	LastError string         `json:"last_error,omitempty"`
}

// PortReport is one local port.
type PortReport struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Network string `json:"network"`
	Tap     string `json:"tap"`
	VLAN    uint16 `json:"local_vlan"`
	Ofport  int    `json:"ofport"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// TunnelReport is one tunnel port and the host behind it.
type TunnelReport struct {
	Port     string `json:"port"`
	RemoteIP string `json:"remote_ip"`
	PeerHost string `json:"peer_host"`
	Ofport   int    `json:"ofport"`
}

// NetworkReport is a network with local ports.
type NetworkReport struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	VNI       uint32   `json:"vni"`
	LocalVLAN uint16   `json:"local_vlan"`
	FloodTo   []string `json:"flood_to"` // peer hosts
}

func serveLocal(ctx context.Context, cfg Config, a *agent, log *slog.Logger) error {
	if cfg.Socket == "" {
		return nil
	}
	ln, err := listenUnix(cfg.Socket)
	if err != nil {
		return fmt.Errorf("local socket %s: %w", cfg.Socket, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { reply(w, a.statusReport(), nil) })
	mux.HandleFunc("GET /flows", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		res, err := a.flowsReport(r.Context(), q.Get("bridge"), q.Get("table"), q.Get("port"), q.Get("network"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /trace", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		port, _ := strconv.Atoi(q.Get("dst_port"))
		res, err := a.trace(r.Context(), TraceRequest{FromPort: q.Get("from_port"), DstIP: q.Get("dst_ip"), Proto: q.Get("proto"), DstPort: port})
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

// reply writes v as JSON, or the error as {"error": ...} with status 400 for bad
// requests and 500 otherwise.
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, api.ErrInvalid) {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
		v = map[string]string{"error": err.Error()}
	}
	_ = json.NewEncoder(w).Encode(v)
}

func (a *agent) statusReport() StatusReport {
	a.mu.Lock()
	v, tunnels, ofports, vlans, last, statuses := a.view, a.tunnels, a.ofports, a.vlanOf, a.last, a.statusView
	a.mu.Unlock()
	addr, _ := a.cfg.TunnelAddr()
	r := StatusReport{Host: a.cfg.Host, TunnelIP: addr.String(), TunnelType: a.cfg.TunnelType, Datapath: a.cfg.DatapathType,
		StoreRevision: a.mirror.Revision(), StoreRelists: a.mirror.Relists()}
	r.Started, r.Converged = last.Started, last.Converged
	r.LastReconcile.At, r.LastReconcile.Took, r.LastReconcile.Revision, r.LastReconcile.Errors = last.At, last.Took.String(), last.Revision, last.Errors
	for _, b := range a.bridges() {
		st := b.Status()
		bs := BridgeStatus{Name: b.Name, Connected: st.Connected, Round: st.Round, Flows: st.Installed, PerTable: map[string]int{}, LastError: st.LastError}
		for id, n := range st.FlowsPerTable {
			t, _ := flows.LookupTable(flows.Bridge(b.Name), id)
			bs.PerTable[fmt.Sprintf("%d %s", id, t.Name)] = n
		}
		r.Bridges = append(r.Bridges, bs)
	}
	for _, p := range v.local {
		pr := PortReport{ID: p.ID, Name: p.Name, Network: v.nets[p.NetworkID].Name, Tap: api.TapName(p.ID), VLAN: vlans[p.NetworkID], Ofport: ofports[p.ID], State: "-"}
		if s, ok := statuses[p.ID]; ok {
			pr.State, pr.Reason = s.State, s.Reason
		}
		r.Ports = append(r.Ports, pr)
	}
	sort.Slice(r.Ports, func(i, j int) bool { return r.Ports[i].Name < r.Ports[j].Name })
	for ip, t := range tunnels {
		r.Tunnels = append(r.Tunnels, TunnelReport{Port: t.Name, RemoteIP: ip, PeerHost: v.peers[ip].Name, Ofport: t.Ofport})
	}
	sort.Slice(r.Tunnels, func(i, j int) bool { return r.Tunnels[i].Port < r.Tunnels[j].Port })
	flood := map[string]map[string]bool{}
	for _, rp := range v.remote {
		if flood[rp.NetworkID] == nil {
			flood[rp.NetworkID] = map[string]bool{}
		}
		flood[rp.NetworkID][rp.Host] = true
	}
	for _, n := range v.nets {
		nr := NetworkReport{ID: n.ID, Name: n.Name, VNI: n.VNI, LocalVLAN: vlans[n.ID]}
		for h := range flood[n.ID] {
			nr.FloodTo = append(nr.FloodTo, h)
		}
		sort.Strings(nr.FloodTo)
		r.Networks = append(r.Networks, nr)
	}
	sort.Slice(r.Networks, func(i, j int) bool { return r.Networks[i].Name < r.Networks[j].Name })
	return r
}

func (a *agent) bridges() []*ofsync.Bridge { return []*ofsync.Bridge{a.brInt, a.brTun} }
