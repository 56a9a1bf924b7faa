package main

import (
	"fmt"

	"github.com/lanes-net/lanes/api"
	"github.com/lanes-net/lanes/internal/version"
)

func (g *globals) version(args []string) error {
	if _, err := g.parse(newFlagSet("version"), args); err != nil {
		return err
	}
	v := struct {
		Client version.Info `json:"client"`
		// Lanesd is this host's lanesd, when its socket answers.
		Lanesd      string `json:"lanesd,omitempty"`
		LanesdError string `json:"lanesd_error,omitempty"`
	}{Client: version.Get()}
	var r api.StatusReport
	if err := g.local("/status", nil, &r); err != nil {
		v.LanesdError = oneLine(err)
	} else {
		v.Lanesd = r.Version
	}
	if g.structured() {
		return g.emit(v, nil)
	}
	fmt.Fprintf(g.out, "lanesctl %s\n", v.Client)
	if v.Lanesd != "" {
		fmt.Fprintf(g.out, "lanesd   %s\n", v.Lanesd)
	} else {
		fmt.Fprintf(g.out, "lanesd   unknown (%s)\n", v.LanesdError)
	}
	return nil
}
