package diag

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/flows"
	"github.com/lanes-net/lanes/internal/ovstool"
)

// FlowsQuery selects flows for lanesctl flows.
type FlowsQuery struct {
	Bridge  string
	Table   string // number or name; empty: all
	Port    string // name or ID: only this port's flows
	Network string // name or ID: only this network's flows
}

// Flows dumps a bridge's flows from the switch (so learned flows show too) and names
// each flow's table and owner.
func (s *Server) Flows(ctx context.Context, snap *Snapshot, q FlowsQuery) ([]api.FlowLine, error) {
	if q.Bridge != api.BrInt && q.Bridge != api.BrTun {
		return nil, &api.FieldError{Field: "bridge", Value: q.Bridge, Reason: "must be br-int or br-tun"}
	}
	bridge := flows.Bridge(q.Bridge)
	tableID, purpose := -1, ""
	if q.Table != "" {
		t, ok := findTable(bridge, q.Table)
		if !ok {
			return nil, &api.FieldError{Field: "table", Value: q.Table, Reason: "no such table on " + q.Bridge}
		}
		tableID, purpose = int(t.ID), t.Purpose+" (miss: "+t.Miss.String()+")"
	}
	keep, err := ownerFilter(snap, q.Port, q.Network)
	if err != nil {
		return nil, err
	}
	args := []string{"dump-flows", "--no-stats", "--no-names", q.Bridge}
	if tableID >= 0 {
		args = append(args, "table="+strconv.Itoa(tableID))
	}
	out, err := s.Tools.Ofctl15(ctx, args...)
	if err != nil {
		return nil, err
	}
	var lines []api.FlowLine
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "cookie=") {
			continue // the reply header
		}
		fl := api.FlowLine{Flow: l, TablePurpose: purpose}
		var cookie uint64
		for _, f := range strings.Split(l, ", ") {
			if v, ok := strings.CutPrefix(f, "cookie="); ok {
				cookie, _ = strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
			}
			if v, ok := strings.CutPrefix(f, "table="); ok {
				n, _ := strconv.Atoi(v)
				fl.Table = uint8(n)
			}
		}
		t, _ := flows.LookupTable(bridge, fl.Table)
		fl.TableName = t.Name
		c := flows.Cookie(cookie)
		fl.Round = c.Round()
		fl.Owner = ownerName(snap, bridge, c)
		if keep(fl) {
			lines = append(lines, fl)
		}
	}
	return lines, nil
}

// findTable looks a table up by number or name.
func findTable(b flows.Bridge, s string) (flows.Table, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 255 {
			return flows.Table{}, false
		}
		return flows.LookupTable(b, uint8(n))
	}
	for _, t := range flows.Tables(b) {
		if strings.EqualFold(t.Name, s) {
			return t, true
		}
	}
	return flows.Table{}, false
}

// ownerName names the owner of a flow by looking its cookie up in the flow set the
// snapshot installed, then the owner's key up in the view.
func ownerName(snap *Snapshot, b flows.Bridge, c flows.Cookie) string {
	if c.Category() == flows.CatLearned {
		return "learned"
	}
	o, ok := snap.Flows.Owner(b, c)
	if !ok {
		return fmt.Sprintf("%s (unknown owner %#x)", c.Category(), c.Owner())
	}
	return describeOwner(snap, o)
}

// describeOwner names an owner as an operator knows it.
func describeOwner(snap *Snapshot, o flows.Owner) string {
	v := snap.View
	switch o.Category {
	case flows.CatSetup:
		return "bridge setup"
	case flows.CatNetwork:
		if n, ok := v.Networks[o.Key]; ok {
			return "network " + n.Name
		}
	case flows.CatTunnel:
		typ, ip, typed := strings.Cut(o.Key, "/") // see flows.TunnelOwnerKey
		if !typed {
			typ, ip = snap.Host.TunnelType, o.Key
		}
		if h, ok := v.Peers[ip]; ok {
			return typ + " tunnel to " + h.Name
		}
	case flows.CatLocalPort:
		if p, ok := v.LocalPort(o.Key); ok {
			return "local port " + p.Name
		}
	case flows.CatRemotePort:
		for _, p := range v.Remote {
			if p.ID == o.Key {
				return "remote port " + p.Name + " on " + p.Host
			}
		}
	}
	return o.String()
}

// ownerFilter selects flows owned by a port or a network, given by name or ID.
func ownerFilter(snap *Snapshot, port, network string) (func(api.FlowLine) bool, error) {
	v := snap.View
	if port == "" && network == "" {
		return func(api.FlowLine) bool { return true }, nil
	}
	want := ""
	if port != "" {
		if p, ok := v.LocalPort(port); ok {
			want = describeOwner(snap, flows.Owner{Category: flows.CatLocalPort, Key: p.ID})
		}
		for _, p := range v.Remote {
			if p.ID == port || p.Name == port {
				want = describeOwner(snap, flows.Owner{Category: flows.CatRemotePort, Key: p.ID})
			}
		}
		if want == "" {
			return nil, &api.FieldError{Field: "port", Value: port, Reason: "no local or remote port of this host's networks"}
		}
	} else {
		for _, n := range v.Networks {
			if n.ID == network || n.Name == network {
				want = describeOwner(snap, flows.Owner{Category: flows.CatNetwork, Key: n.ID})
			}
		}
		if want == "" {
			return nil, &api.FieldError{Field: "network", Value: network, Reason: "no port of this network on this host"}
		}
	}
	return func(fl api.FlowLine) bool { return fl.Owner == want }, nil
}

var flowCountRe = regexp.MustCompile(`flow_count=(\d+)`)

// FlowCount is how many flows of one controller round the switch holds on a bridge,
// not counting the entries learn() made (they carry the round too, in their own
// category): learned flows come and go with traffic and must not mask a lost flow.
// Flows a human added with another cookie do not count either.
func FlowCount(ctx context.Context, tools ovstool.Tools, bridge string, round uint16) (int, error) {
	n, _, err := FlowCounts(ctx, tools, bridge, round)
	return n, err
}

// FlowCounts is FlowCount and, from the same two aggregates, how many entries of the
// round learn() made.
func FlowCounts(ctx context.Context, tools ovstool.Tools, bridge string, round uint16) (installed, learned int, err error) {
	count := func(cookie, mask flows.Cookie) (int, error) {
		out, err := tools.Ofctl15(ctx, "dump-aggregate", bridge, fmt.Sprintf("cookie=%#x/%#x", uint64(cookie), uint64(mask)))
		if err != nil {
			return 0, err
		}
		m := flowCountRe.FindStringSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("dump-aggregate %s: no flow_count in %q", bridge, out)
		}
		return strconv.Atoi(m[1])
	}
	all, err := count(flows.Cookie(round)<<48, flows.RoundMask)
	if err != nil {
		return 0, 0, err
	}
	learned, err = count(flows.Cookie(round)<<48|flows.Cookie(flows.CatLearned)<<40, flows.RoundMask|flows.CategoryMask)
	if err != nil {
		return 0, 0, err
	}
	return all - learned, learned, nil
}
