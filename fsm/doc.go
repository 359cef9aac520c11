// Package fsm is the replicated session state machine: every node applies
// the same raft log to an [FSM] and so holds the same sessions.
//
// # Commands
//
// Proposers encode commands with [EncodeChange], [EncodeDestroyOwner],
// [EncodeExpire], [EncodeAddSigningKey], [EncodeRetireSigningKey] and
// [EncodeNoop] and submit the bytes with raft.Apply. The encoding starts
// with a version byte and a [Kind] byte, so new commands can be added
// without breaking old logs. Session IDs are hashed with session.KeyOf
// before they are encoded: the log, the snapshots and the state never hold
// a usable session token.
//
// A leader may commit several proposers' commands in one entry with
// [EncodeBatch]: each is applied in order and on its own, as if it had
// its own entry at the batch's index and time, and [Result.Batch] holds
// each one's Result.
//
// A proposer numbers its commands with [EncodeRequest]. The state machine
// keeps the result of every numbered command its proposer has not yet
// acknowledged (the client session table of Raft's §6.3), in snapshots
// too: a command appended twice — a retry after its reply was lost with a
// leader — applies once, and the second copy answers with the first
// result. Proposers silent for [ProposerIdle] are forgotten by Expire.
//
// # Determinism
//
// Apply takes time only from the log entry (raft.Log.AppendedAt, the
// leader's clock at append) or from the command itself (Expire), never
// from the local clock, and record contents change only through
// session.Delta.Apply, the same function the single-process
// session.MemoryStore uses. Replicas that apply the same log therefore
// hold bit-identical state, and a Record's Version is the log index of its
// last change.
//
// # Reads
//
// [FSM.Get], [FSM.ListOwner] and the other read methods run on request
// goroutines concurrently with Apply. They never return a record whose
// deadline has passed at the time the caller gives, even before an Expire
// command removes it. [FSM.WaitApplied] blocks until a given log index is
// applied; it is what read-your-writes waits on.
//
// # Snapshots
//
// [FSM.Snapshot] captures the state in time independent of its size by
// marking copy-on-write shards; Persist streams a versioned,
// CRC-32C-checked image while Apply goes on, and [FSM.Restore] replaces the
// state only after the whole image has been read and verified.
package fsm
