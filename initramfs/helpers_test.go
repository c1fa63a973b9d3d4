package initramfs

// Helpers that build fixtures with GNU cpio and the compressor CLIs, and read the tools' views of
// images (cpio -itv, lsinitrd, extraction), so Parse and Rewrite are checked against tools nobody here
// wrote.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/luksconv/luksconv/internal/testenv"
)

// sh runs a bash script in dir with TZ=UTC and LC_ALL=C, feeding stdin, and returns stdout.
func sh(t testing.TB, dir string, stdin []byte, script string) []byte {
	t.Helper()
	out, err := shErr(dir, stdin, script)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return out
}

func shErr(dir string, stdin []byte, script string) ([]byte, error) {
	cmd := exec.Command("bash", "-e", "-o", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%v\nstderr: %s", err, stderr.String())
	}
	return out, nil
}

var (
	oldTime    = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	recentTime = time.Now().Add(-time.Hour).Truncate(time.Second)
)

// makeTree fills dir with what an initramfs holds: directories, files of odd sizes, a setuid binary,
// symlinks (relative and absolute), a 3-way hard link, device nodes, a FIFO, foreign owners and varied
// mtimes.
func makeTree(t testing.TB, dir string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	randBytes := func(n int) []byte { return testenv.RandBytes(rng, n) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc/lvm", "usr/bin", "usr/lib/dracut/hooks/cmdline", "dev", "empty", "var/tmp"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	files := map[string][]byte{
		"etc/empty":        nil,
		"etc/one":          {'x'},
		"etc/three":        []byte("abc"),
		"etc/five":         []byte("12345"),
		"etc/crypttab":     []byte("osencrypt /dev/disk/by-partuuid/abc /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"),
		"etc/lvm/lvm.conf": []byte("global {\n    use_lvmetad = 0\n}\ndevices { filter = [\"a|osencrypt|\", \"r|abc|\"] }\n"),
		"usr/bin/odd511":   randBytes(511),
		"usr/bin/big":      append(bytes.Repeat([]byte("initramfs "), 9000), randBytes(70001)...),
		"usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh": []byte("#!/bin/sh\n# ade hook\n"),
	}
	for name, data := range files {
		must(os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	must(os.WriteFile(filepath.Join(dir, "usr/bin/suid"), randBytes(4097), 0o755))
	must(os.Chmod(filepath.Join(dir, "usr/bin/suid"), 0o4755))
	must(os.WriteFile(filepath.Join(dir, "etc/secret"), []byte("s3cret\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/busybox"), randBytes(12345), 0o755))
	must(os.Link(filepath.Join(dir, "usr/bin/busybox"), filepath.Join(dir, "usr/bin/sh")))
	must(os.Link(filepath.Join(dir, "usr/bin/busybox"), filepath.Join(dir, "usr/bin/ls")))
	must(os.Symlink("usr/bin", filepath.Join(dir, "bin")))
	must(os.Symlink("/etc/one", filepath.Join(dir, "etc/abs-link")))
	must(unix.Mknod(filepath.Join(dir, "dev/console"), unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))))
	must(unix.Mknod(filepath.Join(dir, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
	must(unix.Mkfifo(filepath.Join(dir, "dev/initctl"), 0o600))
	must(os.Lchown(filepath.Join(dir, "etc/five"), 1234, 5678))
	must(os.Lchown(filepath.Join(dir, "var/tmp"), 4321, 8765))
	must(os.Lchown(filepath.Join(dir, "etc/abs-link"), 77, 88))
	must(os.Chmod(filepath.Join(dir, "var/tmp"), 0o1777))
	// mtimes last, deepest first so directory times survive.
	var paths []string
	must(filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		mt := oldTime.Add(time.Duration(i) * 97 * time.Minute)
		if strings.HasSuffix(p, "etc/three") {
			mt = recentTime
		}
		tv := []unix.Timeval{unix.NsecToTimeval(mt.UnixNano()), unix.NsecToTimeval(mt.UnixNano())}
		must(unix.Lutimes(p, tv))
	}
}

// cpioCreate archives dir with GNU cpio in format (newc or crc), names in sorted order as dracut does.
func cpioCreate(t testing.TB, dir, format string) []byte {
	t.Helper()
	return sh(t, dir, nil, "find . -print0 | sort -z | cpio --null -o -H "+format+" --quiet")
}

// compressCLI compresses data with the tool and options dracut uses.
func compressCLI(t testing.TB, c Compression, data []byte) []byte {
	t.Helper()
	cmd := map[Compression]string{
		Gzip:      "gzip -n -9",
		XZ:        "xz --check=crc32 --lzma2=dict=1MiB -T1",
		Zstd:      "zstd -15 -q -T1",
		LZ4Legacy: "lz4 -l -9 -q",
	}[c]
	return sh(t, "", data, cmd+" -c")
}

func decompressCLI(t testing.TB, c Compression, data []byte) []byte {
	t.Helper()
	cmd := map[Compression]string{
		Gzip:      "gzip -dc",
		XZ:        "xz -dc --single-stream",
		Zstd:      "zstd -dcq",
		LZ4Legacy: "lz4 -dcq",
	}[c]
	return sh(t, "", data, cmd)
}

// cpioList returns GNU cpio's verbose listing of an archive, numeric owners, UTC times.
func cpioList(t testing.TB, archive []byte) string {
	t.Helper()
	return string(sh(t, "", archive, "cpio -itv --numeric-uid-gid --quiet"))
}

// lsModeString renders a mode as GNU cpio's mode_string does.
func lsModeString(m uint32) string {
	typ := map[uint32]byte{ModeRegular: '-', ModeDir: 'd', ModeSymlink: 'l', ModeChar: 'c', ModeBlock: 'b',
		ModeFIFO: 'p', ModeSocket: 's'}[m&ModeType]
	b := []byte{typ}
	rwx := "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) != 0 {
			b = append(b, rwx[i])
		} else {
			b = append(b, '-')
		}
	}
	set := func(pos int, bit uint32, c byte) {
		if m&bit != 0 {
			if b[pos] == '-' {
				b[pos] = c - 'a' + 'A'
			} else {
				b[pos] = c
			}
		}
	}
	set(3, 0o4000, 's')
	set(6, 0o2000, 's')
	set(9, 0o1000, 't')
	return string(b)
}

// formatList renders entries as `cpio -itv --numeric-uid-gid` prints them (GNU cpio long_format).
func formatList(entries []*Entry, now time.Time) string {
	var sb strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&sb, "%s %3d %-8d %-8d ", lsModeString(e.Mode), e.NLink, e.UID, e.GID)
		if t := e.Mode & ModeType; t == ModeChar || t == ModeBlock {
			fmt.Fprintf(&sb, "%3d, %3d ", e.RDevMajor, e.RDevMinor)
		} else {
			fmt.Fprintf(&sb, "%8d ", e.FileSize)
		}
		mt := time.Unix(int64(e.MTime), 0).UTC()
		if age := now.Sub(mt); age > 6*30*24*time.Hour || age < 0 {
			sb.WriteString(mt.Format("Jan _2  2006"))
		} else {
			sb.WriteString(mt.Format("Jan _2 15:04"))
		}
		sb.WriteString(" " + e.Name)
		if e.IsSymlink() {
			sb.WriteString(" -> " + string(e.Data))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// treeState describes a directory tree extracted by GNU cpio: one line per path with type, mode,
// owner, size, mtime (not for directories, which cpio touches while filling them, nor symlinks), rdev,
// symlink target, content hash and a hard-link group number.
func treeState(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]int{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case syscall.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			g, ok := inodes[st.Ino]
			if !ok {
				g = len(inodes)
				inodes[st.Ino] = g
			}
			line += fmt.Sprintf(" size=%d mtime=%d sha=%s links=%d group=%d", st.Size, st.Mtim.Sec, hex.EncodeToString(sum[:8]), st.Nlink, g)
		default:
			line += fmt.Sprintf(" mtime=%d rdev=%d:%d", st.Mtim.Sec, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// extract unpacks a cpio archive with GNU cpio as root (ownership, device nodes and mtimes kept) and
// returns the tree description and cpio's stderr.
func extract(t testing.TB, archive []byte) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio -idm: %v\n%s", err, stderr.String())
	}
	return treeState(t, dir), stderr.String()
}

// lsinitrd returns lsinitrd's listing of an image file, without the "Image:" line that states its size.
func lsinitrd(t testing.TB, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command("lsinitrd", append(args, path)...)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lsinitrd %s: %v", path, err)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "Image: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// earlyCPIO builds dracut's uncompressed early cpio (early_cpio + Intel microcode) with GNU cpio.
func earlyCPIO(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "kernel/x86/microcode"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, dir, "early_cpio", []byte("1\n"))
	ucode := make([]byte, 3001)
	for i := range ucode {
		ucode[i] = byte(i * 7)
	}
	testenv.WriteFile(t, dir, "kernel/x86/microcode/GenuineIntel.bin", ucode)
	return cpioCreate(t, dir, "newc")
}
