package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestDocsCommands keeps the docs true to the CLI: every `lanesctl ...` command the
// README and docs/ show must walk lanesctl's command tree word by word, with flags
// that the command (or lanesctl itself) knows.
func TestDocsCommands(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	// Commands in inline code (`lanesctl ...`) or at the start of a code-block line.
	cmdRe := regexp.MustCompile("(?m)(?:`|^ +(?:\\$ )?)lanesctl((?: +(?:-o json|--?[a-z0-9-]+(?:[ =][^ \n`#|\\]]+)?|[A-Za-z0-9./|_-]+))+)")
	root := newRoot(&globals{out: io.Discard})
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmdRe.FindAllStringSubmatch(string(b), -1) {
			if msg := checkLine(root, strings.Fields(m[1])); msg != "" {
				t.Errorf("%s: lanesctl%s: %s", f, m[1], msg)
			}
			checked++
		}
	}
	if checked < 30 {
		t.Errorf("only %d lanesctl commands found in the docs", checked)
	}
	// The checker itself refuses what is wrong.
	for _, bad := range []string{"netwrok list", "network list --bogus", "port create vm1 --netwrk blue", "sg rules add web"} {
		if checkLine(root, strings.Fields(bad)) == "" {
			t.Errorf("lanesctl %s passes the docs check", bad)
		}
	}
}

// checkLine walks the words of one documented command line; "" means it is right.
func checkLine(root *cobra.Command, fields []string) string {
	cmd := root
	for i := 0; i < len(fields); i++ {
		w := fields[i]
		if strings.HasPrefix(w, "-") {
			name, _, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			var fl *pflag.Flag
			if len(strings.TrimLeft(w, "-")) == 1 && !strings.HasPrefix(w, "--") {
				fl = cmd.Flags().ShorthandLookup(name)
				if fl == nil {
					fl = root.PersistentFlags().ShorthandLookup(name)
				}
			} else if fl = cmd.Flags().Lookup(name); fl == nil {
				fl = root.PersistentFlags().Lookup(name)
			}
			if fl == nil && name != "help" {
				return "flag " + w + " is not a flag of lanesctl " + words(cmd)
			}
			if fl != nil && !hasValue && fl.NoOptDefVal == "" {
				i++ // its value
			}
			continue
		}
		if strings.Contains(w, "|") || strings.ToLower(w) != w {
			if cmd.HasSubCommands() {
				return "" // a placeholder for a command: nothing more to check
			}
			continue
		}
		if sub, _, err := cmd.Find([]string{w}); err == nil && sub != cmd {
			cmd = sub
			continue
		}
		if cmd.HasSubCommands() {
			return "lanesctl " + strings.TrimSpace(words(cmd)+" "+w) + " is not a command"
		}
	}
	return ""
}
