package schema

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The auth buckets (auth/store.go, schema/auth*.go). "auth" holds
// AuthEnabledKey and AuthRevisionKey; "authUsers" maps a user name to its
// encoded User; "authRoles" maps a role name to its encoded Role.

// PermType is authpb.Permission_Type.
type PermType int32

// The permission types.
const (
	PermRead      PermType = 0
	PermWrite     PermType = 1
	PermReadWrite PermType = 2
)

// String returns etcd's name of t: "READ", "WRITE", "READWRITE", or the
// number for an unknown type.
func (t PermType) String() string {
	switch t {
	case PermRead:
		return "READ"
	case PermWrite:
		return "WRITE"
	case PermReadWrite:
		return "READWRITE"
	}
	return strconv.FormatInt(int64(t), 10)
}

// User is authpb.User (api/v3/authpb/auth.proto):
//
//	message UserAddOptions { bool no_password = 1; }
//	message User {
//	  bytes name = 1;
//	  bytes password = 2;       // the bcrypt hash, empty with no_password
//	  repeated string roles = 3;
//	  UserAddOptions options = 4;
//	}
//
// Options is a pointer because protobuf gives a message field presence: etcd
// 3.7 keeps whatever options the UserAdd request carried, and clientv3 always
// sends them, so a stored user usually has Options set (encoded as 22 00 when
// NoPassword is false).
type User struct {
	Name     []byte
	Password []byte
	Roles    []string
	Options  *UserOptions
}

// UserOptions is authpb.UserAddOptions.
type UserOptions struct {
	NoPassword bool
}

// Permission is authpb.Permission:
//
//	message Permission {
//	  Type permType = 1;
//	  bytes key = 2;
//	  bytes range_end = 3;
//	}
type Permission struct {
	PermType PermType
	Key      []byte
	RangeEnd []byte
}

// Role is authpb.Role:
//
//	message Role {
//	  bytes name = 1;
//	  repeated Permission keyPermission = 2;
//	}
type Role struct {
	Name          []byte
	KeyPermission []Permission
}

const (
	typeUser        = "User"
	typeUserOptions = "UserAddOptions"
	typeRole        = "Role"
	typePermission  = "Permission"
)

func sizeUserOptions(o *UserOptions) int {
	if o.NoPassword {
		return 2
	}
	return 0
}

// SizeUser returns the length of u's encoding.
func SizeUser(u *User) int {
	n := sizeBytesField(len(u.Name)) + sizeBytesField(len(u.Password))
	for _, r := range u.Roles {
		// An empty role is still an element of the list.
		n += 1 + sizeVarint(uint64(len(r))) + len(r)
	}
	if u.Options != nil {
		m := sizeUserOptions(u.Options)
		n += 1 + sizeVarint(uint64(m)) + m
	}
	return n
}

// AppendUser appends u's protobuf encoding to dst, byte for byte what
// proto.Marshal writes for the same authpb.User. Like proto.Marshal it
// refuses a role that is not valid UTF-8 (roles are proto3 strings), and
// then returns dst unchanged and an error.
func AppendUser(dst []byte, u *User) ([]byte, error) {
	for i, r := range u.Roles {
		if !utf8.ValidString(r) {
			return dst, fmt.Errorf("schema: encode User %q: role %d is not valid UTF-8", u.Name, i)
		}
	}
	dst = grow(dst, SizeUser(u))
	dst = appendBytesField(dst, 1, u.Name)
	dst = appendBytesField(dst, 2, u.Password)
	for _, r := range u.Roles {
		dst = appendVarint(appendTag(dst, 3, wireBytes), uint64(len(r)))
		dst = append(dst, r...)
	}
	if u.Options != nil {
		dst = appendVarint(appendTag(dst, 4, wireBytes), uint64(sizeUserOptions(u.Options)))
		if u.Options.NoPassword {
			dst = appendVarintField(dst, 1, 1)
		}
	}
	return dst, nil
}

// DecodeUser decodes b into u. Name, Password and Roles are copies. Unknown
// fields are skipped; options given twice are merged, as protobuf merges a
// repeated message field. A role that is not UTF-8 is refused, as
// protobuf-go refuses it. On error u is zero and the error is a
// *DecodeError.
func DecodeUser(b []byte, u *User) error {
	*u = User{}
	if err := decodeUser(b, u); err != nil {
		*u = User{}
		return err
	}
	return nil
}

func decodeUser(b []byte, u *User) error {
	r := reader{typ: typeUser, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err != nil {
			return err
		}
		var v []byte
		switch num {
		case 1:
			if v, err = r.bytes(num, wt); err == nil {
				u.Name = bytes.Clone(v)
			}
		case 2:
			if v, err = r.bytes(num, wt); err == nil {
				u.Password = bytes.Clone(v)
			}
		case 3:
			var s string
			if s, err = r.str(num, wt); err == nil {
				u.Roles = append(u.Roles, s)
			}
		case 4:
			if v, err = r.bytes(num, wt); err == nil {
				if u.Options == nil {
					u.Options = new(UserOptions)
				}
				err = decodeUserOptions(v, r.i-len(v), u.Options)
			}
		default:
			err = r.skip(num, wt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeUserOptions merges b into o; base is b's offset in the User, for
// errors.
func decodeUserOptions(b []byte, base int, o *UserOptions) error {
	r := reader{typ: typeUserOptions, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err == nil {
			switch num {
			case 1:
				var v uint64
				v, err = r.uvarint(num, wt)
				if err == nil {
					o.NoPassword = v != 0
				}
			default:
				err = r.skip(num, wt)
			}
		}
		if err != nil {
			return nested(err, typeUser, 4, base)
		}
	}
	return nil
}

// nested places an error found inside an embedded message: the type becomes
// "User.UserAddOptions" and the offset counts from the outer message.
func nested(err error, outer string, field, base int) error {
	if de, ok := err.(*DecodeError); ok {
		cp := *de
		cp.Type = outer + "." + de.Type
		cp.Offset += base
		if cp.Field == 0 {
			cp.Field = field
		}
		return &cp
	}
	return err
}

func sizePermission(p *Permission) int {
	return sizeVarintField(uint64(int64(p.PermType))) + sizeBytesField(len(p.Key)) + sizeBytesField(len(p.RangeEnd))
}

// SizeRole returns the length of r's encoding.
func SizeRole(r *Role) int {
	n := sizeBytesField(len(r.Name))
	for i := range r.KeyPermission {
		m := sizePermission(&r.KeyPermission[i])
		n += 1 + sizeVarint(uint64(m)) + m
	}
	return n
}

// AppendRole appends r's protobuf encoding to dst, byte for byte what
// proto.Marshal writes for the same authpb.Role.
func AppendRole(dst []byte, r *Role) []byte {
	dst = grow(dst, SizeRole(r))
	dst = appendBytesField(dst, 1, r.Name)
	for i := range r.KeyPermission {
		p := &r.KeyPermission[i]
		dst = appendVarint(appendTag(dst, 2, wireBytes), uint64(sizePermission(p)))
		dst = appendVarintField(dst, 1, uint64(int64(p.PermType)))
		dst = appendBytesField(dst, 2, p.Key)
		dst = appendBytesField(dst, 3, p.RangeEnd)
	}
	return dst
}

// DecodeRole decodes b into r. Name and the permissions' keys are copies.
// Unknown fields are skipped; a permission type is truncated to 32 bits, as
// protobuf-go does for an enum. On error r is zero and the error is a
// *DecodeError.
func DecodeRole(b []byte, ro *Role) error {
	*ro = Role{}
	if err := decodeRole(b, ro); err != nil {
		*ro = Role{}
		return err
	}
	return nil
}

func decodeRole(b []byte, ro *Role) error {
	r := reader{typ: typeRole, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err != nil {
			return err
		}
		var v []byte
		switch num {
		case 1:
			if v, err = r.bytes(num, wt); err == nil {
				ro.Name = bytes.Clone(v)
			}
		case 2:
			if v, err = r.bytes(num, wt); err == nil {
				var p Permission
				if err = decodePermission(v, r.i-len(v), &p); err == nil {
					ro.KeyPermission = append(ro.KeyPermission, p)
				}
			}
		default:
			err = r.skip(num, wt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodePermission(b []byte, base int, p *Permission) error {
	r := reader{typ: typePermission, b: b}
	for r.more() {
		num, wt, err := r.tag()
		if err == nil {
			var v []byte
			var u uint64
			switch num {
			case 1:
				if u, err = r.uvarint(num, wt); err == nil {
					p.PermType = PermType(int32(u))
				}
			case 2:
				if v, err = r.bytes(num, wt); err == nil {
					p.Key = bytes.Clone(v)
				}
			case 3:
				if v, err = r.bytes(num, wt); err == nil {
					p.RangeEnd = bytes.Clone(v)
				}
			default:
				err = r.skip(num, wt)
			}
		}
		if err != nil {
			return nested(err, typeRole, 2, base)
		}
	}
	return nil
}

// The values of AuthEnabledKey (schema/auth.go): one byte, 1 when auth is
// enabled. etcd reads any other value as disabled.
var (
	authEnabledValue  = [1]byte{1}
	authDisabledValue = [1]byte{0}
)

// AppendAuthEnabled appends the value etcd stores under AuthEnabledKey.
func AppendAuthEnabled(dst []byte, enabled bool) []byte {
	if enabled {
		return append(dst, authEnabledValue[:]...)
	}
	return append(dst, authDisabledValue[:]...)
}

// DecodeAuthEnabled decodes the value of AuthEnabledKey. It accepts only the
// two values etcd writes and returns a *DecodeError (ErrInvalid) for any
// other, which etcd would silently read as "disabled" (unsafeReadAuthEnabled
// compares with {1}).
func DecodeAuthEnabled(b []byte) (bool, error) {
	switch {
	case bytes.Equal(b, authEnabledValue[:]):
		return true, nil
	case bytes.Equal(b, authDisabledValue[:]):
		return false, nil
	}
	return false, decodeErr("authEnabled", 0, 0, ErrInvalid, "value %x, want 01 or 00", b)
}

// AppendAuthRevision appends the value of AuthRevisionKey: the auth store's
// revision, 8 bytes big-endian. etcd bumps it on every auth change and
// starts it at 1 (authStore.commitRevision in NewAuthStore).
func AppendAuthRevision(dst []byte, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, rev)
}

// DecodeAuthRevision decodes the value of AuthRevisionKey. A value that is
// not 8 bytes is a *DecodeError (ErrInvalid); etcd panics on a shorter one
// and ignores the bytes of a longer one after the eighth.
func DecodeAuthRevision(b []byte) (uint64, error) { return decodeUint64("authRevision", b) }
