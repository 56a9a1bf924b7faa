package diag

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/version"
)

// Status is lanesctl status: the last reconcile's outcome and the switches' live
// OpenFlow side.
func (s *Server) Status(snap *Snapshot) api.StatusReport {
	v := snap.View
	r := api.StatusReport{Version: version.Get().String(), Host: snap.Host.Name, TunnelIP: snap.Host.TunnelIP, TunnelType: snap.Host.TunnelType, Datapath: snap.Host.Datapath,
		Started: snap.Started, Converged: snap.Converged,
		LastReconcile: api.ReconcileReport{At: snap.At, Took: snap.Took.String(), Revision: v.Revision, Errors: snap.Errors}}
	if s.Mirror != nil {
		r.StoreRevision, r.StoreRelists = s.Mirror.Revision(), s.Mirror.Relists()
	}
	for _, b := range s.Bridges {
		st := b.Status()
		bs := api.BridgeStatus{Name: b.Name, Connected: st.Connected, Round: st.Round, Flows: st.Installed, PerTable: map[string]int{}, LastError: st.LastError}
		for id, n := range st.FlowsPerTable {
			t, _ := flows.LookupTable(flows.Bridge(b.Name), id)
			bs.PerTable[fmt.Sprintf("%d %s", id, t.Name)] = n
		}
		r.Bridges = append(r.Bridges, bs)
	}
	for _, p := range v.Local {
		pr := api.PortReport{ID: p.ID, Name: p.Name, Network: v.Networks[p.NetworkID].Name, Tap: api.TapName(p.ID),
			VLAN: snap.VLANs[p.NetworkID], Ofport: snap.Ofports[p.ID], State: "-"}
		if st, ok := snap.Statuses[p.ID]; ok {
			pr.State, pr.Reason = st.State, st.Reason
		}
		pr.DHCP, pr.DHCPv6 = dhcpReport(snap, p.ID), dhcp6Report(snap, p.ID) // dhcp.go
		r.Ports = append(r.Ports, pr)
	}
	// Ports left out of the view because their record is unusable are shown too: an
	// operator looks for a missing port here first.
	for id, err := range v.Problems {
		if _, running := v.LocalPort(id); running {
			continue // listed above, with its ERROR status
		}
		pr := api.PortReport{ID: id, Tap: api.TapName(id), State: api.StatusError, Reason: err.Error()}
		if p, ok := v.State.Ports[id]; ok {
			pr.Name, pr.Network = p.Name, v.Networks[p.NetworkID].Name
		}
		r.Ports = append(r.Ports, pr)
	}
	r.Warnings = warnings(snap)
	for _, p := range v.StoreProblems {
		r.Problems = append(r.Problems, api.RecordProblem{Kind: p.Kind, ID: p.ID, Class: p.Class, Part: p.Part, Error: p.Err})
	}
	sort.Slice(r.Ports, func(i, j int) bool { return r.Ports[i].Name < r.Ports[j].Name })
	for _, t := range snap.Tunnels {
		ip := t.RemoteIP
		r.Tunnels = append(r.Tunnels, api.TunnelReport{Port: t.Name, RemoteIP: ip, PeerHost: v.Peers[ip].Name, PeerAlive: v.Peers[ip].Alive, Ofport: t.Ofport})
	}
	sort.Slice(r.Tunnels, func(i, j int) bool { return r.Tunnels[i].Port < r.Tunnels[j].Port })
	flood := v.FloodTo()
	for _, n := range v.Networks {
		r.Networks = append(r.Networks, api.NetworkReport{ID: n.ID, Name: n.Name, VNI: n.VNI, LocalVLAN: snap.VLANs[n.ID], FloodTo: flood[n.ID]})
	}
	sort.Slice(r.Networks, func(i, j int) bool { return r.Networks[i].Name < r.Networks[j].Name })
	return r
}

// StatusWithHealth is Status plus the live readiness checks; a failed check is a
// warning too, so that status never says "no errors" while lanesd is not ready.
func (s *Server) StatusWithHealth(ctx context.Context, snap *Snapshot) api.StatusReport {
	r := s.Status(snap)
	if s.Health != nil {
		ready := s.Health(ctx)
		r.Ready = &ready
		for _, c := range ready.Checks {
			if !c.OK {
				r.Warnings = append(r.Warnings, fmt.Sprintf("not ready: %s: %s", c.Name, c.Detail))
			}
		}
	}
	return r
}

// warnings lists what loses traffic without being anyone's error.
func warnings(snap *Snapshot) []string {
	v := snap.View
	ws := slices.Clone(snap.Warnings)
	for _, m := range v.Mismatches {
		ws = append(ws, fmt.Sprintf("peer host %s does not accept %s tunnels: network %s is cut between it and this host", m.Host.Name, m.Network.Type(), m.Network.Name))
	}
	for _, m := range v.CrossFamily {
		ws = append(ws, fmt.Sprintf("peer host %s: its tunnel IP %s is of the other IP version than this host's: network %s is cut between it and this host", m.Host.Name, m.Host.TunnelIP, m.Network.Name))
	}
	for _, why := range v.Unsupported {
		ws = append(ws, why)
	}
	for _, n := range v.Networks {
		if snap.Host.VMMTU > 0 && n.MTU > snap.Host.VMMTU {
			ws = append(ws, fmt.Sprintf("network %s: MTU %d is more than this host's underlay carries (%d): bigger packets are dropped", n.Name, n.MTU, snap.Host.VMMTU))
		}
	}
	for _, h := range v.Peers {
		if !h.Alive {
			ws = append(ws, fmt.Sprintf("peer host %s: its agent is down (no lease); its tunnel and flows stay as the store last said", h.Name))
		}
	}
	sort.Strings(ws)
	return ws
}
