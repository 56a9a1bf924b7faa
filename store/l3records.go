package store

import (
	"fmt"

	"github.com/lanes-net/lanes/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func readRouter(kv *mvccpb.KeyValue, id string) *record[api.Router] {
	r := decodeRecord[api.Router](kv, KindRouters, id)
	if r.bad != nil {
		return r
	}
	err := uuidKey("router.id", id)
	if err == nil && r.v.ID != id {
		err = idMismatch("router.id", r.v.ID, id)
	}
	if err == nil {
		err = api.ValidateRouter(&r.v)
	}
	if err != nil {
		r.refuse(KindRouters, id, "", ProblemInvalid, err)
	}
	return r
}

func readFloatingIP(kv *mvccpb.KeyValue, id string) *record[api.FloatingIP] {
	r := decodeRecord[api.FloatingIP](kv, KindFloatingIPs, id)
	if r.bad != nil {
		return r
	}
	err := uuidKey("floatingip.id", id)
	if err == nil && r.v.ID != id {
		err = idMismatch("floatingip.id", r.v.ID, id)
	}
	if err == nil {
		err = api.ValidateFloatingIP(&r.v)
	}
	if err != nil {
		r.refuse(KindFloatingIPs, id, "", ProblemInvalid, err)
	}
	return r
}

// buildL3 adds the routers and floating IPs to st (whose networks, ports and hosts are
// built) and moves router interface ports to their router's current host. A router's
// interface or gateway on a network that is not in st is dropped from it, as is a
// floating IP whose network, port or router is missing: without them there is nothing
// to route, and routing less never grants more.
func (rs *records) buildL3(st *State) []Problem {
	var probs []Problem
	for id, r := range rs.routers {
		if r.bad != nil {
			probs = append(probs, *r.bad)
			continue
		}
		rt := r.v
		if g := rt.Gateway; g != nil {
			if n, ok := st.Networks[g.NetworkID]; !ok || !n.External {
				probs = append(probs, r.problem(KindRouters, id, rt.Host, ProblemDangling, "external_gateway",
					fmt.Errorf("external network %s is not a usable external network", clip(g.NetworkID, 64))))
				rt.Gateway = nil
			}
		}
		var ifs []api.RouterInterface
		for _, in := range rt.Interfaces {
			p, ok := st.Ports[in.PortID]
			if !ok || p.NetworkID != in.NetworkID || !p.IsRouterInterface() || p.DeviceID != id {
				probs = append(probs, r.problem(KindRouters, id, rt.Host, ProblemDangling, "interface "+clip(in.PortID, 64),
					fmt.Errorf("port %s is not a usable interface port of this router", clip(in.PortID, 64))))
				continue
			}
			ifs = append(ifs, in)
		}
		rt.Interfaces = ifs
		st.Routers[id] = rt
	}
	for id, r := range rs.fips {
		if r.bad != nil {
			probs = append(probs, *r.bad)
			continue
		}
		f := r.v
		if n, ok := st.Networks[f.NetworkID]; !ok || !n.External {
			probs = append(probs, r.problem(KindFloatingIPs, id, "", ProblemDangling, "",
				fmt.Errorf("external network %s is not a usable external network", clip(f.NetworkID, 64))))
			continue
		}
		if f.PortID != "" {
			_, okp := st.Ports[f.PortID]
			rt, okr := st.Routers[f.RouterID]
			if !okp || !okr || rt.Gateway == nil || rt.Gateway.NetworkID != f.NetworkID {
				probs = append(probs, r.problem(KindFloatingIPs, id, "", ProblemDangling, "port_id",
					fmt.Errorf("port %s or router %s is not usable; the floating IP stays unassociated", clip(f.PortID, 64), clip(f.RouterID, 64))))
				f.PortID, f.FixedIP, f.RouterID = "", "", ""
			}
		}
		st.FloatingIPs[id] = f
	}
	for pid, p := range st.Ports {
		if p.IsRouterInterface() {
			st.Ports[pid] = st.routerPortHost(p)
		}
	}
	return probs
}

// routerPortHost returns p, a port of st, on its router's current host: the host the
// store names may be down. p itself is never changed: when the host differs the
// result is a new port.
func (st *State) routerPortHost(p *api.Port) *api.Port {
	if !p.IsRouterInterface() {
		return p
	}
	rt, ok := st.Routers[p.DeviceID]
	if !ok {
		return p
	}
	if h := api.RouterHost(&rt, st.Hosts); h != "" && h != p.Host {
		c := clonePort(*p)
		c.Host = h
		return &c
	}
	return p
}

// l3PortRefs lists the ports that routers and floating IPs name: whether such a port
// is in the State decides what of the router or floating IP is, so a State cannot be
// patched for a change of one of them alone.
func (rs *records) l3PortRefs() map[string]bool {
	refs := map[string]bool{}
	for _, r := range rs.routers {
		if r.bad == nil {
			for _, in := range r.v.Interfaces {
				refs[in.PortID] = true
			}
		}
	}
	for _, r := range rs.fips {
		if r.bad == nil && r.v.PortID != "" {
			refs[r.v.PortID] = true
		}
	}
	return refs
}
