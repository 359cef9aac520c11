package fsm_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// This example plays raft's part by hand: it encodes a change as a
// proposer would, applies the log entry, waits for the index as a
// read-your-writes read does, and reads the session back.
func Example() {
	f := fsm.New(fsm.Config{})
	leaderClock := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

	data, err := fsm.EncodeChange(&session.Change{
		ID:     "session-id-from-the-cookie",
		Create: true,
		Delta: session.Delta{
			Ops:         []session.Op{{Kind: session.OpIncr, Key: "visits", Delta: 1}},
			SetOwner:    true,
			Owner:       "user:42",
			IdleTimeout: 30 * time.Minute,
			Lifetime:    24 * time.Hour,
		},
	})
	if err != nil {
		panic(err)
	}
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data, AppendedAt: leaderClock}).(*fsm.Result)
	fmt.Println("applied at", res.Index, "err", res.Err, "visits", res.Values[0])

	if err := f.WaitApplied(context.Background(), res.Index); err != nil {
		panic(err)
	}
	key := session.KeyOf("session-id-from-the-cookie")
	if rec, ok := f.Get(key, leaderClock.Add(time.Minute)); ok {
		fmt.Printf("visits=%s owner=%s version=%d\n", rec.Values.Get("visits"), rec.Owner, rec.Version)
	}
	_, ok := f.Get(key, leaderClock.Add(31*time.Minute))
	fmt.Println("live after 31 idle minutes:", ok)
	// Output:
	// applied at 1 err <nil> visits 1
	// visits=1 owner=user:42 version=1
	// live after 31 idle minutes: false
}

// A rejected change comes back in the Result, not as a raft error; it can
// cross the network as bytes and still match the session sentinels.
func ExampleResult_MarshalBinary() {
	f := fsm.New(fsm.Config{})
	data, _ := fsm.EncodeChange(&session.Change{ID: "gone", Delta: session.Delta{
		Ops: []session.Op{{Kind: session.OpSet, Key: "k", Value: []byte("v")}}}})
	res := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}).(*fsm.Result)

	wire, _ := res.MarshalBinary()
	var got fsm.Result
	if err := got.UnmarshalBinary(wire); err != nil {
		panic(err)
	}
	fmt.Println(got.Index, errors.Is(got.Err, session.ErrNotFound))
	// Output: 7 true
}
