package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-net/lanes/api"
)

// local asks this host's lanesd over its unix socket and decodes the JSON answer.
func (g *globals) local(path string, q url.Values, v any) error {
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", g.socket)
		}},
	}
	resp, err := client.Get("http://lanesd" + path + "?" + q.Encode())
	if err != nil {
		return &unreachableError{fmt.Errorf("lanesd at %s: %w (is lanesd running on this host, and are you root?)", g.socket, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			// The class travels as the status code: 400 bad input, 404 unknown name.
			switch resp.StatusCode {
			case http.StatusBadRequest:
				return &usageError{errors.New(e.Error)}
			case http.StatusNotFound:
				return fmt.Errorf("%s: %w", e.Error, errNotFound)
			case http.StatusServiceUnavailable:
				return &unreachableError{errors.New(e.Error)}
			}
			return errors.New(e.Error)
		}
		return fmt.Errorf("lanesd: %s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (g *globals) status(args []string) error {
	if _, err := g.parse(newFlagSet("status"), args); err != nil {
		return err
	}
	var r api.StatusReport
	if err := g.local("/status", nil, &r); err != nil {
		return err
	}
	if g.structured() {
		return g.emit(r, nil)
	}
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "host %s  tunnel %s (%s)  datapath %s  store revision %d\n", r.Host, r.TunnelIP, r.TunnelType, r.Datapath, r.StoreRevision)
	fmt.Fprintf(w, "lanesd %s\n\n", r.Version)
	fmt.Fprintln(w, "BRIDGE\tOPENFLOW\tROUND\tFLOWS\tPER TABLE")
	for _, b := range r.Bridges {
		conn := "connected"
		if !b.Connected {
			conn = "DISCONNECTED"
		}
		var tables []string
		for t, n := range b.PerTable {
			tables = append(tables, fmt.Sprintf("%s=%d", t, n))
		}
		sort.Slice(tables, func(i, j int) bool { return tableNum(tables[i]) < tableNum(tables[j]) })
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", b.Name, conn, b.Round, b.Flows, strings.Join(tables, ", "))
	}
	fmt.Fprintln(w, "\nNETWORK\tVNI\tLOCAL VLAN\tFLOODS TO")
	for _, n := range r.Networks {
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\n", n.Name, n.VNI, n.LocalVLAN, orNone(strings.Join(n.FloodTo, ",")))
	}
	fmt.Fprintln(w, "\nPORT\tNETWORK\tTAP\tVLAN\tOFPORT\tSTATUS\tDHCP")
	for _, p := range r.Ports {
		st := p.State
		if p.Reason != "" {
			st += " (" + p.Reason + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Network, p.Tap, p.VLAN, p.Ofport, st, dhcpColumn(p.DHCP))
	}
	fmt.Fprintln(w, "\nTUNNEL\tREMOTE IP\tPEER HOST\tOFPORT")
	for _, t := range r.Tunnels {
		peer := t.PeerHost
		if !t.PeerAlive {
			peer += " (agent DOWN)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\n", t.Port, t.RemoteIP, peer, t.Ofport)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(w, "\nSTORE RECORD\tPROBLEM\tLEFT OUT\tERROR")
		for _, p := range r.Problems {
			part := "whole record"
			if p.Part != "" {
				part = p.Part
			}
			fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\n", p.Kind, p.ID, p.Class, part, p.Error)
		}
	}
	if r.Ready != nil {
		fmt.Fprintln(w, "\nCHECK\tSTATE\tDETAIL")
		for _, c := range r.Ready.Checks {
			state := "ok"
			if !c.OK {
				state = "FAILED"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\n", c.Name, state, c.Detail)
		}
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintln(w, "\nWARNINGS")
		for _, msg := range r.Warnings {
			fmt.Fprintf(w, "  %s\n", msg)
		}
	}
	fmt.Fprintf(w, "\nlast reconcile %s (took %s, revision %d)", r.LastReconcile.At.Format(time.RFC3339), r.LastReconcile.Took, r.LastReconcile.Revision)
	if len(r.LastReconcile.Errors) == 0 && len(r.Problems) == 0 && len(r.Warnings) == 0 {
		fmt.Fprintln(w, ": no errors")
	} else if len(r.LastReconcile.Errors) == 0 {
		fmt.Fprintf(w, ": no errors; %d warnings, %d store records with problems (above)\n", len(r.Warnings), len(r.Problems))
	} else {
		fmt.Fprintf(w, ": %d errors\n", len(r.LastReconcile.Errors))
		for _, e := range r.LastReconcile.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	return w.Flush()
}

func tableNum(s string) int {
	n, _ := strconv.Atoi(strings.Fields(s)[0])
	return n
}

func orNone(s string) string {
	if s == "" {
		return "(no remote host)"
	}
	return s
}

func (g *globals) flows(args []string) error {
	fs := newFlagSet("flows")
	table := fs.String("table", "", "`TABLE` number or name (e.g. 22 or FLOOD_TO_TUN)")
	port := fs.String("port", "", "only flows owned by this `PORT` (name or ID)")
	network := fs.String("network", "", "only flows owned by this `NETWORK` (name or ID)")
	pos, err := g.parse(fs, args, "BRIDGE")
	if err != nil {
		return err
	}
	q := url.Values{"bridge": {pos[0]}, "table": {*table}, "port": {*port}, "network": {*network}}
	var lines []api.FlowLine
	if err := g.local("/flows", q, &lines); err != nil {
		return err
	}
	if g.structured() {
		return g.emit(lines, nil)
	}
	if len(lines) > 0 && lines[0].TablePurpose != "" {
		fmt.Fprintf(g.out, "table %d %s: %s\n\n", lines[0].Table, lines[0].TableName, lines[0].TablePurpose)
	}
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TABLE\tOWNER\tFLOW")
	for _, l := range lines {
		fmt.Fprintf(w, "%d %s\t%s\t%s\n", l.Table, l.TableName, l.Owner, l.Flow)
	}
	return w.Flush()
}

func (g *globals) trace(args []string) error {
	fs := newFlagSet("trace")
	from := fs.String("from-port", "", "local `PORT` (name or ID) the packet leaves from")
	dst := fs.String("dst-ip", "", "destination `IP`, IPv4 or IPv6 (global or link-local)")
	proto := fs.String("proto", "icmp", "`PROTO`: icmp, tcp or udp")
	dport := fs.Int("dst-port", 0, "destination port (tcp, udp)")
	dhcp := fs.Bool("dhcp", false, "trace a DHCPDISCOVER from the port instead")
	if _, err := g.parse(fs, args); err != nil {
		return err
	}
	q := url.Values{"from_port": {*from}, "dst_ip": {*dst}, "proto": {*proto}, "dst_port": {strconv.Itoa(*dport)}, "dhcp": {strconv.FormatBool(*dhcp)}}
	var r api.TraceReport
	if err := g.local("/trace", q, &r); err != nil {
		return err
	}
	if g.structured() {
		return g.emit(r, nil)
	}
	for i, s := range r.Steps {
		fmt.Fprintf(g.out, "%2d. %s\n", i+1, s)
	}
	fmt.Fprintf(g.out, "=> %s\n", r.Result)
	return nil
}
