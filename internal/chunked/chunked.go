// Package chunked is a sorted sequence of keyed values held in chunks of a few dozen
// entries, immutable once made. A new version with a few entries changed shares
// every chunk it does not touch with the old one, so a change costs its entries and
// a copy of the list of chunks, not a copy of the whole sequence: a host's flows per
// owner change a few owners at a time among tens of thousands.
package chunked

import (
	"iter"
	"slices"
)

// target is the size chunks are cut to; a chunk grows to twice that before it is
// cut again, and shrinks without bound (an empty one goes).
const target = 64

// Seq is a sequence of values sorted by their keys, each key at most once. The zero
// Seq is empty.
type Seq[K, V any] struct {
	chunks []*chunk[K, V]
	n      int
}

type chunk[K, V any] struct {
	keys []K
	vals []V
}

// Change sets Key's value to Val, or removes Key when Del is set.
type Change[K, V any] struct {
	Key K
	Val V
	Del bool
}

// Len is the number of entries.
func (s Seq[K, V]) Len() int { return s.n }

// Get returns the value of key k.
func (s Seq[K, V]) Get(k K, cmp func(K, K) int) (V, bool) {
	if i, ok := s.chunkOf(k, cmp, 0); ok {
		c := s.chunks[i]
		if j, found := slices.BinarySearchFunc(c.keys, k, cmp); found {
			return c.vals[j], true
		}
	}
	var zero V
	return zero, false
}

// chunkOf finds, from chunk from on, the first chunk whose last key is not below k:
// the chunk k is in or belongs in. False when k is above every key of those chunks.
func (s Seq[K, V]) chunkOf(k K, cmp func(K, K) int, from int) (int, bool) {
	i, _ := slices.BinarySearchFunc(s.chunks[from:], k, func(c *chunk[K, V], k K) int { return cmp(c.keys[len(c.keys)-1], k) })
	i += from
	return i, i < len(s.chunks)
}

// All yields every entry in key order.
func (s Seq[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, c := range s.chunks {
			for i, k := range c.keys {
				if !yield(k, c.vals[i]) {
					return
				}
			}
		}
	}
}

// Keys lists the keys in order.
func (s Seq[K, V]) Keys() []K {
	out := make([]K, 0, s.n)
	for _, c := range s.chunks {
		out = append(out, c.keys...)
	}
	return out
}

// FromSorted makes a Seq of keys (sorted, without repeats) and their values.
func FromSorted[K, V any](keys []K, vals []V) Seq[K, V] {
	var s Seq[K, V]
	s.chunks = cut(s.chunks, slices.Clone(keys), slices.Clone(vals))
	s.n = len(keys)
	return s
}

// cut appends keys and vals to out in chunks of target entries.
func cut[K, V any](out []*chunk[K, V], keys []K, vals []V) []*chunk[K, V] {
	if len(keys) <= 2*target {
		if len(keys) > 0 {
			out = append(out, &chunk[K, V]{keys, vals})
		}
		return out
	}
	for len(keys) > 0 {
		n := min(target, len(keys))
		if len(keys)-n < target/2 {
			n = len(keys) // no runt at the end
		}
		out = append(out, &chunk[K, V]{keys[:n:n], vals[:n:n]})
		keys, vals = keys[n:], vals[n:]
	}
	return out
}

// With returns s with the changes applied. cs must be sorted by key; of several
// changes of one key, the last counts. s is unchanged, and the chunks no change
// falls in are shared.
func (s Seq[K, V]) With(cs []Change[K, V], cmp func(K, K) int) Seq[K, V] {
	if len(cs) == 0 {
		return s
	}
	out := Seq[K, V]{chunks: make([]*chunk[K, V], 0, len(s.chunks)+1), n: s.n}
	next := 0 // s's next chunk not yet taken
	for i := 0; i < len(cs); {
		j, ok := s.chunkOf(cs[i].Key, cmp, next)
		if !ok {
			j = len(s.chunks) - 1 // above every key: into the last chunk, or a new one if taken
		}
		k := i + 1
		if j >= next && j < len(s.chunks)-1 {
			last := s.chunks[j].keys[len(s.chunks[j].keys)-1]
			for k < len(cs) && cmp(cs[k].Key, last) <= 0 {
				k++
			}
		} else {
			k = len(cs) // the last chunk takes all that is left
		}
		var c *chunk[K, V]
		if j >= next {
			out.chunks = append(out.chunks, s.chunks[next:j]...)
			c, next = s.chunks[j], j+1
		} else {
			c = &chunk[K, V]{}
		}
		keys, vals, dn := merge(c, cs[i:k], cmp)
		out.n += dn
		out.chunks = cut(out.chunks, keys, vals)
		i = k
	}
	out.chunks = append(out.chunks, s.chunks[next:]...)
	return out
}

// merge returns chunk c with the changes cs (sorted; the last of one key counts)
// applied, in new slices, and by how many entries that changes its length.
func merge[K, V any](c *chunk[K, V], cs []Change[K, V], cmp func(K, K) int) ([]K, []V, int) {
	keys := make([]K, 0, len(c.keys)+len(cs))
	vals := make([]V, 0, len(c.keys)+len(cs))
	i := 0
	for x, ch := range cs {
		if x+1 < len(cs) && cmp(cs[x+1].Key, ch.Key) == 0 {
			continue
		}
		for i < len(c.keys) && cmp(c.keys[i], ch.Key) < 0 {
			keys, vals = append(keys, c.keys[i]), append(vals, c.vals[i])
			i++
		}
		if i < len(c.keys) && cmp(c.keys[i], ch.Key) == 0 {
			i++ // replaced or removed
		}
		if !ch.Del {
			keys, vals = append(keys, ch.Key), append(vals, ch.Val)
		}
	}
	keys, vals = append(keys, c.keys[i:]...), append(vals, c.vals[i:]...)
	return keys, vals, len(keys) - len(c.keys)
}
