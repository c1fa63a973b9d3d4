package qemuboot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/lvm"
)

// adeActivity are console lines of 91adeOnline doing anything but switching itself off.
var adeActivity = []*regexp.Regexp{
	regexp.MustCompile(`ADE: parse-crypt-ade: rule for`),
	regexp.MustCompile(`ADE: crypt-run-generator-ade`),
	regexp.MustCompile(`(?i)cryptography setup for osencrypt`),
	regexp.MustCompile(`systemd-cryptsetup@osencrypt`),
}

// TestBootConverted converts the ADE-style boot disk with the luksconv library, as `luksconv convert`
// does (key file only: the detached header is found on /boot), and boots the output without the BEK
// volume: the root must come up on the plaintext PV with no dm-crypt device and no ADE module
// activity. The initramfs is Debian dracut's gzip image; luksconv's gzip of it without ADE's hooks is
// larger than the file's blocks, and /boot holds the kernel's config (CONFIG_RD_XZ=y), so luksconv
// must re-compress it as xz in place: the boot proves the kernel unpacks what luksconv wrote. After
// the conversion no file in /boot, in the root LV or inside the initramfs names ADE's arguments, its
// mapper or its LVM filter, and lsinitrd lists no ADE hook.
func TestBootConverted(t *testing.T) {
	skipShort(t)
	t.Parallel()
	bootConverted(t, qemuboot.Fixture(t).Disk, true, "re-compressed as xz")
}

// TestBootConvertedKeptInitramfs is TestBootConverted on a copy of the boot disk whose /boot lacks the
// kernel's config: luksconv cannot tell which compressions the kernel unpacks, its own gzip of the
// image does not fit the file's blocks, so the initramfs keeps ADE's hooks and the boot loader's command
// line gets the arguments that switch them off (rd.ade=0 rd.lvm.conf=0; the image has no crypttab). The
// boot proves that fallback: the root comes up on the plaintext PV, no dm-crypt, ADE's hook says it is off.
func TestBootConvertedKeptInitramfs(t *testing.T) {
	skipShort(t)
	t.Parallel()
	disk := editBootConfigs(t, os.Remove)
	bootConverted(t, disk, false, "")
}

// TestBootConvertedZstd is TestBootConverted on a copy of the boot disk whose kernel config says the
// kernel unpacks zstd but not xz: luksconv must re-compress the initramfs as zstd, and the kernel must
// boot from it (the real kernel does unpack both; only luksconv's choice is steered).
func TestBootConvertedZstd(t *testing.T) {
	skipShort(t)
	t.Parallel()
	disk := editBootConfigs(t, func(c string) error {
		b, err := os.ReadFile(c)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte("\nCONFIG_RD_ZSTD=y\n")) || !bytes.Contains(b, []byte("\nCONFIG_RD_XZ=y\n")) {
			return fmt.Errorf("%s: the kernel does not build in both xz and zstd", c)
		}
		b = bytes.Replace(b, []byte("\nCONFIG_RD_XZ=y\n"), []byte("\n# CONFIG_RD_XZ is not set\n"), 1)
		return os.WriteFile(c, b, 0o644)
	})
	bootConverted(t, disk, true, "re-compressed as zstd")
}

// editBootConfigs returns a copy of the boot set's disk in which edit changed every /boot/config-*
// through a read-write loop mount (the kernel writes it; the set's own disk stays as built).
func editBootConfigs(t *testing.T, edit func(config string) error) string {
	t.Helper()
	set := qemuboot.Fixture(t)
	disk := testenv.CopyFile(t, set.Disk)
	_, part := openPartition(t, disk, set.BootPartition)
	dev, detach := testenv.AttachLoop(t, disk, "--offset", strconv.FormatInt(part.Offset, 10), "--sizelimit", strconv.FormatInt(part.Size, 10))
	mnt := t.TempDir()
	if out, err := testenv.RunErr("mount", "-t", "xfs", "-o", "nouuid", dev, mnt); err != nil {
		t.Skipf("SKIPPING: cannot mount the boot disk copy's /boot read-write: %v\n%s", err, out)
	}
	configs, _ := filepath.Glob(filepath.Join(mnt, "config-*"))
	var eerr error
	if len(configs) == 0 {
		eerr = errors.New("no config-* in /boot")
	}
	for _, c := range configs {
		if eerr = edit(c); eerr != nil {
			break
		}
	}
	if _, err := testenv.RunErr("umount", mnt); err != nil {
		t.Fatal(err)
	}
	detach()
	if eerr != nil {
		t.Fatalf("editing the copy's /boot: %v", eerr)
	}
	return disk
}

// bootConverted converts disk (the boot set's disk or a copy of it), checks the plan and the output,
// and boots the output without the BEK volume. wantRewritten says whether the initramfs must have been
// rewritten without ADE's hooks (else it must be kept, with the switch-off arguments added); how, if
// set, must be in the rewrite's reason.
func bootConverted(t *testing.T, disk string, wantRewritten bool, how string) {
	t.Helper()
	set := qemuboot.Fixture(t)
	key, err := os.ReadFile(set.Key)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "converted.raw")
	p := convertDisk(t, disk, out, key)
	img := "/boot" + set.InitramfsPath
	rewritten := false
	var addEdit *luksconv.Edit
	for i, e := range p.Edits {
		t.Logf("edit %s: %s", e.Path, e.Why)
		if e.Path == img {
			rewritten = true
			if !strings.Contains(e.Why, how) {
				t.Errorf("initramfs edit %q does not say %q", e.Why, how)
			}
		}
		if strings.Contains(e.Why, "add kernel arguments") {
			addEdit = &p.Edits[i]
		}
	}
	for _, w := range p.Warnings {
		t.Logf("warning: %s", w)
	}
	if rewritten != wantRewritten {
		t.Errorf("initramfs %s rewritten without ADE's hooks: %v, want %v; warnings: %q", img, rewritten, wantRewritten, p.Warnings)
	}

	// What grub would boot from the output's /boot.
	bf, err := qemuboot.ReadBootFiles(out, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("converted cmdline: %s", bf.Cmdline)
	args := " " + bf.Cmdline + " "
	for _, bad := range []string{"rd.luks.ade", "rd.debug ", "osencrypt"} {
		if strings.Contains(args, bad) {
			t.Errorf("cmdline %q still holds %q", bf.Cmdline, bad)
		}
	}
	if rewritten {
		if addEdit != nil || strings.Contains(args, " rd.ade=0 ") {
			t.Errorf("initramfs rewritten, yet kernel arguments added: %q (%+v)", bf.Cmdline, addEdit)
		}
	} else {
		for _, want := range []string{"rd.ade=0", "rd.lvm.conf=0"} {
			if strings.Count(args, " "+want+" ") != 1 {
				t.Errorf("initramfs kept, but cmdline %q does not hold %s once", bf.Cmdline, want)
			}
		}
		if addEdit == nil || addEdit.Path != "/boot"+set.GrubenvPath ||
			!strings.Contains(addEdit.Why, "still holds ADE's hook and ADE's lvm filter") ||
			!strings.Contains(addEdit.Why, "until the next dracut run") {
			t.Errorf("no grubenv edit adding the arguments with its reason: %+v", addEdit)
		}
		if p.Readiness == nil || p.Readiness.Ready {
			t.Errorf("readiness passes with ADE's hooks kept in %s: %+v", img, p.Readiness)
		} else {
			for _, c := range p.Readiness.Checks {
				if c.Status == luksconv.CheckFail && c.Name != img {
					t.Errorf("readiness check %s fails: %v", c.Name, c.Detail)
				}
			}
		}
	}
	bootImg := xfsRepairPartition(t, out, set.BootPartition)
	if rewritten {
		checkNoADE(t, out, bootImg, set, bf.Initrd)
	}

	r := qemuboot.BootDisk(t, out, false)
	t.Logf("converted disk without BEK: %s to the marker (initramfs rewritten: %v)", r.Elapsed.Round(time.Second), rewritten)
	if !r.MarkerFound {
		t.Fatalf("no %s line after %s (timed out: %v); console tail:\n%s", set.Marker, r.Elapsed, r.TimedOut, r.Tail(60))
	}
	if r.Root != "/dev/mapper/rootvg-rootlv" {
		t.Errorf("root = %q", r.Root)
	}
	for _, d := range r.DM {
		if d.Name == "osencrypt" || strings.HasPrefix(d.UUID, "CRYPT-") {
			t.Errorf("dm-crypt device on the converted disk: %+v", d)
		}
	}
	if root, ok := r.DMByName("rootvg-rootlv"); !ok || strings.Join(root.Slaves, " ") != "vda4" {
		t.Errorf("rootvg-rootlv = %+v (%v), want it straight on vda4; DM %+v", root, ok, r.DM)
	}
	for _, re := range adeActivity {
		if r.Match(re) {
			t.Errorf("console shows ADE activity %q; tail:\n%s", re, r.Tail(60))
		}
	}
	// With the image kept, its hook runs and must say it is switched off; with it rewritten, no hook.
	if off := r.Contains("ADE: rd.ade=0"); off == rewritten {
		t.Errorf("console has the rd.ade=0 message: %v, initramfs rewritten: %v", off, rewritten)
	}
}

// convertDisk converts disk to the raw file out with the luksconv library and returns the plan.
func convertDisk(t *testing.T, disk, out string, key []byte) *luksconv.Plan {
	t.Helper()
	ctx := context.Background()
	src, err := luksconv.OpenFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{Passphrase: key, Format: luksconv.FormatRaw})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	defer p.Close()
	sink, err := luksconv.CreateOutput(p, out, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(ctx, p, src, sink, luksconv.ExecuteOptions{}); err != nil {
		sink.Abort()
		t.Fatalf("execute: %v", err)
	}
	if err := sink.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

// xfsRepairPartition copies GPT partition n of the raw disk to a file, checks it with xfs_repair -n
// and returns the file.
func xfsRepairPartition(t *testing.T, disk string, n int) string {
	t.Helper()
	f, part := openPartition(t, disk, n)
	img := copyToFile(t, io.NewSectionReader(f, part.Offset, part.Size))
	repair, err := exec.LookPath("xfs_repair")
	if err != nil {
		repair = "/usr/sbin/xfs_repair"
	}
	if b, err := exec.Command(repair, "-n", "-f", img).CombinedOutput(); err != nil {
		t.Errorf("xfs_repair -n on /boot (partition %d) of the output: %v\n%s", n, err, b)
	}
	return img
}

// openPartition opens the raw disk (closed when the test ends) and finds its GPT partition n.
func openPartition(t *testing.T, disk string, n int) (*os.File, *gpt.Partition) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(f, fi.Size(), 512)
	if err != nil {
		t.Fatal(err)
	}
	part, ok := tab.Partition(n)
	if !ok {
		t.Fatalf("%s: no partition %d", disk, n)
	}
	return f, part
}

// copyToFile copies r to a new file in a test directory and returns its path.
func copyToFile(t *testing.T, r io.Reader) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	w, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(w, r)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// adeStrings are what no file of the converted disk may contain: ADE's kernel arguments, its mapper
// name and the LVM filter rejecting the (formerly encrypted) partition.
func adeStrings(set *qemuboot.Manifest) []string {
	return []string{"rd.luks.ade", "osencrypt", "r|" + set.PartUUID + "|"}
}

// checkNoADE unpacks the converted initramfs with lsinitrd and loop-mounts /boot (bootImg, already
// copied out of the converted disk) and the root LV of the converted disk, and fails for every file
// that holds one of adeStrings and for every ADE hook lsinitrd lists.
func checkNoADE(t *testing.T, disk, bootImg string, set *qemuboot.Manifest, initrd string) {
	t.Helper()
	for _, tool := range []string{"lsinitrd", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (scripts/install-deps.sh installs it): %v", tool, err)
		}
	}
	list, err := exec.Command("lsinitrd", initrd).CombinedOutput()
	if err != nil {
		t.Fatalf("lsinitrd %s: %v\n%s", initrd, err, list)
	}
	for _, hook := range []string{"parse-crypt-ade", "crypt-run-generator-ade", "adeOnline", "70-luks-ade"} {
		if strings.Contains(string(list), hook) {
			t.Errorf("lsinitrd of the converted initramfs lists %s", hook)
		}
	}
	if !strings.Contains(string(list), "Version: dracut") || !strings.Contains(string(list), "lvm.conf") {
		t.Errorf("lsinitrd does not read the converted initramfs as a dracut image with lvm.conf:\n%.2000s", list)
	}
	unpacked := t.TempDir()
	cmd := exec.Command("lsinitrd", "--unpack", initrd)
	cmd.Dir = unpacked
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lsinitrd --unpack: %v\n%s", err, b)
	}
	grepTree(t, "initramfs:", unpacked, adeStrings(set))
	grepTree(t, "/boot", mountXFS(t, bootImg), adeStrings(set))

	f, pvPart := openPartition(t, disk, set.LUKSPartition)
	pvr := io.NewSectionReader(f, pvPart.Offset, pvPart.Size)
	pv, err := lvm.Open(pvr, pvPart.Size)
	if err != nil || pv.VG == nil {
		t.Fatalf("the converted PV does not read as LVM2: %v", err)
	}
	vg, lvName, _ := strings.Cut(set.RootLV, "/")
	for i := range pv.VG.LVs {
		if lv := &pv.VG.LVs[i]; pv.VG.Name == vg && lv.Name == lvName {
			grepTree(t, "/", mountXFS(t, copyToFile(t, pv.LVReader(pvr, lv))), adeStrings(set))
			return
		}
	}
	t.Fatalf("no LV %s in VG %s", set.RootLV, pv.VG.Name)
}

// mountXFS loop-mounts an XFS image read-only until the test ends; it fails the test if it cannot.
func mountXFS(t *testing.T, img string) string {
	t.Helper()
	dir, err := testenv.MountXFS(t, img)
	if err != nil {
		t.Fatalf("%v (root and loop devices are needed)", err)
	}
	return dir
}

// grepTree fails for every regular file below dir that contains one of forbidden.
func grepTree(t *testing.T, label, dir string, forbidden []string) {
	t.Helper()
	hits, n := testenv.GrepTree(t, dir, forbidden)
	for _, h := range hits {
		t.Errorf("%s %s still contains %q", label, h.Path, h.Needle)
	}
	if n < 3 {
		t.Errorf("%s: only %d files found under %s", label, n, dir)
	}
	t.Logf("%s: %d files hold none of %q", label, n, forbidden)
}
