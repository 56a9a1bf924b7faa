package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsCommands keeps the docs true to the CLI: every `lanesctl ...` command the
// README and docs/ show must be a command of the usage text, with flags it knows.
func TestDocsCommands(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	// Commands in inline code (`lanesctl ...`) or at the start of a code-block line.
	cmdRe := regexp.MustCompile("(?m)(?:`|^ +(?:\\$ )?)lanesctl((?: +(?:-o json|--?[a-z-]+(?:[ =][^ `#|\\]]+)?|[a-z0-9./|-]+))+)")
	globals := map[string]bool{"--etcd": true, "--socket": true, "-o": true}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmdRe.FindAllStringSubmatch(string(b), -1) {
			fields := strings.Fields(strings.Replace(m[1], "-o json", "", 1))
			var words []string
			for _, w := range fields {
				if strings.HasPrefix(w, "-") {
					name, _, _ := strings.Cut(w, "=")
					if !globals[name] && !strings.Contains(usage, name+" ") && !strings.Contains(usage, name+"]") && !strings.Contains(usage, name+"=") {
						t.Errorf("%s: lanesctl%s: flag %s is not in lanesctl's usage", f, m[1], name)
					}
					continue
				}
				if len(words) < 2 && !strings.ContainsAny(w, "./") && strings.ToLower(w) == w && !strings.Contains(w, "|") {
					words = append(words, w)
				}
			}
			if len(words) == 0 {
				continue
			}
			// status, flows, trace take arguments, not verbs.
			cmd := words[0]
			if len(words) > 1 && cmd != "flows" && cmd != "trace" && cmd != "status" {
				cmd += " " + words[1]
			}
			if !strings.Contains(usage, "  "+cmd) && !strings.Contains(usage, "| "+words[len(words)-1]) {
				t.Errorf("%s: lanesctl%s: %q is not a lanesctl command", f, m[1], cmd)
			}
			checked++
		}
	}
	if checked < 10 {
		t.Errorf("only %d lanesctl commands found in the docs", checked)
	}
}
