// Package testenv gives the tests of several packages what they need from their environment: the
// shared cryptsetup corpus, external tools, root, and a few file helpers. Like Go's internal/testenv
// it is for tests only: functions take the test and skip or fail it rather than return errors.
//
// A test skips only when something truly cannot be had on this machine, and says so loudly:
//
//	func TestOracle(t *testing.T) {
//		testenv.Need(t, "sgdisk") // skips: "TOOL UNAVAILABLE: sgdisk not found ..."
//		out := testenv.Run(t, "sgdisk", "-p", disk) // fails the test, with the output, on error
//		...
//	}
//
// Importing testenv appends /usr/sbin and /sbin to PATH when they are missing from it: Debian puts
// cryptsetup, sgdisk, mkfs.xfs and the lvm2 tools there and a non-root PATH often lacks them, and
// extending PATH once makes the tool Need finds the same one exec.Command runs.
package testenv

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
)

func init() {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	os.Setenv("PATH", strings.Join(dirs, string(os.PathListSeparator)))
}

// debianPackage names the Debian package that provides a tool, for the skip message.
var debianPackage = map[string]string{
	"blkid": "util-linux", "bash": "bash", "cpio": "cpio", "cryptsetup": "cryptsetup-bin",
	"dracut": "dracut-core", "grub-editenv": "grub-common", "gzip": "gzip", "losetup": "mount",
	"lsinitrd": "dracut-core", "lvmconfig": "lvm2", "lvs": "lvm2", "lz4": "lz4", "mkfs.xfs": "xfsprogs",
	"mount": "mount", "openssl": "openssl", "pvck": "lvm2", "pvcreate": "lvm2", "pvs": "lvm2",
	"qemu-img": "qemu-utils", "sfdisk": "fdisk", "sgdisk": "gdisk", "umount": "mount", "vgcfgbackup": "lvm2",
	"vgcfgrestore": "lvm2", "vgcreate": "lvm2", "resize2fs": "e2fsprogs", "xfs_db": "xfsprogs", "xfs_io": "xfsprogs",
	"xfs_repair": "xfsprogs", "xz": "xz-utils", "zstd": "zstd", "mkfs.vfat": "dosfstools", "fsck.fat": "dosfstools",
	"mcopy": "mtools", "mdir": "mtools", "mmd": "mtools", "mtype": "mtools",
	"mkfs.ext2": "e2fsprogs", "mkfs.ext3": "e2fsprogs", "mkfs.ext4": "e2fsprogs", "e2fsck": "e2fsprogs", "debugfs": "e2fsprogs", "dumpe2fs": "e2fsprogs",
	"mkfs.btrfs": "btrfs-progs", "btrfs": "btrfs-progs",
	"mkinitramfs": "initramfs-tools-core", "lsinitramfs": "initramfs-tools-core", "unmkinitramfs": "initramfs-tools-core",
}

// Need skips the test, loudly, unless every tool is on PATH (which includes /usr/sbin and /sbin).
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			pkg := ""
			if p, ok := debianPackage[tool]; ok {
				pkg = ", Debian package " + p
			}
			t.Skipf("TOOL UNAVAILABLE: %s not found in PATH, /usr/sbin or /sbin%s (scripts/install-deps.sh installs it)", tool, pkg)
		}
	}
}

// NeedRoot skips the test, loudly, unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ROOT UNAVAILABLE: this test needs root (loop devices, device nodes, cryptsetup's locks); run the tests as root")
	}
}

// RunErr runs the command and returns its combined stdout and stderr. The error, if any, names the
// command and carries the output, so it can be reported as it is.
func RunErr(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Run runs the command and returns its combined stdout and stderr; it fails the test, with that
// output, when the command fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SharedDir returns ../shared next to the repository root (the directory holding go.mod), where the
// project keeps test data it does not own. It skips the test, loudly, when that directory is absent.
func SharedDir(t testing.TB) string {
	t.Helper()
	root := fixture.Root()
	if root == "" {
		t.Fatal("testenv: no go.mod above the working directory")
	}
	dir := filepath.Join(root, "..", "shared")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("SHARED TEST DATA UNAVAILABLE: %v (the tests read ../shared next to the repository)", err)
	}
	return dir
}

// Open opens path for reading and returns it with its size; it is closed when the test ends.
func Open(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

// WriteFile writes data to dir/name (mode 0644) and returns that path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// SparseFile creates dir/name as a hole of size bytes (a blank disk) and returns that path.
func SparseFile(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	p := WriteFile(t, dir, name, nil)
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// CopyFile returns a private copy of src, under the same base name in a new test directory. Holes
// stay holes (cp --sparse=always): test disks are large and mostly empty.
func CopyFile(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	Run(t, "cp", "--sparse=always", src, dst)
	return dst
}

// AttachLoop attaches path to a free loop device, passing args to losetup (e.g. "--sector-size",
// "4096"), and returns the device. It skips the test, loudly, when no loop device can be had (no
// root, no loop driver). detach detaches the device; it runs at the end of the test if not before.
func AttachLoop(t testing.TB, path string, args ...string) (dev string, detach func()) {
	t.Helper()
	Need(t, "losetup")
	out, err := RunErr("losetup", append(append([]string{"--find", "--show"}, args...), path)...)
	if err != nil {
		t.Skipf("LOOP DEVICE UNAVAILABLE (needs root and the loop driver): %v", err)
	}
	dev = strings.TrimSpace(out)
	var once sync.Once
	detach = func() {
		once.Do(func() {
			if _, err := RunErr("losetup", "-d", dev); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(detach)
	return dev, detach
}

// RandBytes returns n bytes drawn from r, one r.Uint32 per byte, so a seeded r gives the same bytes
// on every run.
func RandBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// MountXFS loop-mounts the XFS image img read-only (nouuid: copies of one filesystem may be mounted
// side by side) on a new directory, unmounted when the test ends. The error is the mount's, for the
// caller to skip or fail on.
func MountXFS(t testing.TB, img string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if _, err := RunErr("mount", "-t", "xfs", "-o", "ro,loop,nouuid", img, dir); err != nil {
		return "", fmt.Errorf("cannot loop-mount %s: %w", img, err)
	}
	t.Cleanup(func() {
		if _, err := RunErr("umount", dir); err != nil {
			t.Error(err)
		}
	})
	return dir, nil
}

// Hit is a file that contains a string GrepTree looks for.
type Hit struct {
	Path   string // below the searched directory, with a leading "/"
	Needle string
}

// GrepTree reads every regular file below dir and reports each one that contains one of needles,
// and how many files it read.
func GrepTree(t testing.TB, dir string, needles []string) (hits []Hit, files int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, s := range needles {
			if bytes.Contains(b, []byte(s)) {
				hits = append(hits, Hit{Path: strings.TrimPrefix(p, dir), Needle: s})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits, files
}

// LVMSystemDir makes a private LVM configuration directory (for LVM_SYSTEM_DIR) in which lvm commands
// see the device dev and nothing else (no device at all when dev is ""), keep no backups, archives,
// hints or devices file, and never talk to udev: the host's volume groups stay out of a test's sight.
func LVMSystemDir(t testing.TB, dev string) string {
	t.Helper()
	dir := t.TempDir()
	filter := `filter = [ "r|.*|" ]`
	if dev != "" {
		filter = fmt.Sprintf(`filter = [ "a|^%[1]s$|", "r|.*|" ]
	global_filter = [ "a|^%[1]s$|", "r|.*|" ]`, regexp.QuoteMeta(dev))
	}
	conf := fmt.Sprintf(`devices {
	use_devicesfile = 0
	obtain_device_list_from_udev = 0
	hints = "none"
	scan_lvs = 0
	%s
}
global {
	locking_dir = "%s"
	use_lvmlockd = 0
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
backup {
	backup = 0
	archive = 0
}
`, filter, filepath.Join(dir, "lock"))
	if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// VGBackup returns vgcfgbackup's text of the volume group vg, run in the private configuration sysDir.
func VGBackup(t testing.TB, sysDir, vg string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), vg+".backup")
	RunLVM(t, sysDir, "vgcfgbackup", "-f", f, vg)
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// VGRestore writes text as the metadata of the volume group vg with vgcfgrestore (nothing is
// activated, so no device-mapper is needed).
func VGRestore(t testing.TB, sysDir, vg, text string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), vg+".restore")
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	RunLVM(t, sysDir, "vgcfgrestore", "-f", f, vg)
}

// AddToVG returns a vgcfgbackup text with section (e.g. a logical_volumes section) added at the end
// of its VG section, which closes at the last line that is exactly "}".
func AddToVG(t testing.TB, text, section string) string {
	t.Helper()
	i := strings.LastIndex(text, "\n}\n")
	if i < 0 {
		t.Fatalf("no VG section end in vgcfgbackup's text:\n%s", text)
	}
	return text[:i] + "\n" + section + text[i:]
}

// RunLVM runs an lvm2 command in the private configuration sysDir (from LVMSystemDir) and returns its
// combined output; the test fails if the command does.
func RunLVM(t testing.TB, sysDir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "LVM_SYSTEM_DIR="+sysDir, "LVM_SUPPRESS_FD_WARNINGS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FirstDiff is the index of the first byte where a and b differ (the shorter one's length when one is
// a prefix of the other), or -1 when they are equal.
func FirstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// FlipByte inverts the byte at off of the file path in place (XOR 0xff: it always changes, and a
// second flip restores it), as a corrupted output or header byte for a test to find.
func FlipByte(t testing.TB, path string, off int64) {
	t.Helper()
	XORByte(t, path, off, 0xff)
}

// XORByte XORs the byte at off of the file path with mask (non-zero: the byte changes) in place, for
// a damage that must stay close to the original (mask 1 turns a digit into its neighbour).
func XORByte(t testing.TB, path string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// LoopPath returns a path in dir that is a symlink to itself: every stat or open of it fails with
// ELOOP. It stands for a share's EIO or ESTALE, which a test run as root cannot provoke with modes.
func LoopPath(t testing.TB, dir string) string {
	t.Helper()
	loop := filepath.Join(dir, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	return loop
}
