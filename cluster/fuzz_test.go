package cluster

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// FuzzReadFrame feeds arbitrary bytes to the frame reader of the raft
// port's forwarding protocol: it must return a frame or an error, never
// panic, and never allocate more than maxFrame.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	_ = writeFrame(w, &frame{id: 7, kind: reqApply, budget: int64(time.Second), payload: []byte("cmd")}, true)
	_ = w.Flush()
	f.Add(buf.Bytes(), true)
	buf.Reset()
	_ = writeFrame(w, &frame{id: 7, kind: statusOK, payload: []byte("reply")}, false)
	_ = w.Flush()
	f.Add(buf.Bytes(), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, true)
	f.Fuzz(func(t *testing.T, b []byte, request bool) {
		fr, err := readFrame(bufio.NewReader(bytes.NewReader(b)), request)
		if err == nil && len(fr.payload) > maxFrame {
			t.Fatalf("payload of %d bytes accepted", len(fr.payload))
		}
	})
}

// FuzzDecodeRecord checks that a record reply from a peer (the fsm record
// codec, which snapshots use too) decodes or fails cleanly, and that what
// decodes re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(fsm.AppendRecord(nil, &session.Record{Values: session.ValuesOf(map[string][]byte{"k": []byte("v")}),
		Owner: "user:1", Created: time.Unix(1, 0), IdleTimeout: time.Minute, Version: 9}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := fsm.DecodeRecord(b)
		if err != nil {
			return
		}
		again := fsm.AppendRecord(nil, r)
		r2, err := fsm.DecodeRecord(again)
		if err != nil || r2.Owner != r.Owner || r2.Version != r.Version || !r2.Values.Equal(r.Values) ||
			!r2.Created.Equal(r.Created) || !r2.AbsoluteDeadline.Equal(r.AbsoluteDeadline) {
			t.Fatalf("round trip: %v, %+v vs %+v", err, r2, r)
		}
		if !bytes.Equal(fsm.AppendRecord(nil, r2), again) {
			t.Fatalf("re-encoding differs: %x vs %x", fsm.AppendRecord(nil, r2), again)
		}
	})
}

// FuzzDecodeInfos does the same for "list my sessions" replies.
func FuzzDecodeInfos(f *testing.F) {
	var e encoder
	encodeInfos(&e, []session.Info{{Key: session.KeyOf("a"), Owner: "user:1", Created: time.Unix(1, 0)}})
	f.Add(e.b)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		infos, err := decodeInfos(&decoder{b: b})
		if err == nil && len(infos) > len(b)/32 {
			t.Fatalf("%d infos from %d bytes", len(infos), len(b))
		}
	})
}
