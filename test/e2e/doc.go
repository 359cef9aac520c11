// Package e2e is the end-to-end failover suite: real cmd/node processes
// (started by package harness), injected faults, a recorded history of
// what virtual browsers did and saw, and a linearizability check of that
// history with porcupine.
//
// # The model
//
// The checked object is "the session as one browser sees it": whatever
// the session its cookie names holds. Login regenerates the ID and keeps
// the data, so the browser's session continues across it; logout and
// logout-everywhere end it, and the browser's next write starts a new
// one. The model state is (exists, owner, values); see [step] for every
// operation. Browsers use unique user names, so no browser's operation
// changes another browser's session, and the history is partitioned by
// browser.
//
// A write whose response said 5xx, or that timed out or lost its
// connection after the request was sent, has an unknown outcome: it may
// take effect at any later point or never (its return time is the end of
// the history, and the model has a branch for each case). A write that
// was refused before it was sent (connection refused) or answered with a
// definite 4xx did not happen and is left out. Failed reads are left out.
//
// Under -consistency ryw a browser may see a write of unknown outcome on
// one node and not on a node that is behind (the cookie token only
// advances on acknowledged writes), which is not linearizable yet is what
// read-your-writes promises. So after an unknown write a single-tab
// browser only writes until one write is acknowledged: from then on its
// token is past every earlier write that will ever apply. Two-tab
// browsers run only under -consistency linearizable (two tabs race on
// the shared cookie jar, so under ryw one tab may carry the other's older
// token), and they never change the session ID (a login in one tab would
// strand the other's in-flight request on the old ID, which no store can
// hide); their first write happens before the tabs start, so both tabs
// share one session.
//
// # Faults
//
// Kill, SIGSTOP/SIGCONT, isolation, delay and restart of nodes, graceful
// leave, snapshot catch-up, and lost replies: the harness's proxy in
// front of the leader's node port drops every n-th answer it sends back
// on connections other nodes opened (forwarded commits among them) and
// cuts the connection, so the leader applied a request whose reply never
// arrives (lose-replies). A cut-off follower replaying pre-logout cookies
// checks that a replica out of touch with the leader stops serving its own
// state (logout-cut-off-follower).
//
// # Mutation check
//
// A suite earns trust by catching planted bugs. After a change to cluster
// or fsm, plant each of these in a scratch copy (git worktree) and see the
// named tests fail; add a scenario when one survives.
//
//   - M1, read-your-writes without waiting for the cookie's index (in
//     cluster/read.go, serve locally whatever the applied index): caught
//     by kill-leader and two-tabs (checker violations) and cluster's
//     TestReadYourWrites* tests.
//   - M2, no logout fence (drop Store.Commit's awaitReplicas): caught by
//     logout-old-cookie-ryw and cluster's TestLogoutIsVisibleEverywhere.
//   - M3, ignore MaxStale (freshEnough always true): caught by
//     logout-cut-off-follower and cluster's TestCutOffFollower test.
//   - M4, retry without deduplication (fsm's applyRequest never finds an
//     earlier result, so a retried increment applies twice): caught by
//     lose-replies (a views jump the checker cannot explain) and cluster's
//     TestLostReplyIsRetriedOnce.
//   - M5, no retry after an unknown outcome (the behaviour before request
//     numbers): caught by lose-replies (writes of unknown outcome) and
//     TestLostReplyIsRetriedOnce.
package e2e
