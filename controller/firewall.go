package controller

import (
	"context"
	"net/netip"
	"slices"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/controller/view"
	"github.com/lanes-net/lanes/hostwire"
)

// firewallStep applies the hybrid iptables firewall of every wired local port, in
// bulk; hostwire.Firewall keeps what it applied and changes only what differs.
type firewallStep struct {
	fw *hostwire.Firewall
	// otherBackend is the last answer of fw.OtherBackendChains, asked on full passes
	// only (start and the 30 s resync): it runs the other backend's iptables-save.
	otherBackend error
	// members are the remote-group member lists of the last pass, per group and
	// network, as the view had them and as the firewall takes them. A list that did
	// not change is handed on as the same slice, which lets the firewall reuse its
	// parsed set: at 10k remote ports, converting and parsing every member on every
	// pass was most of the step's cost.
	members map[string]map[string]memberText
}

type memberText struct {
	addrs []netip.Addr
	text  []string
}

// Sync applies the firewall and returns the state it applied (trace evaluates
// packets against it); a full pass also looks for lanes chains of the other backend.
func (s *firewallStep) Sync(ctx context.Context, v *view.View, wired map[string]bool, full bool) (hostwire.FirewallState, error) {
	fs := s.groupState(v, full)
	fs.ServerLinkLocal = dhcpServerLinkLocal // dhcp6server.go: the source of RAs and DHCPv6 replies
	for _, p := range v.Local {
		if wired[p.ID] {
			fs.Ports = append(fs.Ports, hostwire.NewFirewallPort(&p.Port))
		}
	}
	_, err := s.fw.Apply(ctx, fs)
	if full {
		s.otherBackend = s.fw.OtherBackendChains()
	}
	return fs, err
}

// groupState is hostwire.GroupState(v.Groups, v.Members), reusing the text of every
// member list that did not change. The lists of groups the view says are unchanged
// (v.Changes.Members) are taken as they were; the others, and all of them on a full
// pass, are compared.
func (s *firewallStep) groupState(v *view.View, full bool) hostwire.FirewallState {
	fs := hostwire.FirewallState{Groups: make(map[string]*api.SecurityGroup, len(v.Groups)), Members: make(map[string]map[string][]string, len(v.Members))}
	for id, g := range v.Groups {
		fs.Groups[id] = &g
	}
	trust := !full && !v.Changes.All
	next := make(map[string]map[string]memberText, len(v.Members))
	for id, byNet := range v.Members {
		prev, unchanged := s.members[id], trust && !v.Changes.Members[id]
		cur := make(map[string]memberText, len(byNet))
		text := make(map[string][]string, len(byNet))
		for n, addrs := range byNet {
			m, ok := prev[n]
			if !ok || !(unchanged || slices.Equal(m.addrs, addrs)) {
				m = memberText{addrs: addrs, text: make([]string, len(addrs))}
				for i, a := range addrs {
					m.text[i] = a.String()
				}
			}
			cur[n], text[n] = m, m.text
		}
		next[id], fs.Members[id] = cur, text
	}
	s.members = next
	return fs
}

// Warnings are what the firewall found wrong on the host that is no error of a pass:
// lanes chains under the other iptables backend, which filter the same packets with
// rules lanesd no longer updates.
func (s *firewallStep) Warnings() []string {
	if s.otherBackend != nil {
		return []string{"iptables backend mismatch: " + s.otherBackend.Error()}
	}
	return nil
}
