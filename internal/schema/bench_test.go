package schema

import (
	"bytes"
	"testing"
)

// benchRecord is a put of the issue-14 workload: a short key, a 256-byte
// value, revisions in the hundred thousands, a lease.
func benchRecord() []byte {
	return AppendKeyValue(nil, &KeyValue{
		Key: []byte("/registry/pods/default/web-7d4b9c8f6-x2x9q"), CreateRevision: 123456, ModRevision: 456789,
		Version: 4, Value: bytes.Repeat([]byte{'v'}, 256), Lease: 0x694d7e1b2c3a4f01,
	})
}

func BenchmarkAppendKeyValue(b *testing.B) {
	var kv KeyValue
	if err := DecodeKeyValue(benchRecord(), &kv); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendKeyValue(buf[:0], &kv)
	}
}

func BenchmarkDecodeKeyValue(b *testing.B) {
	rec := benchRecord()
	var kv KeyValue
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeKeyValue(rec, &kv); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeKeyValueNoCopy(b *testing.B) {
	rec := benchRecord()
	var kv KeyValue
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeKeyValueNoCopy(rec, &kv); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeKeyValueHeader(b *testing.B) {
	rec := benchRecord()
	var h KeyValueHeader
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeKeyValueHeader(rec, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRevisionKey(b *testing.B) {
	key := AppendRevisionKey(nil, Revision{Main: 456789, Sub: 3})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseRevisionKey(key); err != nil {
			b.Fatal(err)
		}
	}
}
