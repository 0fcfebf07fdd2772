package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false,
	"rewrite the seed-* files of testdata/fuzz/FuzzDecodeCommand from the round-trip table")

const corpusDir = "testdata/fuzz/FuzzDecodeCommand"

// maxSeedSize keeps large table entries out of the committed corpus.
const maxSeedSize = 4096

// seedEncodings returns the distinct encodings of the round-trip table,
// keyed by corpus file name.
func seedEncodings(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	seen := map[string]bool{}
	for _, tc := range roundTripCases {
		b := mustEncode(t, tc.cmd)
		if len(b) <= maxSeedSize && !seen[string(b)] {
			seen[string(b)] = true
			seeds["seed-"+tc.name] = b
		}
	}
	return seeds
}

func marshalCorpusEntry(b []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
}

// parseCorpusEntry reads a one-argument []byte corpus file.
func parseCorpusEntry(data []byte) ([]byte, error) {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a one-value go test fuzz v1 file")
	}
	arg := lines[1]
	if !strings.HasPrefix(arg, "[]byte(") || !strings.HasSuffix(arg, ")") {
		return nil, fmt.Errorf("value %q is not []byte(...)", arg)
	}
	s, err := strconv.Unquote(arg[len("[]byte(") : len(arg)-1])
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// TestFuzzCorpus checks that the committed seed corpus holds the current
// encodings of the round-trip table, which makes it a second set of golden
// vectors for the on-disk format. Run with -update-corpus to rewrite it.
func TestFuzzCorpus(t *testing.T) {
	seeds := seedEncodings(t)
	if *updateCorpus {
		if err := os.MkdirAll(corpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(corpusDir, name), marshalCorpusEntry(b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, ent := range entries {
		data, err := os.ReadFile(filepath.Join(corpusDir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseCorpusEntry(data)
		if err != nil {
			t.Errorf("%s: %v", ent.Name(), err)
			continue
		}
		if !strings.HasPrefix(ent.Name(), "seed-") {
			continue // an input the fuzzer found; the fuzz target replays it
		}
		found[ent.Name()] = true
		want, ok := seeds[ent.Name()]
		if !ok {
			t.Errorf("%s: no round-trip case of that name", ent.Name())
			continue
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s holds %x, but the case now encodes as %x; the format changed (bump CodecVersion) or run go test -run TestFuzzCorpus -update-corpus",
				ent.Name(), b, want)
		}
		if _, err := DecodeCommand(b); err != nil {
			t.Errorf("%s: %v", ent.Name(), err)
		}
	}
	for name := range seeds {
		if !found[name] {
			t.Errorf("corpus lacks %s; run go test -run TestFuzzCorpus -update-corpus", name)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, b := range seedEncodings(f) {
		f.Add(b)
	}
	for _, h := range []string{
		"", "01", "0206", "0100", "01ff", "01028000", "010600",
		"0101" + "00" + "01" + "05000000" + "00",
		"0101" + "00" + "01" + "02" + "8080808080808080" + "10" + "00000000",
	} {
		b, err := hex.DecodeString(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(nestedTxnBytes(MaxTxnDepth))
	f.Add(nestedTxnBytes(MaxTxnDepth + 1))

	f.Fuzz(func(t *testing.T, in []byte) {
		buf := bytes.Clone(in)
		c, err := DecodeCommand(buf)
		if !bytes.Equal(buf, in) {
			t.Fatal("DecodeCommand modified its input")
		}
		if err != nil {
			if c != nil {
				t.Fatalf("non-nil command with error %v", err)
			}
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) &&
				!errors.Is(err, ErrUnknownVersion) && !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Fatalf("error %q lacks the wire: prefix", err)
			}
			return
		}
		// The decoded command must not alias the input.
		for i := range buf {
			buf[i] ^= 0xff
		}

		enc, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v\n%s", err, dump(c))
		}
		// The encoding is canonical: exactly one byte string per command.
		if !bytes.Equal(enc, in) {
			t.Fatalf("re-encoding differs:\n in: %x\nout: %x", in, enc)
		}
		if n := commandSize(c); n != len(enc) {
			t.Fatalf("commandSize = %d, encoding is %d bytes", n, len(enc))
		}
		c2, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("decode/encode/decode mismatch (or the first decode aliased its input):\n first: %s\nsecond: %s", dump(c), dump(c2))
		}
	})
}

// FuzzDecoder runs a program of primitive reads (ops) over data and checks
// the Decoder's contract: no panics, sticky errors with zero values, no more
// bytes copied than the input holds, and (when everything decodes) that
// re-encoding the values gives back exactly the bytes consumed.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8}, []byte{0x80, 0x01, 0x03, 7, 1, 2, 'a', 'b', 1, 'c', 1, 'd', 0})
	f.Add([]byte{4, 4, 4}, []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 1})
	f.Add([]byte{0, 0, 0}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x80, 0x00})
	f.Add([]byte{3, 3, 9}, []byte{1, 2, 0})
	f.Add([]byte{0x17, 0x27, 8}, []byte{2, 9, 9, 3})

	f.Fuzz(func(t *testing.T, ops, data []byte) {
		orig := bytes.Clone(data)
		d := NewDecoder(data)
		e := NewEncoder(nil)
		copied := 0
		var firstErr error
		for _, op := range ops {
			before := d.Len()
			var zero bool
			switch op % 10 {
			case 0:
				v := d.Uvarint()
				zero = v == 0
				e.Uvarint(v)
			case 1:
				v := d.Varint()
				zero = v == 0
				e.Varint(v)
			case 2:
				v := d.Byte()
				zero = v == 0
				e.Byte(v)
			case 3:
				v := d.Bool()
				zero = !v
				e.Bool(v)
			case 4:
				v := d.Bytes()
				copied += len(v)
				zero = v == nil
				if len(v) > 0 && len(data) > 0 && &v[0] == &data[d.Offset()-len(v)] {
					t.Fatal("Bytes aliases the input")
				}
				e.Bytes(v)
			case 5:
				v := d.BytesNoCopy()
				zero = v == nil
				if cap(v) != len(v) {
					t.Fatalf("BytesNoCopy cap %d > len %d", cap(v), len(v))
				}
				e.Bytes(v)
			case 6:
				v := d.String()
				copied += len(v)
				zero = v == ""
				e.String(v)
			case 7:
				v := d.Count(int(op >> 4))
				zero = v == 0
				e.Uvarint(uint64(v))
			case 8:
				v := d.Flags(op >> 4)
				zero = v == 0
				if v&^(op>>4) != 0 {
					t.Fatalf("Flags(%#x) = %#x", op>>4, v)
				}
				e.Byte(v)
			case 9:
				if err := d.Finish(); err == nil && d.Len() != 0 {
					t.Fatal("Finish = nil with bytes left")
				}
				zero = true
			}
			if d.Len() > before {
				t.Fatalf("Len grew from %d to %d", before, d.Len())
			}
			if firstErr != nil {
				if !zero || d.Err() != firstErr || d.Len() != 0 {
					t.Fatalf("op %d after error %v: zero=%v err=%v len=%d", op%10, firstErr, zero, d.Err(), d.Len())
				}
			} else if err := d.Err(); err != nil {
				firstErr = err
				if !zero {
					t.Fatalf("op %d failed with %v but returned a non-zero value", op%10, err)
				}
				if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("unexpected error kind: %v", err)
				}
			}
		}
		if copied > len(data) {
			t.Fatalf("copied %d bytes out of a %d-byte input", copied, len(data))
		}
		if !bytes.Equal(data, orig) {
			t.Fatal("Decoder modified its input")
		}
		if firstErr == nil {
			consumed := len(data) - d.Len()
			if consumed != d.Offset() {
				t.Fatalf("Offset %d, consumed %d", d.Offset(), consumed)
			}
			if !bytes.Equal(e.Data(), data[:consumed]) {
				t.Fatalf("re-encoding differs:\n in: %x\nout: %x", data[:consumed], e.Data())
			}
		}
	})
}
