package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/lanes-net/lanes/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys of routers and floating IPs (see the package comment for the others):
//
//	/lanes/v1/routers/<id>                              api.Router
//	/lanes/v1/floatingips/<id>                          api.FloatingIP
//	/lanes/v1/names/routers/<name>                      -> router id
//	/lanes/v1/alloc/ip/<external net id>/<ip>           -> router id (gateway) or floating IP id
//	/lanes/v1/refs/router/<net id>/<router id>          -> interface port id: the network is attached
//	/lanes/v1/refs/ext/<external net id>/<router or floating IP id>   something uses the external network
//	/lanes/v1/refs/fip/<port id>/<fixed ip>             -> floating IP id (one per fixed IP)
//	/lanes/v1/refs/rfip/<router id>/<net id>/<fip id>   a floating IP reaches the network through the router
const (
	pRouters    = Prefix + "routers/"
	pFIPs       = Prefix + "floatingips/"
	pRefsRouter = Prefix + "refs/router/"
	pRefsExt    = Prefix + "refs/ext/"
	pRefsFIP    = Prefix + "refs/fip/"
	pRefsRFIP   = Prefix + "refs/rfip/"
)

// ErrNoL3Host is wrapped when a router cannot be scheduled: no alive host runs lanesd
// with --l3.
var ErrNoL3Host = errors.New("no alive L3 host (start lanesd with --l3 on a network host)")

// CreateRouter creates a router and schedules it to host, or when host is "" to the
// alive L3 host with the fewest routers.
func (s *Store) CreateRouter(ctx context.Context, name, host string) (api.Router, error) {
	r := api.Router{ID: NewUUID(), Name: name, Host: host}
	if err := api.ValidateRouter(&r); err != nil {
		return api.Router{}, err
	}
	hosts, err := s.ListHosts(ctx)
	if err != nil {
		return api.Router{}, err
	}
	routers, err := s.ListRouters(ctx)
	if err != nil {
		return api.Router{}, err
	}
	if host != "" {
		i := slices.IndexFunc(hosts, func(h api.Host) bool { return h.Name == host })
		if i < 0 || !hosts[i].L3 {
			return api.Router{}, &api.FieldError{Field: "router.host", Value: host, Reason: "not a registered L3 host (lanesd --l3)"}
		}
	} else {
		load := map[string]int{}
		for _, rt := range routers {
			load[rt.Host]++
		}
		for _, h := range hosts {
			if h.Alive && h.L3 && (r.Host == "" || load[h.Name] < load[r.Host]) {
				r.Host = h.Name
			}
		}
		if r.Host == "" {
			return api.Router{}, fmt.Errorf("router %s: %w", name, ErrNoL3Host)
		}
	}
	err = s.update(ctx, "create router "+name, func(p *plan) error {
		if owner, err := p.get(nameKey("routers", name)); err != nil {
			return err
		} else if owner != nil {
			return &api.FieldError{Field: "router.name", Value: name, Reason: "already used by router " + string(owner)}
		}
		p.absent(pRouters + r.ID)
		p.exists(pHosts + r.Host)
		p.put(nameKey("routers", name), r.ID)
		return p.put(pRouters+r.ID, r)
	})
	if err != nil {
		return api.Router{}, err
	}
	return r, nil
}

// GetRouter finds a router by ID or name.
func (s *Store) GetRouter(ctx context.Context, ref string) (api.Router, error) {
	var r api.Router
	id, err := s.reader(ctx).resolve("routers", pRouters, ref, &r)
	if err != nil {
		return api.Router{}, err
	}
	if id == "" {
		return api.Router{}, fmt.Errorf("router %q: %w", ref, ErrNotFound)
	}
	return r, nil
}

// ListRouters returns every router, sorted by name.
func (s *Store) ListRouters(ctx context.Context) ([]api.Router, error) {
	rs, err := listJSON[api.Router](ctx, s, pRouters)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs, err
}

func (p *plan) router(ref string) (api.Router, error) {
	var r api.Router
	id, err := p.resolve("routers", pRouters, ref, &r)
	if err != nil {
		return r, err
	}
	if id == "" {
		return r, fmt.Errorf("router %q: %w", ref, ErrNotFound)
	}
	// A record written around lanesctl is checked before anything is computed from it.
	if err := api.ValidateRouter(&r); err != nil {
		return r, fmt.Errorf("stored router %s is invalid (fix or delete it with etcdctl): %w", id, err)
	}
	return r, nil
}

func (p *plan) network(field, ref string) (api.Network, error) {
	var n api.Network
	id, err := p.resolve("networks", pNetworks, ref, &n)
	if err != nil {
		return n, err
	}
	if id == "" {
		return n, &api.FieldError{Field: field, Value: ref, Reason: "unknown network"}
	}
	if err := api.ValidateNetwork(&n, false); err != nil {
		return n, fmt.Errorf("stored network %s is invalid (fix or delete it with etcdctl): %w", id, err)
	}
	return n, nil
}

// DeleteRouter deletes a router with no interfaces left, releasing its gateway.
func (s *Store) DeleteRouter(ctx context.Context, ref string) error {
	return s.update(ctx, "delete router "+ref, func(p *plan) error {
		r, err := p.router(ref)
		if err != nil {
			return err
		}
		if len(r.Interfaces) > 0 {
			nets := make([]string, len(r.Interfaces))
			for i, in := range r.Interfaces {
				nets[i] = in.NetworkID
			}
			return fmt.Errorf("router %s: %w: attached to network(s) %s; remove its interfaces first", r.Name, ErrInUse, strings.Join(nets, ", "))
		}
		p.noneUnder(pRefsRFIP + r.ID + "/")
		if r.Gateway != nil {
			p.releaseGateway(&r)
		}
		p.del(pRouters + r.ID)
		p.del(nameKey("routers", r.Name))
		return nil
	})
}

func (p *plan) releaseGateway(r *api.Router) {
	p.del(pAllocIP + r.Gateway.NetworkID + "/" + r.Gateway.IP)
	p.del(pRefsExt + r.Gateway.NetworkID + "/" + r.ID)
}

// AddRouterInterface attaches a tenant network to a router: a port of the network,
// owned by the router and bound to its host, takes the network's gateway address (the
// first address of the CIDR when the network has none). Networks whose CIDRs overlap
// cannot share a router.
func (s *Store) AddRouterInterface(ctx context.Context, routerRef, netRef string) (api.Router, error) {
	var out api.Router
	err := s.update(ctx, "add interface to router "+routerRef, func(p *plan) error {
		r, err := p.router(routerRef)
		if err != nil {
			return err
		}
		n, err := p.network("router.interfaces.network", netRef)
		if err != nil {
			return err
		}
		if n.External {
			return &api.FieldError{Field: "router.interfaces.network", Value: n.Name, Reason: "is external: use router set-gateway"}
		}
		if n.CIDR == "" {
			return &api.FieldError{Field: "router.interfaces.network", Value: n.Name,
				Reason: "has only an IPv6 subnet: IPv6 routing is not built yet, routers attach IPv4 subnets only"}
		}
		cidr := netip.MustParsePrefix(n.CIDR)
		for _, in := range r.Interfaces {
			if in.NetworkID == n.ID {
				return &api.FieldError{Field: "router.interfaces.network", Value: n.Name, Reason: "already attached to router " + r.Name}
			}
			if o := netip.MustParsePrefix(in.CIDR); o.Overlaps(cidr) {
				return &api.FieldError{Field: "router.interfaces.network", Value: n.Name,
					Reason: fmt.Sprintf("its CIDR %s overlaps %s of network %s, attached to router %s", n.CIDR, in.CIDR, in.NetworkID, r.Name)}
			}
		}
		gw := n.Gateway
		if gw == "" {
			gw = cidr.Addr().Next().String()
		}
		port := api.Port{ID: NewUUID(), NetworkID: n.ID, Host: r.Host, FixedIPs: []string{gw},
			PortSecurity: new(bool), DeviceOwner: api.DeviceOwnerRouterInterface, DeviceID: r.ID}
		port.Name = api.QrName(port.ID)
		devKey := pAllocDev + port.ID[:api.DeviceIDLen]
		p.absent(devKey)
		if _, err := p.planPort(nil, port); err != nil {
			var fe *api.FieldError
			if errors.As(err, &fe) && fe.Field == "port.fixed_ips" {
				return &api.FieldError{Field: "router.interfaces.network", Value: n.Name, Reason: "its gateway address " + gw + ": " + fe.Reason}
			}
			return err
		}
		p.put(devKey, port.ID)
		r.Interfaces = append(r.Interfaces, api.RouterInterface{NetworkID: n.ID, PortID: port.ID, IP: gw, CIDR: n.CIDR})
		if err := api.ValidateRouter(&r); err != nil {
			return err
		}
		p.put(pRefsRouter+n.ID+"/"+r.ID, port.ID)
		out = r
		return p.put(pRouters+r.ID, r)
	})
	return out, err
}

// RemoveRouterInterface detaches a network from a router and deletes the interface's
// port. It is refused while a floating IP reaches a port of the network through it.
func (s *Store) RemoveRouterInterface(ctx context.Context, routerRef, netRef string) (api.Router, error) {
	var out api.Router
	err := s.update(ctx, "remove interface from router "+routerRef, func(p *plan) error {
		r, err := p.router(routerRef)
		if err != nil {
			return err
		}
		n, err := p.network("router.interfaces.network", netRef)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(r.Interfaces, func(in api.RouterInterface) bool { return in.NetworkID == n.ID })
		if i < 0 {
			return &api.FieldError{Field: "router.interfaces.network", Value: n.Name, Reason: "not attached to router " + r.Name}
		}
		fips, err := p.keysUnder(pRefsRFIP + r.ID + "/" + n.ID + "/")
		if err != nil {
			return err
		}
		if len(fips) > 0 {
			return fmt.Errorf("router %s, network %s: %w: floating IP(s) %s reach ports of the network through it; disassociate them first",
				r.Name, n.Name, ErrInUse, strings.Join(first(fips, 5), ", "))
		}
		p.noneUnder(pRefsRFIP + r.ID + "/" + n.ID + "/")
		var port api.Port
		if ok, err := p.getJSON(pPorts+r.Interfaces[i].PortID, &port); err != nil {
			return err
		} else if ok {
			p.planDeletePort(port)
		}
		p.del(pRefsRouter + n.ID + "/" + r.ID)
		r.Interfaces = slices.Delete(r.Interfaces, i, i+1)
		out = r
		return p.put(pRouters+r.ID, r)
	})
	return out, err
}

// SetRouterGateway gives a router an address from an external network's pool
// (replacing its previous gateway) with SNAT on or off.
func (s *Store) SetRouterGateway(ctx context.Context, routerRef, extRef string, snat bool) (api.Router, error) {
	var out api.Router
	err := s.update(ctx, "set gateway of router "+routerRef, func(p *plan) error {
		r, err := p.router(routerRef)
		if err != nil {
			return err
		}
		n, err := p.network("router.external_gateway.network", extRef)
		if err != nil {
			return err
		}
		if !n.External {
			return &api.FieldError{Field: "router.external_gateway.network", Value: n.Name, Reason: "is not an external network (network create --external)"}
		}
		if g := r.Gateway; g != nil {
			if g.NetworkID == n.ID {
				g.SNAT = snat
				out = r
				return p.put(pRouters+r.ID, r)
			}
			p.noneUnder(pRefsRFIP + r.ID + "/")
			if fips, err := p.keysUnder(pRefsRFIP + r.ID + "/"); err != nil {
				return err
			} else if len(fips) > 0 {
				return fmt.Errorf("router %s: %w: floating IPs use its gateway; disassociate them first", r.Name, ErrInUse)
			}
			p.releaseGateway(&r)
		}
		ip, err := p.allocExternal(n, "router.external_gateway")
		if err != nil {
			return err
		}
		r.Gateway = &api.RouterGateway{NetworkID: n.ID, IP: ip, SNAT: snat}
		p.put(pAllocIP+n.ID+"/"+ip, r.ID)
		p.put(pRefsExt+n.ID+"/"+r.ID, "router")
		out = r
		return p.put(pRouters+r.ID, r)
	})
	return out, err
}

// ClearRouterGateway removes a router's external gateway; refused while floating IPs
// go through it.
func (s *Store) ClearRouterGateway(ctx context.Context, routerRef string) (api.Router, error) {
	var out api.Router
	err := s.update(ctx, "clear gateway of router "+routerRef, func(p *plan) error {
		r, err := p.router(routerRef)
		if err != nil {
			return err
		}
		out = r
		if r.Gateway == nil {
			return nil
		}
		if fips, err := p.keysUnder(pRefsRFIP + r.ID + "/"); err != nil {
			return err
		} else if len(fips) > 0 {
			return fmt.Errorf("router %s: %w: floating IPs use its gateway; disassociate them first", r.Name, ErrInUse)
		}
		p.noneUnder(pRefsRFIP + r.ID + "/")
		p.releaseGateway(&r)
		r.Gateway = nil
		out = r
		return p.put(pRouters+r.ID, r)
	})
	return out, err
}

// allocExternal plans the lowest free address of an external network's pools.
func (p *plan) allocExternal(n api.Network, field string) (string, error) {
	used, err := p.keysUnder(pAllocIP + n.ID + "/")
	if err != nil {
		return "", err
	}
	taken := map[string]bool{n.Gateway: true}
	for _, u := range used {
		taken[u] = true
	}
	for _, pool := range n.Pools() {
		end := netip.MustParseAddr(pool.End)
		for a := netip.MustParseAddr(pool.Start); !end.Less(a); a = a.Next() {
			if !taken[a.String()] {
				p.absent(pAllocIP + n.ID + "/" + a.String())
				return a.String(), nil
			}
		}
	}
	return "", &api.FieldError{Field: field, Value: n.Name, Reason: "no free address left in the external network's allocation pools"}
}

// refuseL3Users refuses deleting a network a router or floating IP still uses.
func (p *plan) refuseL3Users(id string, n api.Network) error {
	for _, pre := range []string{pRefsRouter + id + "/", pRefsExt + id + "/"} {
		users, err := p.keysUnder(pre)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			what := "attached to router(s)"
			if n.External {
				what = "used by router gateway(s) or floating IP(s)"
			}
			return fmt.Errorf("network %s (%s): %w: %s %s", n.Name, id, ErrInUse, what, strings.Join(first(users, 5), ", "))
		}
		p.noneUnder(pre)
	}
	return nil
}

// CreateFloatingIP allocates an address from an external network's pool and, when
// portRef is set, associates it with the port's fixedIP ("" means its first).
func (s *Store) CreateFloatingIP(ctx context.Context, extRef, portRef, fixedIP string) (api.FloatingIP, error) {
	var out api.FloatingIP
	err := s.update(ctx, "create floating IP on "+extRef, func(p *plan) error {
		n, err := p.network("floatingip.network", extRef)
		if err != nil {
			return err
		}
		if !n.External {
			return &api.FieldError{Field: "floatingip.network", Value: n.Name, Reason: "is not an external network (network create --external)"}
		}
		f := api.FloatingIP{ID: NewUUID(), NetworkID: n.ID}
		p.absent(pFIPs + f.ID)
		if f.IP, err = p.allocExternal(n, "floatingip.network"); err != nil {
			return err
		}
		if portRef != "" {
			if err := p.associate(&f, portRef, fixedIP); err != nil {
				return err
			}
		}
		p.put(pAllocIP+n.ID+"/"+f.IP, f.ID)
		p.put(pRefsExt+n.ID+"/"+f.ID, "floatingip")
		out = f
		return p.put(pFIPs+f.ID, f)
	})
	return out, err
}

// associate points f at a port's fixed IP, through the router that attaches the port's
// network and has its gateway on f's network, and plans the references.
func (p *plan) associate(f *api.FloatingIP, portRef, fixedIP string) error {
	var port api.Port
	pid, err := p.resolve("ports", pPorts, portRef, &port)
	if err != nil {
		return err
	}
	if pid == "" {
		return &api.FieldError{Field: "floatingip.port", Value: portRef, Reason: "unknown port"}
	}
	if port.IsRouterInterface() {
		return &api.FieldError{Field: "floatingip.port", Value: port.Name, Reason: "is a router interface"}
	}
	if fixedIP == "" {
		// Floating IPs are IPv4: they translate to the port's IPv4 address.
		i := slices.IndexFunc(port.FixedIPs, func(s string) bool { a, err := netip.ParseAddr(s); return err == nil && a.Is4() })
		if i < 0 {
			return &api.FieldError{Field: "floatingip.port", Value: port.Name, Reason: "has no IPv4 address (floating IPs are IPv4)"}
		}
		fixedIP = port.FixedIPs[i]
	} else if !slices.Contains(port.FixedIPs, fixedIP) {
		return &api.FieldError{Field: "floatingip.fixed_ip", Value: fixedIP, Reason: "not a fixed IP of port " + port.Name}
	} else if a, err := netip.ParseAddr(fixedIP); err != nil || !a.Is4() {
		return &api.FieldError{Field: "floatingip.fixed_ip", Value: fixedIP, Reason: "not an IPv4 address (floating IPs are IPv4)"}
	}
	if owner, err := p.get(pRefsFIP + pid + "/" + fixedIP); err != nil {
		return err
	} else if owner != nil && string(owner) != f.ID {
		return &api.FieldError{Field: "floatingip.port", Value: port.Name, Reason: fmt.Sprintf("its fixed IP %s already has floating IP %s", fixedIP, owner)}
	}
	routers, err := p.keysUnder(pRefsRouter + port.NetworkID + "/")
	if err != nil {
		return err
	}
	routerID := ""
	for _, rid := range routers {
		var r api.Router
		if ok, err := p.getJSON(pRouters+rid, &r); err != nil {
			return err
		} else if ok && r.Gateway != nil && r.Gateway.NetworkID == f.NetworkID {
			routerID = rid
			break
		}
	}
	if routerID == "" {
		return &api.FieldError{Field: "floatingip.port", Value: port.Name,
			Reason: "its network is attached to no router with a gateway on the floating IP's network (router add-interface, router set-gateway)"}
	}
	f.PortID, f.FixedIP, f.RouterID = pid, fixedIP, routerID
	p.put(pRefsFIP+pid+"/"+fixedIP, f.ID)
	p.put(pRefsRFIP+routerID+"/"+port.NetworkID+"/"+f.ID, "")
	return nil
}

// disassociate plans dropping f's association and its references.
func (p *plan) disassociate(f *api.FloatingIP) error {
	if f.PortID == "" {
		return nil
	}
	var port api.Port
	if ok, err := p.getJSON(pPorts+f.PortID, &port); err != nil {
		return err
	} else if ok {
		p.del(pRefsRFIP + f.RouterID + "/" + port.NetworkID + "/" + f.ID)
	} else {
		p.del(pRefsRFIP+f.RouterID+"/", clientv3.WithPrefix()) // cannot happen: ports release their floating IPs
	}
	p.del(pRefsFIP + f.PortID + "/" + f.FixedIP)
	f.PortID, f.FixedIP, f.RouterID = "", "", ""
	return nil
}

func (p *plan) floatingIP(ref string) (api.FloatingIP, error) {
	var f api.FloatingIP
	ok, err := p.getJSON(pFIPs+ref, &f)
	if err != nil {
		return f, err
	}
	if !ok {
		return f, fmt.Errorf("floating IP %q: %w", ref, ErrNotFound)
	}
	return f, nil
}

// fipID accepts a floating IP's ID or its address.
func (s *Store) fipID(ctx context.Context, ref string) (string, error) {
	if IsUUID(ref) {
		return ref, nil
	}
	fs, err := s.ListFloatingIPs(ctx)
	if err != nil {
		return "", err
	}
	for _, f := range fs {
		if f.IP == ref {
			return f.ID, nil
		}
	}
	return "", fmt.Errorf("floating IP %q: %w", ref, ErrNotFound)
}

// AssociateFloatingIP points a floating IP (by ID or address) at a port's fixed IP
// ("" means its first), replacing a previous association.
func (s *Store) AssociateFloatingIP(ctx context.Context, ref, portRef, fixedIP string) (api.FloatingIP, error) {
	return s.updateFloatingIP(ctx, "associate floating IP "+ref, ref, func(p *plan, f *api.FloatingIP) error {
		return p.associate(f, portRef, fixedIP)
	})
}

// DisassociateFloatingIP drops a floating IP's association; the address stays allocated.
func (s *Store) DisassociateFloatingIP(ctx context.Context, ref string) (api.FloatingIP, error) {
	return s.updateFloatingIP(ctx, "disassociate floating IP "+ref, ref, func(*plan, *api.FloatingIP) error { return nil })
}

// updateFloatingIP drops a floating IP's association, lets then give it a new one,
// and writes it back, in one transaction.
func (s *Store) updateFloatingIP(ctx context.Context, what, ref string, then func(*plan, *api.FloatingIP) error) (api.FloatingIP, error) {
	id, err := s.fipID(ctx, ref)
	if err != nil {
		return api.FloatingIP{}, err
	}
	var out api.FloatingIP
	err = s.update(ctx, what, func(p *plan) error {
		f, err := p.floatingIP(id)
		if err != nil {
			return err
		}
		if err := p.disassociate(&f); err != nil {
			return err
		}
		if err := then(p, &f); err != nil {
			return err
		}
		out = f
		return p.put(pFIPs+f.ID, f)
	})
	return out, err
}

// DeleteFloatingIP releases a floating IP and its association.
func (s *Store) DeleteFloatingIP(ctx context.Context, ref string) error {
	id, err := s.fipID(ctx, ref)
	if err != nil {
		return err
	}
	return s.update(ctx, "delete floating IP "+ref, func(p *plan) error {
		f, err := p.floatingIP(id)
		if err != nil {
			return err
		}
		if err := p.disassociate(&f); err != nil {
			return err
		}
		p.del(pAllocIP + f.NetworkID + "/" + f.IP)
		p.del(pRefsExt + f.NetworkID + "/" + f.ID)
		p.del(pFIPs + f.ID)
		return nil
	})
}

// ListFloatingIPs returns every floating IP, sorted by address.
func (s *Store) ListFloatingIPs(ctx context.Context) ([]api.FloatingIP, error) {
	fs, err := listJSON[api.FloatingIP](ctx, s, pFIPs)
	sort.Slice(fs, func(i, j int) bool {
		a, b := netip.MustParseAddr(fs[i].IP), netip.MustParseAddr(fs[j].IP)
		return a.Less(b)
	})
	return fs, err
}

// releasePortFIPs plans disassociating the floating IPs of a port being deleted, as
// Neutron does: the addresses stay allocated to their owner. Each fixed IP's reference
// is read (and so guarded) whether or not it exists, so a floating IP associated
// meanwhile makes the transaction plan again.
func (p *plan) releasePortFIPs(port api.Port) error {
	for _, a := range port.FixedIPs {
		fid, err := p.get(pRefsFIP + port.ID + "/" + a)
		if err != nil {
			return err
		}
		if fid == nil {
			continue
		}
		f, err := p.floatingIP(string(fid))
		if err != nil {
			return err
		}
		if err := p.disassociate(&f); err != nil {
			return err
		}
		if err := p.put(pFIPs+f.ID, f); err != nil {
			return err
		}
	}
	return nil
}
