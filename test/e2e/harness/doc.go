// Package harness runs real multi-process raftsession clusters on
// 127.0.0.1 for end-to-end tests, and injects faults into them.
//
// [Start] launches N node processes with free ports. Building cmd/node
// (once per test binary), starting, signalling and polling processes, and
// reading GET /cluster/status are internal/nodeproc's, shared with
// cmd/node's process tests and test/browser; this package adds what only
// the end-to-end tests need: the raft proxies, faults, and cluster-wide
// waits. Set E2E_RACE=1 to build the nodes with -race.
//
// Clusters are keyed: every node gets the same new cluster key
// (RAFTSESSION_CLUSTER_KEY), from which the nodes derive the mutual TLS
// and gossip encryption between them; Options.Unkeyed runs a cluster
// without one. Each node's raft port sits behind a
// harness-owned TCP proxy, and every node advertises the proxy's address
// (-raft-advertise), so all raft traffic and all forwarded requests
// (which share the raft port) pass through the harness; the proxy copies
// bytes, so TLS passes through it end to end. The proxy knows
// which node opened each connection (it looks the client socket up in
// /proc), so [Node.Isolate] cuts a node off in both directions while the
// others keep talking, and [Node.Delay] slows it down. Gossip (memberlist)
// goes direct: isolating raft traffic is what matters for safety, and a
// node cut off from raft but alive in gossip is the harder case, since
// gossip alone never removes a voter.
//
// Process faults: [Node.Kill] (SIGKILL), [Node.Stop] (SIGTERM, graceful),
// [Node.Pause]/[Node.Resume] (SIGSTOP/SIGCONT), [Node.Restart] with the
// same data directory, [Node.Leave] (POST /cluster/leave) and
// [Cluster.AddNode]. Waits ([Cluster.WaitLeader], [Cluster.WaitHealthy],
// [Cluster.WaitConverged], [Node.WaitCaughtUp]) poll GET /cluster/status
// with nodeproc.Poll until a deadline; none of them sleeps a fixed time.
//
// Every node's output goes to <artifacts>/<node>.log; when a test fails,
// the tail of each log is printed.
//
// The harness is Linux-only (signals, /proc).
package harness
