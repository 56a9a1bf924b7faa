package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/pki"
	"github.com/lanes-net/lanes/store"
)

// pki runs the certificate commands; they work on files only.
func (g *globals) pki(verb string, rest []string) error {
	dirDefault := os.Getenv("LANES_PKI_DIR")
	if dirDefault == "" {
		dirDefault = "/etc/lanes/pki"
	}
	fs := newFlagSet("pki " + verb)
	dir := fs.String("dir", dirDefault, "`DIR`: directory of the CA and the certificates")
	var sans list
	fs.Var(&sans, "san", "`ADDR`: IP address or DNS name clients use to reach etcd (repeatable)")
	switch verb {
	case "init":
		if _, err := g.parse(fs, rest); err != nil {
			return err
		}
		if err := checkSANs(sans); err != nil {
			return err
		}
		ca, err := pki.Init(*dir, "lanes etcd CA")
		if err != nil {
			return err
		}
		srvSANs := append(loopbackSANs(), sans...)
		written := []string{filepath.Join(*dir, pki.CACert), filepath.Join(*dir, pki.CAKey)}
		for _, r := range []pki.Request{{Kind: pki.Server, CN: "server", SANs: srvSANs}, {Kind: pki.Admin, CN: store.RootUser}} {
			p, err := ca.Write(*dir, r, false)
			if err != nil {
				return err
			}
			written = append(written, p.Cert, p.Key)
		}
		if g.structured() {
			return g.emit(pkiResult{Wrote: written, CAValidUntil: ca.Cert.NotAfter.UTC().Format(time.RFC3339)}, nil)
		}
		for _, f := range written {
			fmt.Fprintln(g.out, "wrote", f)
		}
		fmt.Fprintf(g.out, "CA valid until %s; certificates for %d days unless --days says otherwise\n", ca.Cert.NotAfter.Format(time.DateOnly), int(pki.LeafValidity/(24*time.Hour)))
		return nil
	case "issue-host", "issue-operator", "issue-reader", "issue-server":
	default:
		return fmt.Errorf("pki %s: want init, issue-host, issue-operator, issue-reader or issue-server", verb)
	}
	days := fs.Int("days", int(pki.LeafValidity/(24*time.Hour)), "validity in days")
	force := fs.Bool("force", false, "replace an existing certificate and key (rotation)")
	pos, err := g.parse(fs, rest, "NAME")
	if err != nil {
		return err
	}
	name := pos[0]
	kind := map[string]pki.Kind{"issue-host": pki.Host, "issue-operator": pki.Operator, "issue-reader": pki.Reader, "issue-server": pki.Server}[verb]
	if kind == pki.Server {
		if err := api.ValidateName("server", name); err != nil {
			return err
		}
		if len(sans) == 0 {
			return &api.FieldError{Field: "san", Reason: "a server certificate needs every address clients and peers dial"}
		}
		if err := checkSANs(sans); err != nil {
			return err
		}
	} else {
		if err := store.ValidateUser(string(kind), name); err != nil {
			return err
		}
		if len(sans) > 0 {
			return &api.FieldError{Field: "san", Reason: "only server certificates carry addresses"}
		}
	}
	if *days < 1 {
		return &api.FieldError{Field: "days", Value: fmt.Sprint(*days), Reason: "must be at least 1"}
	}
	ca, err := pki.Load(*dir)
	if err != nil {
		return err
	}
	if kind == pki.Server {
		sans = append(loopbackSANs(), sans...)
	}
	p, err := ca.Write(*dir, pki.Request{Kind: kind, CN: name, SANs: sans, NotAfter: time.Now().Add(time.Duration(*days) * 24 * time.Hour)}, *force)
	if err != nil {
		return err
	}
	if g.structured() {
		r := pkiResult{Wrote: []string{p.Cert, p.Key}}
		if kind != pki.Server {
			r.User = name
		}
		return g.emit(r, nil)
	}
	fmt.Fprintf(g.out, "wrote %s\nwrote %s\n", p.Cert, p.Key)
	if kind != pki.Server {
		fmt.Fprintf(g.out, "etcd user %s; use --etcd-cacert %s --etcd-cert %s --etcd-key %s\n", name, filepath.Join(*dir, pki.CACert), p.Cert, p.Key)
	}
	return nil
}

// pkiResult is what the pki commands print with -o json|yaml.
type pkiResult struct {
	Wrote []string `json:"wrote"`
	// User is the etcd user a client certificate authenticates as (its CN).
	User         string `json:"user,omitempty"`
	CAValidUntil string `json:"ca_valid_until,omitempty"`
}

// loopbackSANs go into every server certificate: the embedded member's own lanesd,
// and etcdctl run on a member, dial loopback.
func loopbackSANs() []string { return []string{"127.0.0.1", "::1", "localhost"} }

func checkSANs(sans []string) error {
	for _, s := range sans {
		if !pki.ValidSAN(s) {
			return &api.FieldError{Field: "san", Value: s, Reason: "not an IP address or DNS name"}
		}
	}
	return nil
}
