package luksconv

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/initramfs"
)

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
		e.warn(WarnInitramfsKept, "%s: %d bytes is larger than luksconv reads (%d); its ADE hooks, if any, remain", gp, ino.Size, int64(initramfs.MaxImageSize))
		e.initrd[gp] = []string{"not examined (too large)"}
		e.keepUnread(gp)
		return nil
	}
	r, err := g.fs.FileReader(ino)
	if err != nil {
		e.warn(WarnUnreadable, "%s: %v", gp, err)
		return nil
	}
	img, err := initramfs.ParseContext(e.ctx, r, ino.Size)
	if err != nil && e.ctx.Err() != nil {
		return e.ctx.Err()
	}
	if err != nil {
		e.warn(WarnInitramfsKept, "%s is not an initramfs luksconv can read (%v); ADE's hooks, if it has any, remain: rebuild it in the guest (%s)", gp, err, e.rebuildCommand())
		e.initrd[gp] = []string{"not examined: " + err.Error()}
		e.keepUnread(gp)
		return nil
	}
	edit, findings := initramfs.ADEEdit(img, e.policy)
	var rebuild []string
	for _, f := range findings {
		if strings.Contains(f, "rebuild") {
			rebuild = append(rebuild, f)
			e.warn(WarnRebuildInitramfs, "%s: %s", gp, f)
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
		if e.tools {
			return fmt.Errorf("%s: %s: %w; initramfs-tools has no kernel argument that turns ADE's scripts off, so the converted disk would not boot "+
				"(--keep-guest converts without editing the guest)", gp, msg, ErrGuestEdit)
		}
		if e.strict {
			return fmt.Errorf("%s: %s: %w", gp, msg, ErrGuestEdit)
		}
		e.warn(WarnInitramfsKept, "%s: %s; ADE's hooks stay in it: rebuild it in the guest (%s)", gp, msg, e.rebuildCommand())
		return nil
	}
	room, err := fileRoom(g.fs, ino)
	if err != nil {
		return fail(err.Error())
	}
	minSize, err := g.fs.MinSize(ino)
	if err != nil {
		return fail(err.Error())
	}
	// fits says why an image of n bytes in format c cannot replace the file, or "": it must lie within
	// the file's blocks (a shorter one is padded to minSize below, in every format).
	fits := func(c initramfs.Compression, n int) string {
		if int64(n) > room {
			return fmt.Sprintf("%s %d bytes, over the %d the file owns", c, n, room)
		}
		return ""
	}
	// The image's own format first, zstd and lz4 at their fast settings: an image mkinitramfs made at
	// a fast level fits again in a tenth of the time. At dracut's settings if that does not fit.
	own := imageCompression(img)
	edit.Fast = own == initramfs.Zstd || own == initramfs.LZ4Legacy
	out, rep, err := img.Rewrite(e.ctx, r, edit)
	if err == nil && edit.Fast && fits(own, len(out)) != "" {
		edit.Fast = false
		out, rep, err = img.Rewrite(e.ctx, r, edit)
	}
	if err != nil {
		return fail(fmt.Sprintf("rewriting without ADE's hooks failed: %v", err))
	}
	recompressed := ""
	if why := fits(mainCompression(rep), len(out)); why != "" {
		// luksconv's encoders are weaker than the gzip/xz/zstd binaries dracut ran, so the image
		// re-encoded in its own format can outgrow the file's blocks. A format the kernel also unpacks
		// (xz, zstd, gzip) usually fits; the kernel's config says which.
		formats, config := e.kernelFormats(img)
		tried := []string{why}
		for _, c := range formats {
			edit.Compression = c
			o, r2, err := img.Rewrite(e.ctx, r, edit)
			if err != nil {
				return fail(fmt.Sprintf("rewriting without ADE's hooks as %s failed: %v", c, err))
			}
			if fits(c, len(o)) == "" {
				recompressed = fmt.Sprintf("; re-compressed as %s, which %s unpacks: luksconv's %s", c, config, tried[0])
				out, rep = o, r2
				break
			}
			tried = append(tried, fits(c, len(o)))
		}
		if recompressed == "" {
			return fail(fmt.Sprintf("the image without ADE's hooks does not fit the file in any format the kernel unpacks (%s)", strings.Join(tried, "; ")))
		}
	}
	if pad := minSize - int64(len(out)); pad > 0 {
		switch c := lastCompression(rep); c {
		case initramfs.Zstd, initramfs.LZ4Legacy:
			if c == initramfs.LZ4Legacy {
				// lz4 chunks continue the last stream, which zero bytes after it have ended for the
				// kernel (a zero chunk size) and lz4's tools: after them the chunks would be a segment
				// of unknown magic. The zeros are padding the chunks replace.
				last := rep.Segments[len(rep.Segments)-1]
				out = out[:last.NewOffset+last.NewLength]
				pad = minSize - int64(len(out))
			}
			// zstd's and lz4's tools stop at zero bytes: pad with a zstd frame or lz4 chunks that decode
			// to zeros, at least the shortest (the file's last block leaves room for it).
			padding, what, least := initramfs.ZstdPadding, "a zstd frame", initramfs.MinZstdPadding
			if c == initramfs.LZ4Legacy {
				padding, what, least = initramfs.LZ4LegacyPadding, "lz4 chunks", initramfs.MinLZ4LegacyPadding
			}
			n := max(int(pad), least)
			b, err := padding(n)
			if err != nil {
				return fail(err.Error())
			}
			out = append(out, b...)
			recompressed += fmt.Sprintf("; padded with %s of %d bytes that decode to zeros, to keep the file's blocks", what, n)
		default:
			// The kernel skips zeros between and after its archives; xz's stream padding is whole words.
			out = append(out, make([]byte, (pad+3)/4*4)...)
			recompressed += fmt.Sprintf("; %d zero bytes of padding keep the file's blocks", (pad+3)/4*4)
		}
	}
	if e.tools {
		if left := toolsResidue(e.ctx, out); len(left) > 0 {
			return fail("after the edit it still holds " + strings.Join(left, ", "))
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
	hooks := "dracut hooks"
	if e.tools {
		hooks = "initramfs-tools scripts"
	}
	var details []string
	for _, f := range findings {
		if !strings.Contains(f, "rebuild") {
			details = append(details, f)
		}
	}
	e.edits = append(e.edits, Edit{Filesystem: g.label(), Path: gp,
		Why:    fmt.Sprintf("remove ADE's %s and files from the initramfs (%d -> %d bytes%s)", hooks, rep.OldSize, rep.NewSize, recompressed),
		Before: details})
	return nil
}

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

// imageCompression is the format of img's last compressed segment (dracut's and mkinitramfs's main
// archive), or None.
func imageCompression(img *initramfs.Image) initramfs.Compression {
	c := initramfs.None
	for _, s := range img.Segments {
		if s.Compression != initramfs.None {
			c = s.Compression
		}
	}
	return c
}

// lastCompression is the format the rewritten image ends in: what its padding must suit.
func lastCompression(rep *initramfs.Report) initramfs.Compression {
	if len(rep.Segments) == 0 {
		return initramfs.None
	}
	return rep.Segments[len(rep.Segments)-1].NewCompression
}

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
		switch _, module, ok := guest.ADEInitramfsFile(f); {
		case module == "91ade":
			return "91ade"
		case ok:
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
	if e.tools {
		e.kept = append(e.kept, k) // nothing switches ADE's scripts off: see toolsChecks
		return
	}
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

// toolsMarkers are strings only ADE's initramfs-tools boot path puts into an initrd: its mapper, its
// keyscript, its scripts' names and its BEK mount point.
var toolsMarkers = []string{"osencrypt", "azure_crypt_key", "crypt-ade", "azure_bek_disk", "osluksheader"}

// toolsResidue lists the files of the rewritten initrd img whose name or content still holds one of
// toolsMarkers: an ADE script the edit did not know (a later flow's) must not reach a disk that has
// no BEK volume to give it.
func toolsResidue(ctx context.Context, img []byte) []string {
	im, err := initramfs.ParseContext(ctx, bytes.NewReader(img), int64(len(img)))
	if err != nil {
		return []string{"an image luksconv cannot read back: " + err.Error()}
	}
	var left []string
	for name, ent := range im.Files() {
		hit := ""
		for _, m := range toolsMarkers {
			if strings.Contains(name, m) {
				hit = m
				break
			}
		}
		if hit == "" && ent.IsRegular() {
			b, err := im.ReadFile(name)
			if err != nil {
				left = append(left, name+" (unreadable)")
				continue
			}
			for _, m := range toolsMarkers {
				if bytes.Contains(b, []byte(m)) {
					hit = m
					break
				}
			}
		}
		if hit != "" {
			left = append(left, fmt.Sprintf("%s (%s)", name, hit))
		}
	}
	sort.Strings(left)
	return left
}
