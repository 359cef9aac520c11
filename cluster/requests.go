package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
)

// requestIDs numbers this node's commits for the state machine's
// deduplication (fsm.EncodeRequest): a commit whose outcome is unknown —
// its reply lost with a leader or a connection — is retried with the same
// number, and applies at most once.
//
// The proposer name is the node ID and a random tag drawn at every start,
// so a restarted process never reuses the numbers of its previous life.
// floor is the lowest number still waiting for its outcome; commits carry
// it, and the state machine forgets every result below it.
type requestIDs struct {
	proposer string

	mu      sync.Mutex
	next    uint64
	floor   uint64
	pending map[uint64]struct{}
}

func newRequestIDs(nodeID string) (*requestIDs, error) {
	tag := make([]byte, 8)
	if _, err := rand.Read(tag); err != nil {
		return nil, err
	}
	return &requestIDs{proposer: nodeID + "/" + hex.EncodeToString(tag), next: 1, floor: 1,
		pending: map[uint64]struct{}{}}, nil
}

// begin takes the next number and the floor to send with it.
func (r *requestIDs) begin() (seq, floor uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq = r.next
	r.next++
	r.pending[seq] = struct{}{}
	return seq, r.floor
}

// end marks seq's outcome as known to its caller (or given up on), and
// moves the floor past every number that is done.
func (r *requestIDs) end(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, seq)
	for r.floor < r.next {
		if _, waiting := r.pending[r.floor]; waiting {
			break
		}
		r.floor++
	}
}
