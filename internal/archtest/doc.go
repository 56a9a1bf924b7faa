// Package archtest holds only a test: it checks the package boundaries that
// nothing else would notice breaking, such as a store client linking etcd's server.
package archtest
