// Package cluster runs one raftsession node: a hashicorp/raft server whose
// state machine is the replicated session state (package fsm), found by its
// peers through hashicorp/memberlist gossip, with a [Store] that implements
// session.Store for the HTTP middleware.
//
// One TCP port carries raft and node-to-node requests, demultiplexed by the
// first byte of each connection. Followers forward commits to the leader on
// multiplexed connections; on the leader, commits that arrive while a log
// entry is in flight queue up and share the next entry (an fsm batch),
// each getting its own result; a short queue waits briefly for the
// commits the last entry predicts ([Config.GroupCommitWait]). The raft
// log lives in hashicorp/raft-wal segments under the data dir (or in
// bolt, see [Config.LogStore]); raft's
// stable store is bolt. Reads are served from the local replica: a
// read-your-writes read waits (bounded) until the replica has applied the
// client's last write and otherwise reads on the leader; a linearizable
// read first learns the leader's commit index after the leader confirmed
// its leadership with a quorum, one confirmation serving every read that
// queued behind it. A follower that has not heard from the leader for
// MaxStale stops answering from its own state, and a commit that ends a
// session ID (destroy, rename at login, destroy-owner) returns only once
// every replica has applied it or gone quiet that long: an old cookie never
// finds a logged-out session, however far behind a replica is.
//
// Membership: a brand-new cluster bootstraps once BootstrapExpect nodes see
// each other through gossip; the leader adds every other member as a
// non-voter, and raft-autopilot promotes stable non-voters up to Voters.
// Gossip alone never removes a voter: a server leaves the configuration
// when it leaves gracefully, or when gossip reports it failed and raft's
// own health view has found it unhealthy for DeadServerTimeout, never
// below quorum.
package cluster
