package controller

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
)

// FlowLine is one installed flow with what it means.
type FlowLine struct {
	Table     uint8  `json:"table"`
	TableName string `json:"table_name"`
	Owner     string `json:"owner"` // e.g. "network net-a", "remote-port vm2 on h2", "learned"
	Round     uint16 `json:"round"`
	Flow      string `json:"flow"` // as ovs-ofctl prints it
}

// ofctl runs ovs-ofctl against this host's OVS (diagnostics only: the data path is
// programmed over OpenFlow, never through ovs-ofctl).
func (a *agent) ofctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ovs-ofctl", args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+a.cfg.OVSRunDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ovs-ofctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// owners names every owner this host knows by the owner id its cookies carry.
func (a *agent) owners() map[uint64]string {
	a.mu.Lock()
	v := a.view
	a.mu.Unlock()
	m := map[uint64]string{flows.OwnerID(""): "bridge setup"}
	for _, n := range v.nets {
		m[flows.OwnerID(n.ID)] = "network " + n.Name
	}
	for ip, h := range v.peers {
		m[flows.OwnerID(ip)] = "tunnel to " + h.Name
	}
	for _, p := range v.local {
		m[flows.OwnerID(p.ID)] = "local port " + p.Name
	}
	for _, p := range v.remote {
		m[flows.OwnerID(p.ID)] = "remote port " + p.Name + " on " + p.Host
	}
	return m
}

// flowsReport dumps a bridge's flows from the switch (so learned flows show too) and
// names each flow's table and owner.
func (a *agent) flowsReport(ctx context.Context, bridge, table, port, network string) ([]FlowLine, error) {
	if bridge != BrInt && bridge != BrTun {
		return nil, &api.FieldError{Field: "bridge", Value: bridge, Reason: "must be br-int or br-tun"}
	}
	var tableID = -1
	if table != "" {
		if n, err := strconv.Atoi(table); err == nil {
			tableID = n
		} else {
			for _, t := range flows.Tables(flows.Bridge(bridge)) {
				if strings.EqualFold(t.Name, table) {
					tableID = int(t.ID)
				}
			}
		}
		if _, ok := flows.LookupTable(flows.Bridge(bridge), uint8(tableID)); !ok || tableID < 0 {
			return nil, &api.FieldError{Field: "table", Value: table, Reason: "no such table on " + bridge}
		}
	}
	keep, err := a.flowFilter(port, network)
	if err != nil {
		return nil, err
	}
	args := []string{"-O", "OpenFlow15", "dump-flows", "--no-stats", "--no-names", bridge}
	if tableID >= 0 {
		args = append(args, "table="+strconv.Itoa(tableID))
	}
	out, err := a.ofctl(ctx, args...)
	if err != nil {
		return nil, err
	}
	owners := a.owners()
	var lines []FlowLine
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, " ") {
			continue
		}
		fl := FlowLine{Flow: strings.TrimSpace(l)}
		var cookie uint64
		for _, f := range strings.Split(fl.Flow, ", ") {
			if v, ok := strings.CutPrefix(f, "cookie="); ok {
				cookie, _ = strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			}
			if v, ok := strings.CutPrefix(f, "table="); ok {
				n, _ := strconv.Atoi(v)
				fl.Table = uint8(n)
			}
		}
		t, _ := flows.LookupTable(flows.Bridge(bridge), fl.Table)
		fl.TableName = t.Name
		c := flows.Cookie(cookie)
		fl.Round = c.Round()
		switch name, ok := owners[c.Owner()]; {
		case c.Category() == flows.CatLearned:
			fl.Owner = "learned"
		case ok:
			fl.Owner = name
		default:
			fl.Owner = fmt.Sprintf("%s (unknown owner %#x)", c.Category(), c.Owner())
		}
		if keep(fl) {
			lines = append(lines, fl)
		}
	}
	return lines, nil
}

// flowFilter selects flows owned by a port or a network, given by name or ID.
func (a *agent) flowFilter(port, network string) (func(FlowLine) bool, error) {
	if port == "" && network == "" {
		return func(FlowLine) bool { return true }, nil
	}
	a.mu.Lock()
	v := a.view
	a.mu.Unlock()
	want := ""
	if port != "" {
		for _, p := range v.local {
			if p.ID == port || p.Name == port {
				want = "local port " + p.Name
			}
		}
		for _, p := range v.remote {
			if p.ID == port || p.Name == port {
				want = "remote port " + p.Name + " on " + p.Host
			}
		}
		if want == "" {
			return nil, &api.FieldError{Field: "port", Value: port, Reason: "no local or remote port of this host's networks"}
		}
	} else {
		for _, n := range v.nets {
			if n.ID == network || n.Name == network {
				want = "network " + n.Name
			}
		}
		if want == "" {
			return nil, &api.FieldError{Field: "network", Value: network, Reason: "no port of this network on this host"}
		}
	}
	return func(fl FlowLine) bool { return fl.Owner == want }, nil
}
