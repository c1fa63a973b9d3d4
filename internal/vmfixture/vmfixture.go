// Package vmfixture gives tests "one ADE VM": the disks of an Azure Disk Encryption (ADE) RHEL 8 VM built
// by testdata/vm/mkvm.sh with the real tools (cryptsetup, sgdisk, mkfs.ext4/debugfs/resize2fs, mkfs.xfs,
// mkfs.vfat/mtools, lvm2, jq): the ADE OS disk, whose root filesystem carries everything ADE writes for
// the data volumes (crypttab, fstab and its backups, waagent.conf, azure_crypt_mount, the dual-pass
// header, an LVM devices file), one data disk per ADE data-disk layout, and the encrypted resource disk.
// Every encrypted device comes with its key file, its volume key and its plaintext.
//
//	func TestWholeVM(t *testing.T) {
//		vm := vmfixture.Load(t)
//		lun1, _ := vm.Disk("lun1")
//		// convert vm.Path(lun1.File) with vm.Path(lun1.KeyFile), compare with vm.Path(lun1.Plaintext)
//	}
//
// testdata/vm/README.md describes the layouts and what is and is not exactly as ADE leaves it.
package vmfixture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/scriptcache"
)

// EnvDir names the environment variable that overrides the cache directory of the VM set.
const EnvDir = "LUKSCONV_VMFIXTURE"

// buildTimeout bounds one run of mkvm.sh (about 25 s on two cores).
const buildTimeout = 10 * time.Minute

// Layouts of a DataDisk (DataDisk.Layout).
const (
	// LayoutFormatAll is EncryptFormatAll: luksFormat of the whole disk (attached LUKS2 header, data at
	// 16 MiB), then mkfs of the disk's previous filesystem type on the mapper.
	LayoutFormatAll = "encrypt-format-all"
	// LayoutOnline is the RHEL >= 8.1 online in-place encryption of an ext4 partition: shrunk by 16 MiB,
	// `cryptsetup reencrypt --encrypt --reduce-device-size 32768S`, data at 8 MiB. The data segment runs
	// to the partition end, so its last 8 MiB decrypt to noise (they are in Plaintext).
	LayoutOnline = "inplace-online"
	// LayoutStopAndCopy is the older in-place "stop and copy": ext4 shrunk by the header size, LUKS1
	// (2 MiB payload offset), the filesystem copied into the mapper. Recorded in the legacy
	// azure_crypt_mount file, not in crypttab.
	LayoutStopAndCopy = "inplace-stop-and-copy"
	// LayoutLVMPV is EncryptFormatAll of a whole disk whose mapper later became an LVM PV (Microsoft's
	// LVM-on-crypt how-to); Manifest.DataVG says which LV extents it holds.
	LayoutLVMPV = "lvm-pv-format-all"
	// LayoutDualPass is dual-pass ADE (0.1) in place: a detached 32 MiB header on the OS disk
	// (/var/lib/azure_disk_encryption_config/azureluksheader<mapper>), ciphertext from byte 0 of the disk.
	LayoutDualPass = "dual-pass"
	// LayoutCryptOnLVM is crypt-on-LVM: the disk is a plain LVM PV (no partition table), and ADE
	// encrypted one of its logical volumes like a disk (EncryptFormatAll: attached LUKS2 header, data
	// at 16 MiB of the LV). DataDisk.LV names it, DataDisk.DeviceFile holds its content, and
	// Manifest.CryptVG is the volume group. crypttab names it /dev/mapper/<vg>-<lv>, keyed by the
	// default BEK file (no LUN in the device name).
	LayoutCryptOnLVM = "crypt-on-lvm"
	// LayoutResource is the resource (temporary) disk under EncryptFormatAll: partition 1, attached LUKS2,
	// mapper resourceencrypt, keyed with the OS volume's BEK file.
	LayoutResource = "resource-format-all"
)

// Manifest is OUTDIR/manifest.json as written by testdata/vm/mkvm.sh. Fields documented as host files
// name files of the set: relative in manifest.json, absolute through Path. Byte offsets and sizes are
// in bytes.
type Manifest struct {
	// Version is the hex SHA-256 of the mkvm.sh that built the set.
	Version     string `json:"version"`
	GeneratedBy string `json:"generated_by"`
	OS          OSDisk `json:"os"`
	// Disks are the data disks lun0 to lun7, then the resource disk (LUN -1).
	Disks []DataDisk `json:"disks"`
	// DataVG is the volume group on the plaintexts of lun4 and lun5; its LV datalv spans both.
	DataVG VG `json:"datavg"`
	// DataLV is datavg/datalv's filesystem (XFS); SHA256 is the hash of the whole LV.
	DataLV Filesystem `json:"datalv"`
	// CryptVG is the plain volume group on lun7 (one PV, the whole disk): its LV crypt-lv (two
	// segments) is the LUKS device of the crypt-on-LVM volume, plainlv an unencrypted ext4 LV.
	CryptVG VG `json:"cryptvg"`
	// PlainLV is lun7vg/plainlv's filesystem (ext4); SHA256 is the hash of the whole LV.
	PlainLV Filesystem `json:"plainlv"`
	// BEKFiles maps the file names on the VM's BEK volume (LinuxPassPhraseFileName,
	// LinuxPassPhraseFileName_1_<lun>) to the host key files holding them.
	BEKFiles map[string]string `json:"bek_files"`
	// DualPassHeader is the path, in the OS root filesystem, of lun6's detached header.
	DualPassHeader string `json:"dual_pass_header"`

	// Dir is the absolute directory of the set (set by ReadManifest).
	Dir string `json:"-"`
}

// OSDisk is the ADE RHEL 8.10 LVM OS disk: GPT p1 ESP (FAT16), p2 /boot (XFS, holding
// luks/osluksheader and grubenv with ADE's kernel arguments), p3 BIOS boot, p4 LUKS2 ciphertext (detached
// header, data at 0) of the PV of rootvg, whose rootlv is the root filesystem (XFS).
type OSDisk struct {
	File      string `json:"file"`      // host file: the encrypted disk
	Expected  string `json:"expected"`  // host file: File with p4 replaced by Plaintext
	Plaintext string `json:"plaintext"` // host file: the plaintext of p4 (the PV)
	// PlaintextSHA256 is the hex SHA-256 of Plaintext.
	PlaintextSHA256 string `json:"plaintext_sha256"`
	KeyFile         string `json:"key_file"` // host file: the BEK passphrase (172 bytes, no newline)
	// BEKName is the key file's name on the BEK volume (LinuxPassPhraseFileName).
	BEKName string `json:"bek_name"`
	Mapper  string `json:"mapper"` // "osencrypt"
	// DiskSize and DiskGUID describe File; Partitions is its GPT as sfdisk reads it.
	DiskSize   int64       `json:"disk_size"`
	DiskGUID   string      `json:"disk_guid"`
	Partitions []Partition `json:"partitions"`
	// GPT numbers of the partitions.
	ESPPartition      int `json:"esp_partition"`
	BootPartition     int `json:"boot_partition"`
	BIOSBootPartition int `json:"bios_boot_partition"`
	LUKSPartition     int `json:"luks_partition"`
	// DeviceOffset and DeviceSize place the encrypted device (p4) in File.
	DeviceOffset int64 `json:"device_offset"`
	DeviceSize   int64 `json:"device_size"`
	// PartUUID is p4's GPT GUID (rd.luks.ade.partuuid); BootUUID, ESPUUID and RootUUID are the
	// filesystem UUIDs of /boot, the ESP ("XXXX-XXXX") and rootvg/rootlv.
	PartUUID      string `json:"part_uuid"`
	BootUUID      string `json:"boot_uuid"`
	ESPUUID       string `json:"esp_uuid"`
	RootUUID      string `json:"root_uuid"`
	RootLV        string `json:"root_lv"` // "rootvg/rootlv"
	KernelVersion string `json:"kernel_version"`
	// Cmdline is grubenv's kernelopts (also in the ESP's grubenv), ADE's arguments included.
	Cmdline string `json:"cmdline"`
	LUKS    LUKS   `json:"luks"`
	LVM     VG     `json:"lvm"` // rootvg
	// Filesystems are "esp" (Partition 1), "boot" (Partition 2) and "root" (LV rootvg/rootlv).
	Filesystems []Filesystem `json:"filesystems"`
	// GuestFiles maps paths in the root filesystem to their exact content: /etc/crypttab, /etc/fstab,
	// /etc/fstab.azure.backup, /etc/fstab.backup.<uuid> (one per ADE fstab edit), /etc/fstab.bak,
	// /etc/waagent.conf and its .rdbak1/.rdbak2, /etc/lvm/lvm.conf, /etc/lvm/devices/system.devices,
	// /etc/os-release, /etc/default/grub, /etc/dracut.conf.d/ade.conf and
	// /var/lib/azure_disk_encryption_config/azure_crypt_mount.
	GuestFiles map[string]string `json:"guest_files"`
}

// DataDisk is a data disk or the resource disk.
type DataDisk struct {
	Name   string `json:"name"`   // "lun0" ... "lun7", "resource"
	LUN    int    `json:"lun"`    // -1 for the resource disk
	Layout string `json:"layout"` // one of the Layout constants
	File   string `json:"file"`   // host file: the disk as Azure stores it
	// DiskSize and DiskGUID describe File (DiskGUID "" without a partition table).
	DiskSize int64  `json:"disk_size"`
	DiskGUID string `json:"disk_guid"`
	// PartitionTable is "none" (the whole disk is the LUKS device) or "gpt".
	PartitionTable string      `json:"partition_table"`
	Partitions     []Partition `json:"partitions"`
	// Partition is the GPT number of the encrypted partition, 0 for a whole disk.
	Partition int `json:"partition"`
	// DeviceOffset and DeviceSize place the LUKS device (the disk or the partition) in File, or in
	// DeviceFile when it is set.
	DeviceOffset int64 `json:"device_offset"`
	DeviceSize   int64 `json:"device_size"`
	// DeviceFile (host file) holds the LUKS device when it is a logical volume (LayoutCryptOnLVM): the
	// LV's content, assembled from its extents on File. "" otherwise.
	DeviceFile string `json:"device_file"`
	// LV is the logical volume ("vg/lv") that is the LUKS device (LayoutCryptOnLVM), "" otherwise.
	LV string `json:"lv"`
	// DevicePath is the guest's name of the device in crypttab (/dev/disk/azure/scsi1/lunN[-partM], or
	// /dev/mapper/<vg>-<lv> for an LV).
	DevicePath string `json:"device_path"`
	LUKS       LUKS   `json:"luks"`
	KeyFile    string `json:"key_file"` // host file: the passphrase (the resource disk's is the OS key)
	BEKName    string `json:"bek_name"` // the key file's name on the BEK volume
	Mapper     string `json:"mapper"`   // the dm name: a uuid4, or "resourceencrypt"
	// Plaintext (host file) is what decrypting the whole data segment gives: PlaintextSize bytes from
	// DeviceOffset+LUKS.DataOffset of File, hex SHA-256 PlaintextSHA256.
	Plaintext       string `json:"plaintext"`
	PlaintextSize   int64  `json:"plaintext_size"`
	PlaintextSHA256 string `json:"plaintext_sha256"`
	// Before (host file, "" when there is none) is the disk before ADE touched it, for the in-place
	// layouts: the filesystem at full size, without ADE's backup files.
	Before string `json:"before"`
	// Filesystem is the filesystem in Plaintext at Filesystem.Offset, nil for the LVM PVs.
	Filesystem *Filesystem `json:"filesystem"`
	// StaleUUID is the filesystem UUID that /etc/fstab.azure.backup still names after EncryptFormatAll
	// made a new filesystem ("" for the in-place layouts, whose UUID did not change).
	StaleUUID  string `json:"stale_uuid"`
	MountPoint string `json:"mount_point"` // "" for the PVs
	// The lines ADE wrote for this volume, without their newline ("" where there is none):
	// CrypttabLine in /etc/crypttab, FstabLine in /etc/fstab, FstabBackupLine in
	// /etc/fstab.azure.backup (the line before encryption), AzureCryptMountLine in
	// /var/lib/azure_disk_encryption_config/azure_crypt_mount.
	CrypttabLine        string `json:"crypttab_line"`
	FstabLine           string `json:"fstab_line"`
	FstabBackupLine     string `json:"fstab_backup_line"`
	AzureCryptMountLine string `json:"azure_crypt_mount_line"`
	// BackupMountInfo is the exact content of each file in the volume's
	// /.azure_ade_backup_mount_info/ (crypttab_line, fstab_line or azure_crypt_mount_line).
	BackupMountInfo map[string]string `json:"backup_mount_info"`
	MadeBy          string            `json:"made_by"` // the commands that made the disk
}

// LUKS describes a LUKS header and the data segment it maps.
type LUKS struct {
	Version     int    `json:"version"` // 1 or 2
	UUID        string `json:"uuid"`
	Cipher      string `json:"cipher"` // "aes-xts-plain64"
	KeySizeBits int    `json:"key_size_bits"`
	// SectorSize is the encryption sector size; the plain64 IV counts 512-byte units from the data
	// segment's start whatever it is.
	SectorSize int `json:"sector_size"`
	// DataOffset is where the data segment starts in the LUKS device (0 with a detached header).
	DataOffset int64  `json:"data_offset"`
	KDF        string `json:"kdf"`    // "argon2id" or "pbkdf2-sha256"
	Header     string `json:"header"` // "attached" or "detached"
	// HeaderPath is a detached header's path in the OS disk's filesystems ("/boot/luks/osluksheader",
	// "/var/lib/azure_disk_encryption_config/azureluksheader<mapper>"), HeaderFile its host copy.
	HeaderPath string `json:"header_path"`
	HeaderFile string `json:"header_file"`
	// VolumeKey is the hex volume key (fixed by the script so rebuilds give the same data ciphertext).
	VolumeKey string `json:"volume_key"`
}

// VG is an LVM volume group as vgcfgbackup read it back after vgcfgrestore.
type VG struct {
	VG         string `json:"vg"`
	VGUUID     string `json:"vg_uuid"`
	ExtentSize int64  `json:"extent_size"`
	PVs        []PV   `json:"pvs"`
	LVs        []LV   `json:"lvs"`
}

// PV is a physical volume of a VG. DevSize is the size LVM recorded (the mapper's size).
type PV struct {
	Name    string `json:"name"` // "pv0", "pv1": the name LV segments use
	UUID    string `json:"uuid"`
	Disk    string `json:"disk"`   // the disk whose plaintext it is: "os", "lun4", "lun5"; or "lun7" (plain)
	Device  string `json:"device"` // the guest's name: /dev/mapper/<mapper>; lun7's /dev/disk/azure/scsi1/lun7
	DevSize int64  `json:"dev_size"`
	PEStart int64  `json:"pe_start"`
	PECount int64  `json:"pe_count"`
}

// LV is a linear logical volume.
type LV struct {
	Name     string    `json:"name"`
	UUID     string    `json:"uuid"`
	Size     int64     `json:"size"`
	Segments []Segment `json:"segments"`
}

// Segment maps ExtentCount logical extents from StartExtent to physical extents from PE of PV.
type Segment struct {
	StartExtent int64  `json:"start_extent"`
	ExtentCount int64  `json:"extent_count"`
	PV          string `json:"pv"`
	PE          int64  `json:"pe"`
}

// Filesystem is a filesystem and the files put into it.
type Filesystem struct {
	Name      string `json:"name"`      // OS disk, datalv and plainlv only
	Type      string `json:"type"`      // "ext4", "xfs" or "vfat"
	UUID      string `json:"uuid"`      // or the vfat volume id "XXXX-XXXX"
	Label     string `json:"label"`     // "" everywhere
	Partition int    `json:"partition"` // OS disk: GPT number holding it (the PV's for root)
	LV        string `json:"lv"`        // "vg/lv" when in an LV
	// Offset is where the filesystem starts in its container (the plaintext, partition or LV).
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	Files  []File `json:"files"`
	SHA256 string `json:"sha256"` // datalv and plainlv only: hex SHA-256 of the whole LV
}

// File is a regular file or symlink in a filesystem. Path is absolute within the filesystem.
type File struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // "file" or "symlink"
	Size   int64  `json:"size"`
	Mode   string `json:"mode"` // octal permission bits, e.g. "644"
	SHA256 string `json:"sha256"`
	Target string `json:"target"` // symlink target
}

// Path returns the absolute path of a host file of the set ("" stays "").
func (m *Manifest) Path(rel string) string {
	if rel == "" {
		return ""
	}
	return filepath.Join(m.Dir, rel)
}

// Disk returns the data disk called name ("lun0" ... "lun7", "resource").
func (m *Manifest) Disk(name string) (*DataDisk, bool) {
	for i := range m.Disks {
		if m.Disks[i].Name == name {
			return &m.Disks[i], true
		}
	}
	return nil, false
}

// Filesystem returns the OS disk's filesystem called name ("esp", "boot", "root").
func (o *OSDisk) Filesystem(name string) (*Filesystem, bool) {
	for i := range o.Filesystems {
		if o.Filesystems[i].Name == name {
			return &o.Filesystems[i], true
		}
	}
	return nil, false
}

// Part returns GPT partition n of the OS disk.
func (o *OSDisk) Part(n int) (Partition, bool) { return part(o.Partitions, n) }

// Part returns GPT partition n of the disk.
func (d *DataDisk) Part(n int) (Partition, bool) { return part(d.Partitions, n) }

// PV returns the physical volume called name ("pv0", ...).
func (v *VG) PV(name string) (*PV, bool) {
	for i := range v.PVs {
		if v.PVs[i].Name == name {
			return &v.PVs[i], true
		}
	}
	return nil, false
}

// LV returns the logical volume called name.
func (v *VG) LV(name string) (*LV, bool) {
	for i := range v.LVs {
		if v.LVs[i].Name == name {
			return &v.LVs[i], true
		}
	}
	return nil, false
}

// Partition is one GPT entry as sfdisk reads it. Start and Size are in bytes; GUIDs are lower case.
type Partition struct {
	Number   int    `json:"number"`
	Start    int64  `json:"start"`
	Size     int64  `json:"size"`
	TypeGUID string `json:"type_guid"`
	GUID     string `json:"guid"`
	Name     string `json:"name"`
}

func part(ps []Partition, n int) (Partition, bool) {
	for _, p := range ps {
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
		return nil, fmt.Errorf("vmfixture: %w", err)
	}
	m.Dir = dir
	return m, nil
}

// Script returns the path of testdata/vm/mkvm.sh and the version of the set it builds: the hex SHA-256
// of the script (what it writes as "version").
func Script() (path, version string, err error) {
	root := scriptcache.RepoRoot()
	if root == "" {
		return "", "", errors.New("vmfixture: no go.mod above the working directory")
	}
	path = filepath.Join(root, "testdata", "vm", "mkvm.sh")
	version, err = scriptcache.Version(path)
	return path, version, err
}

// cacheDirRE matches the directories Load builds in testdata/.cache (vm-<16 hex digits>).
var cacheDirRE = regexp.MustCompile(`^vm-[0-9a-f]{16}$`)

// Load returns the VM set, building it first with testdata/vm/mkvm.sh if the cache holds none for the
// current script. The set lives in $LUKSCONV_VMFIXTURE if set, otherwise in
// <repo>/testdata/.cache/vm-<first 16 hex digits of the script's SHA-256>/. The build runs under an
// exclusive lock (DIR.lock) so parallel test binaries wait for one build; its output goes to DIR.log.
// After a build into the default place, sets of other script versions (vm-* beside it) are removed.
//
// Load skips the test, loudly ("VM FIXTURE UNAVAILABLE: ..."), only when the script reports a missing
// tool or privilege (exit status 3). Any other failure fails the test with the tail of the log.
func Load(t testing.TB) *Manifest {
	t.Helper()
	script, version, err := Script()
	if err != nil {
		t.Fatalf("vmfixture: %v", err)
	}
	dir := os.Getenv(EnvDir)
	defaultDir := dir == ""
	if defaultDir {
		dir = filepath.Join(filepath.Dir(filepath.Dir(script)), ".cache", "vm-"+version[:16])
	}
	if dir, err = filepath.Abs(dir); err != nil {
		t.Fatalf("vmfixture: %v", err)
	}
	read := func(dir string) (*Manifest, error) {
		m, err := ReadManifest(dir)
		if err == nil && m.Version != version {
			err = fmt.Errorf("%s/manifest.json has version %q, want %q", dir, m.Version, version)
		}
		return m, err
	}
	// scriptcache's own pruning keeps only 16-hex-digit names in the cache directory, which would delete
	// the other sets living in testdata/.cache; the vm-* sets are pruned here instead.
	m := scriptcache.Load(t, scriptcache.Spec{Name: "vmfixture", Unavailable: "VM FIXTURE UNAVAILABLE",
		Script: script, Dir: dir, Timeout: buildTimeout}, false, read)
	if defaultDir {
		pruneOnce(filepath.Dir(dir), filepath.Base(dir))
	}
	return m
}

var (
	pruneMu sync.Mutex
	pruned  = map[string]bool{}
)

// pruneOnce removes the vm-* sets of other script versions from cacheDir, once per test binary; sets
// being built (lock held) are left alone.
func pruneOnce(cacheDir, keep string) {
	pruneMu.Lock()
	defer pruneMu.Unlock()
	if pruned[cacheDir] {
		return
	}
	pruned[cacheDir] = true
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == keep || !cacheDirRE.MatchString(name) {
			continue
		}
		p := filepath.Join(cacheDir, name)
		unlock, ok := scriptcache.TryLock(p + ".lock")
		if !ok {
			continue
		}
		os.RemoveAll(p)
		os.RemoveAll(p + ".tmp")
		os.Remove(p + ".log")
		os.Remove(p + ".lock")
		unlock()
	}
}
