package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/session"
)

// Requests and their deduplication: the client session table of Ongaro's
// thesis (§6.3, "implementing linearizable semantics"). A proposer (one
// node process) numbers its commits; the state machine remembers the
// result of every numbered request the proposer has not yet acknowledged,
// so a retry of a request that was applied returns the first result and
// applies nothing. That turns an unknown outcome (a reply lost with a
// leader) into a safe retry.

// maxProposerLen bounds a proposer's name on the wire.
const maxProposerLen = 256

// ProposerIdle is how long, in log time, the state machine keeps the
// results of a proposer that sent nothing: a proposer that went away
// (its process ended) is forgotten by the next Expire after that.
const ProposerIdle = 10 * time.Minute

// maxResultsPerProposer bounds what one proposer can make every replica
// hold: requests more than this far below its newest are forgotten even
// if it never acknowledges them.
const maxResultsPerProposer = 1 << 16

// errAcknowledged rejects a request whose proposer already acknowledged
// its result: only a stray duplicate can arrive that late, and nobody
// waits for its answer.
var errAcknowledged = errors.New("fsm: request already acknowledged by its proposer")

// EncodeRequest wraps cmd, the complete output of another Encode function
// (not a batch or a request), as request seq of proposer. floor is the
// lowest sequence number whose result the proposer still waits for: every
// request below it has been answered, so replicas forget their results.
// Applying the same request twice applies cmd once; the second time
// returns the first Result.
func EncodeRequest(proposer string, seq, floor uint64, cmd []byte) []byte {
	b := make([]byte, 0, 2+len(proposer)+2*binary.MaxVarintLen64+binary.MaxVarintLen32+len(cmd))
	b = append(b, wireVersion, byte(KindRequest))
	return appendRequest(b, proposer, seq, floor, cmd)
}

// appendRequest appends a KindRequest body: the proposer, the sequence
// number, the floor and the encoded inner command.
func appendRequest(b []byte, proposer string, seq, floor uint64, inner []byte) []byte {
	b = appendString(b, proposer)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, floor)
	return appendBytes(b, inner)
}

// request decodes a KindRequest's body into c.
func (d *decoder) request(c *Command) {
	c.Proposer = d.string()
	c.Seq = d.uvarint()
	c.Floor = d.uvarint()
	raw := d.raw()
	if d.err != nil {
		return
	}
	switch {
	case c.Proposer == "" || len(c.Proposer) > maxProposerLen:
		d.fail(errors.New("bad proposer"))
		return
	case c.Floor > c.Seq:
		d.fail(errors.New("floor above the request"))
		return
	}
	inner, err := decode(raw, true)
	if err != nil {
		d.fail(fmt.Errorf("request: %w", err))
		return
	}
	if inner.Kind == KindRequest {
		d.fail(errors.New("request inside a request"))
		return
	}
	c.Inner = &inner
}

// proposerState is what the state machine remembers of one proposer.
type proposerState struct {
	// floor: every request below it was acknowledged.
	floor uint64
	// results of applied requests at or above floor.
	results map[uint64]*Result
	// seen is the log time of its latest request.
	seen time.Time
}

// applyRequest applies a KindRequest: the carried command once, and the
// stored result for any repeat.
func (f *FSM) applyRequest(st *state, cmd *Command, now time.Time, res *Result) {
	p := st.proposers[cmd.Proposer]
	if p == nil {
		p = &proposerState{results: map[uint64]*Result{}}
		st.proposers[cmd.Proposer] = p
	}
	p.seen = now
	p.forgetBelow(cmd.Floor)
	if cmd.Seq >= maxResultsPerProposer {
		p.forgetBelow(cmd.Seq - maxResultsPerProposer + 1)
	}
	if prev, ok := p.results[cmd.Seq]; ok {
		*res = *prev
		return
	}
	if cmd.Seq < p.floor {
		res.Err = fmt.Errorf("%w: %s #%d: %w", errAcknowledged, cmd.Proposer, cmd.Seq, session.ErrInvalid)
		return
	}
	f.applyCommand(st, cmd.Inner, now, res)
	kept := *res
	p.results[cmd.Seq] = &kept
}

// forgetBelow drops the results of requests below floor.
func (p *proposerState) forgetBelow(floor uint64) {
	if floor <= p.floor {
		return
	}
	// The floor usually moves by one or two per request: delete those
	// numbers rather than scan every result on the apply path.
	if floor-p.floor <= uint64(len(p.results)) {
		for seq := p.floor; seq < floor; seq++ {
			delete(p.results, seq)
		}
	} else {
		for seq := range p.results {
			if seq < floor {
				delete(p.results, seq)
			}
		}
	}
	p.floor = floor
}

// expireProposers forgets proposers that sent nothing for ProposerIdle
// before now (an Expire's cut-off, so every replica agrees).
func (st *state) expireProposers(now time.Time) {
	for name, p := range st.proposers {
		if now.Sub(p.seen) >= ProposerIdle {
			delete(st.proposers, name)
		}
	}
}

// copyProposers captures the table for a snapshot: Apply goes on changing
// the live one while the snapshot is written. Results are never modified
// once stored, so they are shared.
func copyProposers(src map[string]*proposerState) map[string]*proposerState {
	out := make(map[string]*proposerState, len(src))
	for name, p := range src {
		c := &proposerState{floor: p.floor, seen: p.seen, results: make(map[uint64]*Result, len(p.results))}
		for seq, r := range p.results {
			c.results[seq] = r
		}
		out[name] = c
	}
	return out
}

// appendProposers encodes the table for a snapshot: count, then per
// proposer its name, floor, last-seen time and results (seq and the
// Result's binary form).
func appendProposers(b []byte, ps map[string]*proposerState) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for name, p := range ps {
		b = appendString(b, name)
		b = binary.AppendUvarint(b, p.floor)
		b = appendTime(b, p.seen)
		b = binary.AppendUvarint(b, uint64(len(p.results)))
		for seq, r := range p.results {
			rb, err := r.MarshalBinary()
			if err != nil {
				return nil, err
			}
			b = binary.AppendUvarint(b, seq)
			b = appendBytes(b, rb)
		}
	}
	return b, nil
}

// proposers reads what appendProposers wrote.
func (r *snapReader) proposers() map[string]*proposerState {
	n := r.uvarint()
	out := make(map[string]*proposerState, min(n, 1024))
	for i := uint64(0); i < n && r.err == nil; i++ {
		name := string(r.field())
		p := &proposerState{floor: r.uvarint(), seen: r.time()}
		count := r.uvarint()
		p.results = make(map[uint64]*Result, min(count, 1024))
		for j := uint64(0); j < count && r.err == nil; j++ {
			seq := r.uvarint()
			var res Result
			if err := res.UnmarshalBinary(r.bytes()); err != nil && r.err == nil {
				r.fail(fmt.Errorf("proposer %q result %d: %w", name, seq, err))
			}
			p.results[seq] = &res
		}
		out[name] = p
	}
	return out
}
