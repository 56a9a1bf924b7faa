package controller

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/diag"
)

// logChanges writes one info line per change a reconcile made on this host, with IDs
// and names: ports wired and unwired, networks joined and left, tunnels added and
// removed, security groups of local ports changed. It compares the published
// snapshots, so the steps need no logging of their own and a reconcile that changes
// nothing logs nothing. The first snapshot after a start is the state found; the
// "converged" line sums it up.
func logChanges(log *slog.Logger, prev, next *diag.Snapshot) {
	if prev == nil || next == nil || !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	pv, nv := prev.View, next.View
	// Networks first: a port is wired on a network this host has joined.
	for _, id := range sortedKeys(nv.Networks) {
		if _, ok := pv.Networks[id]; !ok {
			n := nv.Networks[id]
			log.Info("network joined", "network", n.Name, "network_id", id, "vni", n.VNI, "local_vlan", next.VLANs[id])
		}
	}
	before := map[string]bool{}
	for _, p := range pv.Local {
		if prev.Ofports[p.ID] > 0 {
			before[p.ID] = true
		}
	}
	prevPort := map[string]api.Port{}
	for _, p := range pv.Local {
		prevPort[p.ID] = p.Port
	}
	now := map[string]bool{}
	for _, p := range nv.Local {
		if next.Ofports[p.ID] <= 0 {
			continue
		}
		now[p.ID] = true
		if !before[p.ID] {
			log.Info("port wired", "port", p.Name, "port_id", p.ID, "network", nv.Networks[p.NetworkID].Name,
				"tap", api.TapName(p.ID), "ofport", next.Ofports[p.ID], "local_vlan", next.VLANs[p.NetworkID])
		} else if what := portChanges(prevPort[p.ID], p.Port); len(what) > 0 {
			// Its flows and firewall were rewritten for the new addresses or groups.
			log.Info("port updated", "port", p.Name, "port_id", p.ID, "network", nv.Networks[p.NetworkID].Name,
				"tap", api.TapName(p.ID), "changed", strings.Join(what, ","))
		}
	}
	for _, p := range pv.Local {
		if before[p.ID] && !now[p.ID] {
			log.Info("port unwired", "port", p.Name, "port_id", p.ID, "network", pv.Networks[p.NetworkID].Name, "tap", api.TapName(p.ID))
		}
	}
	for _, id := range sortedKeys(pv.Networks) {
		if _, ok := nv.Networks[id]; !ok {
			n := pv.Networks[id]
			log.Info("network left", "network", n.Name, "network_id", id, "vni", n.VNI)
		}
	}
	// A thousand tunnels: compared only when the snapshot lists them anew, and only
	// those that changed are sorted.
	if !sameMap(next.Tunnels, prev.Tunnels) {
		for _, name := range sortedKeys(missing(next.Tunnels, prev.Tunnels)) {
			t := next.Tunnels[name]
			log.Info("tunnel added", "tunnel", t.Name, "type", t.Type, "remote_ip", t.RemoteIP, "peer", nv.Peers[t.RemoteIP].Name, "ofport", t.Ofport)
		}
		for _, name := range sortedKeys(missing(prev.Tunnels, next.Tunnels)) {
			t := prev.Tunnels[name]
			log.Info("tunnel removed", "tunnel", t.Name, "type", t.Type, "remote_ip", t.RemoteIP, "peer", pv.Peers[t.RemoteIP].Name)
		}
	}
	// Groups in use by a local port: their rules are what this host enforces.
	used, usedBefore := groupsOf(nv), groupsOf(pv)
	for _, id := range sortedKeys(used) {
		g, ok := nv.Groups[id]
		if !ok {
			continue
		}
		old := pv.Groups[id]
		switch {
		case !usedBefore[id]:
			log.Info("security group applied", "group", g.Name, "group_id", id, "rules", len(g.Rules))
		case !reflect.DeepEqual(old.Rules, g.Rules):
			log.Info("security group changed", "group", g.Name, "group_id", id, "rules_before", len(old.Rules), "rules", len(g.Rules))
		}
	}
	// A group that rules of the groups in use name as their remote group is an ipset
	// here; a port joining or leaving it anywhere rewrites that set.
	remote, remoteBefore := remoteGroupsOf(nv), remoteGroupsOf(pv)
	for _, id := range sortedKeys(remote) {
		// Typed, not reflect.DeepEqual: the lists hold every member in the cluster.
		if remoteBefore[id] && !maps.EqualFunc(pv.Members[id], nv.Members[id], slices.Equal[[]netip.Addr]) {
			log.Info("security group members changed", "group", nv.Groups[id].Name, "group_id", id,
				"members_before", countMembers(pv.Members[id]), "members", countMembers(nv.Members[id]))
		}
	}
	for _, id := range sortedKeys(usedBefore) {
		if !used[id] {
			log.Info("security group released", "group", pv.Groups[id].Name, "group_id", id)
		}
	}
}

// remoteGroupsOf is the set of groups that rules of the groups in use refer to.
func remoteGroupsOf(v *view.View) map[string]bool {
	out := map[string]bool{}
	for id := range groupsOf(v) {
		for _, r := range v.Groups[id].Rules {
			if r.RemoteGroupID != "" {
				out[r.RemoteGroupID] = true
			}
		}
	}
	return out
}

// portChanges names the fields of a wired port that changed in ways its flows or
// firewall follow.
func portChanges(old, cur api.Port) []string {
	var what []string
	if old.MAC != cur.MAC {
		what = append(what, "mac")
	}
	if !slices.Equal(old.FixedIPs, cur.FixedIPs) {
		what = append(what, "fixed_ips")
	}
	if !reflect.DeepEqual(old.AllowedAddressPairs, cur.AllowedAddressPairs) {
		what = append(what, "allowed_address_pairs")
	}
	if !slices.Equal(old.SecurityGroups, cur.SecurityGroups) {
		what = append(what, "security_groups")
	}
	if old.PortSecurityEnabled() != cur.PortSecurityEnabled() {
		what = append(what, "port_security")
	}
	return what
}

func countMembers(byNet map[string][]netip.Addr) int {
	n := 0
	for _, addrs := range byNet {
		n += len(addrs)
	}
	return n
}

// groupsOf is the set of groups the local ports use.
func groupsOf(v *view.View) map[string]bool {
	used := map[string]bool{}
	for _, p := range v.Local {
		for _, g := range p.SecurityGroups {
			used[g] = true
		}
	}
	return used
}

// missing is the set of keys of a that b does not have.
func missing[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		if _, ok := b[k]; !ok {
			out[k] = true
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sameMap reports whether a and b are one map, not two equal ones: a map handed on
// unchanged from pass to pass needs no comparison. Two nil maps are the same.
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
