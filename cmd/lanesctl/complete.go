package main

import (
	"context"
	"time"
)

// names lists the names of one kind of object from the store, for shell completion
// (cobra's __complete runs it with the line's own --etcd and TLS flags, so the names
// are live). Completion must stay quick: an unreachable store gives no names rather
// than a wait.
func (g *globals) names(kind string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	g.dialTimeout = 2 * time.Second
	st, err := g.openStore(ctx)
	if err != nil {
		return nil
	}
	defer st.Close()
	var out []string
	switch kind {
	case "network":
		ns, _ := st.ListNetworks(ctx)
		for _, n := range ns {
			out = append(out, n.Name)
		}
	case "port":
		ps, _ := st.ListPorts(ctx)
		for _, p := range ps {
			out = append(out, p.Name)
		}
	case "sg":
		gs, _ := st.ListSecurityGroups(ctx)
		for _, g := range gs {
			out = append(out, g.Name)
		}
	case "host":
		hs, _ := st.ListHosts(ctx)
		for _, h := range hs {
			out = append(out, h.Name)
		}
	case "router":
		rs, _ := st.ListRouters(ctx)
		for _, r := range rs {
			out = append(out, r.Name)
		}
	}
	return out
}
