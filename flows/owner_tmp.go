package flows

// Owner finds the owner of a flow of bridge b by its cookie (the round is ignored).
// TEMPORARY until h-flows lands its indexed version.
func (s Set) Owner(b Bridge, c Cookie) (Owner, bool) {
	for o := range s[b] {
		if o.Cookie() == c.WithRound(0) {
			return o, true
		}
	}
	return Owner{}, false
}
