package luksconv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/initramfs"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/xfs"
)

// Edit is one change the conversion makes to a file inside the guest, so that the output boots
// without Azure Disk Encryption. Lines are redacted by the guest package.
type Edit struct {
	// Filesystem names where the file lives: "/boot (partition 2)", "/ (rootvg/rootlv)".
	Filesystem string `json:"filesystem"`
	// Path is the file's path in the running guest, e.g. /boot/grub2/grubenv.
	Path string `json:"path"`
	Why  string `json:"why"`
	// Before and After are the changed lines (After is empty when lines are removed).
	Before []string `json:"before,omitempty"`
	After  []string `json:"after,omitempty"`
}

// Check is one line of the readiness summary.
type Check struct {
	Name string `json:"name"`
	// Status is "pass", "fail" or "skip" (not checked; Detail says why).
	Status string   `json:"status"`
	Detail []string `json:"detail,omitempty"`
}

// Readiness is a LEAPP-style summary of ADE residue: no LUKS volume, no ADE kernel argument,
// crypttab line, LVM filter or active dracut module, a 1024-byte grubenv, /etc/default/grub with a
// final newline. Ready means no check failed; skipped checks are not counted.
type Readiness struct {
	Ready  bool    `json:"ready"`
	Checks []Check `json:"checks"`
}

// Check statuses.
const (
	CheckPass = "pass"
	CheckFail = "fail"
	CheckSkip = "skip"
)

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

// guestVolume is a volume that may hold guest filesystems: a partition, or the decrypted volume.
type guestVolume struct {
	part     int
	partUUID string
	r        io.ReaderAt
	size     int64
	out      int64 // output offset of byte 0
	content  Content
}

// outRange is a run of output bytes.
type outRange struct{ off, n int64 }

// guestFS is an XFS filesystem of the guest and how its device maps to the output.
type guestFS struct {
	name     string // "partition 2", "rootvg/varlv"
	part     int
	partUUID string
	vg, lv   string
	fs       *xfs.FS
	toOut    func(off, n int64) ([]outRange, error)
	mount    string
	readOnly error // why it must not be edited, nil if it may be
	warned   bool
}

func (g *guestFS) label() string {
	if g.mount == "" {
		return g.name
	}
	return fmt.Sprintf("%s (%s)", g.mount, g.name)
}

// guestPath is the path of fsPath in the running guest.
func (g *guestFS) guestPath(fsPath string) string {
	return path.Join(g.mount, fsPath)
}

func (g *guestFS) uuid() string {
	u := g.fs.SB.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func (g *guestFS) fsLabel() string {
	return string(bytes.TrimRight(g.fs.SB.FName[:], "\x00"))
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
	strict   bool
	policy   guest.Policy
	fss      []*guestFS
	boot     *guestFS
	root     *guestFS
	edits    []Edit
	patches  []Patch
	warnings []string
	files    []scanned
	wipes    []wipe
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

// keptInitramfs is an initramfs on /boot whose ADE hooks stay (the image without them did not fit, or
// it could not be read), and what of ADE's it holds.
type keptInitramfs struct {
	path string
	// hook is the ADE module whose hook stays: "91adeOnline", whose cmdline hook rd.ade=0 switches
	// off; "91ade" (RHEL 7), which has no such switch; "" for none (only ADE's lvm.conf or crypttab
	// copies stay).
	hook string
	// lvmFilter: the image's lvm.conf carries ADE's filter rejecting the (now plaintext) PV.
	lvmFilter bool
	// crypttab: the image's crypttab names osencrypt.
	crypttab bool
}

// guestOptions tune guestEdits.
type guestOptions struct {
	strictInitramfs bool
	// noRootReason, when set, says why no root filesystem can be looked at (inspect of an encrypted disk).
	noRootReason string
}

// guestEdits finds the guest's /boot, root and fstab-mounted XFS filesystems on vols and computes the
// edits that undo ADE, as patches in output coordinates. Only a strict-initramfs failure is an error;
// everything else that cannot be done is a warning.
func guestEdits(vols []guestVolume, parts []PartitionInfo, opts guestOptions) (*guestEditor, error) {
	e := &guestEditor{strict: opts.strictInitramfs, seen: map[string]bool{}, initrd: map[string][]string{},
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
	if e.boot == nil && e.root == nil {
		return e, nil
	}
	if e.root != nil {
		e.mountFromFstab(parts)
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
	if e.boot == nil {
		e.espEdits(e.policy) // with /boot, bootEdits did them with its policy
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

func (e *guestEditor) warn(s string) { e.warnings = append(e.warnings, s) }

// discover opens the XFS filesystems of a volume: the volume itself, or the XFS logical volumes of an
// LVM PV.
func (e *guestEditor) discover(v guestVolume) {
	switch v.content {
	case ContentXFS:
		x, err := xfs.Open(v.r, v.size)
		if err != nil {
			e.warn(fmt.Sprintf("partition %d: %v", v.part, err))
			return
		}
		out := v.out
		e.fss = append(e.fss, &guestFS{name: fmt.Sprintf("partition %d", v.part), part: v.part, partUUID: v.partUUID,
			fs: x, readOnly: x.Writable(), toOut: func(off, n int64) ([]outRange, error) {
				return []outRange{{out + off, n}}, nil
			}})
	case ContentLVM2:
		pv, err := lvm.Open(v.r, v.size)
		if err != nil || pv.VG == nil {
			return // usedOnly already warned
		}
		for i := range pv.VG.LVs {
			lv := &pv.VG.LVs[i]
			lvr := pv.LVReader(v.r, lv)
			head := make([]byte, probeSize)
			if n, _ := lvr.ReadAt(head, 0); probeBytes(head[:n]) != ContentXFS {
				continue
			}
			name := pv.VG.Name + "/" + lv.Name
			x, err := xfs.Open(lvr, lv.Size)
			if err != nil {
				e.warn(fmt.Sprintf("%s: %v", name, err))
				continue
			}
			out := v.out
			e.fss = append(e.fss, &guestFS{name: name, part: v.part, vg: pv.VG.Name, lv: lv.Name, fs: x, readOnly: x.Writable(),
				toOut: func(off, n int64) ([]outRange, error) {
					ext, err := pv.Map(lv, off, n)
					if err != nil {
						return nil, err
					}
					r := make([]outRange, 0, len(ext))
					for _, x := range ext {
						r = append(r, outRange{out + x.PVOff, x.Len})
					}
					return r, nil
				}})
		}
	}
}

func has(x *xfs.FS, p string) bool {
	_, err := x.Lookup(p)
	return err == nil
}

// pickBoot chooses /boot: the partition holding ADE's header, or else one with a GRUB or BLS
// configuration and no /etc.
func (e *guestEditor) pickBoot() {
	for _, want := range []func(*xfs.FS) bool{
		func(x *xfs.FS) bool { return has(x, ADEHeaderPath) },
		func(x *xfs.FS) bool {
			return !has(x, "/etc") && (has(x, "/grub2/grub.cfg") || has(x, "/grub2/grubenv") || has(x, "/loader/entries"))
		},
	} {
		for _, g := range e.fss {
			if g.lv == "" && want(g.fs) {
				e.boot, g.mount = g, "/boot"
				g.fs.MountPoint = "/boot"
				return
			}
		}
	}
}

// pickRoot chooses the root filesystem: the one with /etc/fstab and /etc/crypttab or /etc/os-release.
func (e *guestEditor) pickRoot() {
	var cands []*guestFS
	for _, g := range e.fss {
		if g != e.boot && has(g.fs, "/etc/fstab") && (has(g.fs, "/etc/crypttab") || has(g.fs, "/etc/os-release")) {
			cands = append(cands, g)
		}
	}
	if len(cands) == 0 {
		e.noRoot = "no filesystem with /etc/fstab and /etc/os-release or /etc/crypttab was found"
		return
	}
	if len(cands) > 1 {
		var names []string
		for _, g := range cands {
			names = append(names, g.name)
		}
		e.warn(fmt.Sprintf("several filesystems look like a root filesystem (%s); editing %s", strings.Join(names, ", "), cands[0].name))
	}
	e.root, cands[0].mount = cands[0], "/"
	cands[0].fs.MountPoint = "/"
}

// mountFromFstab assigns mount points to the other filesystems as the root's /etc/fstab names them.
func (e *guestEditor) mountFromFstab(parts []PartitionInfo) {
	b, err := readFile(e.root.fs, "/etc/fstab")
	if err != nil {
		e.warn(fmt.Sprintf("%s: /etc/fstab: %v", e.root.name, err))
		return
	}
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		spec, mnt := unescapeFstab(f[0]), unescapeFstab(f[1])
		if !strings.HasPrefix(mnt, "/") || mnt == "/" || mnt == "/boot" {
			continue
		}
		for _, g := range e.fss {
			if g.mount == "" && g.matches(spec) {
				g.mount = path.Clean(mnt)
				g.fs.MountPoint = g.mount
				break
			}
		}
	}
}

// matches reports whether an fstab device spec names g.
func (g *guestFS) matches(spec string) bool {
	cut := func(prefixes ...string) (string, bool) {
		for _, p := range prefixes {
			if v, ok := strings.CutPrefix(spec, p); ok {
				return strings.Trim(v, `"`), true
			}
		}
		return "", false
	}
	if v, ok := cut("UUID=", "/dev/disk/by-uuid/"); ok {
		return strings.EqualFold(v, g.uuid())
	}
	if v, ok := cut("LABEL=", "/dev/disk/by-label/"); ok {
		return v != "" && v == g.fsLabel()
	}
	if v, ok := cut("PARTUUID=", "/dev/disk/by-partuuid/"); ok {
		return g.lv == "" && g.partUUID != "" && strings.EqualFold(v, g.partUUID)
	}
	if g.lv == "" {
		return false
	}
	dm := strings.ReplaceAll(g.vg, "-", "--") + "-" + strings.ReplaceAll(g.lv, "-", "--")
	return spec == "/dev/mapper/"+dm || spec == "/dev/"+g.vg+"/"+g.lv
}

// unescapeFstab decodes fstab's octal escapes (\040 for a space).
func unescapeFstab(s string) string {
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

// resolve finds the filesystem holding guest path p (longest mount point) and the path inside it.
func (e *guestEditor) resolve(p string) (*guestFS, string) {
	var best *guestFS
	for _, g := range e.fss {
		if g.mount == "" {
			continue
		}
		if p == g.mount || g.mount == "/" || strings.HasPrefix(p, g.mount+"/") {
			if best == nil || len(g.mount) > len(best.mount) {
				best = g
			}
		}
	}
	if best == nil {
		return nil, ""
	}
	rel := strings.TrimPrefix(p, best.mount)
	if best.mount == "/" {
		rel = p
	}
	if rel == "" {
		rel = "/"
	}
	return best, rel
}

func (e *guestEditor) exists(guestPath string) bool {
	g, p := e.resolve(guestPath)
	return g != nil && has(g.fs, p)
}

// fixFunc computes a file's new content (nil: no change) within room bytes.
type fixFunc func(b []byte, room int) ([]byte, []guest.Change, error)

func (e *guestEditor) rootEdits() error {
	pol := e.policy
	noGrow := func(f func([]byte) ([]byte, []guest.Change)) fixFunc {
		return func(b []byte, _ int) ([]byte, []guest.Change, error) { n, c := f(b); return n, c, nil }
	}
	e.editFile(guest.PathDefaultGrub, pol.FixDefaultGrub)
	e.editFile(guest.PathKernelCmdline, noGrow(pol.FixKernelCmdline))
	e.editFile(guest.PathCrypttab, noGrow(pol.FixCrypttab))
	e.editFile(guest.PathFstab, noGrow(guest.FixFstab))
	e.editFile(guest.PathLVMConf, noGrow(guest.FixLVMConf))
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
						e.warn(fmt.Sprintf("%s holds %s: ADE patched dracut's 90crypt module; restore the .orig files and rebuild the initramfs in the guest", dir, d.Name))
						break
					}
				}
			}
		}
	}
	e.wipeTree("/var/lib/azure_disk_encryption_config", "wipe ADE's state and configuration")
	return nil
}

func (e *guestEditor) bootEdits() error {
	g := e.boot
	// The initramfs first: whether its ADE hooks stay decides the kernel arguments below.
	if ents, err := g.fs.ReadDir("/"); err == nil {
		for _, d := range ents {
			if strings.HasPrefix(d.Name, "initramfs-") && strings.HasSuffix(d.Name, ".img") {
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
			e.warn(fmt.Sprintf("%s is a symbolic link to %s (the EFI System Partition, FAT), which luksconv does not edit yet: its kernelopts may still carry ADE's arguments", gp, t))
			continue
		}
		e.editFile(gp, func(b []byte, _ int) ([]byte, []guest.Change, error) {
			n, c, err := pol.FixGrubenv(b)
			if errors.Is(err, guest.ErrNotGrubenv) {
				e.warn(fmt.Sprintf("%s: %v; left alone", gp, err))
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
			e.warn(fmt.Sprintf("%s; but no boot loader command line on %s took the arguments %s: add them by hand (grub's e key) or rebuild the initramfs in the guest",
				pol.AddWhy, g.label(), strings.Join(pol.AddArgs, " ")))
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
			e.warn(fmt.Sprintf("%s keeps RHEL 7's 91ade hook, which no kernel argument switches off: rebuild the initramfs in the guest (dracut -f --regenerate-all) before booting the plaintext disk", k.path))
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
		e.warn(fmt.Sprintf("%s is not edited: %v", g.label(), g.readOnly))
	}
	return false
}

// once reports whether the inode has not been edited yet, and marks it.
func (e *guestEditor) once(g *guestFS, ino *xfs.Inode) bool {
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
			e.warn(fmt.Sprintf("%s: %v", guestPath, err))
		}
		return
	}
	if !ino.IsRegular() || !e.once(g, ino) {
		return
	}
	if ino.Size > maxConfigFile {
		e.warn(fmt.Sprintf("%s: %d bytes is too large for a configuration file; not examined", guestPath, ino.Size))
		return
	}
	b, err := readInode(g.fs, ino)
	if err != nil {
		e.warn(fmt.Sprintf("%s: %v", guestPath, err))
		return
	}
	room, err := fileRoom(g.fs, ino)
	if err != nil {
		e.warn(fmt.Sprintf("%s: %v", guestPath, err))
		return
	}
	n, changes, err := fix(b, int(room))
	sc := scanned{path: guestPath, before: b, after: b}
	defer func() { e.files = append(e.files, sc) }()
	if err != nil {
		e.warn(fmt.Sprintf("%s: not edited: %v", guestPath, err))
		return
	}
	if n == nil || !e.canEdit(g) {
		return
	}
	if err := e.rewrite(g, ino, n, "guest edit: "+guestPath); err != nil {
		e.warn(fmt.Sprintf("%s: not edited: %v", guestPath, err))
		return
	}
	sc.after = n
	for _, c := range changes {
		why := c.Why
		if c.Path != "" && c.Path != guestPath && !strings.HasSuffix(guestPath, c.Path) {
			why += " (" + c.Path + ")"
		}
		e.edits = append(e.edits, Edit{Filesystem: g.label(), Path: guestPath, Why: why, Before: c.Before, After: c.After})
	}
}

// editInitramfs removes ADE's hooks from /boot's initramfs image p, in place if the new image fits the
// file's blocks.
func (e *guestEditor) editInitramfs(p string) error {
	g := e.boot
	gp := g.guestPath(p)
	ino, err := g.fs.Lookup(p)
	if err != nil || !ino.IsRegular() || !e.once(g, ino) {
		return nil
	}
	e.initrdList = append(e.initrdList, gp)
	if ino.Size > initramfs.MaxImageSize {
		e.warn(fmt.Sprintf("%s: %d bytes is larger than luksconv reads (%d); its ADE hooks, if any, remain", gp, ino.Size, int64(initramfs.MaxImageSize)))
		e.initrd[gp] = []string{"not examined (too large)"}
		e.keepUnread(gp)
		return nil
	}
	r, err := g.fs.FileReader(ino)
	if err != nil {
		e.warn(fmt.Sprintf("%s: %v", gp, err))
		return nil
	}
	img, err := initramfs.Parse(r, ino.Size)
	if err != nil {
		e.warn(fmt.Sprintf("%s is not an initramfs luksconv can read (%v); ADE's hooks, if it has any, remain: rebuild it in the guest (dracut -f --regenerate-all)", gp, err))
		e.initrd[gp] = []string{"not examined: " + err.Error()}
		e.keepUnread(gp)
		return nil
	}
	edit, findings := initramfs.ADEEdit(img)
	var rebuild []string
	for _, f := range findings {
		if strings.Contains(f, "rebuild") {
			rebuild = append(rebuild, f)
			e.warn(fmt.Sprintf("%s: %s", gp, f))
		}
	}
	e.initrd[gp] = rebuild
	if len(edit.Remove) == 0 && len(edit.RemovePrefix) == 0 && len(edit.Replace) == 0 {
		return nil
	}
	kept := keptInitramfs{path: gp, hook: adeHook(edit), lvmFilter: edit.Replace["etc/lvm/lvm.conf"] != nil,
		crypttab: edit.Replace["etc/crypttab"] != nil}
	fail := func(msg string) error {
		e.initrd[gp] = append(e.initrd[gp], msg)
		e.kept = append(e.kept, kept)
		if e.strict {
			return fmt.Errorf("%s: %s: %w", gp, msg, ErrGuestEdit)
		}
		e.warn(fmt.Sprintf("%s: %s; ADE's hooks stay in it: rebuild it in the guest (dracut -f --regenerate-all)", gp, msg))
		return nil
	}
	out, rep, err := img.Rewrite(r, edit)
	if err != nil {
		return fail(fmt.Sprintf("rewriting without ADE's hooks failed: %v", err))
	}
	room, err := fileRoom(g.fs, ino)
	if err != nil {
		return fail(err.Error())
	}
	recompressed := ""
	if int64(len(out)) > room {
		// luksconv's encoders are weaker than the gzip/xz/zstd binaries dracut ran, so the image
		// re-encoded in its own format can outgrow the file's blocks. A format the kernel also
		// unpacks and that compresses better (xz, zstd) usually fits; the kernel's config says which.
		formats, config := e.kernelFormats(img)
		tried := []string{fmt.Sprintf("%s %d bytes", mainCompression(rep), len(out))}
		for _, c := range formats {
			edit.Compression = c
			o, r2, err := img.Rewrite(r, edit)
			if err != nil {
				return fail(fmt.Sprintf("rewriting without ADE's hooks as %s failed: %v", c, err))
			}
			if int64(len(o)) <= room {
				recompressed = fmt.Sprintf("; re-compressed as %s: luksconv's %s did not fit the file's %d bytes, and %s unpacks %s",
					c, tried[0], room, config, c)
				out, rep = o, r2
				break
			}
			tried = append(tried, fmt.Sprintf("%s %d bytes", c, len(o)))
		}
		if recompressed == "" {
			return fail(fmt.Sprintf("the image without ADE's hooks (%s) does not fit the %d bytes the file owns", strings.Join(tried, ", "), room))
		}
	}
	if !e.canEdit(g) {
		e.initrd[gp] = append(e.initrd[gp], "filesystem not editable")
		e.kept = append(e.kept, kept)
		return nil
	}
	if err := e.rewrite(g, ino, out, "guest edit: "+gp); err != nil {
		return fail(err.Error())
	}
	var details []string
	for _, f := range findings {
		if !strings.Contains(f, "rebuild") {
			details = append(details, f)
		}
	}
	e.edits = append(e.edits, Edit{Filesystem: g.label(), Path: gp,
		Why:    fmt.Sprintf("remove ADE's dracut hooks and files from the initramfs (%d -> %d bytes%s)", rep.OldSize, rep.NewSize, recompressed),
		Before: details})
	return nil
}

// initramfsAlternatives are the formats tried, in order, when an edited initramfs does not fit in its
// own format: xz compresses best with luksconv's encoders and every RHEL kernel since 6 unpacks it;
// zstd (RHEL 9) comes next.
var initramfsAlternatives = []initramfs.Compression{initramfs.XZ, initramfs.Zstd}

// kernelFormats returns the initramfsAlternatives, other than the format img's main archive already has,
// that the kernel img belongs to unpacks, according to /boot/config-RELEASE for every kernel release
// whose modules img carries; and a description of that evidence. Without a config file for each, none:
// a kernel that cannot unpack its initramfs does not boot.
func (e *guestEditor) kernelFormats(img *initramfs.Image) ([]initramfs.Compression, string) {
	kvers := initramfs.KernelVersions(img)
	if len(kvers) == 0 {
		return nil, ""
	}
	ok := map[initramfs.Compression]int{}
	var names []string
	for _, kv := range kvers {
		gp := "/boot/config-" + kv
		g, p := e.resolve(gp)
		if g == nil {
			return nil, ""
		}
		ino, err := g.fs.Lookup(p)
		if err != nil || !ino.IsRegular() || ino.Size > maxKernelConfig {
			return nil, ""
		}
		b, err := readInode(g.fs, ino)
		if err != nil {
			return nil, ""
		}
		for _, c := range initramfs.KernelDecompressors(b) {
			ok[c]++
		}
		names = append(names, gp)
	}
	own := map[initramfs.Compression]bool{}
	for _, s := range img.Segments {
		own[s.Compression] = true
	}
	var out []initramfs.Compression
	for _, c := range initramfsAlternatives {
		if ok[c] == len(kvers) && !own[c] {
			out = append(out, c)
		}
	}
	return out, "the kernel (" + strings.Join(names, ", ") + ")"
}

// maxKernelConfig bounds a /boot/config-RELEASE file read to learn the kernel's decompressors
// (RHEL's are about 200 KiB).
const maxKernelConfig = 4 << 20

// mainCompression names the format of the last rewritten compressed segment: dracut's main archive.
func mainCompression(rep *initramfs.Report) initramfs.Compression {
	c := initramfs.None
	for _, s := range rep.Segments {
		if s.Rewritten && s.Compression != initramfs.None {
			c = s.Compression
		}
	}
	return c
}

// adeHook names the ADE dracut module whose files edit removes: "91ade" if any of RHEL 7's 91ade
// files (its ask script, udev rule or embedded header) is there, else "91adeOnline" for its generator
// or the cmdline hook both share, else "".
func adeHook(edit initramfs.Edit) string {
	hook := ""
	for _, f := range edit.Remove {
		switch path.Base(f) {
		case "cryptroot-ask-ade", "50-udev-ade.rules", "osluksheader":
			return "91ade"
		case "crypt-run-generator-ade", "30-parse-crypt-ade.sh", "parse-crypt-ade.sh", "70-luks-ade.rules":
			hook = "91adeOnline"
		}
	}
	return hook
}

// keepUnread records an initramfs luksconv could not read as keeping ADE's hooks when the root
// filesystem has ADE's dracut module, which any image built since went into; its lvm.conf and
// crypttab copies are taken to carry what the root's had before the edits.
func (e *guestEditor) keepUnread(gp string) {
	k := keptInitramfs{path: gp}
	switch {
	case e.exists("/usr/lib/dracut/modules.d/91ade") || e.exists("/lib/dracut/modules.d/91ade"):
		k.hook = "91ade"
	case e.exists("/usr/lib/dracut/modules.d/91adeOnline") || e.exists("/lib/dracut/modules.d/91adeOnline"):
		k.hook = "91adeOnline"
	default:
		return
	}
	for _, f := range e.files {
		if f.path == guest.PathLVMConf || f.path == guest.PathCrypttab {
			residue := len(guest.Scan(f.path, f.before)) > 0
			k.lvmFilter = k.lvmFilter || (f.path == guest.PathLVMConf && residue)
			k.crypttab = k.crypttab || (f.path == guest.PathCrypttab && residue)
		}
	}
	e.kept = append(e.kept, k)
}

// wipeTree zeroes the content of every regular file under guest path dir (or dir itself if it is a
// file), keeping sizes.
func (e *guestEditor) wipeTree(dir, why string) {
	g, p := e.resolve(dir)
	if g == nil {
		return
	}
	ino, err := g.fs.Lookup(p)
	if err != nil {
		return
	}
	visited := 0
	var walk func(gp, p string, ino *xfs.Inode, depth int)
	walk = func(gp, p string, ino *xfs.Inode, depth int) {
		if visited++; visited > maxWalk || depth > 32 {
			if visited == maxWalk+1 {
				e.warn(fmt.Sprintf("%s: more than %d entries; the rest is not wiped", dir, maxWalk))
			}
			return
		}
		switch {
		case ino.IsDir():
			ents, err := g.fs.ReadDirInode(ino)
			if err != nil {
				e.warn(fmt.Sprintf("%s: %v", gp, err))
				return
			}
			for _, d := range ents {
				child, err := g.fs.Inode(d.Ino)
				if err != nil {
					e.warn(fmt.Sprintf("%s/%s: %v", gp, d.Name, err))
					continue
				}
				walk(gp+"/"+d.Name, p+"/"+d.Name, child, depth+1)
			}
		case ino.IsRegular():
			e.wipeFile(g, gp, ino, why)
		}
	}
	walk(dir, p, ino, 0)
}

func (e *guestEditor) wipeFile(g *guestFS, gp string, ino *xfs.Inode, why string) {
	if !e.once(g, ino) || ino.Size == 0 {
		return
	}
	ranges, err := writtenRanges(g.fs, ino, 0, ino.Size)
	if err == nil && ino.Flags2&xfs.Flag2Reflink != 0 {
		err = errors.New("reflinked file: its blocks may be shared")
	}
	if err != nil {
		e.warn(fmt.Sprintf("%s: not wiped: %v", gp, err))
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
		e.warn(fmt.Sprintf("%s: not wiped: %v", gp, err))
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
		if !allZero(buf[:n]) {
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
func (e *guestEditor) rewrite(g *guestFS, ino *xfs.Inode, data []byte, why string) error {
	ws, err := g.fs.RewriteInode(ino, data, nil)
	if err != nil {
		return err
	}
	bs := int64(g.fs.SB.BlockSize)
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
func (e *guestEditor) zeroWrites(ranges []xfs.Range) []xfs.Write {
	const piece = 1 << 20
	if e.zero == nil {
		e.zero = make([]byte, piece)
	}
	var ws []xfs.Write
	for _, r := range ranges {
		for o := int64(0); o < r.Len; o += piece {
			ws = append(ws, xfs.Write{Offset: r.Off + o, Data: e.zero[:min(piece, r.Len-o)]})
		}
	}
	return ws
}

// addWrites maps filesystem-device writes to output patches, split where the device's extents do.
func (e *guestEditor) addWrites(g *guestFS, ws []xfs.Write, why string) error {
	var ps []Patch
	for _, w := range ws {
		rs, err := g.toOut(w.Offset, int64(len(w.Data)))
		if err != nil {
			return fmt.Errorf("%s: mapping device bytes %d+%d: %w", g.name, w.Offset, len(w.Data), err)
		}
		pos := int64(0)
		for _, r := range rs {
			ps = append(ps, Patch{Offset: r.off, Length: int(r.n), Why: why, Data: w.Data[pos : pos+r.n]})
			pos += r.n
		}
		if pos != int64(len(w.Data)) {
			return fmt.Errorf("%s: device bytes %d+%d map to %d output bytes", g.name, w.Offset, len(w.Data), pos)
		}
	}
	e.patches = append(e.patches, ps...)
	return nil
}

// fileRoom is the bytes a file may grow to in place: the written extents contiguous from offset 0.
func fileRoom(x *xfs.FS, ino *xfs.Inode) (int64, error) {
	exts, err := x.Extents(ino)
	if err != nil {
		return 0, err
	}
	pos := int64(0)
	for _, ex := range exts {
		if ex.FileOff > pos || ex.Unwritten {
			break
		}
		pos = max(pos, ex.FileOff+ex.Len)
	}
	return pos, nil
}

// writtenRanges lists the device ranges backing file bytes [from, to) rounded out to whole blocks,
// written extents only (holes and unwritten extents read as zeros already).
func writtenRanges(x *xfs.FS, ino *xfs.Inode, from, to int64) ([]xfs.Range, error) {
	if !ino.IsRegular() || ino.Flags&xfs.FlagRealtime != 0 {
		return nil, errors.New("not a regular data-device file")
	}
	bs := int64(x.SB.BlockSize)
	from = from / bs * bs
	to = (to + bs - 1) / bs * bs
	exts, err := x.Extents(ino)
	if err != nil {
		return nil, err
	}
	var out []xfs.Range
	for _, ex := range exts {
		s, t := max(ex.FileOff, from), min(ex.FileOff+ex.Len, to)
		if s >= t || ex.Unwritten {
			continue
		}
		out = append(out, xfs.Range{Off: ex.DiskOff + s - ex.FileOff, Len: t - s})
	}
	return out, nil
}

func readInode(x *xfs.FS, ino *xfs.Inode) ([]byte, error) {
	r, err := x.FileReader(ino)
	if err != nil {
		return nil, err
	}
	b := make([]byte, ino.Size)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

func readFile(x *xfs.FS, p string) ([]byte, error) {
	ino, err := x.LookupFollow(p)
	if err != nil {
		return nil, err
	}
	if !ino.IsRegular() || ino.Size > maxConfigFile {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", p, maxConfigFile)
	}
	return readInode(x, ino)
}

// bootArgsPresent reports whether a boot loader command line on /boot (grubenv, grub.cfg, a BLS entry)
// already carries every argument pol adds.
func bootArgsPresent(x *xfs.FS, pol guest.Policy) bool {
	files := []string{"/grub2/grubenv", "/grub2/grub.cfg", "/grub/grub.cfg"}
	if ents, err := x.ReadDir("/loader/entries"); err == nil {
		for _, d := range ents {
			files = append(files, "/loader/entries/"+d.Name)
		}
	}
	unquote := strings.NewReplacer(`"`, " ", `'`, " ") // grub.cfg quotes `set kernelopts="…"`
	for _, f := range files {
		b, err := readFile(x, f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if pol.HasAddArgs(unquote.Replace(line)) {
				return true
			}
		}
	}
	return false
}

// readiness summarises ADE residue in the examined files, after the edits (after) or as they are.
func (e *guestEditor) readiness(luksLeft []string, after bool) *Readiness {
	rd := &Readiness{Ready: true}
	add := func(c Check) {
		if c.Status == CheckFail {
			rd.Ready = false
		}
		rd.Checks = append(rd.Checks, c)
	}
	if len(luksLeft) == 0 {
		add(Check{Name: "no encrypted volume", Status: CheckPass})
	} else {
		add(Check{Name: "no encrypted volume", Status: CheckFail, Detail: luksLeft})
	}
	if e.boot == nil {
		add(Check{Name: "/boot", Status: CheckSkip, Detail: []string{"no /boot filesystem found"}})
	}
	if e.root == nil {
		why := e.noRoot
		if why == "" {
			why = "no root filesystem found"
		}
		add(Check{Name: "/ (root filesystem)", Status: CheckSkip, Detail: []string{why}})
	}
	for _, f := range e.files {
		b := f.before
		if after {
			b = f.after
		}
		c := Check{Name: f.path, Status: CheckPass}
		for _, fd := range guest.Scan(f.path, b) {
			c.Status = CheckFail
			if fd.Line > 0 {
				c.Detail = append(c.Detail, fmt.Sprintf("line %d: %s", fd.Line, fd.What))
			} else {
				c.Detail = append(c.Detail, fd.What)
			}
		}
		add(c)
	}
	for _, w := range e.wipes {
		ok := w.before
		if after {
			ok = w.after
		}
		if ok {
			add(Check{Name: w.path, Status: CheckPass, Detail: []string{"zeros only"}})
		} else {
			add(Check{Name: w.path, Status: CheckFail, Detail: []string{"ADE data (header, key material or state) not wiped"}})
		}
	}
	for _, p := range e.initrdList {
		left := e.initrd[p]
		if !after {
			// Before the edits, anything the edit would remove still counts.
			for _, ed := range e.edits {
				if ed.Path == p {
					left = append(left, ed.Before...)
				}
			}
		}
		c := Check{Name: p, Status: CheckPass}
		for _, l := range left {
			if strings.HasPrefix(l, "not examined") {
				c.Status = CheckSkip
			} else {
				c.Status = CheckFail
			}
		}
		c.Detail = left
		if after && e.bootArgs != nil && c.Status == CheckFail {
			for _, k := range e.kept {
				if k.path == p && k.hook != "91ade" {
					c.Detail = append(c.Detail, fmt.Sprintf("the boot loader's kernel command lines now carry %s, which switch ADE's hook off until the next dracut run rebuilds this image",
						strings.Join(e.bootArgs, " ")))
				}
			}
		}
		add(c)
	}
	for _, p := range e.esp {
		if e.espRead[p.Number] {
			continue // its files are checked above
		}
		why := e.espErr[p.Number]
		if why == "" {
			why = "not read"
		}
		add(Check{Name: fmt.Sprintf("EFI System Partition (partition %d)", p.Number), Status: CheckSkip,
			Detail: []string{why + ": check EFI/*/grubenv and grub.cfg by hand"}})
	}
	return rd
}

// editGuest adds the guest edits to the plan: the decrypted volume is read through plain, whose byte 0
// lands at output offset volOut; the other partitions are read from src.
func (p *Plan) editGuest(src *Source, rep *Report, plain io.ReaderAt, volOut, volSize int64, content Content, opts PlanOptions) error {
	var vols []guestVolume
	var luksLeft []string
	for _, pi := range rep.Partitions {
		switch {
		case pi.Number == p.Volume.Partition:
			vols = append(vols, guestVolume{part: pi.Number, partUUID: pi.GUID, r: plain, size: volSize, out: volOut, content: content})
		case pi.LUKS != nil || pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2:
			luksLeft = append(luksLeft, fmt.Sprintf("partition %d is still LUKS-encrypted", pi.Number))
		case pi.Content == ContentXFS || pi.Content == ContentLVM2 || pi.Content == ContentFAT:
			vols = append(vols, guestVolume{part: pi.Number, partUUID: pi.GUID, r: io.NewSectionReader(src, pi.Offset, pi.Size),
				size: pi.Size, out: pi.Offset, content: pi.Content})
		}
	}
	e, err := guestEdits(vols, rep.Partitions, guestOptions{strictInitramfs: opts.StrictInitramfs})
	if err != nil {
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

// inspectGuest adds to rep what convert would change in the guest and the readiness of the guest as it
// is. Without a key only unencrypted filesystems can be read: for an ADE disk that is /boot.
func inspectGuest(src *Source, rep *Report) {
	var vols []guestVolume
	var luksLeft []string
	for _, pi := range rep.Partitions {
		switch {
		case pi.LUKS != nil || pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2:
			luksLeft = append(luksLeft, fmt.Sprintf("partition %d is LUKS-encrypted", pi.Number))
		case pi.Content == ContentXFS || pi.Content == ContentLVM2 || pi.Content == ContentFAT:
			vols = append(vols, guestVolume{part: pi.Number, partUUID: pi.GUID, r: io.NewSectionReader(src, pi.Offset, pi.Size),
				size: pi.Size, out: pi.Offset, content: pi.Content})
		}
	}
	opts := guestOptions{}
	if len(luksLeft) > 0 {
		opts.noRootReason = "the root filesystem is encrypted: `luksconv plan` with the key shows its edits"
	}
	e, err := guestEdits(vols, rep.Partitions, opts)
	if err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
		return
	}
	rep.Warnings = append(rep.Warnings, e.warnings...)
	rep.Edits = e.edits
	if e.boot != nil || e.root != nil {
		rep.Readiness = e.readiness(luksLeft, false)
	}
}
