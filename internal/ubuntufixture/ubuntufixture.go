// Package ubuntufixture gives tests Ubuntu-layout Azure Disk Encryption (ADE) OS disks built by
// testdata/ubuntu/mkubuntu.sh with the real tools (sgdisk, mkfs.ext4/mkfs.ext2, mkfs.vfat/mtools,
// cryptsetup, Debian's initramfs-tools mkinitramfs with the cryptsetup-initramfs hooks), and boots them in
// qemu through their own initramfs-tools initrd.
//
// The 20.04/22.04 disk ("u2204") is what ADE's stop-and-copy flow leaves on an Ubuntu cloud image: p14
// BIOS boot, p15 ESP, p1 the LUKS2 ciphertext of the ext4 root under a detached header (data at offset 0),
// p2 a 256 MiB ext2 /boot at the end of the disk holding luks/osluksheader, the kernel, an initrd carrying
// stand-ins for ADE's crypt-ade-hook and crypt-ade-boot (testdata/ubuntu/ade2004/, written from ADE's
// documented behaviour) and a grub.cfg with root=/dev/mapper/osencrypt. "u2204k" is the same with
// 4096-byte LUKS sectors. The 23.10/24.04 online disk ("u2404") keeps the 24.04 cloud image's own ext4
// /boot (partition 16) and has the root on p1 encrypted in place under a detached header on it, with
// stand-ins for ADE's 91adeOnlineUbu files (testdata/ubuntu/ade2404/).
//
//	func TestUbuntu(t *testing.T) {
//		set := ubuntufixture.Load(t)
//		d, _ := set.Disk("u2204")
//		// convert set.Path(d.Disk) with set.Path(set.Key), compare p1 with set.Path(d.RootImage)
//		res := ubuntufixture.Boot(t, set.Path(d.Disk), false, qemuboot.Options{})
//	}
//
// The root filesystem is a busybox userland laid out like Ubuntu (merged /usr; Ubuntu's and ADE's /etc
// files); its /sbin/init prints qemuboot's marker lines. The kernel is Debian 12's cloud kernel.
package ubuntufixture

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"testing"

	"github.com/luksconv/luksconv/internal/scriptcache"
)

// EnvDir names the environment variable that overrides the cache directory of the disk set.
const EnvDir = "LUKSCONV_UBUNTUFIXTURE"

// buildTimeout bounds one run of mkubuntu.sh (about 40 s on two cores, plus a 30 MB download once).
const buildTimeout = 10 * time.Minute

// The disks of the set (Disk.Name).
const (
	// DiskU2204 is the 20.04/22.04 flow: LUKS2 (argon2id, 512-bit key), ADE's crypt-ade-hook and
	// init-premount/crypt-ade-boot (stand-ins), crypttab by PARTUUID with the BEK file as key,
	// root=/dev/mapper/osencrypt in grub.cfg and /etc/default/grub, zstd initrd.
	DiskU2204 = "u2204"
	// DiskU2204K is DiskU2204 with 4096-byte LUKS2 sectors (LUKS.SectorSize 4096). Its p2 starts 7 sectors
	// earlier than u2204's (256 MiB + 3.5 KiB) so that p1 is a whole number of 4 KiB sectors.
	DiskU2204K = "u2204k"
	// DiskU2004 is the same flow as Ubuntu 20.04 leaves it: LUKS2 with argon2i (cryptsetup 2.2's default)
	// and an lz4 initrd in the legacy frame format (initramfs-tools' `lz4 -l`).
	DiskU2004 = "u2004"
	// DiskU1804 is the 16.04/18.04 flow: LUKS1 (pbkdf2, 256-bit key), keyscript /usr/sbin/azure_crypt_key.sh,
	// hooks/luksheader and a `patch -b` of hooks/cryptroot (cryptroot.orig kept), crypttab
	// `osencrypt /dev/sda1 none ...,keyscript=...`, root=UUID=<root fs> in grub.cfg, gzip initrd.
	DiskU1804 = "u1804"
	// DiskU2404 is the 23.10/24.04 online flow on a 24.04 cloud image: p14 BIOS boot, p15 ESP, p16 the
	// image's own ext4 /boot (label BOOT, XBOOTLDR type), p1 the ext4 root filling the rest of the disk,
	// encrypted in place under a detached LUKS2 header /boot/luks/osluksheader (argon2id, 512-byte
	// sectors, data at 0, no partition or filesystem resized); ADE's 91adeOnlineUbu crypt-ade-hook and
	// crypt-ade-boot (stand-ins: /boot typed auto in the initrd's fstab), crypttab and /etc/default/grub
	// as DiskU2204, grub.cfg `root=UUID=<root fs> ro root=/dev/mapper/osencrypt ...`, zstd initrd.
	DiskU2404 = "u2404"
)

// Disks lists every disk of the set, in manifest order.
var Disks = []string{DiskU2204, DiskU2004, DiskU1804, DiskU2204K, DiskU2404}

// ADEMarkers are strings that only ADE's Ubuntu files hold (its mapper name, keyscript and boot
// scripts): no file of a converted disk, nor of its initrd, may hold one.
var ADEMarkers = []string{"osencrypt", "azure_crypt_key", "crypt-ade"}

// Buses (Disk.Bus).
const (
	BusVirtio = "virtio"
	BusSCSI   = "scsi"
)

// Partition roles (Partition.Role).
const (
	RoleBIOSBoot = "bios_boot"
	RoleESP      = "esp"
	RoleLUKS     = "luks"
	RoleBoot     = "boot"
)

// Manifest is OUTDIR/manifest.json as written by testdata/ubuntu/mkubuntu.sh. Fields documented as host
// files name files of the set: relative in manifest.json, absolute through Path. Byte offsets and sizes
// are in bytes.
type Manifest struct {
	// Version is the hex SHA-256 of mkubuntu.sh followed by the files of testdata/ubuntu/ade1804, ade2004
	// and ade2404 (the ADE stand-ins), each directory in name order, then testdata/lib/debkernel.sh.
	Version       string `json:"version"`
	GeneratedBy   string `json:"generated_by"`
	KernelPackage string `json:"kernel_package"` // the Debian .deb the kernel came from
	KernelVersion string `json:"kernel_version"`
	Vmlinuz       string `json:"vmlinuz"` // host file: a copy of the kernel on every disk's /boot
	VmlinuzSHA256 string `json:"vmlinuz_sha256"`
	// BEK is the BEK disk (host file): GPT, partition BEKPartition is vfat labelled BEKLabel holding
	// KeyName, whose bytes are Key (host file: 172 base64 characters, no newline).
	BEK          string `json:"bek"`
	BEKPartition int    `json:"bek_partition"`
	BEKLabel     string `json:"bek_label"`
	Key          string `json:"key"`
	KeyName      string `json:"key_name"`
	KeyPath      string `json:"key_path"` // where the guest reads it: /mnt/azure_bek_disk/LinuxPassPhraseFileName
	// Marker starts the line the root filesystem's /sbin/init prints (qemuboot.DefaultMarker).
	Marker string `json:"marker"`
	Disks  []Disk `json:"disks"`

	Dir string `json:"-"` // the set directory (absolute)
}

// Disk is one Ubuntu ADE OS disk of the set.
type Disk struct {
	Name      string `json:"name"`       // DiskU2204, DiskU2204K, DiskU2004, DiskU1804, DiskU2404
	Flow      string `json:"flow"`       // "ubuntu-20.04/22.04", "ubuntu-16.04/18.04", "ubuntu-23.10/24.04"
	OSRelease string `json:"os_release"` // VERSION_ID in the root's /etc/os-release: "22.04", "20.04", "18.04", "24.04"
	Disk      string `json:"disk"`       // host file: the encrypted disk (raw)
	// PlainDisk (host file) is Disk before encryption: what a byte-level decryption of the LUKS
	// partition gives (ADE's files, the initrd and grub.cfg untouched).
	PlainDisk string `json:"plain_disk"`
	// RootImage (host file) is the root filesystem image: the first RootFS.Size bytes of the LUKS
	// partition's plaintext (the rest of the partition is zeros: the root was shrunk by 256 MiB on the
	// split disks; on u2404 it fills p1 but for the last part of a 4 KiB block).
	RootImage string `json:"root_image"`
	Header    string `json:"header"` // host file: the detached header (= /boot/luks/osluksheader)
	Initrd    string `json:"initrd"` // host file: a copy of /boot's initrd
	// InitrdSHA256 is the initrd's hash; InitrdCompression its format ("zstd", "lz4" (legacy frames), "gzip").
	InitrdSHA256      string      `json:"initrd_sha256"`
	InitrdCompression string      `json:"initrd_compression"`
	Size              int64       `json:"size"`
	DiskGUID          string      `json:"disk_guid"`
	Partitions        []Partition `json:"partitions"`
	LUKSPartition     int         `json:"luks_partition"`
	BootPartition     int         `json:"boot_partition"`
	ESPPartition      int         `json:"esp_partition"`
	LUKS              LUKS        `json:"luks"`
	RootFS            RootFS      `json:"root_fs"`
	Mapper            string      `json:"mapper"` // "osencrypt"
	// CrypttabSource is the source device of ADE's crypttab line: /dev/disk/by-partuuid/<p1> (all but u1804) or
	// /dev/sda1 (u1804, ADE's fallback when waagent's /dev/disk/azure links are missing).
	CrypttabSource string `json:"crypttab_source"`
	// Bus is how the disk must be attached to boot (BusVirtio, BusSCSI): u1804's keyscript looks for the
	// BEK volume on sd* disks, as Azure attaches them.
	Bus string `json:"bus"`
	// Cmdline is the kernel command line of grub.cfg's default entry (after the kernel path), its fields
	// joined by one space as ParseGrubCfg gives them (u2404's grub.cfg has two spaces where grub-mkconfig
	// joins GRUB_CMDLINE_LINUX and GRUB_CMDLINE_LINUX_DEFAULT).
	Cmdline        string `json:"cmdline"`
	KernelPath     string `json:"kernel_path"`       // in /boot: "/vmlinuz-KVER"
	InitrdPath     string `json:"initrd_path"`       // in /boot: "/initrd.img-KVER"
	GrubCfgPath    string `json:"grub_cfg_path"`     // in /boot: "/grub/grub.cfg"
	ESPGrubCfgPath string `json:"esp_grub_cfg_path"` // on the ESP: "/EFI/ubuntu/grub.cfg"
	// InitrdFiles are paths (no leading slash) the initrd holds, as lsinitramfs lists them.
	InitrdFiles []string `json:"initrd_files"`
	// RootFiles, BootFiles and ESPFiles map a path in the root filesystem, /boot and the ESP to its
	// exact content.
	RootFiles map[string]string `json:"root_files"`
	BootFiles map[string]string `json:"boot_files"`
	ESPFiles  map[string]string `json:"esp_files"`
}

// Partition is a GPT entry of a Disk.
type Partition struct {
	Number  int    `json:"number"`
	Role    string `json:"role"` // RoleBIOSBoot, RoleESP, RoleLUKS, RoleBoot
	Start   int64  `json:"start"`
	Size    int64  `json:"size"`
	Type    string `json:"type"` // partition type GUID (upper case)
	GUID    string `json:"guid"` // unique partition GUID (lower case)
	FS      string `json:"fs,omitempty"`
	FSLabel string `json:"fs_label,omitempty"`
	FSID    string `json:"fs_id,omitempty"`   // vfat volume ID (hex)
	FSUUID  string `json:"fs_uuid,omitempty"` // ext2/ext4 UUID
}

// LUKS describes the detached header.
type LUKS struct {
	Version    int    `json:"version"`
	UUID       string `json:"uuid"`
	Cipher     string `json:"cipher"`
	KeyBits    int    `json:"key_bits"`
	SectorSize int    `json:"sector_size"` // 512; 4096 on u2204k
	DataOffset int64  `json:"data_offset"`
	PBKDF      string `json:"pbkdf"`
	HeaderPath string `json:"header_path"` // in /boot: "/luks/osluksheader"
	HeaderSize int64  `json:"header_size"` // the file's size (ADE dd's 32 MiB of zeros first)
}

// RootFS describes the root filesystem inside the LUKS volume.
type RootFS struct {
	Type  string `json:"type"`
	UUID  string `json:"uuid"`
	Label string `json:"label"`
	Size  int64  `json:"size"`
}

// Path returns the absolute path of a host file named in the manifest.
func (m *Manifest) Path(rel string) string {
	if rel == "" || filepath.IsAbs(rel) {
		return rel
	}
	return filepath.Join(m.Dir, rel)
}

// Disk returns the disk called name.
func (m *Manifest) Disk(name string) (*Disk, bool) {
	for i := range m.Disks {
		if m.Disks[i].Name == name {
			return &m.Disks[i], true
		}
	}
	return nil, false
}

// Part returns partition number n.
func (d *Disk) Part(n int) (Partition, bool) {
	for _, p := range d.Partitions {
		if p.Number == n {
			return p, true
		}
	}
	return Partition{}, false
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	m, dir, err := scriptcache.ReadManifest[Manifest](dir)
	if err != nil {
		return nil, fmt.Errorf("ubuntufixture: %w", err)
	}
	m.Dir = dir
	if len(m.Disks) == 0 {
		return nil, fmt.Errorf("ubuntufixture: %s/manifest.json lists no disks", dir)
	}
	return m, nil
}

// Script returns the path of mkubuntu.sh and the version of the set it builds: the hex SHA-256 of the
// script followed by the files of testdata/ubuntu/ade1804, then ade2004, then ade2404, each in name order,
// then testdata/lib/debkernel.sh (what the script writes as "version").
func Script() (path, version string, err error) {
	root := scriptcache.RepoRoot()
	if root == "" {
		return "", "", errors.New("ubuntufixture: no go.mod above the working directory")
	}
	dir := filepath.Join(root, "testdata", "ubuntu")
	path = filepath.Join(dir, "mkubuntu.sh")
	files := []string{path}
	for _, sub := range []string{"ade1804", "ade2004", "ade2404"} {
		ade, err := filepath.Glob(filepath.Join(dir, sub, "*"))
		if err != nil {
			return "", "", err
		}
		sort.Strings(ade)
		files = append(files, ade...)
	}
	files = append(files, filepath.Join(root, "testdata", "lib", "debkernel.sh"))
	version, err = scriptcache.Version(files...)
	return path, version, err
}

// Load returns the disk set, building it first with testdata/ubuntu/mkubuntu.sh if the cache holds none
// for the current script. The set lives in $LUKSCONV_UBUNTUFIXTURE if set, otherwise in
// <repo>/testdata/.cache/ubuntu/<first 16 hex digits of the version>/; downloaded .debs are kept in
// <repo>/testdata/.cache/ubuntu/debs (taken from the boot set's <repo>/testdata/.cache/boot/debs when that
// has the same version). The build runs under an exclusive lock (DIR.lock); its output goes to DIR.log.
//
// Load skips the test, loudly, only when the script reports a missing tool, privilege or package
// (exit status 3: e.g. mkinitramfs, cryptsetup-initramfs, root, loop devices). Any other failure fails
// the test with the tail of the log.
func Load(t testing.TB) *Manifest {
	t.Helper()
	script, version, err := Script()
	if err != nil {
		t.Fatalf("ubuntufixture: %v", err)
	}
	cache := filepath.Join(filepath.Dir(filepath.Dir(script)), ".cache")
	dir := os.Getenv(EnvDir)
	defaultDir := dir == ""
	debs := dir + ".debs"
	if defaultDir {
		dir = filepath.Join(cache, "ubuntu", version[:16])
		debs = filepath.Join(cache, "ubuntu", "debs")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		t.Fatalf("ubuntufixture: %v", err)
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		t.Fatalf("ubuntufixture: %v", err)
	}
	read := func(dir string) (*Manifest, error) {
		m, err := ReadManifest(dir)
		if err == nil && m.Version != version {
			err = fmt.Errorf("%s/manifest.json has version %q, want %q", dir, m.Version, version)
		}
		return m, err
	}
	return scriptcache.Load(t, scriptcache.Spec{Name: "ubuntufixture", Unavailable: "UBUNTU FIXTURES UNAVAILABLE",
		Script: script, Dir: dir, Timeout: buildTimeout,
		Env: []string{"DEB_CACHE=" + debs, "DEB_SEED=" + filepath.Join(cache, "boot", "debs")}}, defaultDir, read)
}

// ErrNoTool reports a tool the boot helpers need (debugfs, sgdisk).
type ErrNoTool struct{ Tool, Package string }

// Error names the missing tool and the Debian package that has it.
func (e *ErrNoTool) Error() string {
	return fmt.Sprintf("%s not installed (Debian package %s)", e.Tool, e.Package)
}

func lookTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &ErrNoTool{name, pkg}
}

// MenuEntry is a grub.cfg menuentry's boot lines.
type MenuEntry struct {
	Title  string
	Linux  string // kernel path, relative to the filesystem grub's root is set to (here /boot)
	Args   string // the rest of the linux line
	Initrd []string
}

// ParseGrubCfg returns the top-level menuentries of a grub.cfg and those inside submenus, in file order.
// It understands what grub-mkconfig writes (one command a line, quoted titles); the first entry is the
// default one when `set default="0"`.
func ParseGrubCfg(cfg string) []MenuEntry {
	var entries []MenuEntry
	var cur *MenuEntry
	depth, entryDepth := 0, -1
	sc := bufio.NewScanner(strings.NewReader(cfg))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case f[0] == "menuentry":
			title := ""
			if i := strings.IndexAny(line, `'"`); i >= 0 {
				if j := strings.IndexByte(line[i+1:], line[i]); j >= 0 {
					title = line[i+1 : i+1+j]
				}
			}
			entries = append(entries, MenuEntry{Title: title})
			cur, entryDepth = &entries[len(entries)-1], depth
		case cur != nil && f[0] == "linux" || cur != nil && f[0] == "linuxefi":
			if len(f) > 1 {
				cur.Linux, cur.Args = f[1], strings.Join(f[2:], " ")
			}
		case cur != nil && (f[0] == "initrd" || f[0] == "initrdefi"):
			cur.Initrd = append(cur.Initrd, f[1:]...)
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if cur != nil && depth <= entryDepth {
			cur, entryDepth = nil, -1
		}
	}
	return entries
}
