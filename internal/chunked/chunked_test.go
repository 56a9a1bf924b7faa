package chunked

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestWithEqualsMap applies random batches of changes (inserts, replacements,
// deletes of present and absent keys, repeats of one key, runs at either end) and
// compares every version with a map, and the version before it with what it was:
// a version is never changed by the next.
func TestWithEqualsMap(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 3))
			ref := map[int]string{}
			var s Seq[int, string]
			if seed%2 == 1 {
				var keys []int
				var vals []string
				for k := range 1000 {
					keys, vals = append(keys, 2*k), append(vals, fmt.Sprint("v", 2*k))
					ref[2*k] = fmt.Sprint("v", 2*k)
				}
				s = FromSorted(keys, vals)
			}
			for step := range 400 {
				prev, prevRef := s, maps.Clone(ref)
				var cs []Change[int, string]
				n := 1 + r.IntN(8)
				if r.IntN(20) == 0 {
					n = 300 // a bulk load
				}
				for range n {
					k := r.IntN(3000)
					switch r.IntN(10) {
					case 0:
						k = -1 - r.IntN(10) // below every key
					case 1:
						k = 5000 + r.IntN(10) // above every key
					}
					if r.IntN(3) == 0 {
						cs = append(cs, Change[int, string]{Key: k, Del: true})
					} else {
						cs = append(cs, Change[int, string]{Key: k, Val: fmt.Sprint("s", step)})
					}
				}
				slices.SortStableFunc(cs, func(x, y Change[int, string]) int { return cmp.Compare(x.Key, y.Key) })
				for _, c := range cs {
					if c.Del {
						delete(ref, c.Key)
					} else {
						ref[c.Key] = c.Val
					}
				}
				s = s.With(cs, cmp.Compare[int])
				check(t, fmt.Sprintf("step %d", step), s, ref)
				check(t, fmt.Sprintf("step %d, the version before", step), prev, prevRef)
			}
		})
	}
}

func check(t *testing.T, what string, s Seq[int, string], ref map[int]string) {
	t.Helper()
	if s.Len() != len(ref) {
		t.Fatalf("%s: %d entries, want %d", what, s.Len(), len(ref))
	}
	want := slices.Sorted(maps.Keys(ref))
	if got := s.Keys(); !slices.Equal(got, want) {
		t.Fatalf("%s: keys %v, want %v", what, got, want)
	}
	for k, v := range s.All() {
		if ref[k] != v {
			t.Fatalf("%s: %d = %q, want %q", what, k, v, ref[k])
		}
	}
	probes := []int{-20, 4999, 2}
	if len(want) > 0 {
		probes = append(probes, want[0], want[len(want)/2], want[len(want)-1])
	}
	for _, k := range probes {
		v, ok := s.Get(k, cmp.Compare[int])
		if w, wok := ref[k]; ok != wok || v != w {
			t.Fatalf("%s: Get(%d) = %q, %v; want %q, %v", what, k, v, ok, w, wok)
		}
	}
	for _, c := range s.chunks {
		if len(c.keys) == 0 || len(c.keys) > 2*target+target/2 {
			t.Fatalf("%s: a chunk of %d entries", what, len(c.keys))
		}
	}
}
