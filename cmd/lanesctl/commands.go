package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
)

// command is one leaf of lanesctl's command tree. A new command is one entry in
// commands: its words, its synopsis, and a run function that parses its own flags
// with parse (so that --help can show them without running anything).
type command struct {
	path     string // the command words, e.g. "sg rule add"
	synopsis string // what follows the words in the usage line
	summary  string
	example  string
	// store: the command needs the etcd store (run gets a *cli with st set).
	store bool
	run   func(c *cli, args []string) error
	// complete names the kind of object each positional argument is, for shell
	// completion: network, port, sg or host.
	complete []string
}

var commands = []command{
	{path: "network create", synopsis: "NAME --cidr CIDR [flags]", store: true,
		summary: "Create a network; the VNI and MTU are allocated unless given. The first network also creates the security group default.",
		example: "lanesctl network create blue --cidr 10.0.0.0/24 --gateway 10.0.0.1 --dns 10.0.0.53",
		run:     (*cli).networkCreate},
	{path: "network update", synopsis: "NETWORK [flags]", store: true, complete: []string{"network"},
		summary: "Change a network's DHCP options; only the flags given change, an empty value clears (--dns \"\").",
		example: "lanesctl network update blue --dns 10.0.0.53 --lease 12h",
		run:     (*cli).networkUpdate},
	{path: "network list", store: true, summary: "List networks.", run: (*cli).networkList},
	{path: "network show", synopsis: "NETWORK", store: true, complete: []string{"network"},
		summary: "Show one network (by name or ID).", run: (*cli).networkShow},
	{path: "network delete", synopsis: "NETWORK", store: true, complete: []string{"network"},
		summary: "Delete a network; refused while ports are attached.", run: (*cli).networkDelete},

	{path: "port create", synopsis: "NAME --network NET --host HOST [flags]", store: true,
		summary: "Create a port for a VM; without --sg it gets the group named default. Prints the tap and the qemu options.",
		example: "lanesctl port create vm1 --network blue --host cmp1 --sg web --wait --ssh-key ~/.ssh/id_ed25519.pub",
		run:     (*cli).portCreate},
	{path: "port list", synopsis: "[--network NET] [--host HOST]", store: true,
		summary: "List ports with their reported status.", run: (*cli).portList},
	{path: "port show", synopsis: "PORT", store: true, complete: []string{"port"},
		summary: "Show one port (by name or ID).", run: (*cli).portShow},
	{path: "port update", synopsis: "PORT [flags]", store: true, complete: []string{"port"},
		summary: "Change a port's host, security groups, allowed address pairs, fixed IPs, MAC or port security; only the flags given change.",
		example: "lanesctl port update vm1 --sg web --sg ssh", run: (*cli).portUpdate},
	{path: "port delete", synopsis: "PORT", store: true, complete: []string{"port"},
		summary: "Delete a port.", run: (*cli).portDelete},
	{path: "port seed", synopsis: "PORT [--user-data FILE] [--ssh-key FILE]... [--seed OUT.img]", store: true, complete: []string{"port"},
		summary: "Write a cloud-init NoCloud disk for the port's guest.", run: (*cli).portSeed},

	{path: "sg create", synopsis: "NAME [--default-rules]", store: true,
		summary: "Create a security group (empty: it drops everything).", example: "lanesctl sg create web", run: (*cli).sgCreate},
	{path: "sg list", store: true, summary: "List security groups and their rules.", run: (*cli).sgList},
	{path: "sg show", synopsis: "SG", store: true, complete: []string{"sg"},
		summary: "Show one security group.", run: (*cli).sgShow},
	{path: "sg delete", synopsis: "SG", store: true, complete: []string{"sg"},
		summary: "Delete a security group; refused while a port or another group's rule uses it.", run: (*cli).sgDelete},
	{path: "sg rule add", synopsis: "SG --direction ingress|egress [flags]", store: true, complete: []string{"sg"},
		summary: "Add a rule to a security group.",
		example: "lanesctl sg rule add web --direction ingress --protocol tcp --port 22", run: (*cli).sgRuleAdd},
	{path: "sg rule delete", synopsis: "SG RULE_ID", store: true, complete: []string{"sg"},
		summary: "Delete a rule of a security group.", run: (*cli).sgRuleDelete},

	{path: "host list", store: true, summary: "List hosts and whether their agent is up.", run: (*cli).hostList},
	{path: "host delete", synopsis: "HOST [--force]", store: true, complete: []string{"host"},
		summary: "Delete a host and its tunnels; refused while ports are bound to it unless --force.", run: (*cli).hostDelete},

	{path: "router create", synopsis: "NAME [--host L3HOST]", store: true, summary: "Create a router, scheduled to an L3 host.", run: l3Run("router create")},
	{path: "router list", store: true, summary: "List routers and where they run.", run: l3Run("router list")},
	{path: "router show", synopsis: "ROUTER", store: true, summary: "Show a router.", run: l3Run("router show")},
	{path: "router delete", synopsis: "ROUTER", store: true, summary: "Delete a router (its interfaces and gateway first).", run: l3Run("router delete")},
	{path: "router add-interface", synopsis: "ROUTER NETWORK", store: true, complete: []string{"", "network"},
		summary: "Attach a network to a router; the router takes the network's gateway address.", run: l3Run("router add-interface")},
	{path: "router remove-interface", synopsis: "ROUTER NETWORK", store: true, complete: []string{"", "network"},
		summary: "Detach a network from a router.", run: l3Run("router remove-interface")},
	{path: "router set-gateway", synopsis: "ROUTER EXTERNAL-NETWORK [--no-snat]", store: true, complete: []string{"", "network"},
		summary: "Give a router its external gateway (SNAT unless --no-snat).", run: l3Run("router set-gateway")},
	{path: "router clear-gateway", synopsis: "ROUTER", store: true, summary: "Remove a router's external gateway.", run: l3Run("router clear-gateway")},
	{path: "fip create", synopsis: "EXTERNAL-NETWORK [--port PORT [--fixed-ip IP]]", store: true, complete: []string{"network"},
		summary: "Allocate a floating IP from an external network's pool, optionally for a port.", run: l3Run("fip create")},
	{path: "fip list", store: true, summary: "List floating IPs.", run: l3Run("fip list")},
	{path: "fip delete", synopsis: "FIP", store: true, summary: "Release a floating IP (ID or address).", run: l3Run("fip delete")},
	{path: "fip associate", synopsis: "FIP PORT [--fixed-ip IP]", store: true, complete: []string{"", "port"},
		summary: "Point a floating IP at a port's fixed IP.", run: l3Run("fip associate")},
	{path: "fip disassociate", synopsis: "FIP", store: true, summary: "Detach a floating IP from its port.", run: l3Run("fip disassociate")},

	{path: "store init", synopsis: "[--host NAME]... [--operator NAME]... [--reader NAME]...", store: true,
		summary: "Create lanes' etcd roles and users and turn on etcd authentication (with the root certificate of pki init); safe to run again.",
		run:     (*cli).storeInit},
	{path: "store users", store: true, summary: "List etcd users and their roles.", run: (*cli).storeUsers},
	{path: "store remove-user", synopsis: "NAME", store: true, summary: "Remove an etcd user.", run: (*cli).storeRemoveUser},

	{path: "pki init", synopsis: "[--dir DIR] [--san ADDR]...", summary: "Create the CA, etcd's server certificate and the root certificate.", run: pkiVerb("init")},
	{path: "pki issue-host", synopsis: "NAME [--dir DIR] [--days N] [--force]", summary: "Issue a host's etcd client certificate.", run: pkiVerb("issue-host")},
	{path: "pki issue-operator", synopsis: "NAME [--dir DIR] [--days N] [--force]", summary: "Issue an operator's certificate.", run: pkiVerb("issue-operator")},
	{path: "pki issue-reader", synopsis: "NAME [--dir DIR] [--days N] [--force]", summary: "Issue a read-only certificate.", run: pkiVerb("issue-reader")},
	{path: "pki issue-server", synopsis: "NAME --san ADDR... [--dir DIR] [--days N] [--force]", summary: "Issue an etcd member's server certificate.", run: pkiVerb("issue-server")},

	{path: "status", summary: "This host's lanesd: store and lease, bridges, networks, ports, tunnels, warnings and the last reconcile.",
		run: func(c *cli, args []string) error { return c.status(args) }},
	{path: "flows", synopsis: "br-tun|br-int [--table NAME|NUMBER] [--port PORT] [--network NET]",
		summary: "The flows lanesd keeps on a bridge, with their owners.", example: "lanesctl flows br-tun --table FLOOD_TO_TUN",
		run: func(c *cli, args []string) error { return c.flows(args) }},
	{path: "trace", synopsis: "--from-port PORT (--dst-ip IP [--proto icmp|tcp|udp] [--dst-port N] | --dhcp)",
		summary: "Trace a packet from a local port through both bridges, explained.",
		example: "lanesctl trace --from-port vm1 --dst-ip 10.0.0.7 --proto tcp --dst-port 22",
		run:     func(c *cli, args []string) error { return c.trace(args) }},

	{path: "version", summary: "The versions of lanesctl and, when its socket answers, of this host's lanesd.",
		run: func(c *cli, args []string) error { return c.version(args) }},
	{path: "completion", synopsis: "bash|zsh|fish", summary: "Print a shell completion script; it completes names from the store.",
		example: "source <(lanesctl completion bash)",
		run:     func(c *cli, args []string) error { return c.completion(args) }},
}

func pkiVerb(verb string) func(c *cli, args []string) error {
	return func(c *cli, args []string) error { return c.pki(append([]string{verb}, args...)) }
}

// Exit codes, by class of failure; docs/operators.md lists them.
const (
	exitOK          = 0
	exitError       = 1 // internal or other errors
	exitUsage       = 2 // usage errors and invalid input
	exitNotFound    = 3 // the named object does not exist
	exitConflict    = 4 // in use, already exists, concurrent modification
	exitUnreachable = 5 // store or lanesd unreachable, TLS or permission refused
)

// usageError marks a mistake on the command line (exit 2).
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return &usageError{fmt.Errorf(format, a...)} }

// unreachableError marks a store or lanesd that did not answer (exit 5).
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// errNotFound is what lanesd's API answers with 404.
var errNotFound = errors.New("not found")

// exitCode maps an error to its class in the table above.
func exitCode(err error) int {
	var ue *usageError
	var unr *unreachableError
	var fe *api.FieldError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &unr), errors.Is(err, store.ErrPermissionDenied), errors.Is(err, store.ErrTLS),
		errors.Is(err, store.ErrNotRoot), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, context.DeadlineExceeded):
		return exitUnreachable
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errNotFound):
		return exitNotFound
	case errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrConflict),
		errors.As(err, &fe) && strings.HasPrefix(fe.Reason, "already used"):
		return exitConflict
	case errors.Is(err, api.ErrInvalid):
		return exitUsage
	}
	// Only a network operation's error: syscall.Errno satisfies net.Error too.
	var ne *net.OpError
	if errors.As(err, &ne) {
		return exitUnreachable
	}
	return exitError
}

// find returns the command whose words begin args, the longest first, and the rest.
func find(args []string) (*command, []string) {
	for n := min(3, len(args)); n > 0; n-- {
		path := strings.Join(args[:n], " ")
		for i := range commands {
			if commands[i].path == path {
				return &commands[i], args[n:]
			}
		}
	}
	return nil, args
}

// group lists the commands under a prefix of words ("sg", "sg rule").
func group(prefix string) []*command {
	var out []*command
	for i := range commands {
		if strings.HasPrefix(commands[i].path, prefix+" ") {
			out = append(out, &commands[i])
		}
	}
	return out
}

// suggest is the "did you mean" of an unknown command.
func suggest(words []string) string {
	typed := strings.Join(words, " ")
	best, bestD := "", 3
	seen := map[string]bool{}
	for _, c := range commands {
		w := strings.Fields(c.path)
		for n := 1; n <= len(w); n++ {
			cand := strings.Join(w[:n], " ")
			if seen[cand] || n != min(len(words), len(w)) {
				continue
			}
			seen[cand] = true
			if d := distance(strings.Join(words[:n], " "), cand); d < bestD {
				best, bestD = cand, d
			}
		}
	}
	if best == "" || best == typed {
		return ""
	}
	return best
}

// distance is the Levenshtein distance of two short strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// helpRequested is what parse returns for -h/--help: the command's flag set, so that
// its help lists exactly the flags it parses.
type helpRequested struct{ fs *flag.FlagSet }

func (h *helpRequested) Error() string { return "help requested" }

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

// commandHelp prints a command's usage line, summary, example and flags.
func commandHelp(c *cli, cmd *command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: lanesctl %s", cmd.path)
	if cmd.synopsis != "" {
		fmt.Fprintf(&b, " %s", cmd.synopsis)
	}
	fmt.Fprintf(&b, "\n\n%s\n", cmd.summary)
	if cmd.example != "" {
		fmt.Fprintf(&b, "\nexample:\n  %s\n", cmd.example)
	}
	// Run with --help and no store: parse stops at once and hands back the flags.
	var h *helpRequested
	if err := cmd.run(c, []string{"--help"}); errors.As(err, &h) {
		var lines []string
		h.fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			l := "  --" + f.Name
			if name != "" {
				l += " " + name
			}
			l += "\n      " + usage
			if !slices.Contains([]string{"", "false", "0", "0s", "[]"}, f.DefValue) {
				l += fmt.Sprintf(" (default %q)", f.DefValue)
			}
			lines = append(lines, l)
		})
		if len(lines) > 0 {
			fmt.Fprintf(&b, "\nflags:\n%s\n", strings.Join(lines, "\n"))
		}
	}
	b.WriteString("\nglobal flags (before or after the command): -o table|json|yaml, --etcd URLS, --etcd-cacert FILE,\n" +
		"  --etcd-cert FILE, --etcd-key FILE, --etcd-insecure, --etcd-dial-timeout D, --socket PATH (see lanesctl --help)\n")
	return b.String()
}

// groupHelp lists the commands under a word such as "network".
func groupHelp(prefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: lanesctl %s <command>\n\ncommands:\n", prefix)
	cmds := group(prefix)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].path < cmds[j].path })
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-22s %s\n", c.path, c.summary)
	}
	b.WriteString("\nlanesctl " + prefix + " <command> --help shows a command's flags.\n")
	return b.String()
}

func newFlagSet(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }

// l3Run runs one of the router and fip commands of router.go.
func l3Run(path string) func(c *cli, args []string) error {
	noun, verb, _ := strings.Cut(path, " ")
	return func(c *cli, args []string) error {
		_, err := c.l3Command(noun, verb, args)
		return err
	}
}
