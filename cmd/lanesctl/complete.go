package main

import (
	"context"
	"time"

	"github.com/lanes-net/lanes/api"
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
	switch kind {
	case "network":
		return nameList(st.ListNetworks(ctx))(func(n api.Network) string { return n.Name })
	case "port":
		return nameList(st.ListPorts(ctx))(func(p api.Port) string { return p.Name })
	case "sg":
		return nameList(st.ListSecurityGroups(ctx))(func(g api.SecurityGroup) string { return g.Name })
	case "host":
		return nameList(st.ListHosts(ctx))(func(h api.Host) string { return h.Name })
	case "router":
		return nameList(st.ListRouters(ctx))(func(r api.Router) string { return r.Name })
	}
	return nil
}

// nameList lists the names of what a store listing returned; a failed listing
// completes nothing.
func nameList[T any](items []T, err error) func(name func(T) string) []string {
	return func(name func(T) string) []string {
		if err != nil {
			return nil
		}
		out := make([]string, 0, len(items))
		for _, it := range items {
			out = append(out, name(it))
		}
		return out
	}
}
