package controller

import (
	"context"
	"regexp"
	"strconv"

	"github.com/lanes-net/lanes/controller/ofsync"
)

var flowCountRe = regexp.MustCompile(`flow_count=(\d+)`)

// checkFlowsPresent compares each bridge's flow count in the switch with what lanesd
// installed, and replays a bridge that holds fewer: Neutron's canary idea, for both
// bridges (OVS restarts are seen as reconnects; this catches flows deleted by hand).
// Learned flows only add to the switch's count, so fewer always means lost flows.
func (a *agent) checkFlowsPresent(ctx context.Context) {
	for _, b := range []*ofsync.Bridge{a.brInt, a.brTun} {
		st := b.Status()
		if !st.Connected || st.Installed == 0 {
			continue
		}
		out, err := a.ofctl(ctx, "-O", "OpenFlow15", "dump-aggregate", b.Name)
		if err != nil {
			a.log.Warn("flow count", "bridge", b.Name, "err", err)
			continue
		}
		m := flowCountRe.FindStringSubmatch(out)
		if m == nil {
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n < st.Installed {
			a.log.Warn("bridge lost flows: replaying", "bridge", b.Name, "in_switch", n, "installed", st.Installed)
			if err := b.Replay(); err != nil {
				a.log.Warn("replay", "bridge", b.Name, "err", err)
			}
		}
	}
}
