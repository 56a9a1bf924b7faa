package ofsync

// FastDiffs counts the pushes that diffed the changed owners alone.
func (b *Bridge) FastDiffs() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fastDiffs
}

// RemoteState is the benchmarks' desired state of n remote ports.
var RemoteState = remoteState
