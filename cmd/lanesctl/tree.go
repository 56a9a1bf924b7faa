package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lanes-net/lanes/internal/version"
	"github.com/spf13/cobra"
)

const rootLong = `lanesctl manages lanes' networks, ports, security groups, hosts, routers and floating
IPs in the etcd store (from any host), etcd's users and certificates for lanes, and asks
this host's lanesd (root, through --socket) for its status, flows and packet traces.

Global flags go before or after the command words. --etcd defaults to $LANES_ETCD or
http://127.0.0.1:2379; the TLS files default to $LANES_ETCD_CACERT, $LANES_ETCD_CERT and
$LANES_ETCD_KEY, and the client certificate's CN is the etcd user. Plain http to a
non-loopback etcd needs --etcd-insecure.

Exit codes:
  0  ok
  1  error (also: in use, already used, concurrent change, refused by etcd's permissions)
  2  usage or invalid input
  3  not found
  4  store or lanesd unreachable (also: TLS handshake refused)`

// Command groups of lanesctl --help.
const (
	groupStore  = "store"
	groupAccess = "access"
	groupLocal  = "local"
	groupOther  = "other"
)

// newRoot builds lanesctl's command tree from commands, its global flags bound to g.
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:     "lanesctl",
		Short:   "The operator's CLI of lanes",
		Long:    rootLong,
		Version: version.Get().String(),
		Example: "  lanesctl network create blue --cidr 10.0.0.0/24\n" +
			"  lanesctl port create vm1 --network blue --host cmp1 --wait\n" +
			"  lanesctl --etcd https://10.0.0.2:2379 port list -o json\n" +
			"  source <(lanesctl completion bash)",
		SilenceErrors:              true,
		SuggestionsMinimumDistance: 2,
		SilenceUsage:               true,
		Args:                       noSubcommand,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usagef("no command (see lanesctl --help)")
		},
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch g.output {
			case "table", "json", "yaml":
				return nil
			}
			return usagef("-o %q: must be table, json or yaml", g.output)
		},
	}
	root.SetVersionTemplate("lanesctl {{.Version}}\n")
	addGlobalFlags(g, root.PersistentFlags())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if w := words(c); w != "" {
			err = fmt.Errorf("%s: %w", w, err)
		}
		return &usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	_ = root.RegisterFlagCompletionFunc("output", fixed("table", "json", "yaml"))
	root.AddGroup(
		&cobra.Group{ID: groupStore, Title: "Objects in the store (any host):"},
		&cobra.Group{ID: groupAccess, Title: "Store access and certificates:"},
		&cobra.Group{ID: groupLocal, Title: "This host's lanesd (root, through --socket):"},
		&cobra.Group{ID: groupOther, Title: "Other:"},
	)
	root.SetHelpCommandGroupID(groupOther)
	root.SetCompletionCommandGroupID(groupOther)

	parents := map[string]*cobra.Command{"": root}
	var parent func(path string) *cobra.Command
	parent = func(path string) *cobra.Command {
		if p, ok := parents[path]; ok {
			return p
		}
		up, word := splitLast(path)
		p := &cobra.Command{
			Use:   word,
			Short: groups[path],
			Long:  groups[path] + ".",
			Args:  noSubcommand,
			RunE: func(cmd *cobra.Command, _ []string) error {
				// The list of subcommands, on stderr: stdout stays for what was asked.
				cmd.SetOut(cmd.ErrOrStderr())
				_ = cmd.Help()
				return usagef("%s: missing subcommand (see %s --help)", words(cmd), cmd.CommandPath())
			},
			SuggestionsMinimumDistance: 2,
			ValidArgsFunction:          cobra.NoFileCompletions,
		}
		parent(up).AddCommand(p)
		parents[path] = p
		return p
	}
	for i := range commands {
		e := &commands[i]
		up, word := splitLast(e.path)
		leaf := newLeaf(g, e, word)
		parent(up).AddCommand(leaf)
	}
	for _, c := range root.Commands() {
		switch c.Name() {
		case "store", "pki":
			c.GroupID = groupAccess
		case "status", "flows", "trace":
			c.GroupID = groupLocal
		case "version":
			c.GroupID = groupOther
		default:
			c.GroupID = groupStore
		}
	}
	// The completion command takes its output when it is made.
	root.SetOut(g.out)
	root.SetErr(os.Stderr)
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help about any command: its flags and examples, the same as lanesctl COMMAND --help.",
		Example: "  lanesctl help network create\n" +
			"  lanesctl help sg rule",
		GroupID: groupOther,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return usagef("help: %w", err)
			}
			if len(rest) > 0 && cmd.HasSubCommands() {
				return noSubcommand(cmd, rest)
			}
			return cmd.Help()
		},
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, _, err := c.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return matching(names, toComplete), cobra.ShellCompDirectiveNoFileComp
		},
	})
	// Made now rather than in Execute, so that tests and the docs check see them.
	root.InitDefaultHelpCmd()
	root.InitDefaultVersionFlag()
	root.InitDefaultCompletionCmd()
	// completion without a shell, or with one cobra does not know, is a usage error.
	if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
		c.Args = noSubcommand
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usagef("completion: want bash, zsh, fish or powershell")
		}
		c.Example = "  source <(lanesctl completion bash)\n  lanesctl completion fish | source"
	}
	return root
}

func splitLast(path string) (string, string) {
	i := strings.LastIndex(path, " ")
	if i < 0 {
		return "", path
	}
	return path[:i], path[i+1:]
}

// newLeaf makes the cobra command of e: its flags are the ones e.run defines (see
// parse), its run opens the store when e needs it.
func newLeaf(g *globals, e *command, word string) *cobra.Command {
	long := e.long
	if long == "" {
		long = e.short + "."
	}
	use := word
	if e.synopsis != "" {
		use += " " + e.synopsis
	}
	leaf := &cobra.Command{
		Use:     use,
		Short:   e.short,
		Long:    long,
		Example: "  " + strings.ReplaceAll(e.example, "\n", "\n  "),
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := &cli{globals: g, ctx: context.Background()}
			g.parsed = cmd.Flags()
			if e.store {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				st, err := g.openStore(ctx)
				if err != nil {
					return err
				}
				defer st.Close()
				c.st, c.ctx = st, ctx
			}
			return e.run(c, args)
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			n := len(args)
			switch {
			case e.path == "flows" && n == 0:
				return matching([]string{"br-int", "br-tun"}, toComplete), cobra.ShellCompDirectiveNoFileComp
			case n < len(e.complete) && e.complete[n] != "":
				return matching(g.names(e.complete[n]), toComplete), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
	}
	if d, err := define(e); err == nil {
		leaf.Flags().AddFlagSet(d.fs)
		leaf.Args = positionalArgs(d.positional)
	}
	for name, kind := range valueKinds {
		if name == "port" && e.path == "sg rule add" {
			continue // a port number, not a port's name
		}
		if leaf.Flags().Lookup(name) != nil {
			kind := kind
			_ = leaf.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				return matching(g.names(kind), toComplete), cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
	for name, vals := range fixedValues {
		if leaf.Flags().Lookup(name) != nil {
			_ = leaf.RegisterFlagCompletionFunc(name, fixed(vals...))
		}
	}
	return leaf
}

// define runs e with defineArgs: it defines its flags and parse hands them back
// with the names of its positional arguments.
func define(e *command) (*definition, error) {
	err := e.run(&cli{globals: &globals{out: io.Discard}}, defineArgs)
	var d *definition
	if errors.As(err, &d) {
		return d, nil
	}
	return nil, fmt.Errorf("%s: its flags are not defined before it runs: %w", e.path, err)
}

// positionalArgs checks the number of positional arguments before the command runs
// (and before it dials the store), with parse's message.
func positionalArgs(want []string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == len(want):
			return nil
		case len(want) == 0:
			return usagef("%s: unexpected argument %q", words(cmd), args[0])
		}
		return usagef("%s: want %s", words(cmd), strings.Join(want, " "))
	}
}

// valueKinds says which object a flag's value names, for completion.
var valueKinds = map[string]string{"network": "network", "host": "host", "sg": "sg", "remote-group": "sg",
	"from-port": "port", "port": "port"}

// fixedValues are the values of flags that take one of a few words.
var fixedValues = map[string][]string{
	"direction":         {"ingress", "egress"},
	"ethertype":         {"IPv4", "IPv6"},
	"proto":             {"icmp", "tcp", "udp"},
	"type":              {"vxlan", "gre", "geneve"},
	"provider":          {"flat", "vlan"},
	"ipv6-address-mode": {"slaac", "dhcpv6-stateful", "dhcpv6-stateless"},
	"port-security":     {"true", "false"},
}

func fixed(vals ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return matching(vals, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// matching is the sorted candidates that begin with prefix.
func matching(cands []string, prefix string) []string {
	var out []string
	for _, c := range cands {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// noSubcommand refuses words after a group (or lanesctl itself) that name no
// command, with cobra's suggestions as "did you mean".
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	typed := strings.TrimSpace(words(cmd) + " " + args[0])
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		sugg := strings.TrimSpace(words(cmd) + " " + s[0])
		// "netwrok list": the next word names a command of the suggestion.
		if len(args) > 1 {
			if c, _, err := cmd.Find([]string{s[0], args[1]}); err == nil && c.Name() == args[1] {
				sugg += " " + args[1]
			}
		}
		hint = fmt.Sprintf("; did you mean %q?", sugg)
	}
	return usagef("unknown command %q%s (see %s --help)", typed, hint, cmd.CommandPath())
}

// words is the command's path without "lanesctl", as messages name it.
func words(cmd *cobra.Command) string {
	return strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()), " ")
}
