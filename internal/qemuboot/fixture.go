package qemuboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/scriptcache"
)

// EnvDir names the environment variable that overrides the cache directory of the boot disk set.
const EnvDir = "LUKSCONV_BOOTDISK"

// buildTimeout bounds one run of mkbootdisk.sh (about 30 s plus a 30 MB download).
const buildTimeout = 10 * time.Minute

// Manifest is OUTDIR/manifest.json as written by testdata/boot/mkbootdisk.sh. Paths of host files are
// relative to the set directory in the file and absolute after ReadManifest; paths ending in "Path" or
// named BLSEntry are inside the /boot filesystem.
type Manifest struct {
	// Version is the hex SHA-256 of mkbootdisk.sh followed by the 91adeOnline files in name order and
	// testdata/lib/debkernel.sh.
	Version     string `json:"version"`
	GeneratedBy string `json:"generated_by"`
	// Disk is the ADE-style encrypted OS disk: p1 ESP, p2 /boot, p3 BIOS boot, p4 LUKS2 (detached
	// header) over the LVM PV of rootvg, root filesystem on rootvg/rootlv.
	Disk string `json:"disk"`
	// PlainDisk is Disk before encryption: what a byte-level decryption of p4 gives (boot files and
	// ADE's kernel arguments untouched).
	PlainDisk string `json:"plain_disk"`
	BEK       string `json:"bek"`    // BEK disk: GPT, p1 vfat "BEK VOLUME" with LinuxPassPhraseFileName
	Key       string `json:"key"`    // the passphrase file (172 bytes, no newline)
	Header    string `json:"header"` // the detached LUKS2 header (= /boot/luks/osluksheader)
	Vmlinuz   string `json:"vmlinuz"`
	Initramfs string `json:"initramfs"`

	KernelPackage string `json:"kernel_package"` // the Debian .deb the kernel came from
	KernelVersion string `json:"kernel_version"`
	BootPartition int    `json:"boot_partition"`
	LUKSPartition int    `json:"luks_partition"`
	ESPPartition  int    `json:"esp_partition"`
	BEKPartition  int    `json:"bek_partition"`
	PartUUID      string `json:"part_uuid"` // GPT unique GUID of the LUKS partition
	BootUUID      string `json:"boot_uuid"` // xfs UUID of /boot
	RootUUID      string `json:"root_uuid"` // xfs UUID of the root filesystem
	RootLV        string `json:"root_lv"`   // "rootvg/rootlv"

	KernelPath    string `json:"kernel_path"`
	InitramfsPath string `json:"initramfs_path"`
	HeaderPath    string `json:"header_path"`
	BLSEntry      string `json:"bls_entry"`
	GrubenvPath   string `json:"grubenv_path"`
	// Cmdline is grubenv's kernelopts, which the BLS entry expands: root=/dev/mapper/rootvg-rootlv ro
	// rd.lvm.lv=rootvg/rootlv rd.luks.ade.partuuid=... rd.luks.ade.bootuuid=... rd.debug console=ttyS0.
	Cmdline         string `json:"cmdline"`
	Marker          string `json:"marker"`
	VmlinuzSHA256   string `json:"vmlinuz_sha256"`
	InitramfsSHA256 string `json:"initramfs_sha256"`

	Dir string `json:"-"` // the set directory (absolute)
}

// ReadManifest reads dir/manifest.json and makes its host paths absolute.
func ReadManifest(dir string) (*Manifest, error) {
	m, dir, err := scriptcache.ReadManifest[Manifest](dir)
	if err != nil {
		return nil, fmt.Errorf("qemuboot: %w", err)
	}
	m.Dir = dir
	for _, p := range []*string{&m.Disk, &m.PlainDisk, &m.BEK, &m.Key, &m.Header, &m.Vmlinuz, &m.Initramfs} {
		if *p != "" {
			*p = filepath.Join(dir, *p)
		}
	}
	return m, nil
}

// Script returns the path of mkbootdisk.sh and the version of the set it builds: the hex SHA-256 of
// the script followed by the 91adeOnline files in name order and testdata/lib/debkernel.sh (what the
// script writes as "version").
func Script() (path, version string, err error) {
	root := scriptcache.RepoRoot()
	if root == "" {
		return "", "", errors.New("qemuboot: no go.mod above the working directory")
	}
	dir := filepath.Join(root, "testdata", "boot")
	path = filepath.Join(dir, "mkbootdisk.sh")
	mods, err := filepath.Glob(filepath.Join(dir, "91adeOnline", "*.sh"))
	if err != nil {
		return "", "", err
	}
	sort.Strings(mods)
	files := append(append([]string{path}, mods...), filepath.Join(root, "testdata", "lib", "debkernel.sh"))
	version, err = scriptcache.Version(files...)
	return path, version, err
}

// Fixture returns the bootable disk set, building it first with testdata/boot/mkbootdisk.sh if the
// cache holds none for the current script. The set lives in $LUKSCONV_BOOTDISK if set, otherwise in
// <repo>/testdata/.cache/boot/<first 16 hex digits of the version>/; downloaded .debs are kept in
// <repo>/testdata/.cache/boot/debs (or $LUKSCONV_BOOTDISK.debs). The build runs under an exclusive lock
// (DIR.lock) so parallel test binaries wait for one build; its output goes to DIR.log.
//
// Fixture skips the test, loudly, only when the script reports a missing tool, privilege or package
// (exit status 3). Any other failure fails the test with the tail of the log.
func Fixture(t testing.TB) *Manifest {
	t.Helper()
	script, version, err := Script()
	if err != nil {
		t.Fatalf("qemuboot: %v", err)
	}
	dir := os.Getenv(EnvDir)
	defaultDir := dir == ""
	debs := dir + ".debs"
	if defaultDir {
		base := filepath.Join(filepath.Dir(filepath.Dir(script)), ".cache", "boot")
		dir = filepath.Join(base, version[:16])
		debs = filepath.Join(base, "debs")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		t.Fatalf("qemuboot: %v", err)
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		t.Fatalf("qemuboot: %v", err)
	}
	read := func(dir string) (*Manifest, error) {
		m, err := ReadManifest(dir)
		if err == nil && m.Version != version {
			err = fmt.Errorf("%s/manifest.json has version %q, want %q", dir, m.Version, version)
		}
		return m, err
	}
	return scriptcache.Load(t, scriptcache.Spec{Name: "qemuboot", Unavailable: "BOOT TESTS UNAVAILABLE",
		Script: script, Dir: dir, Env: []string{"DEB_CACHE=" + debs}, Timeout: buildTimeout}, defaultDir, read)
}

// NeedQEMU skips the test, loudly, when qemu-system-x86_64 is not installed.
func NeedQEMU(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("BOOT TESTS UNAVAILABLE: qemu-system-x86_64 not installed (Debian package qemu-system-x86; scripts/install-deps.sh)")
	}
}

// BootDisk boots the raw disk image disk the way grub would (ReadBootFiles: the kernel, initramfs and
// command line of its /boot), with the boot set's BEK disk attached as the second drive if withBEK,
// and returns what the console showed. The disk is attached with snapshot=on, so it is never changed.
// "panic=-1" is appended so a kernel panic ends the boot at once. The boot is bounded by
// DefaultTimeout; a boot that does not reach the marker is reported in the Result, not as a failure:
// the caller asserts. It skips when qemu or the boot set cannot be had.
func BootDisk(t testing.TB, disk string, withBEK bool) *Result {
	t.Helper()
	return BootDiskWith(t, disk, withBEK, Options{})
}

// BootDiskWith is BootDisk with options: o.Timeout, o.StopOn, o.Marker, o.Grace, o.MemoryM, o.CPUs and
// o.Accel are used as given; o.Append, if set, replaces the disk's command line; o.ExtraAppend is
// appended (after "panic=-1"); o.Drives are attached after the disk (and the BEK disk). o.LogFile
// defaults to a serial.log in a test temporary directory.
func BootDiskWith(t testing.TB, disk string, withBEK bool, o Options) *Result {
	t.Helper()
	NeedQEMU(t)
	set := Fixture(t)
	dir := t.TempDir()
	bf, err := ReadBootFiles(disk, dir)
	if err != nil {
		var nt *ErrNoTool
		if errors.As(err, &nt) {
			t.Skipf("BOOT TESTS UNAVAILABLE: %v", err)
		}
		t.Fatalf("qemuboot: %v", err)
	}
	o.Kernel, o.Initrd = bf.Kernel, bf.Initrd
	if o.Append == "" {
		o.Append = bf.Cmdline
	}
	o.ExtraAppend = strings.TrimSpace("panic=-1 " + o.ExtraAppend)
	drives := []Drive{{Path: disk}}
	if withBEK {
		drives = append(drives, Drive{Path: set.BEK, ReadOnly: true})
	}
	o.Drives = append(drives, o.Drives...)
	if o.LogFile == "" {
		o.LogFile = filepath.Join(dir, "serial.log")
	}
	t.Logf("qemuboot: booting %s (BEK attached: %v) from %s: %s %s", disk, withBEK, bf.Entry, o.Append, o.ExtraAppend)
	res, err := Boot(context.Background(), o)
	if err != nil {
		if errors.Is(err, ErrNoQEMU) {
			t.Skipf("BOOT TESTS UNAVAILABLE: %v", err)
		}
		t.Fatalf("qemuboot: %v", err)
	}
	t.Logf("qemuboot: %s: marker %v after %s (timed out: %v, stopped: %v, root=%q)", filepath.Base(disk),
		res.MarkerFound, res.Elapsed.Round(100*time.Millisecond), res.TimedOut, res.Stopped, res.Root)
	return res
}
