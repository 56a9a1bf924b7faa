// Command lanesctl is the operator's CLI: networks, ports, security groups and hosts in
// the store, and the local lanesd's status, flows and traces.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/store"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// globals are the options every command accepts, before or after the command words.
type globals struct {
	etcd        string
	tls         store.ClientTLS
	insecure    bool
	dialTimeout time.Duration
	socket      string
	output      string
	out         io.Writer
	// parsed holds the flags cobra parsed for the running command; parse copies the
	// ones given into the command's own flag set.
	parsed *pflag.FlagSet
}

func main() {
	err := run(os.Args[1:], os.Stdout)
	if err != nil {
		msg := oneLine(err)
		if errors.Is(err, store.ErrPermissionDenied) {
			msg += " (the etcd user of this client certificate, its CN, may not do this)"
		}
		fmt.Fprintln(os.Stderr, "lanesctl:", msg)
	}
	os.Exit(exitCode(err))
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// addGlobalFlags defines the global flags on fs (the root command's persistent flags,
// so that they are accepted anywhere on the line).
func addGlobalFlags(g *globals, fs *pflag.FlagSet) {
	etcd := os.Getenv("LANES_ETCD")
	if etcd == "" {
		etcd = "http://127.0.0.1:2379"
	}
	sock := os.Getenv("LANES_SOCKET")
	if sock == "" {
		sock = "/run/lanes/lanesd.sock"
	}
	fs.StringVar(&g.etcd, "etcd", etcd, "etcd client `URLS`, comma-separated ($LANES_ETCD)")
	fs.StringVar(&g.tls.CACert, "etcd-cacert", os.Getenv("LANES_ETCD_CACERT"), "CA bundle `FILE` of etcd's server certificates ($LANES_ETCD_CACERT)")
	fs.StringVar(&g.tls.Cert, "etcd-cert", os.Getenv("LANES_ETCD_CERT"), "client certificate `FILE`; its CN is the etcd user ($LANES_ETCD_CERT)")
	fs.StringVar(&g.tls.Key, "etcd-key", os.Getenv("LANES_ETCD_KEY"), "key `FILE` of --etcd-cert ($LANES_ETCD_KEY)")
	fs.BoolVar(&g.insecure, "etcd-insecure", false, "accept plain http to a non-loopback etcd")
	fs.DurationVar(&g.dialTimeout, "etcd-dial-timeout", 10*time.Second, "how long to wait for etcd to answer")
	fs.StringVar(&g.socket, "socket", sock, "lanesd's local socket `PATH` ($LANES_SOCKET)")
	fs.StringVarP(&g.output, "output", "o", "table", "output `FORMAT`: table, json or yaml")
}

// run builds the command tree afresh (so that nothing parsed survives from one call
// to the next) and runs the command args name.
func run(args []string, out io.Writer) error {
	g := &globals{out: out}
	root := newRoot(g)
	root.SetArgs(args)
	return root.Execute()
}

// openStore connects to etcd; a failure to get an answer is "unreachable" (exit 4),
// refused input such as plain http to a remote etcd stays a usage error.
func (g *globals) openStore(ctx context.Context) (*store.Store, error) {
	dialCtx, cancel := context.WithTimeout(ctx, g.dialTimeout)
	defer cancel()
	st, err := store.Open(dialCtx, strings.Split(g.etcd, ","), store.WithTLS(g.tls), store.AllowInsecure(g.insecure))
	if err != nil {
		if errors.Is(err, api.ErrInvalid) {
			return nil, &usageError{err}
		}
		return nil, &unreachableError{err}
	}
	return st, nil
}

// cli runs store commands.
type cli struct {
	*globals
	st  *store.Store
	ctx context.Context
}

// parse gives a command its flags and checks the number of positional arguments.
// A command defines its flags on its own fs and then calls parse: when the tree is
// built, args is defineArgs and parse hands fs back (a *definition), so that the
// cobra command shows, parses and completes exactly those flags; when the command
// runs, parse copies the values cobra parsed into fs. Without cobra (unit tests)
// parse parses args itself.
func (g *globals) parse(fs *pflag.FlagSet, args []string, positional ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	switch {
	case slices.Equal(args, defineArgs):
		return nil, &definition{fs, positional}
	case g != nil && g.parsed != nil:
		var err error
		fs.VisitAll(func(f *pflag.Flag) {
			p := g.parsed.Lookup(f.Name)
			if err != nil || p == nil || !p.Changed {
				return
			}
			vals := []string{p.Value.String()}
			if sv, ok := p.Value.(pflag.SliceValue); ok {
				vals = sv.GetSlice()
			}
			for _, v := range vals {
				if err = fs.Set(f.Name, v); err != nil {
					err = &usageError{fmt.Errorf("%s: --%s: %w", fs.Name(), f.Name, err)}
					return
				}
			}
		})
		if err != nil {
			return nil, err
		}
		pos = args // cobra checked their number (positionalArgs)
	default:
		if err := fs.Parse(args); err != nil {
			return nil, &usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
		}
		pos = fs.Args()
	}
	if len(pos) != len(positional) {
		if len(positional) == 0 {
			return nil, usagef("%s: unexpected argument %q", fs.Name(), pos[0])
		}
		return nil, usagef("%s: want %s", fs.Name(), strings.Join(positional, " "))
	}
	return pos, nil
}

// defineArgs is what a command gets when the tree is built: no command line holds a
// NUL byte, so no real invocation looks like it.
var defineArgs = []string{"\x00define"}

func newFlagSet(name string) *pflag.FlagSet { return pflag.NewFlagSet(name, pflag.ContinueOnError) }

// list is a repeatable string flag.
type list []string

func (l *list) String() string        { return strings.Join(*l, ",") }
func (l *list) Set(s string) error    { *l = append(*l, s); return nil }
func (l *list) Type() string          { return "string" }
func (l *list) GetSlice() []string    { return *l }
func (l *list) Append(s string) error { return l.Set(s) }
func (l *list) Replace(s []string) error {
	*l = s
	return nil
}

// structured reports whether -o asks for JSON or YAML rather than a table.
func (g *globals) structured() bool { return g.output != "table" }

// emit prints v as JSON or YAML with -o json|yaml, or calls table otherwise. YAML is
// made from the JSON, so both carry the same field names and parse into the same
// objects.
func (g *globals) emit(v any, table func(w *tabwriter.Writer)) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		j, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return err
		}
		_, err = g.out.Write(y)
		return err
	}
	w := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}
