package accord

import (
	"os"
	"syscall"

	"go.etcd.io/bbolt"
)

// dropResident tells the kernel that the pages of db's memory map up to
// size are not needed now (MADV_DONTNEED). Open reads every record of
// kv.db to rebuild the index, which would otherwise leave the whole file
// resident in the process (counted in its RSS) for no use: the pages stay
// in the page cache and a later read maps them again. Best effort.
func dropResident(db *bbolt.DB, size int64) {
	info := db.Info()
	if info == nil || info.Data == 0 || size <= 0 {
		return
	}
	page := int64(os.Getpagesize())
	n := (size + page - 1) / page * page
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, info.Data, uintptr(n), syscall.MADV_DONTNEED)
}
