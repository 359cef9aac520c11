package cluster_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/session"
)

// A Config with the four essentials runs a working single node: it
// bootstraps itself, and its Store commits and reads sessions. Across
// hosts, every node would also get the same ClusterKey.
func ExampleStart() {
	dir, err := os.MkdirTemp("", "raftsession-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	node, err := cluster.Start(ctx, cluster.Config{
		NodeID:     "app-1",
		DataDir:    dir,
		RaftAddr:   "127.0.0.1:0", // port 0: any free port
		GossipAddr: "127.0.0.1:0",
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	id := session.NewID()
	res, err := node.Store().Commit(ctx, &session.Change{ID: id, Create: true, Delta: session.Delta{
		IdleTimeout: time.Hour, Lifetime: 24 * time.Hour,
		Ops: []session.Op{{Kind: session.OpSet, Key: "user", Value: []byte("ada")}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	rec, err := node.Store().Load(ctx, id, session.LoadOptions{MinIndex: res.Index})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(rec.Values.Get("user")))
	// Output: ada
}
