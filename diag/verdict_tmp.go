package diag

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/lanes-net/lanes/api"
)

// Verdict is what a port's firewall does with a new connection.
// TEMPORARY until h-sgmodel lands hostwire's model.
type Verdict struct {
	Allowed bool
	Why     string
}

func (v Verdict) String() string { return v.Why }

func firewallVerdict(snap *Snapshot, p api.Port, dir string, remote netip.Addr, proto, port int) Verdict {
	v := snap.View
	if !p.PortSecurityEnabled() {
		return Verdict{true, "allowed (port security off)"}
	}
	for _, gid := range p.SecurityGroups {
		g := v.Groups[gid]
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
			if r.RemoteGroupID != "" && !slices.Contains(v.Members[r.RemoteGroupID], remote) {
				continue
			}
			return Verdict{true, fmt.Sprintf("allowed by group %s rule %s", g.Name, r.ID)}
		}
	}
	if len(p.SecurityGroups) == 0 {
		return Verdict{false, "dropped (no security group)"}
	}
	return Verdict{false, "dropped (no rule of its groups matches)"}
}
