// Package ofsync keeps one bridge's OpenFlow table equal to a desired flow set over
// ofnet: it diffs desired flows against what it last installed, sends every change as
// one atomic bundle, and updates its cache only when the bundle commits. A new
// connection (first start, or ovs-vswitchd restarted) gets the whole desired set
// replayed, with a sweep of every flow of another round in the same bundle.
package ofsync

import (
	"slices"

	"github.com/lanes-net/lanes/flows"
)

// Plan is the set of FlowMods that turns the installed flows into the desired ones.
type Plan struct {
	Add    []flows.Flow // new flows, and flows whose actions or cookie changed (ADD replaces in place)
	Delete []flows.Flow // installed flows no longer desired (DELETE_STRICT)
	// Sweep deletes every flow of another round (restart, reconnect).
	Sweep bool
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Add) == 0 && len(p.Delete) == 0 && !p.Sweep }

// Entry is an indexed flow with its rendering, computed once: diffs compare
// renderings, and a host may hold tens of thousands of flows.
type Entry struct {
	Flow flows.Flow
	Text string // Flow.String()
}

// Diff compares flows by their key (table, priority, match). With full set, every
// desired flow is re-added, as after a reconnect, when the switch may hold anything.
func Diff(installed, desired map[string]Entry, full bool) Plan {
	var add, del []string
	for k, e := range desired {
		if old, ok := installed[k]; full || !ok || old.Text != e.Text {
			add = append(add, k)
		}
	}
	for k := range installed {
		if _, ok := desired[k]; !ok {
			del = append(del, k)
		}
	}
	// A stable order makes bundles reproducible and logs readable. Sort the keys
	// once: Flow.Key() formats, and a sort calls it n log n times.
	slices.Sort(add)
	slices.Sort(del)
	p := Plan{Sweep: full}
	for _, k := range add {
		p.Add = append(p.Add, desired[k].Flow)
	}
	for _, k := range del {
		p.Delete = append(p.Delete, installed[k].Flow)
	}
	return p
}

// Index keys flows by Key and stamps them with round.
func Index(fs []flows.Flow, round uint16) map[string]Entry {
	m := make(map[string]Entry, len(fs))
	for _, f := range fs {
		f = f.WithRound(round)
		m[f.Key()] = Entry{Flow: f, Text: f.String()}
	}
	return m
}

// SweepMasks returns (cookie, mask) pairs whose delete-by-cookie-mask removes every
// flow whose round differs from round and nothing else: a flow of another round
// differs in at least one of the 16 round bits, and each pair matches one bit set
// opposite to round's. Sixteen non-strict deletes in the same bundle as the adds,
// so no desired flow is ever missing.
func SweepMasks(round uint16) [][2]flows.Cookie {
	out := make([][2]flows.Cookie, 0, 16)
	for i := 0; i < 16; i++ {
		bit := flows.Cookie(1) << (48 + i)
		cookie := bit
		if round&(1<<i) != 0 {
			cookie = 0
		}
		out = append(out, [2]flows.Cookie{cookie, bit})
	}
	return out
}
