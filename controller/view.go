package controller

import (
	"net/netip"
	"sort"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// view is what one host must realise, derived from the cluster state. It is pure data
// so that l2pop decisions (which tunnels, which flood lists, which remote ports) are
// tested without a switch.
type view struct {
	nets   map[string]api.Network // networks with at least one port on this host
	local  []api.Port             // this host's ports on known networks, by ID
	remote []remotePort           // ports of live peers on this host's networks, by ID
	// peers are the live hosts that share a network with this host: one tunnel each.
	peers map[string]api.Host // by tunnel IP
	// groups and members feed the firewall: members are the fixed IPs of every port
	// in a group, per network (group ID -> network ID -> IPs), for remote-group
	// rules, which admit only members on the port's own network.
	groups  map[string]api.SecurityGroup
	members map[string]map[string][]netip.Addr
}

type remotePort struct {
	api.Port
	HostIP string
}

// computeView derives what host self must realise. Hosts in the state are the live
// ones (their keys live under a lease): a host that is gone gets no tunnel and its
// ports no flows.
func computeView(self string, st store.State) view {
	v := view{nets: map[string]api.Network{}, peers: map[string]api.Host{}, groups: map[string]api.SecurityGroup{}, members: map[string]map[string][]netip.Addr{}}
	nets := map[string]api.Network{}
	for _, n := range st.Networks {
		nets[n.ID] = n
	}
	alive := map[string]api.Host{}
	for _, h := range st.Hosts {
		if h.Alive && h.Name != self {
			alive[h.Name] = h
		}
	}
	ports := make([]api.Port, 0, len(st.Ports))
	for _, p := range st.Ports {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].ID < ports[j].ID })
	for _, p := range ports {
		n, ok := nets[p.NetworkID]
		if ok && p.Host == self {
			v.local = append(v.local, p)
			v.nets[n.ID] = n
		}
	}
	for _, p := range ports {
		h, live := alive[p.Host]
		if _, shared := v.nets[p.NetworkID]; !shared || !live {
			continue
		}
		v.remote = append(v.remote, remotePort{Port: p, HostIP: h.TunnelIP})
		v.peers[h.TunnelIP] = h
	}
	for _, g := range st.Groups {
		v.groups[g.ID] = g
	}
	for _, p := range ports {
		for _, g := range p.SecurityGroups {
			for _, ip := range p.FixedIPs {
				if a, err := netip.ParseAddr(ip); err == nil {
					if v.members[g] == nil {
						v.members[g] = map[string][]netip.Addr{}
					}
					v.members[g][p.NetworkID] = append(v.members[g][p.NetworkID], a)
				}
			}
		}
	}
	return v
}
