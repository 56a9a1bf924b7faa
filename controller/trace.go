package controller

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
)

// TraceRequest asks how a packet from a local port to an IP would travel.
type TraceRequest struct {
	FromPort string `json:"from_port"`
	DstIP    string `json:"dst_ip"`
	Proto    string `json:"proto"`
	DstPort  int    `json:"dst_port"`
}

// TraceReport explains a packet's path: the firewall verdicts, then every OpenFlow
// table it crossed on br-int and br-tun, named, with the owner of the flow that matched
// and what the actions mean (which network, VNI, tunnel and host).
type TraceReport struct {
	Network     string   `json:"network"`
	VNI         uint32   `json:"vni"`
	Destination string   `json:"destination"` // "local port X", "port X on host H", "unknown"
	Tunnel      string   `json:"tunnel,omitempty"`
	PeerHost    string   `json:"peer_host,omitempty"`
	Steps       []string `json:"steps"`
	Result      string   `json:"result"`
	Raw         string   `json:"raw"` // ofproto/trace output
}

// ofprotoStep is one table visit in ofproto/trace output.
type ofprotoStep struct {
	bridge  string
	table   int
	match   string
	cookie  flows.Cookie
	actions []string
}

var (
	bridgeRe = regexp.MustCompile(`^bridge\("([^"]+)"\)`)
	tableRe  = regexp.MustCompile(`^\s*(\d+)\. (.*?),? ?priority \d+(?:, cookie (0x[0-9a-f]+))?`)
)

// parseTrace splits ofproto/trace output into table visits.
func parseTrace(out string) (steps []ofprotoStep, datapath string) {
	bridge := ""
	for _, line := range strings.Split(out, "\n") {
		switch m := tableRe.FindStringSubmatch(line); {
		case bridgeRe.MatchString(line):
			bridge = bridgeRe.FindStringSubmatch(line)[1]
		case m != nil:
			n, _ := strconv.Atoi(m[1])
			c, _ := strconv.ParseUint(strings.TrimPrefix(m[3], "0x"), 16, 64)
			steps = append(steps, ofprotoStep{bridge: bridge, table: n, match: m[2], cookie: flows.Cookie(c)})
		case strings.HasPrefix(line, "Datapath actions:"):
			datapath = strings.TrimSpace(strings.TrimPrefix(line, "Datapath actions:"))
		case len(steps) > 0 && strings.HasPrefix(line, "    ") && strings.TrimSpace(line) != "":
			s := &steps[len(steps)-1]
			s.actions = append(s.actions, strings.TrimSpace(line))
		}
	}
	return steps, datapath
}

func (a *agent) trace(ctx context.Context, req TraceRequest) (TraceReport, error) {
	a.mu.Lock()
	v, ofports, tunnels, vlans := a.view, a.ofports, a.tunnels, a.vlanOf
	a.mu.Unlock()
	var src *api.Port
	for i, p := range v.local {
		if p.ID == req.FromPort || p.Name == req.FromPort {
			src = &v.local[i]
		}
	}
	if src == nil {
		return TraceReport{}, &api.FieldError{Field: "from-port", Value: req.FromPort, Reason: "not a port of this host"}
	}
	dst, err := netip.ParseAddr(req.DstIP)
	if err != nil || !dst.Is4() {
		return TraceReport{}, &api.FieldError{Field: "dst-ip", Value: req.DstIP, Reason: "not an IPv4 address"}
	}
	proto, err := api.ProtocolNumber(req.Proto)
	if err != nil || (proto != 1 && proto != 6 && proto != 17) {
		return TraceReport{}, &api.FieldError{Field: "proto", Value: req.Proto, Reason: "must be icmp, tcp or udp"}
	}
	if proto != 1 && (req.DstPort < 1 || req.DstPort > 65535) {
		return TraceReport{}, &api.FieldError{Field: "dst-port", Value: strconv.Itoa(req.DstPort), Reason: "tcp and udp need a port 1..65535"}
	}
	ofport := ofports[src.ID]
	if ofport <= 0 {
		return TraceReport{}, fmt.Errorf("port %s has no ofport on br-int yet", src.Name)
	}
	n := v.nets[src.NetworkID]
	r := TraceReport{Network: n.Name, VNI: n.VNI}
	r.Steps = append(r.Steps, fmt.Sprintf("from %s (%s, %s) on network %s: VNI %d, local VLAN %d on this host, %s ofport %d",
		src.Name, src.MAC, strings.Join(src.FixedIPs, ","), n.Name, n.VNI, vlans[n.ID], api.QvoName(src.ID), ofport))

	// Where the store says dst lives: a port of the same network, or of another.
	st := a.mirror.Snapshot()
	var dstPort *api.Port
	var elsewhere []string
	for _, p := range st.Ports {
		if !slices.Contains(p.FixedIPs, dst.String()) {
			continue
		}
		if p.NetworkID == src.NetworkID {
			p := p
			dstPort = &p
		} else {
			elsewhere = append(elsewhere, fmt.Sprintf("%s in network %s (VNI %d)", p.Name, st.Networks[p.NetworkID].Name, st.Networks[p.NetworkID].VNI))
		}
	}
	dstMAC := "ff:ff:ff:ff:ff:ff"
	switch {
	case dstPort != nil && dstPort.Host == a.cfg.Host:
		r.Destination = "local port " + dstPort.Name
		dstMAC = dstPort.MAC
	case dstPort != nil:
		r.Destination = fmt.Sprintf("port %s on host %s", dstPort.Name, dstPort.Host)
		dstMAC = dstPort.MAC
	default:
		r.Destination = "unknown"
		msg := fmt.Sprintf("no port of network %s has %s: the VM's ARP request gets no answer (traced as a broadcast)", n.Name, dst)
		if len(elsewhere) > 0 {
			msg += "; " + dst.String() + " is " + strings.Join(elsewhere, ", ") + ": another tenant network, isolated by its own VNI"
		}
		r.Steps = append(r.Steps, msg)
	}
	fwDrop := ""
	if dstPort != nil {
		r.Steps = append(r.Steps, fmt.Sprintf("%s is %s (%s)", dst, r.Destination, dstMAC))
		srcIP, _ := netip.ParseAddr(src.FixedIPs[0])
		eg := verdict(v, *src, api.Egress, dst, proto, req.DstPort)
		in := verdict(v, *dstPort, api.Ingress, srcIP, proto, req.DstPort)
		r.Steps = append(r.Steps, "firewall egress of "+src.Name+": "+eg, "firewall ingress of "+dstPort.Name+": "+in)
		switch {
		case strings.HasPrefix(eg, "dropped"):
			fwDrop = "egress of " + src.Name + ": " + eg
		case strings.HasPrefix(in, "dropped"):
			fwDrop = "ingress of " + dstPort.Name + ": " + in
		}
	}

	spec := fmt.Sprintf("in_port=%d,dl_src=%s,dl_dst=%s,nw_src=%s,nw_dst=%s", ofport, src.MAC, dstMAC, src.FixedIPs[0], dst)
	switch proto {
	case 1:
		spec = "icmp," + spec + ",icmp_type=8"
	case 6:
		spec = "tcp," + spec + ",tp_dst=" + strconv.Itoa(req.DstPort)
	case 17:
		spec = "udp," + spec + ",tp_dst=" + strconv.Itoa(req.DstPort)
	}
	out, err := a.appctl(ctx, "ofproto/trace", BrInt, spec)
	if err != nil {
		return TraceReport{}, err
	}
	r.Raw = out
	steps, datapath := parseTrace(out)
	owners := a.owners()
	tunnelByOfport := map[string]string{}
	for ip, t := range tunnels {
		tunnelByOfport[strconv.Itoa(t.Ofport)] = ip
	}
	for _, s := range steps {
		t, _ := flows.LookupTable(flows.Bridge(s.bridge), uint8(s.table))
		owner := owners[s.cookie.Owner()]
		if s.cookie.Category() == flows.CatLearned {
			owner = "learned"
		}
		line := fmt.Sprintf("%s table %d %s", s.bridge, s.table, t.Name)
		if t.Name == "" {
			line = fmt.Sprintf("%s table %d (not lanes' pipeline)", s.bridge, s.table)
		}
		if s.match != "" {
			line += " [" + s.match + "]"
		}
		if owner != "" {
			line += " (" + owner + ")"
		}
		line += ": " + strings.Join(s.actions, "; ")
		for _, act := range s.actions {
			if port, ok := strings.CutPrefix(act, "output:"); ok && s.bridge == BrTun {
				if ip, ok := tunnelByOfport[port]; ok {
					tp := tunnels[ip]
					r.Tunnel, r.PeerHost = tp.Name, v.peers[ip].Name
					line += fmt.Sprintf(" => %s to host %s (%s) with VNI %d (network %s)", tp.Name, r.PeerHost, ip, n.VNI, n.Name)
				}
			}
		}
		r.Steps = append(r.Steps, line)
	}
	r.Steps = append(r.Steps, "datapath actions: "+datapath)
	switch {
	case r.Destination == "unknown":
		r.Result = fmt.Sprintf("unreachable: %s is not on network %s", dst, n.Name)
	case datapath == "drop":
		r.Result = "dropped by the pipeline"
	case fwDrop != "":
		r.Result = "dropped by the firewall, " + fwDrop
	case dstPort.Host == a.cfg.Host:
		r.Result = "delivered on this host by br-int (NORMAL) to " + r.Destination
		if r.Tunnel != "" {
			r.Result += " (br-int had not learned its MAC yet, so the frame was also flooded to the tunnels of VLAN " + strconv.Itoa(int(vlans[n.ID])) + ")"
		}
	case r.Tunnel != "" && r.PeerHost == dstPort.Host:
		r.Result = fmt.Sprintf("leaves through %s to host %s, VNI %d (network %s)", r.Tunnel, r.PeerHost, n.VNI, n.Name)
	default:
		r.Result = fmt.Sprintf("not sent to host %s: this host has no tunnel to it (is it alive? see lanesctl host list)", dstPort.Host)
	}
	return r, nil
}

// verdict evaluates a port's security groups for a new connection in one direction
// (replies pass through conntrack), as the iptables rules do.
func verdict(v view, p api.Port, dir string, remote netip.Addr, proto, port int) string {
	if !p.PortSecurityEnabled() {
		return "allowed (port security off)"
	}
	for _, gid := range p.SecurityGroups {
		g := v.groups[gid]
		for _, r := range g.Rules {
			if r.Direction != dir || r.Ethertype != api.IPv4 {
				continue
			}
			rp, _ := api.ProtocolNumber(r.Protocol)
			if rp != 0 && rp != proto {
				continue
			}
			if (proto == 6 || proto == 17) && r.PortMin != 0 && (port < r.PortMin || port > max(r.PortMin, r.PortMax)) {
				continue
			}
			if r.RemoteCIDR != "" {
				if pf, err := netip.ParsePrefix(r.RemoteCIDR); err != nil || !pf.Contains(remote) {
					continue
				}
			}
			if r.RemoteGroupID != "" && !slices.Contains(v.members[r.RemoteGroupID][p.NetworkID], remote) {
				continue
			}
			return fmt.Sprintf("allowed by group %s rule %s", g.Name, r.ID)
		}
	}
	if len(p.SecurityGroups) == 0 {
		return "dropped (no security group)"
	}
	return "dropped (no rule of its groups matches)"
}

// appctl runs ovs-appctl against this host's ovs-vswitchd (diagnostics only).
func (a *agent) appctl(ctx context.Context, args ...string) (string, error) {
	// A vswitchd started with --unixctl=<rundir>/ovs-vswitchd.ctl (the lab's) is
	// found by path; a packaged one through its pidfile in the run directory.
	if ctl := filepath.Join(a.cfg.OVSRunDir, "ovs-vswitchd.ctl"); fileExists(ctl) {
		args = append([]string{"-t", ctl}, args...)
	}
	cmd := exec.CommandContext(ctx, "ovs-appctl", args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+a.cfg.OVSRunDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ovs-appctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
