package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// The scripts ask lanesctl itself (__complete WORDS... CURRENT) for candidates, one a
// line, so that names come live from the store with the line's own --etcd and TLS flags.
const bashCompletion = `# lanesctl completion for bash: source <(lanesctl completion bash)
_lanesctl() {
    local IFS=$'\n'
    COMPREPLY=($(lanesctl __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _lanesctl lanesctl
`

const zshCompletion = `# lanesctl completion for zsh: source <(lanesctl completion zsh)
autoload -U +X bashcompinit && bashcompinit
` + bashCompletion

const fishCompletion = `# lanesctl completion for fish: lanesctl completion fish | source
complete -c lanesctl -f -a '(lanesctl __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`

func (g *globals) completion(args []string) error {
	pos, err := parse(newFlagSet("completion"), args, "SHELL")
	if err != nil {
		return err
	}
	script, ok := map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}[pos[0]]
	if !ok {
		return usagef("completion %q: want bash, zsh or fish", pos[0])
	}
	_, err = fmt.Fprint(g.out, script)
	return err
}

// valueKinds says which object a flag's value names, for completion.
var valueKinds = map[string]string{"network": "network", "host": "host", "sg": "sg", "remote-group": "sg", "from-port": "port"}

// completeLine answers __complete: words are the words typed so far (global flags
// still in them), the last one the word being completed.
func completeLine(args []string, out func(string)) {
	if len(args) == 0 {
		args = []string{""}
	}
	cur, prior := args[len(args)-1], args[:len(args)-1]
	g := &globals{}
	fs := globalFlags(g)
	gargs, rest, err := splitGlobals(fs, prior)
	if err != nil {
		// The word being typed is the value of a global flag.
		if strings.TrimLeft(prior[len(prior)-1], "-") == "o" || strings.TrimLeft(prior[len(prior)-1], "-") == "output" {
			emitMatching([]string{"table", "json", "yaml"}, cur, out)
		}
		return
	}
	_ = fs.Parse(gargs)
	cmd, cargs := find(rest)
	if cmd == nil {
		typed := strings.Join(rest, " ")
		var next []string
		for _, c := range commands {
			w := strings.Fields(c.path)
			if len(w) > len(rest) && strings.Join(w[:len(rest)], " ") == typed {
				next = append(next, w[len(rest)])
			}
		}
		if len(rest) == 0 {
			next = append(next, "help")
		}
		emitMatching(next, cur, out)
		return
	}
	var cmdFlags *flag.FlagSet
	var h *helpRequested
	if err := cmd.run(&cli{globals: g, ctx: context.Background()}, []string{"--help"}); errors.As(err, &h) {
		cmdFlags = h.fs
	}
	if strings.HasPrefix(cur, "-") {
		var names []string
		if cmdFlags != nil {
			cmdFlags.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
		}
		fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
		emitMatching(names, cur, out)
		return
	}
	// Positional arguments so far, skipping flag values.
	npos := 0
	for i := 0; i < len(cargs); i++ {
		a := cargs[i]
		if !strings.HasPrefix(a, "-") {
			npos++
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if hasValue || cmdFlags == nil || cmdFlags.Lookup(name) == nil || isBool(cmdFlags.Lookup(name)) {
			continue
		}
		if i == len(cargs)-1 {
			// cur is this flag's value.
			kind := valueKinds[name]
			if name == "port" && cmd.path == "flows" {
				kind = "port" // sg rule add's --port is a number
			}
			if kind != "" {
				emitMatching(g.names(kind), cur, out)
			}
			return
		}
		i++
	}
	switch {
	case cmd.path == "flows" && npos == 0:
		emitMatching([]string{"br-int", "br-tun"}, cur, out)
	case cmd.path == "completion" && npos == 0:
		emitMatching([]string{"bash", "zsh", "fish"}, cur, out)
	case npos < len(cmd.complete):
		emitMatching(g.names(cmd.complete[npos]), cur, out)
	}
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func emitMatching(cands []string, prefix string, out func(string)) {
	sort.Strings(cands)
	for _, c := range slices.Compact(cands) {
		if strings.HasPrefix(c, prefix) {
			out(c)
		}
	}
}

// names lists the names of one kind of object from the store; completion must stay
// quick, so an unreachable store gives no names rather than a wait.
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
	}
	return out
}
