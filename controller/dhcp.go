package controller

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/ofsync"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/flows"
)

// dhcpStep runs the DHCPv4 responder of this host's ports: br-int hands their DHCP
// requests to lanesd (flows.SetupDHCP, table 77) and the responder answers each with
// the port's own fixed IPv4 address and its network's settings. Sync tells the
// responder which port sits on which ofport and gives every DHCP port its meter.
// Answers need nothing but the view, so a restarted lanesd answers as soon as its
// flows are back; a client retransmits what was lost meanwhile.
type dhcpStep struct {
	log *slog.Logger
	br  *ofsync.Bridge
	srv *dhcpServer
	v6  *dhcp6Server // dhcp6.go: router advertisements and DHCPv6, table 78
}

func newDHCPStep(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, br *ofsync.Bridge) *dhcpStep {
	s := &dhcpStep{log: log.With("step", "dhcp"), br: br}
	s.srv = newDHCPServer(s.log, newDHCPMetrics(reg), br.PacketOut)
	s.v6 = newDHCP6Server(s.log, newDHCP6Metrics(reg), s.srv, br.PacketOut)
	br.HandlePackets(func(in ofsync.PacketIn) {
		switch in.Table {
		case flows.DHCPIPv4:
			s.srv.packetIn(in)
		case flows.DHCPIPv6:
			s.v6.packetIn(in)
		}
	})
	go s.srv.run(ctx.Done())
	go s.v6.run(ctx.Done())
	return s
}

// servesDHCP says whether port flows send a port's DHCP to lanesd: its network has
// DHCP on. (A port without IPv4 is sent too, and refused, so that it is counted and
// its DHCP never floods.)
func servesDHCP(n api.Network) bool { return !n.DHCP.Disabled }

// Sync publishes the local ports with an ofport to the responders and sets the
// meters of those whose network serves DHCP or has an IPv6 subnet.
func (s *dhcpStep) Sync(v *view.View, ofports map[string]int) error {
	ports := map[uint32]*dhcpPort{}
	ports6 := map[uint32]*dhcp6Port{}
	var meters []ofsync.Meter
	for _, p := range v.Local {
		n, ok := v.Networks[p.NetworkID]
		of := ofports[p.ID]
		if !ok || of <= 0 {
			continue
		}
		ports[uint32(of)] = newDHCPPort(p.ID, p.Name, p.MAC, p.HW, p.Addrs, n)
		if p6 := newDHCP6Port(p.ID, p.Name, p.HW, p.Addrs, n); p6 != nil {
			ports6[uint32(of)] = p6
		}
		// One meter per port, shared by its DHCPv4, DHCPv6 and router solicitations.
		if servesDHCP(n) || servesDHCPv6(n) {
			meters = append(meters, ofsync.Meter{ID: flows.DHCPMeter(uint32(of)), Rate: dhcpMeterRate, Burst: dhcpMeterBurst})
		}
	}
	s.srv.setPorts(ports)
	s.v6.setPorts(ports6)
	return s.br.SetMeters(meters)
}

// DHCPReport is the responder's record of a local port (diag.DHCPReporter).
func (s *dhcpStep) DHCPReport(portID string) (api.DHCPReport, bool) { return s.srv.DHCPReport(portID) }

// DHCPv6Report is the IPv6 responder's record of a local port (diag.DHCPv6Reporter).
func (s *dhcpStep) DHCPv6Report(portID string) (api.DHCPReport, bool) {
	return s.v6.DHCPv6Report(portID)
}
