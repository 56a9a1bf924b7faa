package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/lanes-net/lanes/store"
)

func (c *cli) storeInit(args []string) error {
	fs := newFlagSet("store init")
	var a store.Access
	fs.Var((*list)(&a.Hosts), "host", "host `NAME`: etcd user and role lanes-host-NAME (repeatable)")
	fs.Var((*list)(&a.Operators), "operator", "operator `NAME`: etcd user with role lanes-operator (repeatable)")
	fs.Var((*list)(&a.Readers), "reader", "read-only user `NAME` with role lanes-reader (repeatable)")
	if _, err := c.parse(fs, args); err != nil {
		return err
	}
	changes, err := c.st.SetupAccess(c.ctx, a)
	if c.structured() && err == nil {
		return c.emit(struct {
			Changes []string `json:"changes"`
		}{append([]string{}, changes...)}, nil)
	}
	for _, ch := range changes {
		fmt.Fprintln(c.out, ch)
	}
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Fprintln(c.out, "nothing to change")
	}
	return nil
}

func (c *cli) storeUsers(args []string) error {
	if _, err := c.parse(newFlagSet("store users"), args); err != nil {
		return err
	}
	us, err := c.st.ListUsers(c.ctx)
	if err != nil {
		return err
	}
	return c.emit(us, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "USER\tROLES")
		for _, u := range us {
			fmt.Fprintf(w, "%s\t%s\n", u.Name, strings.Join(u.Roles, ","))
		}
	})
}

func (c *cli) storeRemoveUser(args []string) error {
	pos, err := c.parse(newFlagSet("store remove-user"), args, "NAME")
	if err != nil {
		return err
	}
	if err := c.st.RemoveUser(c.ctx, pos[0]); err != nil {
		return err
	}
	return c.deleted("user", pos[0], pos[0])
}
