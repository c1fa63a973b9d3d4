package luksconv

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/luksconv/luksconv/guest"
)

// Ubuntu's ADE boot path (16.04–22.04) is initramfs-tools: hooks that copy the detached header into
// every initrd, a keyscript or an init-premount script that unlocks osencrypt from the BEK volume,
// and root=/dev/mapper/osencrypt on the kernel command line. Unlike dracut's 91adeOnline, nothing
// there is switched off by a kernel argument, so a converted Ubuntu disk boots only when every initrd
// on /boot is rewritten without them and every command line names the root by its UUID: what cannot
// be edited is an error, not a warning.

const (
	// pathInitramfsToolsConf marks a guest that builds its initrds with initramfs-tools.
	pathInitramfsToolsConf = "/etc/initramfs-tools/initramfs.conf"
	// pathCryptrootHook is cryptsetup-initramfs's hook, which ADE's 16.04/18.04 flow patched with
	// `patch -b`, keeping the original beside it as cryptrootHookOrig.
	pathCryptrootHook = "/usr/share/initramfs-tools/hooks/cryptroot"
	cryptrootHookOrig = pathCryptrootHook + ".orig"
	// updateInitramfs is what rebuilds every initrd in an initramfs-tools guest.
	updateInitramfs = "update-initramfs -u -k all"
)

// rootUUIDUnknown stands for the root filesystem's UUID in the edits inspect shows without the key.
const rootUUIDUnknown = "<root-filesystem-UUID>"

// isInitramfsTools reports whether the guest builds its initrds with initramfs-tools (Debian, Ubuntu)
// rather than dracut: by the root's configuration, or without the root (inspect without the key) by
// the names on /boot, initramfs-tools' initrd.img-RELEASE against dracut's initramfs-RELEASE.img.
func (e *guestEditor) isInitramfsTools() bool {
	if e.root != nil {
		return e.exists(pathInitramfsToolsConf)
	}
	if e.boot == nil {
		return false
	}
	ents, err := e.boot.fs.ReadDir("/")
	if err != nil {
		return false
	}
	for _, d := range ents {
		if strings.HasPrefix(d.Name, "initrd.img-") {
			return true
		}
	}
	return false
}

// rebuildCommand is the command that rebuilds the guest's initramfs images.
func (e *guestEditor) rebuildCommand() string {
	if e.tools {
		return updateInitramfs
	}
	return "dracut -f --regenerate-all"
}

// toolsRootEdits undoes ADE's initramfs-tools setup on the root filesystem, so the next
// update-initramfs builds an initrd without it: /etc/default/cryptdisks, ADE's hooks, scripts and
// keyscript disabled, and cryptsetup's cryptroot hook restored from the copy `patch -b` kept.
func (e *guestEditor) toolsRootEdits() {
	e.editFile(guest.PathCryptdisks, func(b []byte, _ int) ([]byte, []guest.Change, error) {
		n, c := guest.FixCryptdisks(b)
		return n, c, nil
	})
	e.restoreCryptrootHook()
	for _, f := range guest.InitramfsToolsADEFiles {
		what := f.What
		e.editFile(f.Path, func(b []byte, room int) ([]byte, []guest.Change, error) {
			n, c, err := guest.DisableScript(b, room)
			for i := range c {
				c[i].Why = "disable " + what + " so the next " + updateInitramfs + " leaves it out: " + c[i].Why
			}
			return n, c, err
		})
	}
}

// restoreCryptrootHook puts back cryptsetup's cryptroot hook from cryptroot.orig, which ADE's patch
// left beside it, then disables the .orig copy: initramfs-tools runs every executable in hooks/, and
// the patched hook copies the header and the osencrypt line into each new initrd.
func (e *guestEditor) restoreCryptrootHook() {
	orig, err := e.readGuest(cryptrootHookOrig)
	if err != nil {
		return
	}
	if bytes.Contains(orig, []byte("osencrypt")) || bytes.Contains(orig, []byte("osluksheader")) {
		e.warn(WarnNotEdited, "%s names ADE's volume or header, so it is not ADE's backup of the original hook: %s is left as it is", cryptrootHookOrig, pathCryptrootHook)
		return
	}
	why := "disable ADE's backup of the cryptroot hook, now restored (initramfs-tools may run it as a hook): "
	e.editFile(pathCryptrootHook, func(b []byte, room int) ([]byte, []guest.Change, error) {
		if bytes.Equal(b, orig) {
			return nil, nil, nil
		}
		if !bytes.Contains(b, []byte("osencrypt")) {
			// ADE's patch adds osencrypt to the hook. Without it the hook was replaced since, by a
			// cryptsetup update, and .orig is the older cryptsetup's hook: putting it back would pair
			// it with the newer scripts.
			why = "disable ADE's backup of an older cryptroot hook (the hook was updated since ADE's patch and is kept; initramfs-tools may run the backup as a hook): "
			return nil, nil, nil
		}
		if len(orig) > room {
			return nil, nil, fmt.Errorf("the original (%d bytes, %s) does not fit the %d bytes the file owns", len(orig), cryptrootHookOrig, room)
		}
		return orig, []guest.Change{{Why: "restore cryptsetup's hook from " + cryptrootHookOrig + ", which ADE's patch kept (the patched hook copies the osencrypt line and the header into every initrd)",
			Before: []string{fmt.Sprintf("(%d bytes, patched)", len(b))}, After: []string{fmt.Sprintf("(%d bytes, as %s)", len(orig), cryptrootHookOrig)}}}, nil
	})
	e.editFile(cryptrootHookOrig, func(b []byte, room int) ([]byte, []guest.Change, error) {
		n, c, err := guest.DisableScript(b, room)
		for i := range c {
			c[i].Why = why + c[i].Why
		}
		return n, c, err
	})
}

// toolsChecks turns what an initramfs-tools guest cannot boot with into an error: a /boot or root that
// could not be edited, an initrd that keeps ADE's scripts, a boot loader configuration that still
// names osencrypt.
func (e *guestEditor) toolsChecks() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s; initramfs-tools has no kernel argument that turns ADE's boot path off, so the converted disk would not boot "+
			"(--keep-guest converts without editing the guest)", ErrGuestEdit, fmt.Sprintf(format, args...))
	}
	for _, g := range []*guestFS{e.boot, e.root} {
		if g != nil && g.readOnly != nil {
			return fail("%s cannot be edited: %v", g.label(), g.readOnly)
		}
	}
	if e.boot == nil {
		return fail("no /boot filesystem with ADE's header or a GRUB configuration was found")
	}
	if len(e.kept) > 0 {
		k := e.kept[0].path
		return fail("%s keeps ADE's scripts: %s", k, strings.Join(e.initrd[k], "; "))
	}
	for _, f := range e.files {
		if !strings.HasSuffix(f.path, "/grub.cfg") && !strings.HasSuffix(f.path, "/grubenv") {
			continue
		}
		if fd := guest.Scan(f.path, f.after); len(fd) > 0 {
			return fail("%s line %d still holds %s after the edits (a line luksconv does not parse)", f.path, fd[0].Line, fd[0].What)
		}
	}
	return nil
}
