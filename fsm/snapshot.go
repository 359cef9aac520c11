package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// Snapshot format, version 3 (integers varint/uvarint, strings and byte
// slices uvarint-length-prefixed, times as varint Unix seconds + uvarint
// nanoseconds):
//
//	magic "RSFSM\x00" | version uint16 big-endian
//	appliedIndex | nkeys | (id secret added)*nkeys
//	proposers (see appendProposers)
//	nrecords | (key[32] uvarint-length-prefixed-record)*nrecords
//	"END" | CRC-32C (Castagnoli) of every byte before "END", little-endian
//
// A record is encoded as AppendRecord does; the length prefix lets Restore
// hand whole records to several decoding goroutines. Records appear in no
// particular order. The expiry and owner indexes and the byte total that
// MaxBytes is checked against are not stored; Restore rebuilds them.
//
// Versions 1 and 2 still restore: version 2 stores each record inline
// (key owner created lastSeen idleTimeout idleDeadline absoluteDeadline
// version nvalues (name value)*nvalues), and version 1 is version 2
// without the proposers.
const (
	snapMagic = "RSFSM\x00"
	// snapVersion 3 stores records length-prefixed in the record codec.
	snapVersion           = 3
	snapVersionInline     = 2
	snapVersionNoRequests = 1
	snapTrailer           = "END"
)

// ErrCorruptSnapshot is wrapped by Restore's error when the snapshot is
// truncated, fails its checksum, or is not a snapshot of a version this
// package reads. The FSM's state is unchanged when Restore fails.
var ErrCorruptSnapshot = errors.New("fsm: corrupt snapshot")

// maxSnapField bounds one length-prefixed field of a snapshot so that a
// corrupted length cannot make Restore allocate more than this at once.
// It is far above any session limit a deployment would configure.
const maxSnapField = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// persistYield is how many records Persist writes between giving up its
// core: about 256 KiB of 1 KiB sessions, well under a millisecond.
const persistYield = 256

// Snapshot captures the state in O(shards): it marks every shard's map as
// shared so the next write to it clones the map instead of modifying it.
// The returned snapshot's Persist runs concurrently with Apply.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	st := f.st.Load()
	s := &snapshot{
		fsm:      f,
		logBytes: f.logBytes.Load(),
		index:    f.applied.Load(),
		count:    st.count.Load(),
		keys:     *st.keys.Load(),
		// Small (requests in flight and recently idle proposers), so a
		// copy is cheap next to marking the record shards shared.
		proposers: copyProposers(st.proposers),
	}
	for i := range st.shards {
		sh := &st.shards[i]
		s.maps[i] = sh.m
		sh.shared = true
	}
	return s, nil
}

type snapshot struct {
	// version is the format to write; zero means snapVersion (tests
	// write older versions to check they still restore).
	version uint16
	// fsm and logBytes let a successful Persist take the log it covers
	// off fsm's LogBytesSinceSnapshot.
	fsm       *FSM
	logBytes  int64
	index     uint64
	count     int64
	keys      []SigningKey
	proposers map[string]*proposerState
	maps      [nShards]recordMap
}

// Persist streams the snapshot to sink and closes it, or cancels it on
// error.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("fsm: persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.fsm != nil {
		s.fsm.snapshotted(s.logBytes)
	}
	return nil
}

// Release drops the captured maps so the garbage collector can reclaim
// the versions of records that only this snapshot still referenced.
func (s *snapshot) Release() { s.maps = [nShards]recordMap{} }

func (s *snapshot) writeTo(dst io.Writer) error {
	crc := crc32.New(castagnoli)
	w := bufio.NewWriterSize(io.MultiWriter(dst, crc), 256<<10)
	b := make([]byte, 0, 4096)
	b = append(b, snapMagic...)
	version := s.version
	if version == 0 {
		version = snapVersion
	}
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.AppendUvarint(b, s.index)
	b = binary.AppendUvarint(b, uint64(len(s.keys)))
	for _, k := range s.keys {
		b = appendString(b, k.ID)
		b = appendBytes(b, k.Secret)
		b = appendTime(b, k.Added)
	}
	var err error
	if version >= snapVersionInline {
		if b, err = appendProposers(b, s.proposers); err != nil {
			return err
		}
	}
	b = binary.AppendUvarint(b, uint64(s.count))
	if _, err := w.Write(b); err != nil {
		return err
	}
	var n int64
	for _, m := range s.maps {
		for k, e := range m {
			if version >= snapVersion {
				b = appendRecordBlob(b[:0], &k, e.rec)
			} else {
				b = appendRecordInline(b[:0], &k, e.rec)
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			if n++; n%persistYield == 0 {
				// Persist is CPU-bound for seconds at a million sessions.
				// Left alone, it keeps its core until the scheduler
				// preempts it (10 ms), and the timers and goroutines
				// queued there wait: a read due meanwhile waits too.
				runtime.Gosched()
			}
		}
	}
	if n != s.count {
		// The count in the header is what Restore trusts; a mismatch is a
		// bug here, and writing on would produce a snapshot that fails.
		return fmt.Errorf("fsm: snapshot holds %d records, header says %d", n, s.count)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	b = append(b[:0], snapTrailer...)
	b = binary.LittleEndian.AppendUint32(b, crc.Sum32())
	_, err = dst.Write(b)
	return err
}

// appendRecordBlob appends a version 3 record: its key, then its
// encoding, length-prefixed.
func appendRecordBlob(b []byte, k *session.Key, r *session.Record) []byte {
	b = append(b, k[:]...)
	at := len(b)
	b = append(b, make([]byte, binary.MaxVarintLen64)...)
	b = AppendRecord(b, r)
	// Move the record up against its actual length prefix.
	n := len(b) - at - binary.MaxVarintLen64
	w := binary.PutUvarint(b[at:], uint64(n))
	copy(b[at+w:], b[at+binary.MaxVarintLen64:])
	return b[:at+w+n]
}

// appendRecordInline appends a record as versions 1 and 2 stored it; it
// remains so that tests can write the versions Restore still reads.
func appendRecordInline(b []byte, k *session.Key, r *session.Record) []byte {
	b = append(b, k[:]...)
	b = appendRecordHeader(b, r)
	b = binary.AppendUvarint(b, uint64(r.Values.Len()))
	for name, v := range r.Values.All() {
		b = appendString(b, name)
		b = appendBytes(b, v)
	}
	return b
}

// Restore replaces the whole state (records, keyring, applied index) with
// the snapshot read from rc, and closes rc. On any error the state is left
// as it was; truncated, corrupted or unknown-version input returns an error
// wrapping ErrCorruptSnapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, index, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.st.Store(st)
	f.logBytes.Store(0)
	f.setApplied(index)
	f.signalKeyring()
	return nil
}

func readSnapshot(src io.Reader) (*state, uint64, error) {
	r := &snapReader{r: src, buf: make([]byte, 0, 256<<10)}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrCorruptSnapshot, fmt.Sprintf(format, args...))
	}
	head := r.fixed(len(snapMagic) + 2)
	if r.err != nil {
		return nil, 0, corrupt("header: %v", r.err)
	}
	if string(head[:len(snapMagic)]) != snapMagic {
		return nil, 0, corrupt("not a raftsession snapshot")
	}
	version := binary.BigEndian.Uint16(head[len(snapMagic):])
	if version < snapVersionNoRequests || version > snapVersion {
		return nil, 0, corrupt("unsupported version %d (this build reads %d to %d)", version, snapVersionNoRequests, snapVersion)
	}
	st := newState()
	index := r.uvarint()
	nkeys := r.uvarint()
	var keys []SigningKey
	for i := uint64(0); i < nkeys && r.err == nil; i++ {
		k := SigningKey{ID: string(r.field()), Secret: r.bytes()}
		k.Added = r.time()
		keys = append(keys, k)
	}
	if keys == nil {
		keys = []SigningKey{}
	}
	st.keys.Store(&keys)
	if version >= snapVersionInline {
		st.proposers = r.proposers()
	}

	count := r.uvarint()
	if r.err == nil && count > uint64(maxInt) {
		r.fail(errors.New("record count overflows int"))
	}
	var items []expItem
	if version >= snapVersion {
		items = r.recordBlobs(st, count)
	} else {
		items = r.records(st, count)
	}
	if r.err != nil {
		return nil, 0, corrupt("%v", r.err)
	}
	sum := r.sum()
	trailer := r.fixed(len(snapTrailer) + 4)
	if r.err != nil {
		return nil, 0, corrupt("trailer: %v", r.err)
	}
	if string(trailer[:len(snapTrailer)]) != snapTrailer {
		return nil, 0, corrupt("missing trailer")
	}
	if want := binary.LittleEndian.Uint32(trailer[len(snapTrailer):]); want != sum {
		return nil, 0, corrupt("checksum mismatch: computed %08x, stored %08x", sum, want)
	}
	if !r.atEOF() {
		return nil, 0, corrupt("data after trailer")
	}
	st.count.Store(int64(len(items)))
	for _, it := range items {
		st.expiry.ReplaceOrInsert(it)
	}
	return st, index, nil
}

// records reads count records of a version 1 or 2 snapshot into st's
// shards, owner index and byte total, and returns their expiry items for
// the caller to index once the snapshot has proved intact. It stops at the
// first error, left in r.err.
func (r *snapReader) records(st *state, count uint64) []expItem {
	items := make([]expItem, 0, min(count, 1<<16))
	var size int64
	hint := shardHint(count)
	for i := uint64(0); i < count && r.err == nil; i++ {
		var k session.Key
		copy(k[:], r.fixed(len(k)))
		rec := r.record()
		if r.err != nil {
			break
		}
		it, ok := st.insertRestored(&k, rec, hint)
		if !ok {
			r.fail(errDuplicateKey)
			break
		}
		size += int64(rec.Size())
		items = append(items, it)
		st.addOwnerLocked(rec.Owner, &k)
	}
	st.bytes.Store(size)
	return items
}

// record reads one record after its key.
func (r *snapReader) record() *session.Record {
	rec := &session.Record{Owner: string(r.field())}
	rec.Created = r.time()
	rec.LastSeen = r.time()
	rec.IdleTimeout = time.Duration(r.varint())
	rec.IdleDeadline = r.time()
	rec.AbsoluteDeadline = r.time()
	rec.Version = r.uvarint()
	nvals := r.uvarint()
	vals := make(map[string][]byte, min(nvals, 8))
	size := 0
	for j := uint64(0); j < nvals && r.err == nil; j++ {
		name := string(r.field())
		// A copy: the field is only valid until the next read.
		v := r.bytes()
		if size += len(name) + len(v); size > maxSnapField {
			r.fail(fmt.Errorf("record of more than %d bytes", maxSnapField))
		}
		if name == "" {
			r.fail(errors.New("empty value name"))
		}
		vals[name] = v
	}
	if r.err == nil && uint64(len(vals)) != nvals {
		r.fail(errors.New("duplicate value name"))
	}
	// ValuesOf copies the values once more, into the record's one
	// allocation; only old snapshots pay for the second copy.
	rec.Values = session.ValuesOf(vals)
	return rec
}

// snapReader is a buffered reader that checksums exactly the bytes
// consumed, so the checksum stops where the trailer begins even though the
// buffer has read past it.
type snapReader struct {
	r      io.Reader
	buf    []byte // buf[pos:] is unread
	pos    int
	hashed int // buf[:hashed] is in crc
	crc    uint32
	eof    bool
	err    error
}

func (r *snapReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// fill makes at least n bytes available unless the input ends first.
// n must not exceed cap(r.buf).
func (r *snapReader) fill(n int) bool {
	for empty := 0; len(r.buf)-r.pos < n; {
		if r.eof {
			return false
		}
		if r.pos > 0 {
			r.crc = crc32.Update(r.crc, castagnoli, r.buf[r.hashed:r.pos])
			r.buf = r.buf[:copy(r.buf, r.buf[r.pos:])]
			r.pos, r.hashed = 0, 0
		}
		m, err := r.r.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		if m == 0 && err == nil {
			if empty++; empty == 100 {
				r.fail(io.ErrNoProgress)
				return false
			}
		}
		if err == io.EOF {
			r.eof = true
		} else if err != nil {
			r.fail(err)
			return false
		}
	}
	return true
}

func (r *snapReader) fixed(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if !r.fill(n) {
		r.fail(io.ErrUnexpectedEOF)
		return make([]byte, n)
	}
	v := r.buf[r.pos : r.pos+n]
	r.pos += n
	return v
}

func (r *snapReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	r.fill(binary.MaxVarintLen64)
	v, n := binary.Uvarint(r.buf[r.pos:])
	if n <= 0 {
		if n == 0 {
			r.fail(io.ErrUnexpectedEOF)
		} else {
			r.fail(errVarint)
		}
		return 0
	}
	r.pos += n
	return v
}

func (r *snapReader) varint() int64 {
	u := r.uvarint()
	// Same zig-zag decoding as binary.Varint.
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (r *snapReader) time() time.Time {
	sec := r.varint()
	nsec := r.uvarint()
	if nsec >= 1e9 {
		r.fail(errors.New("bad nanoseconds"))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// field returns the next length-prefixed field; the slice is valid until
// the next read. A field larger than the buffer is read in pieces into a
// buffer that grows with the data actually present.
func (r *snapReader) field() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > maxSnapField {
		r.fail(fmt.Errorf("field of %d bytes", n))
		return nil
	}
	if int(n) <= cap(r.buf) {
		return r.fixed(int(n))
	}
	out := make([]byte, 0, cap(r.buf))
	for uint64(len(out)) < n && r.err == nil {
		chunk := min(int(n)-len(out), cap(r.buf))
		out = append(out, r.fixed(chunk)...)
	}
	return out
}

func (r *snapReader) bytes() []byte {
	v := r.field()
	if r.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(v)), v...)
}

// sum returns the checksum of everything consumed so far.
func (r *snapReader) sum() uint32 {
	r.crc = crc32.Update(r.crc, castagnoli, r.buf[r.hashed:r.pos])
	r.hashed = r.pos
	return r.crc
}

func (r *snapReader) atEOF() bool {
	return !r.fill(1) && r.err == nil
}
