package luksconv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/lvm"
)

// mountPoints maps the fixture filesystems' names to where the guest mounts them.
var mountPoints = map[string]string{"boot": "/boot", "root": "/", "rootlv": "/", "homelv": "/home", "varlv": "/var"}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING: %s is not installed (%v); the guest edits are not checked with the real tools", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: not root, so the converted filesystems cannot be loop-mounted for checking")
	}
}

// writeSparse copies n bytes of r into a new file, leaving all-zero chunks as holes.
func writeSparse(t *testing.T, r io.ReaderAt, n int64, dst string) {
	t.Helper()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := r.ReadAt(b, off); err != nil && err != io.EOF {
			t.Fatalf("reading at %d: %v", off, err)
		}
		if len(bytes.Trim(b, "\x00")) == 0 {
			continue
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(n); err != nil {
		t.Fatal(err)
	}
}

// extractFS writes the bytes of one fixture filesystem, as the converted disk out holds it, to a file:
// a partition, or a logical volume read through the lvm package from the output's PV.
func extractFS(t *testing.T, out string, f fixture.Fixture, fsys fixture.Filesystem) string {
	t.Helper()
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	part, ok := f.Part(fsys.Partition)
	if !ok {
		t.Fatalf("no partition %d", fsys.Partition)
	}
	sec := io.NewSectionReader(fh, part.Start, part.Size)
	dst := filepath.Join(t.TempDir(), fsys.Name+".xfs")
	if fsys.LV == "" {
		writeSparse(t, sec, fsys.Size, dst)
		return dst
	}
	pv, err := lvm.Open(sec, part.Size)
	if err != nil || pv.VG == nil {
		t.Fatalf("the output's PV: %v", err)
	}
	lv, ok := pv.VG.LV(strings.TrimPrefix(fsys.LV, pv.VG.Name+"/"))
	if !ok {
		t.Fatalf("no LV %s in the output's PV", fsys.LV)
	}
	writeSparse(t, pv.LVReader(sec, lv), lv.Size, dst)
	return dst
}

func xfsRepairClean(t *testing.T, img string) {
	t.Helper()
	if out, err := exec.Command("xfs_repair", "-n", "-f", img).CombinedOutput(); err != nil {
		t.Fatalf("xfs_repair -n %s: %v\n%s", filepath.Base(img), err, out)
	}
}

// mountRO loop-mounts an XFS image read-only until the test ends.
func mountRO(t *testing.T, img string) string {
	t.Helper()
	dir, err := testenv.MountXFS(t, img)
	if err != nil {
		t.Skipf("SKIPPING: %v", err)
	}
	return dir
}

// diffsInPatches checks that out differs from expected only inside the plan's patches.
func diffsInPatches(t *testing.T, out, expected string, p *luksconv.Plan) {
	t.Helper()
	a, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(expected)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fi, _ := b.Stat()
	inPatch := func(off int64) bool {
		for _, pt := range p.Patches {
			if off >= pt.Offset && off < pt.Offset+int64(pt.Length) {
				return true
			}
		}
		return false
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	differ := int64(0)
	for off := int64(0); off < fi.Size(); off += int64(len(ba)) {
		n := min(int64(len(ba)), fi.Size()-off)
		a.ReadAt(ba[:n], off)
		b.ReadAt(bb[:n], off)
		if bytes.Equal(ba[:n], bb[:n]) {
			continue
		}
		for i := range n {
			if ba[i] != bb[i] {
				differ++
				if !inPatch(off + i) {
					t.Fatalf("output byte %d differs from the expected disk outside every patch", off+i)
				}
			}
		}
	}
	if differ == 0 {
		t.Fatal("the output equals the expected disk: no guest edit was applied")
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestGuestEdits converts the ADE OS fixtures with the default guest edits and checks the result with
// the real tools: xfs_repair is clean on /boot and every XFS volume, the mounted trees hold no ADE
// argument, mapper or filter, grub-editenv reads the 1024-byte grubenv, the header and ADE's state are
// zeros, every file not edited is unchanged, LVM metadata is untouched, and the output differs from the
// plain decryption only inside the plan's patches.
func TestGuestEdits(t *testing.T) {
	needTools(t, "xfs_repair", "mount", "umount", "grub-editenv")
	set := fixture.Load(t)
	for _, name := range []string{"rhel8-lvm", "rhel7-luks1"} {
		t.Run(name, func(t *testing.T) {
			f, ok := set.Get(name)
			if !ok {
				t.Fatalf("no %s fixture", name)
			}
			key, err := os.ReadFile(f.KeyFiles[0])
			if err != nil {
				t.Fatal(err)
			}
			out, p, _ := convertOpts(t, f.Image, luksconv.PlanOptions{Passphrase: key}, 2)
			if len(p.Edits) == 0 {
				t.Fatal("no guest edits planned")
			}
			if p.Readiness == nil || !p.Readiness.Ready {
				t.Errorf("readiness after the edits: %+v", p.Readiness)
			}
			edited := map[string]bool{}
			for _, e := range p.Edits {
				edited[e.Path] = true
				if e.Filesystem == "" || e.Why == "" {
					t.Errorf("edit without filesystem or reason: %+v", e)
				}
			}
			for _, want := range []string{"/etc/default/grub", "/etc/crypttab", "/etc/fstab", "/etc/dracut.conf.d/ade.conf",
				"/usr/lib/dracut/modules.d/91adeOnline/module-setup.sh", "/boot/luks/osluksheader",
				"/var/lib/azure_disk_encryption_config/azure_crypt_params.ini"} {
				if !edited[want] {
					t.Errorf("no edit of %s", want)
				}
			}
			warns := warnText(p.Warnings)
			if !strings.Contains(warns, "is not an initramfs luksconv can read") {
				t.Errorf("no warning about the fixture's random initramfs:\n%s", warns)
			}
			// The unreadable image is taken to keep the hooks of the root's ADE module.
			var added []string
			for _, e := range p.Edits {
				if strings.Contains(e.Why, "add kernel arguments") {
					added = append(added, e.Path+": "+strings.Join(e.After, " "))
				}
			}
			t.Logf("kernel arguments added: %q", added)
			if name == "rhel8-lvm" && (len(added) == 0 || !strings.Contains(added[0], " rd.ade=0 rd.lvm.conf=0 rd.luks.crypttab=0")) {
				t.Errorf("rhel8-lvm (91adeOnline): added %q", added)
			}
			if name == "rhel7-luks1" && (len(added) != 0) != !strings.Contains(warns, "91ade hook, which no kernel argument switches off") {
				t.Errorf("rhel7-luks1: added %q; warnings:\n%s", added, warns)
			}
			diffsInPatches(t, out, f.Expected, p)
			// Edits rewrite blocks files own: no patch lands in free space the plan skipped.
			for _, pt := range p.Patches {
				for _, r := range p.Regions {
					if r.Kind == luksconv.Zero && pt.Offset < r.Offset+r.Length && r.Offset < pt.Offset+int64(pt.Length) &&
						(strings.HasPrefix(r.Reason, "xfs free space") || r.Reason == "lvm free extents") {
						t.Fatalf("patch %d+%d (%s) lands in %s", pt.Offset, pt.Length, pt.Why, r.Reason)
					}
				}
			}

			forbidden := []string{"rd.luks.ade", "osencrypt", "r|" + f.PartUUID + "|"}
			for _, fsys := range f.Filesystems {
				if fsys.Type != "xfs" {
					continue
				}
				mnt, ok := mountPoints[fsys.Name]
				if !ok {
					t.Fatalf("unknown fixture filesystem %s", fsys.Name)
				}
				img := extractFS(t, out, f, fsys)
				xfsRepairClean(t, img)
				dir := mountRO(t, img)
				// No file anywhere in the tree names ADE's arguments, mapper or LVM filter.
				hits, _ := testenv.GrepTree(t, dir, forbidden)
				for _, h := range hits {
					t.Errorf("%s%s still contains %q", mnt, h.Path, h.Needle)
				}
				// Every file the plan did not edit is exactly what the fixture put there.
				for _, file := range fsys.Files {
					gp := filepath.Join(mnt, file.Path)
					local := filepath.Join(dir, file.Path)
					switch {
					case file.Type == "symlink":
						if tgt, err := os.Readlink(local); err != nil || tgt != file.Target {
							t.Errorf("%s: symlink %q (%v), want %q", gp, tgt, err, file.Target)
						}
					case edited[gp]:
						// Edits stay inside the blocks the file owns (4 KiB blocks here).
						fi, err := os.Stat(local)
						if err != nil {
							t.Fatal(err)
						}
						if fi.Size() > (file.Size+4095)/4096*4096 {
							t.Errorf("%s grew from %d to %d bytes, past its blocks", gp, file.Size, fi.Size())
						}
					default:
						if got := sha256File(t, local); got != file.SHA256 {
							t.Errorf("%s changed although no edit names it", gp)
						}
					}
				}
				checkEditedFiles(t, dir, mnt, f, fsys)
			}
			if f.LVM != nil {
				// LVM metadata (label, PV header, metadata area: the first MiB) is untouched.
				part, _ := f.Part(f.Partition)
				if !bytes.Equal(readRange(t, out, part.Start, 1<<20), readRange(t, f.Expected, part.Start, 1<<20)) {
					t.Error("the PV's label or metadata area changed")
				}
			}

			// The converted disk reads as clean: nothing more to edit, nothing encrypted.
			rep := inspectFile(t, out)
			if len(rep.Edits) != 0 {
				t.Errorf("inspect of the output still finds edits to make: %+v", rep.Edits)
			}
			for _, w := range warnMessages(rep.Warnings) {
				if strings.Contains(w, "took the arguments") {
					t.Errorf("inspect of the output does not see the kernel arguments the conversion added: %s", w)
				}
			}
			if rep.Readiness == nil || !rep.Readiness.Ready {
				t.Errorf("inspect of the output: readiness %+v", rep.Readiness)
			}
			for _, c := range rep.Readiness.Checks {
				if c.Name == "/ (root filesystem)" {
					t.Errorf("inspect did not read the plaintext root: %+v", c)
				}
			}
		})
	}
}

// checkEditedFiles checks the content of the edited files in one mounted filesystem.
func checkEditedFiles(t *testing.T, dir, mnt string, f fixture.Fixture, fsys fixture.Filesystem) {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	allZeroFile := func(p string, size int64) {
		b := read(p)
		if int64(len(b)) != size || len(bytes.Trim(b, "\x00")) != 0 {
			t.Errorf("%s%s: %d bytes, not %d zeros", mnt, p, len(b), size)
		}
	}
	sizes := map[string]int64{}
	for _, file := range fsys.Files {
		sizes[file.Path] = file.Size
	}
	switch mnt {
	case "/boot":
		env := filepath.Join(dir, "grub2/grubenv")
		if b := read("grub2/grubenv"); len(b) != 1024 {
			t.Errorf("grubenv is %d bytes", len(b))
		}
		out, err := exec.Command("grub-editenv", env, "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "saved_entry=") {
			t.Errorf("grub-editenv list: %v\n%s", err, out)
		}
		if f.LVM != nil && !strings.Contains(string(out), "kernelopts=root=/dev/mapper/rootvg-rootlv ro crashkernel=auto") {
			t.Errorf("grubenv lost kernelopts:\n%s", out)
		}
		allZeroFile("luks/osluksheader", sizes["/luks/osluksheader"])
	case "/":
		g := read("etc/default/grub")
		if len(g) == 0 || g[len(g)-1] != '\n' || !bytes.Contains(g, []byte("GRUB_CMDLINE_LINUX=\"")) {
			t.Errorf("/etc/default/grub:\n%s", g)
		}
		if c := read("etc/crypttab"); len(bytes.TrimSpace(c)) != 0 {
			t.Errorf("/etc/crypttab still has entries:\n%s", c)
		}
		fstab := read("etc/fstab")
		if bytes.Contains(fstab, []byte("BEK")) || !bytes.Contains(fstab, []byte(" /boot ")) {
			t.Errorf("/etc/fstab:\n%s", fstab)
		}
		ms := read("usr/lib/dracut/modules.d/91adeOnline/module-setup.sh")
		if !bytes.Contains(ms, []byte("check() { return 255; }")) {
			t.Errorf("module-setup.sh is not disabled:\n%s", ms)
		}
		if f.LVM != nil {
			if c := read("etc/lvm/lvm.conf"); bytes.Contains(c, []byte("filter")) || !bytes.Contains(c, []byte("scan = ")) {
				t.Errorf("/etc/lvm/lvm.conf:\n%s", c)
			}
		}
	}
	for p, size := range sizes {
		if strings.HasPrefix(filepath.Join(mnt, p), "/var/lib/azure_disk_encryption_config/") {
			allZeroFile(p, size)
		}
	}
}

// TestKeepGuestIsPlainDecryption checks that KeepGuest plans no edit and that default plans differ only
// by patches: the regions (what is read and decrypted) are the same.
func TestKeepGuestIsPlainDecryption(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel7-luks1")
	key, _ := os.ReadFile(f.KeyFiles[0])
	src, err := luksconv.OpenFile(f.Image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	keep, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key, KeepGuest: true})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	edit, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key, StrictInitramfs: true})
	if err != nil {
		t.Fatalf("StrictInitramfs must not fail on an initramfs it cannot read (a warning): %v", err)
	}
	defer edit.Close()
	if len(keep.Edits) != 0 || len(keep.Patches) != 0 || keep.Readiness != nil {
		t.Fatalf("KeepGuest planned %d edits, %d patches", len(keep.Edits), len(keep.Patches))
	}
	if len(edit.Edits) == 0 || len(edit.Patches) == 0 {
		t.Fatal("default plan has no guest edits")
	}
	if len(keep.Regions) != len(edit.Regions) {
		t.Fatalf("guest edits changed the regions: %d vs %d", len(keep.Regions), len(edit.Regions))
	}
	for i := range keep.Regions {
		if keep.Regions[i] != edit.Regions[i] {
			t.Fatalf("region %d: %+v vs %+v", i, keep.Regions[i], edit.Regions[i])
		}
	}
	// RHEL 7: the grub.cfg linux16 line loses both copies of the arguments.
	found := false
	for _, e := range edit.Edits {
		if e.Path == "/boot/grub2/grub.cfg" {
			found = true
			if strings.Contains(strings.Join(e.After, "\n"), "rd.luks.ade") {
				t.Errorf("grub.cfg after: %v", e.After)
			}
		}
	}
	if !found {
		t.Error("no grub.cfg edit on the RHEL 7 disk")
	}
}

// TestInspectShowsBootEdits: without a key, inspect lists the /boot-side edits and says the root is
// out of reach.
func TestInspectShowsBootEdits(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	rep := inspectFile(t, f.Image)
	paths := map[string]bool{}
	for _, e := range rep.Edits {
		paths[e.Path] = true
		if !strings.HasPrefix(e.Path, "/boot/") {
			t.Errorf("inspect without a key edits %s", e.Path)
		}
	}
	if !paths["/boot/grub2/grubenv"] || !paths["/boot/luks/osluksheader"] {
		t.Errorf("inspect edits: %v", paths)
	}
	if rep.Readiness == nil || rep.Readiness.Ready {
		t.Fatalf("an encrypted disk reads as ready: %+v", rep.Readiness)
	}
	var failed, skipped []string
	for _, c := range rep.Readiness.Checks {
		switch c.Status {
		case luksconv.CheckFail:
			failed = append(failed, c.Name)
		case luksconv.CheckSkip:
			skipped = append(skipped, c.Name)
		}
	}
	if !strings.Contains(strings.Join(failed, ","), "/boot/grub2/grubenv") || !strings.Contains(strings.Join(failed, ","), "no encrypted volume") {
		t.Errorf("failed checks: %v", failed)
	}
	if !strings.Contains(strings.Join(skipped, ","), "root filesystem") {
		t.Errorf("skipped checks: %v", skipped)
	}
}

// adeModule is an ADE-style 91adeOnline dracut module written from ade-internals §4.1 (the real one
// is not redistributable); depends() asks only for bash so dracut runs quickly.
var adeModule = map[string]string{
	"module-setup.sh": `#!/bin/bash
depends() { echo bash; return 0; }
install() {
    inst_hook cmdline 30 "$moddir/parse-crypt-ade.sh"
    inst_script "$moddir/crypt-run-generator-ade.sh" /sbin/crypt-run-generator-ade
}
`,
	"parse-crypt-ade.sh": `#!/bin/sh
partuuid=$(getarg rd.luks.ade.partuuid)
echo "ENV{ID_PART_ENTRY_UUID}==\"*$partuuid*\", RUN+=\"/sbin/crypt-run-generator-ade \$env{DEVNAME} osencrypt\"" > /etc/udev/rules.d/70-luks-ade.rules
`,
	"crypt-run-generator-ade.sh": `#!/bin/sh
echo "osencrypt $1 /bek/LinuxPassPhraseFileName timeout=10,header=/boot/luks/osluksheader" >> /etc/crypttab
`,
}

// buildADEInitramfs runs the real dracut with the ADE-style module and ADE's crypttab line; compress is
// a dracut compression option (--gzip, --no-compress, ...).
func buildADEInitramfs(t *testing.T, compress string) string {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "dracut")
	mod := filepath.Join(base, "modules.d", "91adeOnline")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	sys, _ := filepath.Glob("/usr/lib/dracut/*")
	if len(sys) == 0 {
		t.Skip("SKIPPING: no /usr/lib/dracut (dracut-core not installed)")
	}
	for _, p := range sys {
		if filepath.Base(p) != "modules.d" {
			os.Symlink(p, filepath.Join(base, filepath.Base(p)))
		}
	}
	mods, _ := filepath.Glob("/usr/lib/dracut/modules.d/*")
	for _, p := range mods {
		os.Symlink(p, filepath.Join(base, "modules.d", filepath.Base(p)))
	}
	for name, body := range adeModule {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	crypttab := filepath.Join(dir, "crypttab")
	os.WriteFile(crypttab, []byte("osencrypt /dev/disk/by-partuuid/x /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,header=/boot/luks/osluksheader"), 0o644)
	out := filepath.Join(dir, "initramfs.img")
	cmd := exec.Command("dracut", "--no-kernel", "--no-hostonly", "-m", "bash adeOnline", "--kver", "0.0.0-test",
		"--tmpdir", dir, compress, "--include", crypttab, "/etc/crypttab", "-f", out)
	cmd.Env = append(os.Environ(), "dracutbasedir="+base)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dracut: %v\n%s", err, b)
	}
	if l, err := exec.Command("lsinitrd", out).CombinedOutput(); err != nil || !strings.Contains(string(l), "crypt-run-generator-ade") {
		t.Fatalf("dracut did not put the ADE hook in the image: %v\n%s", err, l)
	}
	return out
}

// diskWithInitramfs copies the RHEL 8 fixture and replaces its /boot initramfs (random bytes) by initrd,
// written by the kernel through a loop mount. It returns the disk, the /boot filesystem and the
// image's path in /boot.
func diskWithInitramfs(t *testing.T, f fixture.Fixture, initrd string) (string, fixture.Filesystem, string) {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.raw")
	copyFile(t, f.Image, disk)
	var bootFS fixture.Filesystem
	for _, fsys := range f.Filesystems {
		if fsys.Name == "boot" {
			bootFS = fsys
		}
	}
	var imgName string
	for _, file := range bootFS.Files {
		if strings.HasPrefix(file.Path, "/initramfs-") {
			imgName = file.Path
		}
	}
	part, _ := f.Part(bootFS.Partition)
	mnt := t.TempDir()
	opt := "loop,nouuid,offset=" + strconv.FormatInt(part.Start, 10) + ",sizelimit=" + strconv.FormatInt(bootFS.Size, 10)
	if out, err := exec.Command("mount", "-t", "xfs", "-o", opt, disk, mnt).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING: cannot loop-mount the fixture's /boot read-write: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(initrd)
	werr := os.WriteFile(filepath.Join(mnt, imgName), b, 0o600)
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	return disk, bootFS, imgName
}

// TestGuestEditsInitramfs puts a real dracut-made initramfs with ADE's hooks on a copy of the RHEL 8
// fixture's /boot (through a kernel mount) and converts it. Uncompressed, the image without the hooks
// is smaller and is written in place: lsinitrd on the output's image shows no ADE hook and xfs_repair
// is clean. Gzip'd by dracut (GNU gzip -9), the re-encoded image is larger than the file's blocks: the
// default plan warns and names the file, StrictInitramfs refuses.
func TestGuestEditsInitramfs(t *testing.T) {
	needTools(t, "xfs_repair", "mount", "umount", "dracut", "lsinitrd", "cp")
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	key, _ := os.ReadFile(f.KeyFiles[0])
	for _, compress := range []string{"--no-compress", "--gzip"} {
		t.Run(strings.TrimPrefix(compress, "--"), func(t *testing.T) {
			disk, bootFS, imgName := diskWithInitramfs(t, f, buildADEInitramfs(t, compress))
			src, err := luksconv.OpenFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			strict, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key, StrictInitramfs: true})
			if err == nil {
				strict.Close()
			}
			out, p, _ := convertOpts(t, disk, luksconv.PlanOptions{Passphrase: key}, 2)
			var ed *luksconv.Edit
			for i, e := range p.Edits {
				if e.Path == "/boot"+imgName {
					ed = &p.Edits[i]
				}
			}
			if ed == nil {
				// Did not fit: a warning naming the file, a failed readiness check, and a refusal
				// under StrictInitramfs.
				if compress == "--no-compress" {
					t.Fatalf("no edit of the uncompressed initramfs; warnings:\n%s", warnText(p.Warnings))
				}
				warns := warnText(p.Warnings)
				if !strings.Contains(warns, "/boot"+imgName) || !strings.Contains(warns, "does not fit") {
					t.Errorf("no warning naming %s:\n%s", imgName, warns)
				}
				if !errors.Is(err, luksconv.ErrGuestEdit) || !strings.Contains(err.Error(), "does not fit") || !strings.Contains(err.Error(), imgName) {
					t.Errorf("StrictInitramfs: %v", err)
				}
				if p.Readiness == nil || p.Readiness.Ready {
					t.Errorf("readiness passes with ADE's hooks left in the initramfs: %+v", p.Readiness)
				}
				// The kept image's hook and crypttab copy are switched off on grubenv's kernelopts.
				var add *luksconv.Edit
				for i, e := range p.Edits {
					if strings.Contains(e.Why, "add kernel arguments") {
						add = &p.Edits[i]
					}
				}
				if add == nil || add.Path != "/boot/grub2/grubenv" || len(add.After) != 1 ||
					!strings.HasSuffix(add.After[0], " rd.ade=0 rd.luks.crypttab=0") ||
					!strings.Contains(add.Why, "/boot"+imgName+" still holds ADE's hook and ADE's osencrypt crypttab line") {
					t.Errorf("kernel arguments for the kept image: %+v", add)
				}
				for _, c := range p.Readiness.Checks {
					if c.Name == "/boot"+imgName && !strings.Contains(strings.Join(c.Detail, "\n"), "now carry rd.ade=0 rd.luks.crypttab=0") {
						t.Errorf("readiness of the kept image: %+v", c)
					}
				}
				t.Logf("gzip re-encoding does not fit, as expected with Go's deflate: %v", err)
				return
			}
			if err != nil {
				t.Errorf("StrictInitramfs refused an image that fits: %v", err)
			}
			for _, e := range p.Edits {
				if strings.Contains(e.Why, "add kernel arguments") {
					t.Errorf("kernel arguments added although the image was rewritten: %+v", e)
				}
			}
			t.Logf("%s: %s %v", ed.Path, ed.Why, ed.Before)
			img := extractFS(t, out, f, bootFS)
			xfsRepairClean(t, img)
			dir := mountRO(t, img)
			newImg := filepath.Join(dir, imgName)
			list, err := exec.Command("lsinitrd", newImg).CombinedOutput()
			if err != nil {
				t.Fatalf("lsinitrd on the converted image: %v\n%s", err, list)
			}
			for _, l := range strings.Split(string(list), "\n") {
				if strings.Contains(l, "-ade") {
					t.Errorf("lsinitrd still lists %s", l)
				}
			}
			if !strings.Contains(string(list), "bin/bash") {
				t.Errorf("the rewritten image lost the rest of its content:\n%s", list)
			}
			ct, err := exec.Command("lsinitrd", "-f", "etc/crypttab", newImg).CombinedOutput()
			if err != nil || bytes.Contains(ct, []byte("osencrypt")) {
				t.Errorf("crypttab in the converted initramfs: %v\n%s", err, ct)
			}
			if p.Readiness == nil || !p.Readiness.Ready {
				t.Errorf("readiness: %+v", p.Readiness)
			}
		})
	}
}

// TestGuestEditsRefuseUnwritableFS sets NEEDSREPAIR on /boot of a copy of the RHEL 7 fixture with
// xfs_db: /boot must then be left alone (with a warning), while the root filesystem is still edited.
func TestGuestEditsRefuseUnwritableFS(t *testing.T) {
	if _, err := exec.LookPath("xfs_db"); err != nil {
		t.Skipf("SKIPPING: xfs_db is not installed: %v", err)
	}
	set := fixture.Load(t)
	f, _ := set.Get("rhel7-luks1")
	part, _ := f.Part(f.BootPartition)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	copyFile(t, f.Image, disk)
	fh, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	boot := filepath.Join(dir, "boot.xfs")
	writeSparse(t, io.NewSectionReader(fh, part.Start, part.Size), part.Size, boot)
	if out, err := exec.Command("xfs_db", "-x", "-c", "sb 0", "-c", "write features_incompat 0x1b", boot).CombinedOutput(); err != nil {
		t.Fatalf("xfs_db: %v\n%s", err, out)
	}
	b, err := os.ReadFile(boot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt(b, part.Start); err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(f.KeyFiles[0])
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key, Header: openHeader(t, f.Header)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var rootEdits int
	for _, e := range p.Edits {
		if strings.HasPrefix(e.Path, "/boot/") {
			t.Errorf("edited %s on a filesystem that needs repair", e.Path)
		} else {
			rootEdits++
		}
	}
	if rootEdits == 0 {
		t.Error("the root filesystem was not edited")
	}
	for _, pt := range p.Patches {
		if pt.Offset >= part.Start && pt.Offset < part.Start+part.Size {
			t.Fatalf("patch at %d lands in /boot: %s", pt.Offset, pt.Why)
		}
	}
	if w := warnText(p.Warnings); !strings.Contains(w, "/boot (partition 1) is not edited") || !strings.Contains(w, "NEEDSREPAIR") {
		t.Errorf("no warning about /boot:\n%s", w)
	}
	if p.Readiness == nil || p.Readiness.Ready {
		t.Errorf("readiness with /boot unedited: %+v", p.Readiness)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}
