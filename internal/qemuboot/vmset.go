package qemuboot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/scriptcache"
)

// EnvVMDir names the environment variable that overrides the cache directory of the boot VM set.
const EnvVMDir = "LUKSCONV_BOOTVM"

// VMSet is OUTDIR/manifest.json as written by testdata/boot/mkbootvm.sh: a bootable ADE VM, the boot
// disk set's OS disk holding ADE's lines for five data disks of ADE's layouts. Host paths are relative
// to the set directory in the file and absolute after ReadVMSet.
type VMSet struct {
	// Version is the hex SHA-256 of mkbootvm.sh followed by the boot set's version.
	Version       string `json:"version"`
	GeneratedBy   string `json:"generated_by"`
	BootVersion   string `json:"boot_version"`
	KernelVersion string `json:"kernel_version"`
	// OS is the ADE OS disk (lvm.conf as the boot set's, with ADE's filter; no devices file).
	OS string `json:"os"`
	// OSDevicesFile is OS with use_devicesfile = 1 and /etc/lvm/devices/system.devices listing rootvg's
	// and datavg's PVs on their dm-crypt devices (crypt_uuid), in the root and in the initramfs.
	OSDevicesFile string `json:"os_devicesfile"`
	OSKey         string `json:"os_key"`
	OSLUKSUUID    string `json:"os_luks_uuid"`
	RootPVUUID    string `json:"root_pv_uuid"`
	DataVG        struct {
		VG  string `json:"vg"`
		LV  string `json:"lv"`
		PVs []struct {
			LUN  int    `json:"lun"`
			UUID string `json:"uuid"`
		} `json:"pvs"`
	} `json:"datavg"`
	DualPassHeader string        `json:"dual_pass_header"` // path of lun4's detached header on the OS root
	Crypttab       string        `json:"crypttab"`         // the OS root's /etc/crypttab (ADE's lines)
	SystemDevices  string        `json:"system_devices"`   // OSDevicesFile's /etc/lvm/devices/system.devices
	CheckFile      string        `json:"check_file"`       // the file of each data filesystem whose SHA-256 is known
	Marker         string        `json:"marker"`
	Disks          []VMSetDisk   `json:"disks"`
	Volumes        []VMSetVolume `json:"volumes"`

	Dir string `json:"-"`
}

// VMSetDisk is a data disk of the boot VM set.
type VMSetDisk struct {
	LUN        int    `json:"lun"`
	File       string `json:"file"`
	Key        string `json:"key"`
	Mapper     string `json:"mapper"` // its dm-crypt name in ADE's crypttab
	Layout     string `json:"layout"` // encrypt-format-all, lvm-pv-format-all, dual-pass
	SectorSize int    `json:"sector_size"`
}

// VMSetVolume is a data filesystem the OS disk's fstab mounts.
type VMSetVolume struct {
	Disk       string `json:"disk"` // "lun<N>" or "datavg/datalv"
	MountPoint string `json:"mount_point"`
	Type       string `json:"type"`
	ADEDevice  string `json:"ade_device"` // the fstab device ADE wrote: /dev/mapper/<mapper> (or the LV)
	FSUUID     string `json:"fs_uuid"`
	SHA256     string `json:"sha256"` // of CheckFile
}

// ReadVMSet reads dir/manifest.json of a boot VM set and makes its host paths absolute.
func ReadVMSet(dir string) (*VMSet, error) {
	m, dir, err := scriptcache.ReadManifest[VMSet](dir)
	if err != nil {
		return nil, fmt.Errorf("qemuboot: %w", err)
	}
	m.Dir = dir
	for _, p := range []*string{&m.OS, &m.OSDevicesFile, &m.OSKey} {
		*p = filepath.Join(dir, *p)
	}
	for i := range m.Disks {
		m.Disks[i].File = filepath.Join(dir, m.Disks[i].File)
		m.Disks[i].Key = filepath.Join(dir, m.Disks[i].Key)
	}
	return m, nil
}

// VMScript returns the path of mkbootvm.sh and the version of the set it builds from the boot set
// bootVersion: the hex SHA-256 of the script followed by bootVersion.
func VMScript(bootVersion string) (path, version string, err error) {
	root := scriptcache.RepoRoot()
	if root == "" {
		return "", "", fmt.Errorf("qemuboot: no go.mod above the working directory")
	}
	path = filepath.Join(root, "testdata", "boot", "mkbootvm.sh")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	h.Write(b)
	h.Write([]byte(bootVersion))
	return path, hex.EncodeToString(h.Sum(nil)), nil
}

// VMFixture returns the boot VM set, building it first (from Fixture's boot set) with
// testdata/boot/mkbootvm.sh if the cache holds none for the current scripts. The set lives in
// $LUKSCONV_BOOTVM if set, otherwise in <repo>/testdata/.cache/bootvm/<first 16 hex digits of the
// version>/, built under a lock with its log in DIR.log, like Fixture's.
func VMFixture(t testing.TB) *VMSet {
	t.Helper()
	boot := Fixture(t)
	script, version, err := VMScript(boot.Version)
	if err != nil {
		t.Fatalf("qemuboot: %v", err)
	}
	dir := os.Getenv(EnvVMDir)
	defaultDir := dir == ""
	if defaultDir {
		dir = filepath.Join(filepath.Dir(filepath.Dir(script)), ".cache", "bootvm", version[:16])
	}
	if dir, err = filepath.Abs(dir); err != nil {
		t.Fatalf("qemuboot: %v", err)
	}
	read := func(dir string) (*VMSet, error) {
		m, err := ReadVMSet(dir)
		if err == nil && m.Version != version {
			err = fmt.Errorf("%s/manifest.json has version %q, want %q", dir, m.Version, version)
		}
		return m, err
	}
	return scriptcache.Load(t, scriptcache.Spec{Name: "qemuboot-vm", Unavailable: "BOOT TESTS UNAVAILABLE",
		Script: script, Dir: dir, Env: []string{"BOOTSET=" + boot.Dir}, Timeout: buildTimeout}, defaultDir, read)
}

// VMMount is a LUKSCONV-VM-MOUNT line of the boot VM's init: an fstab mount point after `mount -a`.
type VMMount struct {
	MountPoint string // the fstab mount point
	Spec       string // the fstab device (UUID=..., /dev/mapper/...)
	Source     string // what /proc/mounts says it is mounted from ("-": not mounted)
	Type       string // the mounted filesystem type ("-": not mounted)
	SHA256     string // of the set's check file there ("-": none)
}

// VMReport is what the boot VM's init printed besides the marker and the device-mapper lines.
type VMReport struct {
	// UseDevicesFile is lvm's effective devices/use_devicesfile in the booted root ("0" or "1").
	UseDevicesFile string
	DevicesFile    []string // the lines of /etc/lvm/devices/system.devices after vgchange, if any
	// DeviceIDs are the entries `lvmdevices --adddev` writes for each PV and each SCSI disk into a scratch
	// devices file:
	// the device ID type lvm would record for it now (devname, or a stable sys_wwid, sys_serial, ...).
	DeviceIDs []string
	// SCSI maps each SCSI disk (sdb) to its address host:channel:target:LUN ("0:0:0:4").
	SCSI        map[string]string
	PVs         [][]string // `lvm pvs -o pv_name,vg_name,pv_uuid`: one field list per PV
	LVMWarnings []string   // what lvm pvs wrote on standard error
	VGChange    []string   // what `lvm vgchange -ay` printed
	MountErrors []string   // what `mount -a` printed
	Mounts      []VMMount  // one per fstab mount point but /
}

// Mount returns the report of mount point mp.
func (r *VMReport) Mount(mp string) (VMMount, bool) {
	for _, m := range r.Mounts {
		if m.MountPoint == mp {
			return m, true
		}
	}
	return VMMount{}, false
}

// PV returns the `lvm pvs` fields of the PV named dev ("/dev/vdd").
func (r *VMReport) PV(dev string) ([]string, bool) {
	for _, f := range r.PVs {
		if len(f) > 0 && f[0] == dev {
			return f, true
		}
	}
	return nil, false
}

// SCSIDisk returns the SCSI disk (sdb) the guest saw at SCSI target target, LUN lun.
func (r *VMReport) SCSIDisk(target, lun int) (string, bool) {
	for dev, addr := range r.SCSI {
		if f := strings.Split(addr, ":"); len(f) == 4 && f[2] == strconv.Itoa(target) && f[3] == strconv.Itoa(lun) {
			return dev, true
		}
	}
	return "", false
}

// ParseVMConsole reads the LUKSCONV-VM-* lines the boot VM set's init prints.
func ParseVMConsole(log string) VMReport {
	var r VMReport
	for _, line := range strings.Split(StripANSI(log), "\n") {
		line = strings.TrimSpace(line)
		tag, rest, _ := strings.Cut(line, " ")
		switch tag {
		case "LUKSCONV-VM-LVMCONF":
			r.UseDevicesFile = strings.TrimPrefix(rest, "use_devicesfile=")
		case "LUKSCONV-VM-DEVICESFILE":
			r.DevicesFile = append(r.DevicesFile, rest)
		case "LUKSCONV-VM-SCSI":
			if dev, addr, ok := strings.Cut(rest, " "); ok {
				if r.SCSI == nil {
					r.SCSI = map[string]string{}
				}
				r.SCSI[dev] = addr
			}
		case "LUKSCONV-VM-DEVICEID":
			r.DeviceIDs = append(r.DeviceIDs, rest)
		case "LUKSCONV-VM-PV":
			r.PVs = append(r.PVs, strings.Fields(rest))
		case "LUKSCONV-VM-LVMWARN":
			r.LVMWarnings = append(r.LVMWarnings, rest)
		case "LUKSCONV-VM-VGCHANGE":
			r.VGChange = append(r.VGChange, rest)
		case "LUKSCONV-VM-MOUNTERR":
			r.MountErrors = append(r.MountErrors, rest)
		case "LUKSCONV-VM-MOUNT":
			var m VMMount
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "mp":
					m.MountPoint = v
				case "spec":
					m.Spec = v
				case "src":
					m.Source = v
				case "type":
					m.Type = v
				case "sha256":
					m.SHA256 = v
				}
			}
			r.Mounts = append(r.Mounts, m)
		}
	}
	return r
}
