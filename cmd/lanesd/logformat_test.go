package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// --log-format json makes every log line one JSON object, text one logfmt line; the
// start line is written before a bad configuration is refused.
func TestLogFormat(t *testing.T) {
	_, stderr, code := lanesd(t, "--log-format", "json", "--host", "cmp1", "--tunnel-ip", "nope", "--metrics", "")
	first, _, _ := strings.Cut(stderr, "\n")
	var line map[string]any
	if err := json.Unmarshal([]byte(first), &line); err != nil || line["msg"] != "lanesd" || line["level"] != "INFO" || code == 0 {
		t.Errorf("json log: exit %d, first line %q: %v", code, first, err)
	}
	if _, stderr, _ := lanesd(t, "--log-format", "text", "--host", "cmp1", "--tunnel-ip", "nope", "--metrics", ""); !strings.HasPrefix(stderr, "time=") || !strings.Contains(stderr, "level=INFO msg=lanesd") {
		t.Errorf("text log: %q", stderr)
	}
}
