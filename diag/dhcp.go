package diag

import (
	"context"
	"fmt"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
)

// DHCPReporter is lanesd's DHCP responder as the local API sees it.
type DHCPReporter interface {
	// DHCPReport is the responder's record of a local port; false if it has none.
	DHCPReport(portID string) (api.DHCPReport, bool)
}

// DHCPv6Reporter is the IPv6 side of a DHCPReporter that has one: its record of a
// port's router solicitations and DHCPv6.
type DHCPv6Reporter interface {
	DHCPv6Report(portID string) (api.DHCPReport, bool)
}

func dhcp6Report(snap *Snapshot, portID string) *api.DHCPReport {
	if r6, ok := snap.DHCP.(DHCPv6Reporter); ok {
		if r, ok := r6.DHCPv6Report(portID); ok {
			return &r
		}
	}
	return nil
}

func dhcpReport(snap *Snapshot, portID string) *api.DHCPReport {
	if snap.DHCP == nil {
		return nil
	}
	if r, ok := snap.DHCP.DHCPReport(portID); ok {
		return &r
	}
	return nil
}

// traceDHCP explains the path of a DHCPDISCOVER from a local port: ofproto/trace of
// the broadcast the guest's client sends, annotated like any trace, and whether it
// ends at lanesd (a packet-in from table 77) or somewhere else.
func (s *Server) traceDHCP(ctx context.Context, snap *Snapshot, req api.TraceRequest) (api.TraceReport, error) {
	v := snap.View
	src, ok := v.LocalPort(req.FromPort)
	if !ok {
		return api.TraceReport{}, &api.FieldError{Field: "from-port", Value: req.FromPort, Reason: "not a port of this host"}
	}
	ofport := snap.Ofports[src.ID]
	if ofport <= 0 {
		return api.TraceReport{}, fmt.Errorf("port %s has no ofport on br-int yet", src.Name)
	}
	n := v.Networks[src.NetworkID]
	spec := fmt.Sprintf("udp,in_port=%d,dl_src=%s,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=0.0.0.0,nw_dst=255.255.255.255,udp_src=68,udp_dst=67", ofport, src.MAC)
	out, err := s.Tools.Appctl(ctx, "ofproto/trace", api.BrInt, spec)
	if err != nil {
		return api.TraceReport{}, err
	}
	steps, datapath := parseTrace(out)
	r := api.TraceReport{Network: n.Name, VNI: n.VNI, Destination: "DHCP server", Raw: out}
	pre := fmt.Sprintf("DHCPDISCOVER from %s (%s) on network %s: VNI %d, local VLAN %d, %s ofport %d",
		src.Name, src.MAC, n.Name, n.VNI, snap.VLANs[n.ID], api.QvoName(src.ID), ofport)
	r.Steps = append(r.Steps, pre, "firewall egress of "+src.Name+": DHCP client traffic from 0.0.0.0 is allowed before the source check")
	c := traceCase{src: src, ofport: ofport, net: n}
	lines, tunnel, peer := annotate(snap, c, steps)
	r.Steps = append(r.Steps, lines...)
	r.Steps = append(r.Steps, "datapath actions: "+datapath)
	r.Tunnel, r.PeerHost = tunnel, peer
	punted := false
	for _, st := range steps {
		for _, a := range st.actions {
			if st.table == flows.DHCPIPv4 && strings.Contains(a, "controller") {
				punted = true
			}
		}
	}
	var answer string
	if rep := dhcpReport(snap, src.ID); rep != nil {
		switch {
		case !rep.Serving && n.DHCP.Disabled:
			answer = "network " + n.Name + " has DHCP off"
		case !rep.Serving:
			answer = "the port has no IPv4 address: lanesd refuses it"
		default:
			answer = "lanesd answers with " + rep.Address + " (packet-out to ofport " + fmt.Sprint(ofport) + ")"
		}
	}
	switch {
	case punted && tunnel == "":
		r.Result = "to lanesd, the local DHCP responder (packet-in from table 77, metered); never to the tunnels"
		if answer != "" {
			r.Result += ": " + answer
		}
	case tunnel != "":
		r.Result = "LEAKS to tunnel " + tunnel + ": DHCP is not answered on this host"
	case n.DHCP.Disabled:
		r.Result = "network " + n.Name + " has DHCP off: the request is ordinary broadcast (" + datapath + ")"
	default:
		r.Result = "dropped before lanesd (" + datapath + "): are the port's DHCP flows installed?"
	}
	return r, nil
}
