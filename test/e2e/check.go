package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the checker's finding on one history.
type Verdict struct {
	Browsers     int      // partitions checked
	Violations   int      // browsers whose history is not linearizable
	Inconclusive int      // browsers the checker ran out of time on
	Files        []string // visualizations of the violations
}

// Check checks every browser's history against the session model. For a
// violation it writes porcupine's visualization to dir as
// <name>-browser<N>.html.
func Check(h *History, dir, name string, timeout time.Duration) Verdict {
	ops := h.Ops()
	var end int64
	for _, op := range ops {
		end = max(end, op.Return)
	}
	byBrowser := map[int][]porcupine.Operation{}
	for _, op := range ops {
		ret := op.Return
		if op.Outcome == "unknown" {
			// It may take effect at any time after it was sent.
			ret = end + 1
		}
		byBrowser[op.In.Browser] = append(byBrowser[op.In.Browser], porcupine.Operation{
			ClientId: op.Client, Input: op.In, Output: op.Out, Call: op.Call, Return: ret,
			Metadata: op.Node,
		})
	}
	ids := make([]int, 0, len(byBrowser))
	for id := range byBrowser {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	model := sessionModel.ToModel()
	model.DescribeOperationMetadata = func(m any) string { return fmt.Sprint("served by ", m) }
	var v Verdict
	for _, id := range ids {
		v.Browsers++
		res, info := porcupine.CheckOperationsVerbose(model, byBrowser[id], timeout)
		switch res {
		case porcupine.Illegal:
			v.Violations++
			if dir != "" {
				path := filepath.Join(dir, fmt.Sprintf("%s-browser%d.html", name, id))
				if err := os.MkdirAll(dir, 0o755); err == nil && porcupine.VisualizePath(model, info, path) == nil {
					v.Files = append(v.Files, path)
				}
			}
		case porcupine.Unknown:
			v.Inconclusive++
		}
	}
	return v
}
