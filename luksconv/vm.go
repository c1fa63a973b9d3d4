package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/xfs"
)

// A VM is the unit of an ADE migration: ADE encrypts the OS disk together with every data disk (and
// the resource disk), LEAPP refuses any LUKS volume, and the OS disk's crypttab and fstab name the
// data volumes' dm-crypt devices. NewVMPlan plans all of a VM's disks at once: each data disk's own
// conversion, and on the OS disk the edits that undo what ADE wrote there for them.

// OSDisk is VMDisk.LUN for the OS disk.
const OSDisk = -1

// maxDetachedHeader bounds a data volume's detached header read from the OS disk (ADE's are 32 MiB).
const maxDetachedHeader = 64 << 20

// VMDisk is one disk of a VM to convert with the others.
type VMDisk struct {
	// LUN is the data disk's logical unit number as Azure attaches it, which ADE's lines on the OS disk
	// name (/dev/disk/azure/scsi1/lun<N>); OSDisk for the OS disk.
	LUN int
	// Source is the disk's image, read only.
	Source *Source
	// Options plan the disk: its key (ADE keys each volume separately), the format, FullCopy, ... A
	// data volume's Partition and detached Header are taken from the OS disk's crypttab when not
	// given: ADE's dual-pass volumes keep their header on the OS disk's root filesystem.
	Options PlanOptions
	// Optional marks a data disk that may not be encrypted at all: dual-pass ADE stamps its settings
	// on the VM, not on the disks, so the caller cannot tell which data disks it encrypted. An
	// optional disk is converted when an ADE line on the OS disk (crypttab, azure_crypt_mount) names
	// its LUN or it holds a LUKS volume of its own; otherwise it is left out of the plan, listed in
	// VMPlan.Skipped with a WarnDiskSkipped warning. Optional is ignored for the OS disk.
	Optional bool
}

// VMPlan holds the plan of every disk of a VM. Like a Plan it is plain data; Close destroys the keys.
// It is safe for concurrent use: Execute and Verify may run on its plans at once.
type VMPlan struct {
	// OS is the OS disk's plan; besides ADE's OS-disk changes, its edits drop the crypttab lines of
	// the converted data volumes and of the resource disk, mount the converted volumes by their
	// filesystem UUID in fstab, and restore waagent.conf's resource-disk settings.
	OS *Plan `json:"os"`
	// Data are the data disks' plans, by LUN.
	Data []VMDataPlan `json:"data"`
	// Skipped are the LUNs of the optional data disks (VMDisk.Optional) left out of the plan: nothing
	// names them on the OS disk and they hold no LUKS volume. They have no plan and stay as they are.
	Skipped []int `json:"skipped,omitempty"`
	// Warnings concern the VM as a whole (data volumes left encrypted, skipped disks, an unreadable
	// crypttab); each disk's plan has its own.
	Warnings []Warning `json:"warnings,omitempty"`
}

// VMDataPlan is a data disk's plan and what the OS disk's edits use of it.
type VMDataPlan struct {
	LUN int `json:"lun"` // the data disk's LUN, as in VMDisk
	// Mapper is the volume's dm-crypt name in the OS disk's crypttab ("" when no line names the LUN).
	Mapper string `json:"mapper,omitempty"`
	// FilesystemUUID is the UUID of the filesystem the decrypted volume holds ("" for an LVM PV or an
	// unknown filesystem); fstab mounts the volume by it.
	FilesystemUUID string `json:"filesystem_uuid,omitempty"`
	Plan           *Plan  `json:"plan"` // the disk's own conversion

	device string // the device ADE's line names (/dev/disk/azure/scsi1/lun<N>…)
}

// Disk returns the plan of the disk at lun (OSDisk for the OS disk), or nil when the VM plan has none.
func (vp *VMPlan) Disk(lun int) *Plan {
	if lun == OSDisk {
		return vp.OS
	}
	for _, d := range vp.Data {
		if d.LUN == lun {
			return d.Plan
		}
	}
	return nil
}

// Close destroys every plan's key.
func (vp *VMPlan) Close() {
	if vp == nil {
		return
	}
	if vp.OS != nil {
		vp.OS.Close()
	}
	for _, d := range vp.Data {
		d.Plan.Close()
	}
}

// NewVMPlan plans the conversion of a VM's disks: exactly one OS disk and any number of data disks,
// each LUN once. It unlocks the OS disk first and reads its crypttab, which names each data volume's
// LUN, partition, dm-crypt mapper and detached header; then plans each data disk (a volume whose
// header is on the OS disk can only be converted this way); then the OS disk, with the edits that
// undo what ADE wrote there for the converted volumes and the resource disk. A data volume that
// crypttab names but the run does not convert keeps its lines, with a warning. An optional data disk
// (VMDisk.Optional) that nothing names and that holds no LUKS volume is left out (VMPlan.Skipped).
// Errors name the disk.
func NewVMPlan(ctx context.Context, disks []VMDisk) (vp *VMPlan, err error) {
	var osDisk *VMDisk
	var data []*VMDisk
	seen := map[int]bool{}
	for i := range disks {
		d := &disks[i]
		switch {
		case d.Source == nil:
			return nil, fmt.Errorf("%w: disk %d of the VM has no source", ErrInvalidOption, i)
		case d.LUN == OSDisk && osDisk != nil:
			return nil, fmt.Errorf("%w: two OS disks", ErrAmbiguous)
		case d.LUN == OSDisk:
			osDisk = d
		case d.LUN < 0:
			return nil, fmt.Errorf("%w: LUN %d", ErrInvalidOption, d.LUN)
		case seen[d.LUN]:
			return nil, fmt.Errorf("%w: two disks claim LUN %d", ErrAmbiguous, d.LUN)
		default:
			seen[d.LUN] = true
			data = append(data, d)
		}
	}
	if osDisk == nil {
		return nil, fmt.Errorf("%w: no OS disk among the VM's disks", ErrInvalidOption)
	}
	sort.Slice(data, func(i, j int) bool { return data[i].LUN < data[j].LUN })

	osOpts := osDisk.Options
	osVol, err := openVolume(ctx, osDisk.Source, &osOpts)
	if err != nil {
		return nil, fmt.Errorf("OS disk: %w", err)
	}
	defer clear(osVol.pass)
	vp = &VMPlan{}
	defer func() {
		if err != nil {
			osVol.p.Close()
			vp.Close()
			vp = nil
		}
	}()

	// What ADE wrote on the OS disk for the other volumes.
	g := osVol.discoverGuest(ctx)
	var entries []guest.CrypttabEntry
	if b, cerr := g.readGuest(guest.PathCrypttab); cerr == nil {
		entries = guest.ParseCrypttab(b)
	} else {
		vp.Warnings = append(vp.Warnings, warning(WarnGuestLayout, "OS disk: %s cannot be read (%v): the data volumes' lines on it are not known", guest.PathCrypttab, cerr))
	}
	// ADE's legacy list of the volumes it mounted itself stands for their crypttab lines.
	var legacy []guest.CryptMountEntry
	if b, lerr := g.readGuest(guest.PathAzureCryptMount); lerr == nil {
		legacy = guest.ParseAzureCryptMount(b)
	}
	for _, le := range legacy {
		hdr := le.Header
		if hdr == "None" {
			hdr = ""
		}
		entries = append(entries, guest.CrypttabEntry{Mapper: le.Mapper, Device: le.Device, Header: hdr, ADE: true, LUN: le.LUN,
			Partition: le.Partition})
	}
	vm := &vmEdits{fstab: map[string]string{}, devices: map[string]string{}}
	// The plain volume groups on the data disks, for the crypttab lines that name an LV
	// (/dev/mapper/<vg>-<lv>): the LUN is not in such a name, the disk is the one holding the VG.
	plainVGs := map[int][]diskPV{}
	for _, d := range data {
		if _, pvs, perr := plainPVs(ctx, d.Source); perr == nil {
			plainVGs[d.LUN] = pvs
		}
	}
	byLUN := map[int][]guest.CrypttabEntry{}
	lvOf := map[string]*lvTarget{} // mapper -> the LV its crypttab line names, on a data disk's plain PV
	var lvLeft []guest.CrypttabEntry
	for _, ce := range entries {
		switch {
		case ce.Mapper == guest.MapperResource:
			// The converted VM gets a new resource disk, plain: ADE's lines for it go.
			vm.mappers = append(vm.mappers, ce.Mapper)
			vm.fstabDrop = append(vm.fstabDrop, "/dev/mapper/"+ce.Mapper)
			vm.waagent = true
		case !ce.ADE || ce.Mapper == guest.MapperOS:
		default:
			if vg, lvName, ok := lvDevice(ce.Device); ok {
				lun, found, err := lunOfLV(plainVGs, vg, lvName)
				if err != nil {
					return nil, fmt.Errorf("%s (%s on %s): %w", entryPlace(ce, legacy), ce.Mapper, ce.Device, err)
				}
				if found {
					byLUN[lun] = append(byLUN[lun], ce)
					lvOf[ce.Mapper] = &lvTarget{vg: vg, lv: lvName}
					continue
				}
				if ce.LUN < 0 {
					lvLeft = append(lvLeft, ce)
					continue
				}
			}
			if ce.LUN >= 0 {
				byLUN[ce.LUN] = append(byLUN[ce.LUN], ce)
			}
		}
	}

	// An optional disk nothing names is converted only when it holds a LUKS volume of its own; else it
	// is not part of the VM's plan at all, its plain volume groups neither.
	planned := data[:0:0]
	for _, d := range data {
		if d.Optional && len(byLUN[d.LUN]) == 0 {
			own, why, err := ownLUKS(ctx, d.Source)
			if err != nil {
				return nil, fmt.Errorf("LUN %d: %w", d.LUN, err)
			}
			if !own {
				vp.Skipped = append(vp.Skipped, d.LUN)
				delete(plainVGs, d.LUN)
				vp.Warnings = append(vp.Warnings, warning(WarnDiskSkipped, "LUN %d: no ADE line on the OS disk names it and it holds no LUKS volume (%s): it is not converted",
					d.LUN, why))
				continue
			}
		}
		planned = append(planned, d)
	}
	data = planned

	// Every data volume is opened first: a volume group over several disks is checked, and read, whole.
	opened := make([]*openedDisk, 0, len(data))
	defer func() {
		for _, o := range opened {
			if o.v != nil {
				clear(o.v.pass)
				if err != nil {
					o.v.p.Close()
				}
			}
		}
	}()
	for _, d := range data {
		o, err := openDataDisk(ctx, d, byLUN[d.LUN], lvOf, g)
		if err != nil {
			return nil, fmt.Errorf("LUN %d: %w", d.LUN, err)
		}
		opened = append(opened, o)
	}
	vgs, err := vmVolumeGroups(opened, plainVGs)
	if err != nil {
		return nil, err
	}
	vp.Warnings = append(vp.Warnings, vgs.warnings...)
	for _, o := range opened {
		dp := o.dp
		o.opts.vmFree, o.opts.vmLogs, o.opts.vmLVs = vgs.free[o.lun], vgs.logs[o.lun], vgs.lvs[o.lun]
		dp.Plan, err = o.v.layout(ctx, o.opts)
		if err != nil {
			return nil, fmt.Errorf("LUN %d: %w", o.lun, err)
		}
		o.v = nil // the plan owns the key now
		clear(o.pass)
		vp.Data = append(vp.Data, dp)
		if dp.Mapper == "" {
			vp.Warnings = append(vp.Warnings, warning(WarnGuestLayout, "LUN %d: no ADE crypttab line on the OS disk names it; its lines, if any, stay", o.lun))
			continue
		}
		vm.mappers = append(vm.mappers, dp.Mapper)
		if dp.device != "" {
			vm.devices["/dev/mapper/"+dp.Mapper] = dp.device
		}
		if dp.FilesystemUUID == "" {
			continue
		}
		vm.fstab["/dev/mapper/"+dp.Mapper] = "UUID=" + dp.FilesystemUUID
		for _, le := range legacy {
			if le.Mapper == dp.Mapper {
				vm.fstabAdd = append(vm.fstabAdd, fmt.Sprintf("UUID=%s %s %s defaults,nofail 0 0", dp.FilesystemUUID, le.MountPoint, le.FSType))
			}
		}
	}
	vm.wipeBackups = len(lvLeft) == 0
	for _, ce := range lvLeft {
		vm.left = append(vm.left, fmt.Sprintf("%s (%s) stays LUKS-encrypted: its volume group is on none of the disks converted", ce.Device, ce.Mapper))
		vp.Warnings = append(vp.Warnings, warning(WarnVolumeLeft, "%s (%s, %s) names a logical volume whose volume group is on none of the data disks of this run: its crypttab and fstab lines stay, and the converted VM cannot unlock it without ADE",
			ce.Device, ce.Mapper, entryPlace(ce, legacy)))
	}
	for lun, ents := range byLUN {
		if !seen[lun] {
			vm.wipeBackups = false
			for _, ce := range ents {
				vm.left = append(vm.left, fmt.Sprintf("LUN %d (%s) stays LUKS-encrypted: not converted in this run", lun, ce.Mapper))
				vp.Warnings = append(vp.Warnings, warning(WarnVolumeLeft, "LUN %d (%s, %s) is not converted in this run: its crypttab and fstab lines stay, and the converted VM cannot unlock it without ADE",
					lun, ce.Mapper, entryPlace(ce, legacy)))
			}
		}
	}
	slices.SortFunc(vp.Warnings, func(a, b Warning) int { return strings.Compare(a.Message, b.Message) })

	osOpts.vm = vm
	if vp.OS, err = osVol.layout(ctx, osOpts); err != nil {
		return nil, fmt.Errorf("OS disk: %w", err)
	}
	return vp, nil
}

// ownLUKS reports whether the disk src holds a LUKS volume that a plan finds without the OS disk's
// help (an attached header, or ADE's on its own /boot); why says what it holds instead. A disk
// whose layout luksconv does not read (no partition table, ciphertext without a header) holds none.
func ownLUKS(ctx context.Context, src *Source) (own bool, why string, err error) {
	rep, _, err := inspect(ctx, src, InspectOptions{})
	switch {
	case errors.Is(err, ErrNothingToConvert) || errors.Is(err, gpt.ErrNoGPT):
		return false, err.Error(), nil
	case err != nil:
		return false, "", err
	}
	var contents []string
	for _, pi := range rep.Partitions {
		if pi.LUKS != nil || pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2 {
			return true, "", nil
		}
		contents = append(contents, fmt.Sprintf("partition %d: %s", pi.Number, pi.Content))
	}
	if len(contents) == 0 {
		return false, "no partitions", nil
	}
	return false, strings.Join(contents, ", "), nil
}

// openedDisk is a data disk whose volume is unlocked, waiting for its layout.
type openedDisk struct {
	lun  int
	dp   VMDataPlan
	v    *volume // nil once laid out
	opts PlanOptions
	pass []byte // a passphrase read from the key file, cleared once laid out
}

// openDataDisk unlocks one data disk's volume: ents are the OS disk's crypttab entries for it, g the
// OS disk's guest filesystems (for a detached header); lvOf says which entries (by mapper) name an LV
// on the disk's plain PV.
func openDataDisk(ctx context.Context, d *VMDisk, ents []guest.CrypttabEntry, lvOf map[string]*lvTarget, g *guestEditor) (*openedDisk, error) {
	dp := VMDataPlan{LUN: d.LUN}
	opts := d.Options
	if len(ents) > 1 {
		return nil, fmt.Errorf("%w: the OS disk's crypttab names %d volumes on this disk (lines %d and %d); one volume per disk is converted",
			ErrAmbiguous, len(ents), ents[0].Line, ents[1].Line)
	}
	if len(ents) == 1 {
		ce := ents[0]
		dp.Mapper = ce.Mapper
		if strings.HasPrefix(ce.Device, "/dev/") {
			dp.device = ce.Device
		}
		if t := lvOf[ce.Mapper]; t != nil {
			opts.lv = t
		} else if opts.Partition == 0 {
			opts.Partition = ce.Partition
		}
		if ce.Header != "" && opts.Header == nil {
			r, n, err := g.openGuest(ce.Header, maxDetachedHeader)
			if err != nil {
				return nil, fmt.Errorf("%w: its detached header %s cannot be read on the OS disk: %v", ErrNeedHeader, ce.Header, err)
			}
			opts.Header = &Header{R: r, Size: n, Path: "OS disk:" + ce.Header}
		}
	}
	v, err := openVolume(ctx, d.Source, &opts)
	if err != nil {
		return nil, err
	}
	dp.FilesystemUUID = filesystemUUID(v.analysed, v.payLen, v.content)
	return &openedDisk{lun: d.LUN, dp: dp, v: v, opts: opts, pass: v.pass}, nil
}

// discoverGuest opens the guest filesystems of the unlocked volume v and its disk, for reading.
func (v *volume) discoverGuest(ctx context.Context) *guestEditor {
	vols, _ := guestVolumes(v.src, v.rep, v.p.Volume.Partition, v.analysed, v.gp.Offset, v.payLen, v.content)
	return discoverGuest(ctx, vols, v.rep.Partitions, guestOptions{})
}

// filesystemUUID is the UUID of the filesystem plain (size bytes, holding content) carries, as fstab's
// UUID= names it; "" when it holds none luksconv reads.
func filesystemUUID(plain io.ReaderAt, size int64, content Content) string {
	switch content {
	case ContentXFS:
		if fs, err := xfs.Open(plain, size); err == nil {
			return formatUUID(fs.SB.UUID)
		}
	case ContentExt4:
		if fs, err := ext.Open(plain, size); err == nil {
			return fs.UUID()
		}
	case ContentBtrfs:
		var u [16]byte
		if _, err := plain.ReadAt(u[:], btrfsSuper+0x20); err == nil && u != [16]byte{} {
			return formatUUID(u)
		}
	}
	return ""
}

// formatUUID writes a filesystem UUID as blkid and fstab do.
func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// entryPlace names where a volume's entry is: its crypttab line, or, for an entry that ADE's legacy
// azure_crypt_mount stands for (crypttab lines are numbered from 1, these carry 0), that file's line.
func entryPlace(ce guest.CrypttabEntry, legacy []guest.CryptMountEntry) string {
	if ce.Line > 0 {
		return fmt.Sprintf("crypttab line %d", ce.Line)
	}
	for _, le := range legacy {
		if le.Mapper == ce.Mapper {
			return fmt.Sprintf("azure_crypt_mount line %d", le.Line)
		}
	}
	return "azure_crypt_mount"
}
