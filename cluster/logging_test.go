package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapterFormatsDeferredValues(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, nil)), "raft")
	type server struct{ ID string }
	l.Info("initial configuration", "servers", hclog.Fmt("%+v", []server{{ID: "n1"}}), "mask", hclog.Hex(255))
	out := buf.String()
	for _, want := range []string{`servers=[{ID:n1}]`, "mask=0xff"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %s", out, want)
		}
	}
	if strings.Contains(out, "%+v") {
		t.Errorf("log line %q prints a raw format verb", out)
	}
}
