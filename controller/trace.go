package controller

import (
	"context"
	"errors"
)

// TraceRequest asks how a packet from a local port to an IP would travel.
type TraceRequest struct {
	FromPort string `json:"from_port"`
	DstIP    string `json:"dst_ip"`
	Proto    string `json:"proto"`
	DstPort  int    `json:"dst_port"`
}

// TraceReport explains the path step by step.
type TraceReport struct {
	Steps  []string `json:"steps"`
	Raw    string   `json:"raw"`
	Result string   `json:"result"`
}

func (a *agent) trace(ctx context.Context, req TraceRequest) (TraceReport, error) {
	return TraceReport{}, errors.New("trace: not implemented yet")
}
