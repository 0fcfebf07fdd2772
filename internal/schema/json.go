package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// etcd writes its JSON values (members, confState, downgrade) with
// encoding/json. The encoders here write the same bytes without reflection
// or allocation; the tests compare them with encoding/json's output.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string: with HTML
// escaping (<, >, & as \u003c ...), \b \f \n \r \t and \" \\ as two-byte
// escapes, other control bytes as \u00XX, each invalid UTF-8 byte as
// \ufffd, and U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONStrings appends a []string as encoding/json does: null for nil.
func appendJSONStrings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// appendJSONUints appends a non-empty []uint64.
func appendJSONUints(dst []byte, vs []uint64) []byte {
	dst = append(dst, '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendUint(dst, v, 10)
	}
	return append(dst, ']')
}

// decodeJSON unmarshals b into v with encoding/json, as etcd does (field
// names match case-insensitively, unknown fields are ignored, the last of
// duplicate fields wins), but refuses a top-level null, which
// encoding/json accepts as "no change" and after which etcd would hold a
// nil member.
func decodeJSON(typ string, b []byte, v any) error {
	if bytes.Equal(bytes.Trim(b, " \t\r\n"), []byte("null")) {
		return decodeErr(typ, 0, 0, ErrInvalid, "null instead of an object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		off := 0
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			off = int(se.Offset)
		case errors.As(err, &te):
			off = int(te.Offset)
		}
		return decodeErr(typ, 0, off, ErrInvalid, "%v", err)
	}
	return nil
}
