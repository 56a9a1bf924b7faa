package hostwire

import (
	"fmt"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// apply plays restore edit lines on a chain held as a slice.
func applyEdits(t *testing.T, chain []string, lines []string) []string {
	t.Helper()
	out := slices.Clone(chain)
	for _, l := range lines {
		f := strings.SplitN(l, " ", 3)
		switch f[0] {
		case "-D":
			i := slices.Index(out, f[2])
			if i < 0 {
				t.Fatalf("%s: no such rule", l)
			}
			out = slices.Delete(out, i, i+1)
		case "-I":
			pos, rule, _ := strings.Cut(f[2], " ")
			n, _ := strconv.Atoi(pos)
			if n < 1 || n > len(out)+1 {
				t.Fatalf("%s: position out of range (chain has %d)", l, len(out))
			}
			out = slices.Insert(out, n-1, rule)
		default:
			t.Fatalf("unexpected line %q", l)
		}
	}
	return out
}

func TestEditChain(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	rules := func(ids []int) []string {
		var out []string
		for _, id := range ids {
			out = append(out, fmt.Sprintf("-m physdev --physdev-in tap%03d -j lanes-o%03d", id, id))
		}
		return append(out, "-j ACCEPT") // must stay last
	}
	for round := 0; round < 500; round++ {
		var oldIDs, newIDs []int
		for id := 0; id < 60; id++ {
			inOld, inNew := rng.Intn(10) > 0, rng.Intn(10) > 0
			if round%2 == 0 {
				inNew = inOld || rng.Intn(40) == 0 // mostly one port added
			}
			if inOld {
				oldIDs = append(oldIDs, id)
			}
			if inNew {
				newIDs = append(newIDs, id)
			}
		}
		old, want := rules(oldIDs), rules(newIDs)
		lines, ok := editChain("c", old, want)
		if !ok {
			continue
		}
		if got := applyEdits(t, old, lines); !slices.Equal(got, want) {
			t.Fatalf("round %d: edits %v give\n%v\nwant\n%v", round, lines, got, want)
		}
	}
	// One port added: a single insert, not a rewrite.
	old, want := rules([]int{1, 2, 4, 5, 6, 7, 8, 9, 10}), rules([]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	if lines, ok := editChain("c", old, want); !ok || len(lines) != 1 || !strings.HasPrefix(lines[0], "-I c 3 ") {
		t.Errorf("one port added: %v %v", lines, ok)
	}
	// Reordered or duplicated rules are rewritten.
	if _, ok := editChain("c", rules([]int{2, 1, 3, 4, 5, 6, 7, 8}), rules([]int{1, 2, 3, 4, 5, 6, 7, 8})); ok {
		t.Error("reordered chain edited in place")
	}
	dup := append(rules([]int{1, 2, 3, 4, 5, 6, 7}), "-j ACCEPT")
	if _, ok := editChain("c", dup, rules([]int{1, 2, 3, 4, 5, 6, 7, 8})); ok {
		t.Error("chain with duplicate rules edited in place")
	}
}
