package guest

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// What ADE writes on the OS disk for the other volumes of a VM — data disks and the resource disk
// (ade-internals §5, §10.2) — and how a whole-VM conversion undoes it.

// Mapper names ADE gives the volumes it encrypts besides data volumes (whose mapper is a random UUID).
const (
	MapperOS       = "osencrypt"       // the OS volume
	MapperResource = "resourceencrypt" // the resource (temporary) disk
)

// CrypttabEntry is one entry of /etc/crypttab.
type CrypttabEntry struct {
	Line      int      // 1-based
	Mapper    string   // the dm-crypt name: osencrypt, resourceencrypt, or a data volume's random UUID
	Device    string   // the source as written: /dev/disk/azure/scsi1/lun3-part1, UUID=…, /dev/mapper/vg-lv
	KeyFile   string   // "none" for RHEL 7's OS line
	Options   []string // the fourth field split at commas; nil when absent
	Header    string   // the header= option: the detached header's path, "" for an attached one
	ADE       bool     // ADE's: keyed by the BEK volume, or named osencrypt/resourceencrypt
	LUN       int      // the data disk's LUN, from the device path or the key file's _<c>_<lun>; -1 if neither says
	Partition int      // the -partM of an Azure device path; 0 for a whole disk or when the path does not say
}

// azureDeviceRE matches the udev links of Azure data disks that ADE writes into crypttab.
var azureDeviceRE = regexp.MustCompile(`^/dev/disk/azure/scsi1/lun(\d+)(?:-part(\d+))?$`)

// keyFileLUNRE matches the per-volume key files on the BEK volume, LinuxPassPhraseFileName_<ctrl>_<lun>.
var keyFileLUNRE = regexp.MustCompile(`LinuxPassPhraseFileName_\d+_(\d+)$`)

// ParseCrypttab lists the entries of a crypttab, comments and blank lines left out.
func ParseCrypttab(b []byte) []CrypttabEntry {
	var out []CrypttabEntry
	for i, l := range splitLines(b) {
		f := strings.Fields(l.text)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		e := CrypttabEntry{Line: i + 1, Mapper: f[0], Device: f[1], LUN: -1}
		if len(f) > 2 {
			e.KeyFile = f[2]
		}
		if len(f) > 3 {
			e.Options = strings.Split(f[3], ",")
			for _, o := range e.Options {
				if v, ok := strings.CutPrefix(o, "header="); ok {
					e.Header = v
				}
			}
		}
		e.ADE = e.Mapper == MapperOS || e.Mapper == MapperResource || strings.HasPrefix(e.KeyFile, bekKeyFile)
		if m := azureDeviceRE.FindStringSubmatch(e.Device); m != nil {
			e.LUN, _ = strconv.Atoi(m[1])
			if m[2] != "" {
				e.Partition, _ = strconv.Atoi(m[2])
			}
		} else if m := keyFileLUNRE.FindStringSubmatch(e.KeyFile); m != nil {
			e.LUN, _ = strconv.Atoi(m[1])
		}
		out = append(out, e)
	}
	return out
}

// PathAzureCryptMount is ADE's legacy list of the data volumes the extension itself unlocked and mounted
// after boot; their fstab lines were removed (ade-internals §5).
const PathAzureCryptMount = "/var/lib/azure_disk_encryption_config/azure_crypt_mount"

// CryptMountEntry is one line of ADE's legacy azure_crypt_mount: mapper dev header mountpoint fs
// uses_cleartext_key slot (CryptMountConfigUtil.py).
type CryptMountEntry struct {
	Line       int    // 1-based
	Mapper     string // the dm-crypt name the volume was opened as
	Device     string // the encrypted device as written
	Header     string // "None" for an attached header
	MountPoint string // where ADE mounted the volume
	FSType     string // the filesystem type given to mount (ext4, xfs, ...)
	LUN        int    // from an Azure device path, -1 otherwise
	Partition  int    // the -partM of an Azure device path; 0 otherwise
}

// ParseAzureCryptMount lists the entries of an azure_crypt_mount file.
func ParseAzureCryptMount(b []byte) []CryptMountEntry {
	var out []CryptMountEntry
	for i, l := range splitLines(b) {
		f := strings.Fields(l.text)
		if len(f) < 5 || strings.HasPrefix(f[0], "#") {
			continue
		}
		e := CryptMountEntry{Line: i + 1, Mapper: f[0], Device: f[1], Header: f[2], MountPoint: f[3], FSType: f[4], LUN: -1}
		if m := azureDeviceRE.FindStringSubmatch(e.Device); m != nil {
			e.LUN, _ = strconv.Atoi(m[1])
			if m[2] != "" {
				e.Partition, _ = strconv.Atoi(m[2])
			}
		}
		out = append(out, e)
	}
	return out
}

// FixFstab is Policy{}.FixFstab: it drops ADE's BEK volume lines only.
func FixFstab(b []byte) ([]byte, []Change) { return Policy{}.FixFstab(b) }

// FixFstab undoes ADE in /etc/fstab. It drops the BEK volume's lines (`LABEL=BEK\040VOLUME
// /mnt/azure_bek_disk auto defaults,discard,nofail 0 0` and the /bek form: no other volume has that
// label; Ubuntu's udev link form `/dev/disk/by-label/BEK\x20VOLUME`, with the literal \x20 udev puts
// in the link's name; and any line mounting something on /mnt/azure_bek_disk, ADE's mount point for
// it) and the lines of the devices in p.FstabDrop (the resource disk's /dev/mapper/resourceencrypt
// when the VM is converted), and gives the lines whose device is a key of p.FstabDevices that device's
// value instead (a converted data volume's /dev/mapper/<uuid> becomes UUID=<its filesystem UUID>; the
// options, nofail included, stay). ADE's marker comment above an edited line goes. The result is nil
// when nothing needs changing; it may be longer than b by what FstabDevices values add and by the
// lines of p.FstabAdd, appended (the fstab lines of volumes ADE mounted itself, from azure_crypt_mount).
//
// The initramfs package applies it to an image's etc/fstab as well: 91adeOnline's generator writes the
// /bek line into the initramfs' fstab at boot, and builds from 2020 to 2022 put it there with add_fstab+=
// (ade-internals §4.1).
func (p Policy) FixFstab(b []byte) ([]byte, []Change) {
	out, changes := editLines(PathFstab, b, p.fstabLine)
	var add []string
	for _, l := range p.FstabAdd {
		if !slices.ContainsFunc(splitLines(b), func(x line) bool {
			return strings.Join(strings.Fields(x.text), " ") == strings.Join(strings.Fields(l), " ")
		}) {
			add = append(add, l)
		}
	}
	if add == nil {
		return out, changes
	}
	if out == nil {
		out = append([]byte{}, b...)
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	for _, l := range add {
		out = append(append(out, l...), '\n')
	}
	return out, append(changes, newChange(PathFstab, "mount the volumes ADE mounted itself (azure_crypt_mount) from their plaintext, as fstab lines", nil, add))
}

// fstabLine is the edit FixFstab makes to one fstab line (its fields).
func (p Policy) fstabLine(f []string) (string, bool, string) {
	dev := unescapeOctal(f[0])
	switch {
	case isBEKFstabLine(f):
		mp := "?"
		if len(f) > 1 {
			mp = f[1]
		}
		return "", true, "drop the fstab entry of the ADE BEK volume (" + mp + ")"
	case slices.Contains(p.FstabDrop, dev):
		return "", true, "drop the fstab entry of " + dev + ", a volume ADE encrypted that the converted VM does not have"
	}
	if spec, ok := p.FstabDevices[dev]; ok && len(f) > 1 {
		return spec + " " + strings.Join(f[1:], " "), false, fmt.Sprintf("mount %s from the converted volume (%s) instead of ADE's dm-crypt device %s", f[1], spec, dev)
	}
	return "", false, ""
}

// editLines rewrites the non-comment lines for which edit returns a reason: dropped when drop is set,
// else replaced by repl. ADE's marker comment directly above an edited line goes with it. Other lines
// are kept byte for byte.
func editLines(path string, b []byte, edit func(fields []string) (repl string, drop bool, why string)) ([]byte, []Change) {
	ls := splitLines(b)
	drop := make([]bool, len(ls))
	var changes []Change
	for i, l := range ls {
		f := strings.Fields(l.text)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		repl, d, why := edit(f)
		if why == "" {
			continue
		}
		before := []string{l.text}
		if i > 0 && !drop[i-1] && strings.TrimSpace(ls[i-1].text) == adeComment {
			drop[i-1] = true
			before = []string{ls[i-1].text, l.text}
		}
		var after []string
		if d {
			drop[i] = true
		} else {
			ls[i].text = repl
			after = []string{repl}
		}
		changes = append(changes, newChange(path, why, before, after))
	}
	if changes == nil {
		return nil, nil
	}
	return withoutLines(ls, drop), changes
}

// unescapeOctal decodes the octal escapes of fstab and crypttab fields (\040 for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// PathWaagentConf is the Azure Linux agent's configuration, which ADE edits for the resource disk.
const PathWaagentConf = "/etc/waagent.conf"

// waagentKeys are the settings ADE changes in waagent.conf when it encrypts the resource disk, each
// with sed -i, which leaves the file as it was before in a backup: MountPoint first (.rdbak1), then
// Format=y to n (.rdbak2) (ResourceDiskUtil.py, ade-internals §10.2).
var waagentKeys = []struct{ key, backup string }{
	{"ResourceDisk.MountPoint", ".rdbak1"},
	{"ResourceDisk.Format", ".rdbak2"},
}

// FixWaagentConf restores the resource-disk settings of /etc/waagent.conf (b) that ADE changed, to the
// values its sed backups hold: rdbak1 is waagent.conf.rdbak1 (ResourceDisk.MountPoint as before ADE),
// rdbak2 waagent.conf.rdbak2 (ResourceDisk.Format as before ADE); nil when the backup is absent, and
// that setting is left alone. Only those two lines change, so the agent's other settings, edited since,
// stay. The result is nil when nothing needs changing.
func FixWaagentConf(b, rdbak1, rdbak2 []byte) ([]byte, []Change) {
	backups := map[string][]byte{".rdbak1": rdbak1, ".rdbak2": rdbak2}
	ls := splitLines(b)
	var changes []Change
	for _, k := range waagentKeys {
		want, ok := confValue(backups[k.backup], k.key)
		if !ok {
			continue
		}
		for i, l := range ls {
			v, ok := confLineValue(l.text, k.key)
			if !ok || v == want {
				continue
			}
			before := l.text
			ls[i].text = k.key + "=" + want
			changes = append(changes, newChange(PathWaagentConf, fmt.Sprintf("restore %s as it was before ADE encrypted the resource disk (%s%s)",
				k.key, PathWaagentConf, k.backup), []string{before}, []string{ls[i].text}))
		}
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}

// confValue returns the value of key in a KEY=VALUE file.
func confValue(b []byte, key string) (string, bool) {
	for _, l := range splitLines(b) {
		if v, ok := confLineValue(l.text, key); ok {
			return v, true
		}
	}
	return "", false
}

// confLineValue returns the value of key when line sets it (waagent.conf: KEY=VALUE, # comments).
func confLineValue(line, key string) (string, bool) {
	t := strings.TrimSpace(line)
	k, v, ok := strings.Cut(t, "=")
	if !ok || strings.HasPrefix(t, "#") || strings.TrimSpace(k) != key {
		return "", false
	}
	return strings.TrimSpace(v), true
}

// PathLVMDevices is RHEL 9's LVM devices file: when it exists (and use_devicesfile is on, RHEL 9's
// default) LVM uses only the devices it lists.
const PathLVMDevices = "/etc/lvm/devices/system.devices"

// FixLVMDevices points the entries of an LVM devices file that name a PV on one of ADE's dm-crypt
// devices at the device the PV sits on once it is plaintext. lvm2 records a PV on dm-crypt as
// `IDTYPE=crypt_uuid IDNAME=CRYPT-LUKS<n>-<uuid>-<name> DEVNAME=/dev/mapper/<name> PVID=…`; no such
// device exists after the conversion, so LVM would ignore the PV and the VG would not activate.
// p.LVMDevices maps a dm-crypt device (/dev/mapper/osencrypt, /dev/mapper/<data mapper>) to the plain
// device as ADE's crypttab names it (/dev/disk/by-partuuid/…, /dev/disk/azure/scsi1/lun<N>…); the
// entry becomes `IDTYPE=devname IDNAME=<device> DEVNAME=<device> PVID=<same>`. lvm2 compares a devname
// entry with kernel names only and does not search disks with a stable ID (a WWN) for its PVID, so
// such an entry does not find the PV on Azure's disks: the file is turned off as well
// (Policy.DisableLVMDevicesFile), and the entries only keep it from naming devices that are gone.
// Other lines are kept byte for byte. The result is nil when nothing needs changing.
func (p Policy) FixLVMDevices(b []byte) ([]byte, []Change) {
	devices := p.LVMDevices
	ls := splitLines(b)
	var changes []Change
	for i, l := range ls {
		fields := strings.Fields(l.text)
		kv := map[string]string{}
		for _, f := range fields {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		dev, ok := devices[kv["DEVNAME"]]
		if !ok || kv["IDTYPE"] != "crypt_uuid" || kv["PVID"] == "" || strings.HasPrefix(strings.TrimSpace(l.text), "#") {
			continue
		}
		before := l.text
		ls[i].text = fmt.Sprintf("IDTYPE=devname IDNAME=%s DEVNAME=%s PVID=%s", dev, dev, kv["PVID"])
		changes = append(changes, newChange(PathLVMDevices, fmt.Sprintf("list the PV on %s, where it is once plaintext, instead of ADE's dm-crypt device %s", dev, kv["DEVNAME"]),
			[]string{before}, []string{ls[i].text}))
	}
	if changes == nil {
		return nil, nil
	}
	return joinLines(ls), changes
}
