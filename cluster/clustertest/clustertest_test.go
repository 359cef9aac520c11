package clustertest_test

import (
	"context"
	"testing"

	"github.com/raftsession/raftsession/cluster/clustertest"
	"github.com/raftsession/raftsession/session"
)

// TestStartReadsThroughFollower: a write through a follower is forwarded
// to the leader and read back on the follower at its index.
func TestStartReadsThroughFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	nodes := clustertest.Start(t, 3, nil)
	f := clustertest.Follower(t, nodes)
	ctx := context.Background()
	res, err := f.Store().Commit(ctx, &session.Change{ID: session.NewID(), Create: true,
		Delta: session.Delta{IdleTimeout: 60e9, Lifetime: 60e9}})
	if err != nil {
		t.Fatal(err)
	}
	if secrets, _ := f.Store().CookieSecrets(); len(secrets) != 1 {
		t.Fatalf("%d cookie secrets, want the one the first leader made", len(secrets))
	}
	if res.Index == 0 {
		t.Fatal("commit through a follower returned index 0")
	}
}
