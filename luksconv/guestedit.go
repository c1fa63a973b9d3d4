package luksconv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/initramfs"
	"github.com/luksconv/luksconv/internal/zeros"
)

// Edit is one change the conversion makes to a file inside the guest, so that the output boots
// without Azure Disk Encryption. Lines are redacted by the guest package.
type Edit struct {
	// Filesystem names where the file lives: "/boot (partition 2)", "/ (rootvg/rootlv)".
	Filesystem string `json:"filesystem"`
	// Path is the file's path in the running guest, e.g. /boot/grub2/grubenv.
	Path string `json:"path"`
	// Why says what the change does and what it is for.
	Why string `json:"why"`
	// Before and After are the changed lines (After is empty when lines are removed).
	Before []string `json:"before,omitempty"`
	After  []string `json:"after,omitempty"` // the lines as the output holds them
}

const (
	// maxConfigFile bounds the guest text files read for editing.
	maxConfigFile = 1 << 20
	// maxWalk bounds the files visited under a wiped directory.
	maxWalk = 10000
	// removedHook replaces the content of ADE's dracut module files other than module-setup.sh.
	removedHook = "# removed by luksconv (Azure Disk Encryption hook)\n"
)

// adeModuleDirs are where ADE installs its dracut modules (/lib is a symlink to usr/lib on RHEL 7+;
// both are tried and each file is edited once).
var adeModuleDirs = []string{
	"/usr/lib/dracut/modules.d/91adeOnline", "/usr/lib/dracut/modules.d/91ade",
	"/lib/dracut/modules.d/91adeOnline", "/lib/dracut/modules.d/91ade",
}

// scanned is a guest file whose content the readiness check looks at.
type scanned struct {
	path          string
	before, after []byte
}

// wipe is a file whose content must be zeros; before and after say whether it is, without and with
// the edits.
type wipe struct {
	path          string
	before, after bool
}

// guestEditor computes the guest edits as output patches.
type guestEditor struct {
	ctx       context.Context   // initramfs re-compression stops when it ends
	vmWaagent bool              // restore waagent.conf (whole-VM plan)
	vmDevices map[string]string // whole-VM plan: the converted volumes' dm-crypt devices -> their plain devices
	vmBackups bool              // whole-VM plan with every volume converted: wipe ADE's backups in /etc
	strict    bool
	tools     bool // the guest builds its initrds with initramfs-tools (Ubuntu): see guestubuntu.go
	policy    guest.Policy
	fss       []*guestFS
	boot      *guestFS
	root      *guestFS
	edits     []Edit
	patches   []Patch
	warnings  []Warning
	files     []scanned
	wipes     []wipe
	// initramfs results for the readiness check: path -> residue left (nil: clean)
	initrd     map[string][]string
	initrdList []string
	kept       []keptInitramfs // images on /boot that still hold ADE's hooks after the edits
	bootArgs   []string        // kernel arguments added to the boot loader's command lines for them
	seen       map[string]bool // fs name + inode: each file edited once
	zero       []byte
	noRoot     string // why the root was not examined
	esp        []PartitionInfo
	espVols    []guestVolume  // the FAT partitions' contents (esp.go)
	espRead    map[int]bool   // partition number -> its FAT was read and its EFI/*/grub files examined
	espErr     map[int]string // partition number -> why its FAT was not read
}

// guestOptions tune guestEdits.
type guestOptions struct {
	strictInitramfs bool
	// noRootReason, when set, says why no root filesystem can be looked at (inspect of an encrypted disk).
	noRootReason string
	// vm, for the OS disk of a whole-VM plan, says what ADE wrote there for the VM's other volumes.
	vm *vmEdits
}

// vmEdits is what a whole-VM plan adds to the OS disk's guest edits: the lines ADE wrote for the
// volumes converted with it, and for the resource disk, which the converted VM gets new and plain.
type vmEdits struct {
	mappers   []string          // crypttab mappers to drop: the converted volumes', resourceencrypt
	fstab     map[string]string // fstab devices to replace: /dev/mapper/<mapper> -> UUID=<filesystem UUID>
	fstabDrop []string          // fstab devices whose lines go: /dev/mapper/resourceencrypt
	fstabAdd  []string          // fstab lines for the converted volumes of ADE's legacy azure_crypt_mount
	devices   map[string]string // the converted volumes' /dev/mapper/<mapper> -> the device ADE opened
	// wipeBackups: every volume ADE encrypted on the VM is converted, so its backups in /etc go.
	wipeBackups bool
	left        []string // the VM's volumes that stay encrypted, for the readiness check
	waagent     bool     // restore waagent.conf's resource-disk settings from ADE's backups
}

// discoverGuest opens the guest's filesystems on vols and finds /boot, the root and the volumes the
// root's fstab mounts. It reads; guestEdits then edits.
func discoverGuest(ctx context.Context, vols []guestVolume, parts []PartitionInfo, opts guestOptions) *guestEditor {
	e := &guestEditor{ctx: ctx, strict: opts.strictInitramfs, seen: map[string]bool{}, initrd: map[string][]string{},
		espRead: map[int]bool{}, espErr: map[int]string{}}
	for _, p := range parts {
		if p.Content == ContentFAT {
			e.esp = append(e.esp, p)
		}
	}
	for _, v := range vols {
		if v.content == ContentFAT {
			e.espVols = append(e.espVols, v)
			continue
		}
		e.discover(v)
	}
	e.pickBoot()
	e.pickRoot()
	if e.root == nil && opts.noRootReason != "" {
		e.noRoot = opts.noRootReason
	}
	if e.root != nil {
		e.mountFromFstab(parts)
	}
	return e
}

// guestEdits finds the guest's /boot, root and fstab-mounted XFS filesystems on vols and computes the
// edits that undo ADE, as patches in output coordinates. Only a strict-initramfs failure is an error;
// everything else that cannot be done is a warning.
func guestEdits(ctx context.Context, vols []guestVolume, parts []PartitionInfo, opts guestOptions) (*guestEditor, error) {
	e := discoverGuest(ctx, vols, parts, opts)
	if vm := opts.vm; vm != nil {
		e.policy.CrypttabMappers = vm.mappers
		e.policy.FstabDevices = vm.fstab
		e.policy.FstabDrop = vm.fstabDrop
		e.policy.FstabAdd = vm.fstabAdd
		e.vmWaagent = vm.waagent
		e.vmDevices = vm.devices
		e.vmBackups = vm.wipeBackups
	}
	if e.isInitramfsTools() {
		// Ubuntu: no kernel argument switches ADE's scripts off, so every initrd edit is required,
		// and the root is named by UUID where ADE's root=/dev/mapper/osencrypt was.
		e.tools, e.strict = true, true
		e.policy.RootUUID = rootUUIDUnknown
		if e.root != nil {
			e.policy.RootUUID = e.root.uuid()
		}
	}
	if e.root != nil {
		e.policy.DropDebug = e.exists("/usr/lib/dracut/modules.d/91ade") || e.exists("/lib/dracut/modules.d/91ade")
		if err := e.rootEdits(); err != nil {
			return nil, err
		}
	}
	if e.boot != nil {
		if err := e.bootEdits(); err != nil {
			return nil, err
		}
	}
	if e.boot == nil && e.root != nil {
		e.espEdits(e.policy) // with /boot, bootEdits did them with its policy
	}
	e.dataVolumeEdits()
	if e.tools {
		if err := e.toolsChecks(); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(e.patches, func(i, j int) bool { return e.patches[i].Offset < e.patches[j].Offset })
	for i := 1; i < len(e.patches); i++ {
		a, b := e.patches[i-1], e.patches[i]
		if a.Offset+int64(a.Length) > b.Offset {
			return nil, fmt.Errorf("guest edits overlap at output byte %d (%s; %s)", b.Offset, a.Why, b.Why)
		}
	}
	return e, nil
}

// lvmDevices sets the policy's map for the LVM devices file: each dm-crypt device the conversion
// removes — osencrypt, and on a whole-VM plan the converted data volumes' — to the device crypttab
// says it opened, which the PV is on once plaintext.
func (e *guestEditor) lvmDevices() {
	b, err := e.readGuest(guest.PathCrypttab)
	if err != nil {
		return
	}
	devs := map[string]string{}
	for _, ce := range guest.ParseCrypttab(b) {
		if strings.HasPrefix(ce.Device, "/dev/") && (ce.Mapper == guest.MapperOS || slices.Contains(e.policy.CrypttabMappers, ce.Mapper)) {
			devs["/dev/mapper/"+ce.Mapper] = ce.Device
		}
	}
	for m, d := range e.vmDevices {
		devs[m] = d
	}
	e.policy.LVMDevices = devs
	// A devices file that names a converted PV by its dm-crypt device is turned off (see
	// guest.Policy.DisableLVMDevicesFile): entries lvm cannot match would hide the PV.
	if df, err := e.readGuest(guest.PathLVMDevices); err == nil {
		if _, ch := e.policy.FixLVMDevices(df); ch != nil {
			e.policy.DisableLVMDevicesFile = true
			e.warn(WarnAfterBoot, "%s lists converted PVs by their dm-crypt devices: the conversion turns it off in %s (use_devicesfile = 0); "+
				"after the first boot run `vgimportdevices -a` and set use_devicesfile = 1 to turn it on again", guest.PathLVMDevices, guest.PathLVMConf)
		}
	}
}

// wipeADEBackups wipes the copies of fstab and waagent.conf that ADE saved in /etc before editing them
// for the data volumes and the resource disk (fstab.azure.backup, fstab.backup.<uuid>,
// waagent.conf.rdbak1/.rdbak2): once every volume is converted they describe nothing that exists.
func (e *guestEditor) wipeADEBackups() {
	g, p := e.resolve("/etc")
	if g == nil {
		return
	}
	ents, err := g.fs.ReadDir(p)
	if err != nil {
		return
	}
	for _, d := range ents {
		if d.Name == "fstab.azure.backup" || strings.HasPrefix(d.Name, "fstab.backup.") ||
			d.Name == "waagent.conf.rdbak1" || d.Name == "waagent.conf.rdbak2" {
			e.wipeTree("/etc/"+d.Name, "wipe ADE's backup of a file it edited for the VM's other volumes")
		}
	}
}

// adeBackupDir is the directory ADE leaves at the root of every data volume it encrypts, holding the
// volume's crypttab and fstab lines (ade-internals §10.2).
const adeBackupDir = "/.azure_ade_backup_mount_info"

// dataVolumeEdits wipes ADE's backup of a data volume's mount lines, on every filesystem that has one.
func (e *guestEditor) dataVolumeEdits() {
	const why = "wipe ADE's backup of the data volume's crypttab and fstab lines"
	for _, g := range e.fss {
		if has(g.fs, adeBackupDir) {
			label := g.guestPath(adeBackupDir)
			if g.mount == "" {
				label = g.name + ":" + adeBackupDir
			}
			e.wipeIn(g, adeBackupDir, label, why, nil)
		}
	}
}

func (e *guestEditor) warn(code WarningCode, format string, args ...any) {
	e.warnings = append(e.warnings, warning(code, format, args...))
}

// fixFunc computes a file's new content (nil: no change) within room bytes.
type fixFunc func(b []byte, room int) ([]byte, []guest.Change, error)

func (e *guestEditor) rootEdits() error {
	e.lvmDevices()
	pol := e.policy
	noGrow := func(f func([]byte) ([]byte, []guest.Change)) fixFunc {
		return func(b []byte, _ int) ([]byte, []guest.Change, error) { n, c := f(b); return n, c, nil }
	}
	e.editFile(guest.PathDefaultGrub, pol.FixDefaultGrub)
	e.editFile(guest.PathKernelCmdline, noGrow(pol.FixKernelCmdline))
	e.editFile(guest.PathCrypttab, noGrow(pol.FixCrypttab))
	e.editFile(guest.PathFstab, noGrow(pol.FixFstab))
	if e.vmWaagent {
		rdbak1, _ := e.readGuest(guest.PathWaagentConf + ".rdbak1")
		rdbak2, _ := e.readGuest(guest.PathWaagentConf + ".rdbak2")
		e.editFile(guest.PathWaagentConf, noGrow(func(b []byte) ([]byte, []guest.Change) { return guest.FixWaagentConf(b, rdbak1, rdbak2) }))
	}
	e.editFile(guest.PathLVMConf, noGrow(pol.FixLVMConf))
	e.editFile(guest.PathLVMDevices, noGrow(pol.FixLVMDevices))
	if e.vmBackups {
		e.wipeADEBackups()
	}
	dracut := func(p string) fixFunc {
		return func(b []byte, room int) ([]byte, []guest.Change, error) {
			n, c := guest.FixDracutConf(p, b, room)
			return n, c, nil
		}
	}
	e.editFile("/etc/dracut.conf", dracut("/etc/dracut.conf"))
	if g, p := e.resolve("/etc/dracut.conf.d"); g != nil {
		if ents, err := g.fs.ReadDir(p); err == nil {
			for _, d := range ents {
				if strings.HasSuffix(d.Name, ".conf") {
					gp := path.Join("/etc/dracut.conf.d", d.Name)
					e.editFile(gp, dracut(gp))
				}
			}
		}
	}
	for _, dir := range adeModuleDirs {
		g, p := e.resolve(dir)
		if g == nil {
			continue
		}
		ents, err := g.fs.ReadDir(p)
		if err != nil {
			continue
		}
		for _, d := range ents {
			gp := path.Join(dir, d.Name)
			if d.Name == "module-setup.sh" {
				e.editFile(gp, func(b []byte, room int) ([]byte, []guest.Change, error) {
					n, c, err := guest.DisableDracutModule(b, room)
					for i := range c {
						c[i].Why = "disable ADE's dracut module so future initramfs builds leave it out: " + c[i].Why
					}
					return n, c, err
				})
				continue
			}
			e.editFile(gp, func(b []byte, room int) ([]byte, []guest.Change, error) {
				if len(b) == 0 || string(b) == removedHook || (len(b) == 2 && string(b) == "#\n") {
					return nil, nil, nil
				}
				n := []byte(removedHook)
				if len(n) > room && len(n) > len(b) {
					n = []byte("#\n")
				}
				return n, []guest.Change{{Why: "replace a file of ADE's dracut module (it names rd.luks.ade and osencrypt)",
					Before: []string{fmt.Sprintf("(%d bytes)", len(b))}, After: []string{strings.TrimSpace(string(n))}}}, nil
			})
		}
	}
	for _, dir := range []string{"/usr/lib/dracut/modules.d/90crypt", "/lib/dracut/modules.d/90crypt"} {
		if g, p := e.resolve(dir); g != nil {
			if ents, err := g.fs.ReadDir(p); err == nil {
				for _, d := range ents {
					if strings.HasSuffix(d.Name, ".orig") {
						e.warn(WarnRebuildInitramfs, "%s holds %s: ADE patched dracut's 90crypt module; restore the .orig files and rebuild the initramfs in the guest", dir, d.Name)
						break
					}
				}
			}
		}
	}
	if e.tools {
		e.toolsRootEdits()
	}
	e.wipeADEState()
	return nil
}

// adeStateDir is ADE's state directory on the root filesystem.
const adeStateDir = "/var/lib/azure_disk_encryption_config"

// wipeADEState zeroes ADE's state directory. Unless every volume of the VM is converted (a whole-VM
// plan), the files a volume left encrypted may still need are kept: dual-pass data disks' only LUKS
// headers (azureluksheader*), the legacy mount table and the keys ADE kept there.
func (e *guestEditor) wipeADEState() {
	var kept []string
	var keep func(gp string) bool // nil: everything goes
	if !e.vmBackups {
		keep = func(gp string) bool {
			name := path.Base(gp)
			if strings.HasPrefix(name, "azureluksheader") || strings.HasPrefix(name, "cleartext_key") || name == "azure_crypt_mount" || name == "bek_backup" {
				kept = append(kept, name)
				return true
			}
			return false
		}
	}
	if g, p := e.resolve(adeStateDir); g != nil {
		e.wipeIn(g, p, adeStateDir, "wipe ADE's state and configuration", keep)
	}
	if len(kept) > 0 {
		e.warn(WarnNotEdited, "%s: kept %s: a volume left encrypted may need them (a dual-pass data disk's only LUKS header); "+
			"convert the VM's volumes with this disk (luksconv vm convert), then delete the directory", adeStateDir, strings.Join(kept, ", "))
	}
}

func (e *guestEditor) bootEdits() error {
	g := e.boot
	// The initramfs first: whether its ADE hooks stay decides the kernel arguments below.
	if ents, err := g.fs.ReadDir("/"); err == nil {
		for _, d := range ents {
			// dracut's initramfs-RELEASE.img, initramfs-tools' initrd.img-RELEASE
			if strings.HasPrefix(d.Name, "initramfs-") && strings.HasSuffix(d.Name, ".img") || strings.HasPrefix(d.Name, "initrd.img-") {
				if err := e.editInitramfs("/" + d.Name); err != nil {
					return err
				}
			}
		}
	}
	pol := e.bootPolicy()
	e.espEdits(pol)
	for _, p := range []string{"/grub2/grubenv", "/grub/grubenv"} {
		gp := g.guestPath(p)
		ino, err := g.fs.Lookup(p)
		if err != nil {
			continue
		}
		if ino.IsSymlink() {
			t, _ := g.fs.Readlink(p)
			if len(e.espRead) > 0 && strings.Contains(t, "efi/EFI/") {
				continue // edited on the EFI System Partition
			}
			e.warn(WarnNotEdited, "%s is a symbolic link to %s (the EFI System Partition, FAT), which luksconv does not edit yet: its kernelopts may still carry ADE's arguments", gp, t)
			continue
		}
		e.editFile(gp, func(b []byte, _ int) ([]byte, []guest.Change, error) {
			n, c, err := pol.FixGrubenv(b)
			if errors.Is(err, guest.ErrNotGrubenv) {
				e.warn(WarnNotEdited, "%s: %v; left alone", gp, err)
				return nil, nil, nil
			}
			return n, c, err
		})
	}
	for _, p := range []string{"/grub2/grub.cfg", "/grub/grub.cfg"} {
		gp := g.guestPath(p)
		e.editFile(gp, func(b []byte, _ int) ([]byte, []guest.Change, error) {
			n, c := pol.FixGrubCfg(gp, b)
			return n, c, nil
		})
	}
	if ents, err := g.fs.ReadDir("/loader/entries"); err == nil {
		for _, d := range ents {
			if !strings.HasSuffix(d.Name, ".conf") {
				continue
			}
			gp := g.guestPath("/loader/entries/" + d.Name)
			e.editFile(gp, func(b []byte, _ int) ([]byte, []guest.Change, error) {
				n, c := pol.FixBLSEntry(gp, b)
				return n, c, nil
			})
		}
	}
	if pol.AddArgs != nil {
		for _, ed := range e.edits {
			if strings.Contains(ed.Why, pol.AddWhy) {
				e.bootArgs = pol.AddArgs
				break
			}
		}
		if e.bootArgs == nil && bootArgsPresent(g.fs, pol) {
			e.bootArgs = pol.AddArgs // an earlier conversion added them
		}
		if e.bootArgs == nil && g.readOnly == nil {
			e.warn(WarnInitramfsKept, "%s; but no boot loader command line on %s took the arguments %s: add them by hand (grub's e key) or rebuild the initramfs in the guest",
				pol.AddWhy, g.label(), strings.Join(pol.AddArgs, " "))
		}
	}
	e.wipeTree(g.guestPath("/luks"), "wipe ADE's detached LUKS header (it holds the encrypted volume key)")
	return nil
}

// Kernel arguments that switch off what a kept initramfs still holds of ADE's: 91adeOnline's cmdline
// hook honours rd.ade=0 (without rd.luks.ade.partuuid its udev rule would match every block device);
// rd.lvm.conf=0 makes dracut's lvm module ignore the image's lvm.conf and its filter, which rejects
// the plaintext PV by PARTUUID; rd.luks.crypttab=0 keeps the image's osencrypt crypttab line from
// becoming a unit that waits for the BEK volume.
const (
	argADEOff      = "rd.ade=0"
	argLVMConfOff  = "rd.lvm.conf=0"
	argCrypttabOff = "rd.luks.crypttab=0"
)

// bootPolicy is e.policy plus the kernel arguments the kept initramfs images need, for the command
// lines the boot loader uses (grubenv kernelopts, BLS options, grub.cfg). /etc/default/grub and
// /etc/kernel/cmdline do not get them: they are only needed until the next dracut run, which leaves
// the disabled module out.
func (e *guestEditor) bootPolicy() guest.Policy {
	pol := e.policy
	var paths, what []string
	hook, lvmFilter, crypttab := false, false, false
	for _, k := range e.kept {
		if k.hook == "91ade" {
			e.warn(WarnRebuildInitramfs, "%s keeps RHEL 7's 91ade hook, which no kernel argument switches off: rebuild the initramfs in the guest (dracut -f --regenerate-all) before booting the plaintext disk", k.path)
			continue
		}
		paths = append(paths, k.path)
		hook = hook || k.hook != ""
		lvmFilter = lvmFilter || k.lvmFilter
		crypttab = crypttab || k.crypttab
	}
	if hook {
		pol.AddArgs = append(pol.AddArgs, argADEOff)
		what = append(what, "ADE's hook")
	}
	if lvmFilter {
		pol.AddArgs = append(pol.AddArgs, argLVMConfOff)
		what = append(what, "ADE's lvm filter")
	}
	if crypttab {
		pol.AddArgs = append(pol.AddArgs, argCrypttabOff)
		what = append(what, "ADE's osencrypt crypttab line")
	}
	if pol.AddArgs == nil {
		return pol
	}
	pol.AddWhy = fmt.Sprintf("%s still holds %s; these arguments switch them off until the next dracut run, which leaves the disabled module out",
		strings.Join(paths, ", "), joinAnd(what))
	return pol
}

// joinAnd joins "a", "b", "c" as "a, b and c".
func joinAnd(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// canEdit reports whether g may be edited, warning once when it may not.
func (e *guestEditor) canEdit(g *guestFS) bool {
	if g.readOnly == nil {
		return true
	}
	if !g.warned {
		g.warned = true
		e.warn(WarnNotEdited, "%s is not edited: %v", g.label(), g.readOnly)
	}
	return false
}

// once reports whether the inode has not been edited yet, and marks it.
func (e *guestEditor) once(g *guestFS, ino *node) bool {
	k := g.name + ":" + strconv.FormatUint(ino.Ino, 10)
	if e.seen[k] {
		return false
	}
	e.seen[k] = true
	return true
}

// editFile reads a regular guest text file, lets fix compute its new content and plans the rewrite.
func (e *guestEditor) editFile(guestPath string, fix fixFunc) {
	g, p := e.resolve(guestPath)
	if g == nil {
		return
	}
	ino, err := g.fs.Lookup(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			e.warn(WarnUnreadable, "%s: %v", guestPath, err)
		}
		return
	}
	if !ino.IsRegular() || !e.once(g, ino) {
		return
	}
	if ino.Size > maxConfigFile {
		e.warn(WarnNotEdited, "%s: %d bytes is too large for a configuration file; not examined", guestPath, ino.Size)
		return
	}
	b, err := readInode(g.fs, ino)
	if err != nil {
		e.warn(WarnUnreadable, "%s: %v", guestPath, err)
		return
	}
	room, err := fileRoom(g.fs, ino)
	if err != nil {
		e.warn(WarnUnreadable, "%s: %v", guestPath, err)
		return
	}
	n, changes, err := fix(b, int(room))
	sc := scanned{path: guestPath, before: b, after: b}
	defer func() { e.files = append(e.files, sc) }()
	if err != nil {
		e.warn(WarnNotEdited, "%s: not edited: %v", guestPath, err)
		return
	}
	if n == nil {
		return
	}
	padded := 0
	if minSize, err := g.fs.MinSize(ino); err == nil && int64(len(n)) < minSize {
		// ext keeps the file's blocks (see fsys.MinSize): end the text with empty lines, which
		// every file edited here (shell, crypttab, fstab, grub.cfg) reads as nothing.
		padded = int(minSize) - len(n)
		n = append(n, bytes.Repeat([]byte{'\n'}, padded)...)
	}
	if bytes.Equal(n, b) || !e.canEdit(g) {
		return // edited by an earlier run, padding included
	}
	if err := e.rewrite(g, ino, n, "guest edit: "+guestPath); err != nil {
		e.warn(WarnNotEdited, "%s: not edited: %v", guestPath, err)
		return
	}
	sc.after = n
	for _, c := range changes {
		why := c.Why
		if c.Path != "" && c.Path != guestPath && !strings.HasSuffix(guestPath, c.Path) {
			why += " (" + c.Path + ")"
		}
		if padded > 0 {
			why += fmt.Sprintf(" (%d empty lines at the end keep the file's blocks)", padded)
		}
		e.edits = append(e.edits, Edit{Filesystem: g.label(), Path: guestPath, Why: why, Before: c.Before, After: c.After})
	}
}

// initramfsAlternatives are the formats tried, in order, when an edited initramfs does not fit in its
// own format: xz compresses best with luksconv's encoders and every RHEL and Ubuntu kernel unpacks it;
// zstd (RHEL 9) comes next; gzip last.
var initramfsAlternatives = []initramfs.Compression{initramfs.XZ, initramfs.Zstd, initramfs.Gzip}

// maxKernelConfig bounds a /boot/config-RELEASE file read to learn the kernel's decompressors
// (RHEL's are about 200 KiB).
const maxKernelConfig = 4 << 20

// wipeTree zeroes the content of every regular file under guest path dir (or dir itself if it is a
// file), keeping sizes.
func (e *guestEditor) wipeTree(dir, why string) {
	if g, p := e.resolve(dir); g != nil {
		e.wipeIn(g, p, dir, why, nil)
	}
}

// wipeIn zeroes the regular files under path p of g (or p itself), named dir in reports, except those
// keep (if not nil) reports true for, given their guest path.
func (e *guestEditor) wipeIn(g *guestFS, p, dir, why string, keep func(gp string) bool) {
	ino, err := g.fs.Lookup(p)
	if err != nil {
		return
	}
	visited := 0
	var walk func(gp, p string, ino *node, depth int)
	walk = func(gp, p string, ino *node, depth int) {
		if visited++; visited > maxWalk || depth > 32 {
			if visited == maxWalk+1 {
				e.warn(WarnNotEdited, "%s: more than %d entries; the rest is not wiped", dir, maxWalk)
			}
			return
		}
		switch {
		case ino.IsDir():
			ents, err := g.fs.ReadDirNode(ino)
			if err != nil {
				e.warn(WarnUnreadable, "%s: %v", gp, err)
				return
			}
			for _, d := range ents {
				child, err := g.fs.Node(d.Ino)
				if err != nil {
					e.warn(WarnUnreadable, "%s/%s: %v", gp, d.Name, err)
					continue
				}
				walk(gp+"/"+d.Name, p+"/"+d.Name, child, depth+1)
			}
		case ino.IsRegular() && (keep == nil || !keep(gp)):
			e.wipeFile(g, gp, ino, why)
		}
	}
	walk(dir, p, ino, 0)
}

func (e *guestEditor) wipeFile(g *guestFS, gp string, ino *node, why string) {
	if !e.once(g, ino) || ino.Size == 0 {
		return
	}
	if ino.inline {
		e.warn(WarnNotEdited, "%s: not wiped: its data is inline in the inode", gp)
		return
	}
	ranges, err := writtenRanges(g.fs, ino, 0, ino.Size)
	if err == nil && ino.shared {
		err = errors.New("reflinked file: its blocks may be shared")
	}
	if err != nil {
		e.warn(WarnNotEdited, "%s: not wiped: %v", gp, err)
		return
	}
	if r, err := g.fs.FileReader(ino); err == nil && allZeroReader(r) {
		e.wipes = append(e.wipes, wipe{path: gp, before: true, after: true})
		return // already wiped
	}
	w := wipe{path: gp}
	defer func() { e.wipes = append(e.wipes, w) }()
	if !e.canEdit(g) {
		return
	}
	if err := e.addWrites(g, e.zeroWrites(ranges), "guest edit: wipe "+gp); err != nil {
		e.warn(WarnNotEdited, "%s: not wiped: %v", gp, err)
		return
	}
	w.after = true
	e.edits = append(e.edits, Edit{Filesystem: g.label(), Path: gp, Why: fmt.Sprintf("%s: %d bytes zeroed", why, ino.Size)})
}

// allZeroReader reports whether r reads as zeros (reads at most 64 MiB).
func allZeroReader(r *io.SectionReader) bool {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < min(r.Size(), 64<<20); off += int64(len(buf)) {
		n, err := r.ReadAt(buf, off)
		if !zeros.Only(buf[:n]) {
			return false
		}
		if err != nil {
			return err == io.EOF
		}
	}
	return r.Size() <= 64<<20
}

// rewrite plans the replacement of ino's content by data and zeroes what the old content left in the
// blocks past the new end, so no copy of it survives on the disk.
func (e *guestEditor) rewrite(g *guestFS, ino *node, data []byte, why string) error {
	ws, err := g.fs.Rewrite(ino, data)
	if err != nil {
		return err
	}
	bs := g.fs.BlockSize()
	from := (int64(len(data)) + bs - 1) / bs * bs
	if from < ino.Size {
		ranges, err := writtenRanges(g.fs, ino, from, ino.Size)
		if err != nil {
			return err
		}
		ws = append(ws, e.zeroWrites(ranges)...)
	}
	return e.addWrites(g, ws, why)
}

// zeroWrites returns writes of zeros over the device ranges, sharing one buffer.
func (e *guestEditor) zeroWrites(ranges []extent.Range) []devWrite {
	const piece = 1 << 20
	if e.zero == nil {
		e.zero = make([]byte, piece)
	}
	var ws []devWrite
	for _, r := range ranges {
		for o := int64(0); o < r.Len; o += piece {
			ws = append(ws, devWrite{Offset: r.Off + o, Data: e.zero[:min(piece, r.Len-o)]})
		}
	}
	return ws
}

// addWrites maps filesystem-device writes to output patches, split where the device's extents do.
func (e *guestEditor) addWrites(g *guestFS, ws []devWrite, why string) error {
	return e.addWritesTo(g.name, g.toOut, ws, why)
}

// addWritesTo maps the device writes of the filesystem name to output patches through toOut.
func (e *guestEditor) addWritesTo(name string, toOut func(off, n int64) ([]extent.Range, error), ws []devWrite, why string) error {
	var ps []Patch
	for _, w := range ws {
		rs, err := toOut(w.Offset, int64(len(w.Data)))
		if err != nil {
			return fmt.Errorf("%s: mapping device bytes %d+%d: %w", name, w.Offset, len(w.Data), err)
		}
		pos := int64(0)
		for _, r := range rs {
			ps = append(ps, Patch{Offset: r.Off, Length: int(r.Len), Why: why, Data: w.Data[pos : pos+r.Len]})
			pos += r.Len
		}
		if pos != int64(len(w.Data)) {
			return fmt.Errorf("%s: device bytes %d+%d map to %d output bytes", name, w.Offset, len(w.Data), pos)
		}
	}
	e.patches = append(e.patches, ps...)
	return nil
}

// editGuest adds the guest edits to the plan: vols are the disk's volumes as the output holds them (the
// decrypted one read through its plaintext), luksLeft says which stay encrypted.
func (p *Plan) editGuest(ctx context.Context, rep *Report, vols []guestVolume, luksLeft []string, opts PlanOptions) error {
	if opts.vm != nil {
		luksLeft = append(luksLeft, opts.vm.left...)
	}
	e, err := guestEdits(ctx, vols, rep.Partitions, guestOptions{strictInitramfs: opts.StrictInitramfs, vm: opts.vm})
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.Warnings = append(p.Warnings, e.warnings...)
	p.Edits = e.edits
	p.Patches = append(p.Patches, e.patches...)
	if e.boot != nil || e.root != nil {
		p.Readiness = e.readiness(luksLeft, true)
	}
	return nil
}

// guestVolumes lists the volumes of a disk that may hold guest filesystems: partition part decrypted
// (read through plain, its byte 0 at output offset volOut), the others as they are. luksLeft says which
// partitions stay encrypted.
func guestVolumes(src *Source, rep *Report, part int, plain io.ReaderAt, volOut, volSize int64, content Content) (vols []guestVolume, luksLeft []string) {
	for _, pi := range rep.Partitions {
		switch {
		case pi.Number == part:
			vols = append(vols, guestVolume{part: pi.Number, partUUID: pi.GUID, r: plain, size: volSize, out: volOut, content: content})
		case pi.LUKS != nil || pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2:
			luksLeft = append(luksLeft, fmt.Sprintf("partition %d is still LUKS-encrypted", pi.Number))
		case pi.Content == ContentXFS || pi.Content == ContentExt4 || pi.Content == ContentLVM2 || pi.Content == ContentFAT:
			vols = append(vols, guestVolume{part: pi.Number, partUUID: pi.GUID, r: io.NewSectionReader(src, pi.Offset, pi.Size),
				size: pi.Size, out: pi.Offset, content: pi.Content})
		}
	}
	return vols, luksLeft
}

// inspectGuest adds to rep what convert would change in the guest and the readiness of the guest as it
// is. Without a key only unencrypted filesystems can be read: for an ADE disk that is /boot.
func inspectGuest(ctx context.Context, src *Source, rep *Report) error {
	var vols []guestVolume
	var luksLeft []string
	for _, pi := range rep.Partitions {
		switch {
		case pi.LUKS != nil || pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2:
			luksLeft = append(luksLeft, fmt.Sprintf("partition %d is LUKS-encrypted", pi.Number))
		case pi.Content == ContentXFS || pi.Content == ContentExt4 || pi.Content == ContentLVM2 || pi.Content == ContentFAT:
			vols = append(vols, guestVolume{part: pi.Number, partUUID: pi.GUID, r: io.NewSectionReader(src, pi.Offset, pi.Size),
				size: pi.Size, out: pi.Offset, content: pi.Content})
		}
	}
	opts := guestOptions{}
	if len(luksLeft) > 0 {
		opts.noRootReason = "the root filesystem is encrypted: a plan, made with the key, shows its edits"
	}
	e, err := guestEdits(ctx, vols, rep.Partitions, opts)
	if err != nil {
		rep.Warnings = append(rep.Warnings, warning(WarnNotEdited, "%v", err))
		return ctx.Err()
	}
	rep.Warnings = append(rep.Warnings, e.warnings...)
	rep.Edits = e.edits
	if e.boot != nil || e.root != nil {
		rep.Readiness = e.readiness(luksLeft, false)
	}
	return ctx.Err()
}
