package gorillastore

import (
	"testing"

	"github.com/raftsession/raftsession/cluster/clustertest"
	"github.com/raftsession/raftsession/session"
)

// backend is a store the tests run over, and a second handle on the same
// sessions as another instance of the application would have it.
type backend struct {
	name        string
	store, peer session.Store
}

// backends returns a MemoryStore (shared by both handles) and, unless
// -short, a three-node cluster read through a follower, whose peer is
// another node.
func backends(t *testing.T) []backend {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	t.Cleanup(func() { mem.Close() })
	out := []backend{{"memory", mem, mem}}
	if testing.Short() {
		return out
	}
	nodes := clustertest.Start(t, 3, nil)
	f := clustertest.Follower(t, nodes)
	peer := nodes[0]
	if peer == f {
		peer = nodes[1]
	}
	return append(out, backend{"cluster", f.Store(), peer.Store()})
}
