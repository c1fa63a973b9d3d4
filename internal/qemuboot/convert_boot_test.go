package qemuboot_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/luksconv"
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
// activity. The initramfs is Debian dracut's compressed image, which the rewrite without ADE's hooks
// usually does not fit, so this is the case where luksconv keeps it and adds rd.ade=0 rd.lvm.conf=0
// to grubenv's kernelopts instead; if the rewrite fits, the image itself must be clean.
func TestBootConverted(t *testing.T) {
	skipShort(t)
	t.Parallel()
	set := qemuboot.Fixture(t)
	key, err := os.ReadFile(set.Key)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "converted.raw")
	p := convertDisk(t, set.Disk, out, key)
	img := "/boot" + set.InitramfsPath
	rewritten := false
	var addEdit *luksconv.Edit
	for i, e := range p.Edits {
		t.Logf("edit %s: %s", e.Path, e.Why)
		if e.Path == img {
			rewritten = true
		}
		if strings.Contains(e.Why, "add kernel arguments") {
			addEdit = &p.Edits[i]
		}
	}
	for _, w := range p.Warnings {
		t.Logf("warning: %s", w)
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
	xfsRepairPartition(t, out, set.BootPartition)

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
	sink, err := luksconv.CreateFile(out, p.OutputSize, p.Format, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(ctx, p, src, sink, luksconv.ExecuteOptions{}); err != nil {
		sink.Abort()
		t.Fatalf("execute: %v", err)
	}
	if err := sink.Commit(); err != nil {
		t.Fatal(err)
	}
	return p
}

// xfsRepairPartition copies GPT partition n of the raw disk to a file and checks it with xfs_repair -n.
func xfsRepairPartition(t *testing.T, disk string, n int) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	tab, err := gpt.Read(f, fi.Size(), 512)
	if err != nil {
		t.Fatal(err)
	}
	part, ok := tab.Partition(n)
	if !ok {
		t.Fatalf("%s: no partition %d", disk, n)
	}
	img := filepath.Join(t.TempDir(), "boot.xfs")
	w, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(w, io.NewSectionReader(f, part.Offset, part.Size))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	repair, err := exec.LookPath("xfs_repair")
	if err != nil {
		repair = "/usr/sbin/xfs_repair"
	}
	if b, err := exec.Command(repair, "-n", "-f", img).CombinedOutput(); err != nil {
		t.Errorf("xfs_repair -n on /boot (partition %d) of the output: %v\n%s", n, err, b)
	}
}
