package flows_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/lanes-net/lanes/flows"
)

// TestPipelineDocMatchesRegistry: docs/pipeline.md has, under each bridge's "## <bridge>"
// heading, a summary row and a "### Table <id>, <NAME>" section for every registry
// table and for no other, and each section quotes the registry's Purpose, Matches and
// Miss lines, so the operators' description of a table cannot drift from the code.
func TestPipelineDocMatchesRegistry(t *testing.T) {
	doc, err := os.ReadFile("../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	parts := bridgeParts(string(doc))
	heading := regexp.MustCompile(`(?m)^### Table (\d+), (\S+)$`)
	for _, b := range []flows.Bridge{flows.BrTun, flows.BrInt} {
		part, ok := parts[string(b)]
		if !ok {
			t.Errorf("no \"## %s\" section", b)
			continue
		}
		sections := map[string]string{} // "<id>, <NAME>" -> body
		locs := heading.FindAllStringSubmatchIndex(part, -1)
		for i, l := range locs {
			end := len(part)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			key := part[l[2]:l[3]] + ", " + part[l[4]:l[5]]
			if _, dup := sections[key]; dup {
				t.Errorf("%s: two sections \"Table %s\"", b, key)
			}
			sections[key] = part[l[1]:end]
		}
		for _, tb := range flows.Tables(b) {
			key := fmt.Sprintf("%d, %s", tb.ID, tb.Name)
			row := fmt.Sprintf("| %d | %s | %s |", tb.ID, tb.Name, tb.Purpose)
			if !strings.Contains(part, "\n"+row+"\n") {
				t.Errorf("%s: summary table lacks the row\n%s", b, row)
			}
			body, ok := sections[key]
			if !ok {
				t.Errorf("%s: no section \"### Table %s\"", b, key)
				continue
			}
			delete(sections, key)
			for _, line := range []string{
				"Purpose: " + tb.Purpose + ".",
				"Matches: " + tb.Match.String() + ".",
				"Miss: " + tb.Miss.String() + ".",
			} {
				if !strings.HasPrefix(body, "\n") || !strings.Contains(body, "\n"+line+"\n") {
					t.Errorf("%s table %s: section does not state the registry's\n%s", b, key, line)
				}
			}
		}
		for key := range sections {
			t.Errorf("%s: section \"### Table %s\" is no registry table", b, key)
		}
	}
}

// bridgeParts splits a markdown document at its "## " headings and returns the text
// under the headings that name a bridge.
func bridgeParts(doc string) map[string]string {
	parts := map[string]string{}
	var name string
	var b strings.Builder
	flush := func() {
		if name != "" {
			parts[name] = b.String()
		}
		b.Reset()
	}
	for _, line := range strings.SplitAfter(doc, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			flush()
			name = strings.TrimSpace(h)
			continue
		}
		b.WriteString(line)
	}
	flush()
	return parts
}
