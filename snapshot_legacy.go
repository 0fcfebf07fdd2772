package accord

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/accordkv/accord/internal/wire"
)

// The ACCORDSNAP format: raft snapshots and Backup files of accord 0.1 and
// 0.2 (data directory formats 1 and 2), which held the whole keyspace on
// the heap. This build still reads it: a format-2 directory's newest
// snapshot becomes its kv.db on the first Open (datadir.go), a leader of
// 0.2 sends it to a member of this version, and Restore takes old backups.
// It writes it only in tests.
//
// Layout:
//
//	magic "ACCORDSNAP" + format version byte
//	frames: uvarint length, then payload whose first byte is the kind:
//	  header  rev, compactRev, key versions count, lease count
//	  version key, rev, sub, create, ver, lease, tomb, value  (ascending key, then rev)
//	  lease   id, ttl in milliseconds
//	  member  id, name, client URL count, client URLs  (since 0.2.0; only
//	          when a member published attributes, so that a cluster that
//	          never opened the 0.2.0 gate writes snapshots 0.1.0 reads)
//	  end
//	sha256 of every byte before it (32 bytes)
//
// The reader checks every count, order and bound and the checksum before
// anything is installed, so a damaged snapshot is refused whole.

const (
	snapMagic       = "ACCORDSNAP"
	snapVersion     = 1
	snapMaxFrame    = 64 << 20
	frameHeader     = 1
	frameVersion    = 2
	frameLease      = 3
	frameEnd        = 4
	frameMember     = 5
	snapFlushAtSize = 256 << 10
)

// version is one version of one key in an ACCORDSNAP stream.
type version struct {
	rev    int64 // mod revision
	create int64 // create revision; 0 for a tombstone
	ver    int64 // version; 0 for a tombstone
	lease  int64
	value  []byte
	sub    int32 // position of the write within its transaction
	tomb   bool
}

// keyHist is the history of one key, ascending by rev.
type keyHist struct {
	key string
	vs  []version
}

// ksView is the keyspace an ACCORDSNAP stream holds: every key's history,
// ascending by key.
type ksView struct {
	rev        int64
	compactRev int64
	keys       []keyHist
}

type snapLease struct {
	id  int64
	ttl time.Duration
}

type snapMember struct {
	id    string
	attrs memberAttrs
}

// snapState is everything a snapshot holds.
type snapState struct {
	view    *ksView
	leases  []snapLease
	members []snapMember
}

func writeSnapshot(w io.Writer, st *snapState) error {
	return writeSnapshotCtx(context.Background(), w, st)
}

func writeSnapshotCtx(ctx context.Context, w io.Writer, st *snapState) error {
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 64<<10)
	if _, err := bw.WriteString(snapMagic); err != nil {
		return err
	}
	if err := bw.WriteByte(snapVersion); err != nil {
		return err
	}
	var nvers uint64
	for i := range st.view.keys {
		nvers += uint64(len(st.view.keys[i].vs))
	}
	frame := wire.NewEncoder(nil)
	var lenBuf [binary.MaxVarintLen64]byte
	emit := func() error {
		n := binary.PutUvarint(lenBuf[:], uint64(len(frame.Data())))
		if _, err := bw.Write(lenBuf[:n]); err != nil {
			return err
		}
		_, err := bw.Write(frame.Data())
		frame.Reset()
		return err
	}
	frame.Byte(frameHeader)
	frame.Varint(st.view.rev)
	frame.Varint(st.view.compactRev)
	frame.Uvarint(nvers)
	frame.Uvarint(uint64(len(st.leases)))
	if err := emit(); err != nil {
		return err
	}
	for i := range st.view.keys {
		kh := &st.view.keys[i]
		if err := ctx.Err(); err != nil {
			return err
		}
		for j := range kh.vs {
			v := &kh.vs[j]
			frame.Byte(frameVersion)
			frame.String(kh.key)
			frame.Varint(v.rev)
			frame.Varint(int64(v.sub))
			frame.Varint(v.create)
			frame.Varint(v.ver)
			frame.Varint(v.lease)
			frame.Bool(v.tomb)
			frame.Bytes(v.value)
			if err := emit(); err != nil {
				return err
			}
		}
	}
	for _, l := range st.leases {
		frame.Byte(frameLease)
		frame.Varint(l.id)
		frame.Varint(l.ttl.Milliseconds())
		if err := emit(); err != nil {
			return err
		}
	}
	for _, m := range st.members {
		frame.Byte(frameMember)
		frame.String(m.id)
		frame.String(m.attrs.name)
		frame.Uvarint(uint64(len(m.attrs.clientURLs)))
		for _, u := range m.attrs.clientURLs {
			frame.String(u)
		}
		if err := emit(); err != nil {
			return err
		}
	}
	frame.Byte(frameEnd)
	if err := emit(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(h.Sum(nil))
	return err
}

// hashReader hashes what is read through it.
type hashReader struct {
	r *bufio.Reader
	h hash.Hash
}

func (hr *hashReader) ReadByte() (byte, error) {
	b, err := hr.r.ReadByte()
	if err == nil {
		hr.h.Write([]byte{b})
	}
	return b, err
}

func (hr *hashReader) readFull(p []byte) error {
	if _, err := io.ReadFull(hr.r, p); err != nil {
		return err
	}
	hr.h.Write(p)
	return nil
}

func snapCorrupt(reason string, err error) error {
	return &CorruptError{Path: "snapshot", Reason: reason, Err: err}
}

// readSnapshot decodes and verifies a snapshot completely. Every failure is
// a *CorruptError.
func readSnapshot(r io.Reader) (*snapState, error) {
	hr := &hashReader{r: bufio.NewReaderSize(r, 64<<10), h: sha256.New()}
	magic := make([]byte, len(snapMagic)+1)
	if err := hr.readFull(magic); err != nil {
		return nil, snapCorrupt("too short for a header", err)
	}
	if string(magic[:len(snapMagic)]) != snapMagic {
		return nil, snapCorrupt("not an accord snapshot (bad magic)", nil)
	}
	if magic[len(snapMagic)] != snapVersion {
		return nil, snapCorrupt(fmt.Sprintf("format version %d is not supported (this build reads %d)", magic[len(snapMagic)], snapVersion), nil)
	}
	var buf []byte
	next := func() (*wire.Decoder, byte, error) {
		n, err := binary.ReadUvarint(hr)
		if err != nil {
			return nil, 0, snapCorrupt("truncated frame length", err)
		}
		if n == 0 || n > snapMaxFrame {
			return nil, 0, snapCorrupt(fmt.Sprintf("frame length %d out of bounds", n), nil)
		}
		// Grow only as data actually arrives, so a lying length cannot make
		// us allocate much more than the input holds.
		buf = buf[:0]
		for remaining := int(n); remaining > 0; {
			chunk := min(remaining, 1<<20)
			start := len(buf)
			buf = append(buf, make([]byte, chunk)...)
			if err := hr.readFull(buf[start:]); err != nil {
				return nil, 0, snapCorrupt("truncated frame", err)
			}
			remaining -= chunk
		}
		d := wire.NewDecoder(buf)
		kind := d.Byte()
		return d, kind, d.Err()
	}
	done := func(d *wire.Decoder, what string) error {
		if err := d.Err(); err != nil {
			return snapCorrupt("bad "+what+" frame", err)
		}
		if d.Len() != 0 {
			return snapCorrupt("trailing bytes in "+what+" frame", nil)
		}
		return nil
	}

	d, kind, err := next()
	if err != nil {
		return nil, err
	}
	if kind != frameHeader {
		return nil, snapCorrupt("first frame is not a header", nil)
	}
	st := &snapState{view: &ksView{}}
	st.view.rev = d.Varint()
	st.view.compactRev = d.Varint()
	nvers := d.Uvarint()
	nleases := d.Uvarint()
	if err := done(d, "header"); err != nil {
		return nil, err
	}
	if st.view.rev < 1 || st.view.compactRev < 0 || st.view.compactRev > st.view.rev {
		return nil, snapCorrupt(fmt.Sprintf("impossible revisions %d (compacted %d)", st.view.rev, st.view.compactRev), nil)
	}
	for i := uint64(0); i < nvers; i++ {
		d, kind, err := next()
		if err != nil {
			return nil, err
		}
		if kind != frameVersion {
			return nil, snapCorrupt(fmt.Sprintf("expected %d versions, found %d", nvers, i), nil)
		}
		key := d.String()
		v := version{rev: d.Varint()}
		sub := d.Varint()
		v.create, v.ver, v.lease = d.Varint(), d.Varint(), d.Varint()
		v.tomb = d.Bool()
		v.value = d.Bytes()
		if err := done(d, "version"); err != nil {
			return nil, err
		}
		if key == "" || v.rev < 1 || v.rev > st.view.rev || sub < 0 || sub > 1<<31-1 || v.lease < 0 ||
			(!v.tomb && (v.ver < 1 || v.create < 1 || v.create > v.rev)) {
			return nil, snapCorrupt(fmt.Sprintf("invalid version of key %q at revision %d", key, v.rev), nil)
		}
		v.sub = int32(sub)
		keys := st.view.keys
		if n := len(keys); n > 0 && keys[n-1].key == key {
			if last := keys[n-1].vs[len(keys[n-1].vs)-1]; last.rev >= v.rev {
				return nil, snapCorrupt(fmt.Sprintf("versions of key %q out of order", key), nil)
			}
			keys[n-1].vs = append(keys[n-1].vs, v)
			continue
		} else if n > 0 && keys[n-1].key > key {
			return nil, snapCorrupt(fmt.Sprintf("keys out of order at %q", key), nil)
		}
		st.view.keys = append(st.view.keys, keyHist{key: key, vs: []version{v}})
	}
	seen := make(map[int64]bool)
	for i := uint64(0); i < nleases; i++ {
		d, kind, err := next()
		if err != nil {
			return nil, err
		}
		if kind != frameLease {
			return nil, snapCorrupt(fmt.Sprintf("expected %d leases, found %d", nleases, i), nil)
		}
		id, ms := d.Varint(), d.Varint()
		if err := done(d, "lease"); err != nil {
			return nil, err
		}
		if id <= 0 || ms <= 0 || time.Duration(ms) > MaxLeaseTTL/time.Millisecond || seen[id] {
			return nil, snapCorrupt(fmt.Sprintf("invalid lease %d", id), nil)
		}
		seen[id] = true
		st.leases = append(st.leases, snapLease{id: id, ttl: time.Duration(ms) * time.Millisecond})
	}
	seenMember := make(map[string]bool)
	for {
		d, kind, err = next()
		if err != nil {
			return nil, err
		}
		if kind != frameMember {
			break
		}
		m := snapMember{id: d.String()}
		m.attrs.name = d.String()
		if n := d.Count(1); n > 0 {
			m.attrs.clientURLs = make([]string, n)
			for i := range m.attrs.clientURLs {
				m.attrs.clientURLs[i] = d.String()
			}
		}
		if err := done(d, "member"); err != nil {
			return nil, err
		}
		if m.id == "" || seenMember[m.id] {
			return nil, snapCorrupt(fmt.Sprintf("invalid member %q", m.id), nil)
		}
		seenMember[m.id] = true
		st.members = append(st.members, m)
	}
	if kind != frameEnd {
		return nil, snapCorrupt("missing end frame", nil)
	}
	if err := done(d, "end"); err != nil {
		return nil, err
	}
	want := hr.h.Sum(nil)
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(hr.r, got); err != nil {
		return nil, snapCorrupt("missing checksum", err)
	}
	if !bytes.Equal(got, want) {
		return nil, snapCorrupt("checksum mismatch", nil)
	}
	if _, err := hr.r.ReadByte(); err != io.EOF {
		return nil, snapCorrupt("trailing data after checksum", err)
	}
	for _, kh := range st.view.keys {
		for _, v := range kh.vs {
			if v.lease != 0 && !v.tomb && v.rev == kh.vs[len(kh.vs)-1].rev && !seen[v.lease] {
				return nil, snapCorrupt(fmt.Sprintf("key %q is attached to missing lease %d", kh.key, v.lease), nil)
			}
		}
	}
	return st, nil
}
