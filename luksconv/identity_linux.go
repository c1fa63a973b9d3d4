package luksconv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// identity is one piece of storage a file or device is made of: a file's inode, or a whole disk.
// Two paths that share one are the same bytes, or overlap.
type identity struct {
	kind     byte // 'f' a file (dev, ino), 'b' a whole block device (rdev)
	dev, ino uint64
	why      string // how the path reaches it, for the error
}

func (a identity) same(b identity) bool { return a.kind == b.kind && a.dev == b.dev && a.ino == b.ino }

// identities lists the storage behind fi: a regular file is its inode; a block device is the whole
// disk it is (or is a partition of), the disks under it (device-mapper and md slaves) and the files
// behind loop devices among them, as sysfs shows them.
func identities(fi os.FileInfo) []identity {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if !isBlockDevice(fi) {
		return []identity{{kind: 'f', dev: uint64(st.Dev), ino: st.Ino}}
	}
	var out []identity
	blockIdentities(uint64(st.Rdev), "", 0, &out)
	return out
}

// blockIdentities adds what the block device rdev is made of, depth levels below the output.
func blockIdentities(rdev uint64, why string, depth int, out *[]identity) {
	if depth > 8 {
		return // device stacks are shallow; a cycle in sysfs is not followed
	}
	dir, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(rdev), unix.Minor(rdev)))
	if err != nil {
		*out = append(*out, identity{kind: 'b', dev: rdev, why: why})
		return
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		// A partition: the disk is its parent directory.
		dir = filepath.Dir(dir)
		if d, ok := sysfsDev(dir); ok {
			rdev = d
			why = join(why, "a partition of "+filepath.Base(dir))
		}
	}
	*out = append(*out, identity{kind: 'b', dev: rdev, why: why})
	if b, err := os.ReadFile(filepath.Join(dir, "loop", "backing_file")); err == nil {
		if fi, err := os.Stat(strings.TrimSpace(string(b))); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				*out = append(*out, identity{kind: 'f', dev: uint64(st.Dev), ino: st.Ino,
					why: join(why, filepath.Base(dir)+", a loop device backed by "+strings.TrimSpace(string(b)))})
			}
		}
	}
	slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
	for _, s := range slaves {
		if d, ok := sysfsDev(filepath.Join(dir, "slaves", s.Name())); ok {
			blockIdentities(d, join(why, filepath.Base(dir)+" stacked on "+s.Name()), depth+1, out)
		}
	}
}

// sysfsDev reads the "MAJOR:MINOR" dev file of a sysfs block device directory.
func sysfsDev(dir string) (uint64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "dev"))
	if err != nil {
		return 0, false
	}
	var maj, min uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err != nil {
		return 0, false
	}
	return unix.Mkdev(maj, min), true
}
