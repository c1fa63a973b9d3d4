package luksconv_test

import (
	"bytes"
	"cmp"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
	"github.com/luksconv/luksconv/luksconv"
)

// skipUbuntu skips the Ubuntu fixture tests with -short (they build the set) and under the race
// detector (make test runs this package twice; they test initramfs re-encoding and qemu boots, not Go
// concurrency, and take minutes instrumented).
func skipUbuntu(t *testing.T) {
	t.Helper()
	switch {
	case testing.Short():
		t.Skip("builds the Ubuntu fixture set")
	case raceEnabled:
		t.Skip("run without -race only: no concurrency of its own, minutes under the race detector")
	}
}

// TestUbuntuOSDisk: each Ubuntu ADE OS disk of testdata/ubuntu (18.04 LUKS1 with the keyscript, 20.04
// and 22.04 LUKS2 with crypt-ade-boot) converts with the key file alone into a disk on which e2fsck finds
// /boot and the root clean, no file on either and none in the initrd (unmkinitramfs) holds osencrypt,
// azure_crypt_key or crypt-ade, grub.cfg names the root by UUID, and the initrd keeps every other file;
// which qemu then boots without the BEK volume (TestUbuntuBootConverted). With KeepGuest and FullCopy the
// output is the plaintext disk byte for byte.
func TestUbuntuOSDisk(t *testing.T) {
	skipUbuntu(t)
	m := ubuntufixture.Load(t)
	for i := range m.Disks {
		d := &m.Disks[i]
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			out := convertUbuntu(t, m, d)
			checkUbuntuConverted(t, m, d, out)
			bootUbuntuConverted(t, d, out)
		})
	}
}

// convertUbuntu converts d with its guest edits into a file under the test's temporary directory.
func convertUbuntu(t *testing.T, m *ubuntufixture.Manifest, d *ubuntufixture.Disk) string {
	t.Helper()
	ctx := context.Background()
	src, err := luksconv.OpenFile(m.Path(d.Disk))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: m.Path(m.Key)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Volume.Partition != d.LUKSPartition || !strings.Contains(p.Volume.HeaderPath, "/boot/luks/osluksheader") {
		t.Errorf("volume %+v", p.Volume)
	}
	key, err := os.ReadFile(m.Path(m.Key))
	if err != nil {
		t.Fatal(err)
	}
	// The zstd (22.04, 24.04) and lz4 (20.04) initrds shrink without ADE's files and are padded back
	// to the file's blocks, in their own format, with a zstd frame or lz4 chunks that decode to zeros:
	// the boot of the output proves the kernel unpacks that.
	padded := map[string]string{ubuntufixture.DiskU2204: "padded with a zstd frame", ubuntufixture.DiskU2204K: "padded with a zstd frame",
		ubuntufixture.DiskU2404: "padded with a zstd frame", ubuntufixture.DiskU2004: "padded with lz4 chunks"}[d.Name]
	edited := map[string]bool{}
	for _, e := range p.Edits {
		edited[e.Path] = true
		if e.Path == "/boot"+d.InitrdPath && padded != "" && (!strings.Contains(e.Why, padded) || strings.Contains(e.Why, "re-compressed")) {
			t.Errorf("initrd edit %q: not %s in its own format", e.Why, padded)
		}
		for _, l := range append(e.Before, e.After...) {
			if strings.Contains(l, string(key)) {
				t.Errorf("edit of %s shows the key", e.Path)
			}
		}
	}
	want := []string{"/etc/crypttab", "/etc/fstab", "/etc/default/cryptdisks", "/boot" + d.InitrdPath, "/boot/luks/osluksheader"}
	if d.Name == ubuntufixture.DiskU1804 {
		want = append(want, "/usr/share/initramfs-tools/hooks/cryptroot", "/usr/share/initramfs-tools/hooks/cryptroot.orig",
			"/usr/sbin/azure_crypt_key.sh", "/usr/share/initramfs-tools/hooks/luksheader")
	} else {
		want = append(want, "/boot/grub/grub.cfg", "/etc/default/grub",
			"/usr/share/initramfs-tools/hooks/crypt-ade-hook", "/usr/share/initramfs-tools/scripts/init-premount/crypt-ade-boot")
	}
	for _, w := range want {
		if !edited[w] {
			t.Errorf("no edit of %s; edits: %v", w, slices.Sorted(maps.Keys(edited)))
		}
	}
	if p.Readiness == nil || !p.Readiness.Ready {
		t.Errorf("readiness: %+v", p.Readiness)
	}
	out := executeTo(t, p, src)
	written, err := luksconv.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer written.Close()
	if vr, err := luksconv.Verify(ctx, p, src, written, luksconv.VerifyOptions{}); err != nil || !vr.Pass {
		t.Errorf("verify: %v %+v", err, vr)
	}
	return out
}

// executeTo executes the plan into a raw file under the test's temporary directory.
func executeTo(t testing.TB, p *luksconv.Plan, src *luksconv.Source) string {
	t.Helper()
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "out.raw")
	o, err := luksconv.CreateOutput(p, out, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(ctx, p, src, o, luksconv.ExecuteOptions{}); err != nil {
		o.Abort()
		t.Fatal(err)
	}
	if err := o.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkUbuntuConverted checks a converted Ubuntu disk with e2fsprogs and initramfs-tools.
func checkUbuntuConverted(t *testing.T, m *ubuntufixture.Manifest, d *ubuntufixture.Disk, out string) {
	t.Helper()
	root, _ := d.Part(d.LUKSPartition)
	boot, _ := d.Part(d.BootPartition)
	dir := t.TempDir()
	for _, fs := range []struct {
		name string
		off  int64
	}{{"root", root.Start}, {"boot", boot.Start}} {
		if b, err := exec.Command("e2fsck", "-fn", ubuntufixture.ExtPath(out, fs.off)).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn %s: %v\n%s", fs.name, err, b)
		}
		dst := filepath.Join(dir, fs.name)
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := ubuntufixture.Debugfs(out, fs.off, "rdump / "+dst); err != nil {
			t.Fatal(err)
		}
		grepMarkers(t, fs.name, dst)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "boot", d.GrubCfgPath))
	if err != nil {
		t.Fatal(err)
	}
	var linux int
	for _, ln := range strings.Split(string(cfg), "\n") {
		if f := strings.Fields(ln); len(f) > 0 && f[0] == "linux" {
			linux++
			if !strings.Contains(ln, "root=UUID="+d.RootFS.UUID+" ") {
				t.Errorf("grub.cfg: %q does not name the root by UUID", ln)
			}
		}
	}
	if linux == 0 {
		t.Errorf("grub.cfg has no linux line")
	}
	// The initrd: unpacked by Debian's own tool, every file but ADE's kept.
	initrd := filepath.Join(dir, "boot", d.InitrdPath)
	unpacked := filepath.Join(dir, "initrd")
	if b, err := exec.Command("unmkinitramfs", initrd, unpacked).CombinedOutput(); err != nil {
		t.Fatalf("unmkinitramfs: %v\n%s", err, b)
	}
	grepMarkers(t, "initrd", unpacked)
	before, after := lsinitramfs(t, m.Path(d.Initrd)), lsinitramfs(t, initrd)
	for _, f := range before {
		gone := !slices.Contains(after, f)
		ade := f == "boot/luks" || f == "conf/conf.d/cryptheader" || strings.Contains(f, "crypt-ade") || strings.Contains(f, "osluksheader") || strings.Contains(f, "azure_crypt_key") || strings.Contains(f, "azure_bek_disk")
		if gone != ade {
			t.Errorf("initrd: %s: removed %v", f, gone)
		}
	}
	if len(after) < len(before)/2 {
		t.Errorf("initrd: %d files after the edit, %d before", len(after), len(before))
	}
}

// bootUbuntuConverted boots the converted disk in qemu without the BEK volume, through its edited
// initrd and grub.cfg: the root must come up from the plaintext partition with no device-mapper device.
func bootUbuntuConverted(t *testing.T, d *ubuntufixture.Disk, out string) {
	t.Helper()
	r := ubuntufixture.BootBus(t, out, false, cmp.Or(d.Bus, ubuntufixture.BusVirtio), qemuboot.Options{
		Timeout: 150 * time.Second,
		StopOn:  regexp.MustCompile(`^\(initramfs\)|ALERT!|Kernel panic|Gave up waiting for root`),
	})
	t.Logf("%s converted, without BEK: %s to the marker", d.Name, r.Elapsed.Round(time.Second))
	if !r.MarkerFound {
		t.Fatalf("no marker (timed out: %v, stopped: %v); console tail:\n%s", r.TimedOut, r.Stopped, r.Tail(40))
	}
	if r.Root == "" || strings.Contains(r.Root, "osencrypt") || len(r.DM) != 0 {
		t.Errorf("root %q, device-mapper devices %+v", r.Root, r.DM)
	}
	for _, bad := range []string{"crypt-ade", "cryptsetup:", "azure_bek_disk"} {
		if r.Contains(bad) {
			t.Errorf("the console shows %q: ADE's boot path ran", bad)
		}
	}
	// The kernel goes on booting from what it unpacked before an error in the initrd (padding it
	// rejects included), saying so in one of these lines; the console shows that phase (it frees the
	// initrd after unpacking it).
	if !r.Contains("Freeing initrd memory") {
		t.Errorf("the console does not show the initrd being unpacked and freed")
	}
	for _, bad := range []string{"Initramfs unpacking failed", "rootfs image is not initramfs"} {
		if r.Contains(bad) {
			t.Errorf("the console shows %q: the kernel did not unpack the whole initrd", bad)
		}
	}
}

// grepMarkers fails when a file under dir holds one of ubuntufixture.ADEMarkers.
func grepMarkers(t *testing.T, what, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		n++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, mk := range ubuntufixture.ADEMarkers {
			if bytes.Contains(b, []byte(mk)) {
				t.Errorf("%s: %s holds %q", what, strings.TrimPrefix(p, dir), mk)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Errorf("%s: only %d files extracted", what, n)
	}
}

func lsinitramfs(t *testing.T, img string) []string {
	t.Helper()
	b, err := exec.Command("lsinitramfs", img).Output()
	if err != nil {
		t.Fatalf("lsinitramfs %s: %v", img, err)
	}
	return strings.Fields(string(b))
}

// TestUbuntuKeepGuest: with KeepGuest and FullCopy the output is the plaintext disk byte for byte.
func TestUbuntuKeepGuest(t *testing.T) {
	skipUbuntu(t)
	m := ubuntufixture.Load(t)
	ctx := context.Background()
	for _, d := range m.Disks {
		t.Run(d.Name, func(t *testing.T) {
			src, err := luksconv.OpenFile(m.Path(d.Disk))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			key := m.Path(m.Key)
			p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: key, KeepGuest: true, FullCopy: true})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Volume.Partition != d.LUKSPartition || !strings.Contains(p.Volume.HeaderPath, "/boot/luks/osluksheader") {
				t.Errorf("volume %+v", p.Volume)
			}
			out := executeTo(t, p, src)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(m.Path(d.PlainDisk))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the --keep-guest --full-copy output differs from the plaintext disk (%d and %d bytes)", len(got), len(want))
			}
		})
	}
}

// TestUbuntuInspect: without the key, inspect reads the ext2 /boot and previews its edits the
// initramfs-tools way: the initrd without ADE's scripts, and grub.cfg's root=/dev/mapper/osencrypt
// replaced by the root filesystem's UUID, which only the key can show.
func TestUbuntuInspect(t *testing.T) {
	skipUbuntu(t)
	m := ubuntufixture.Load(t)
	d, ok := m.Disk(ubuntufixture.DiskU2204)
	if !ok {
		t.Fatal("no u2204 disk")
	}
	src, err := luksconv.OpenFile(m.Path(d.Disk))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var initrd, grub bool
	for _, e := range rep.Edits {
		switch e.Path {
		case "/boot" + d.InitrdPath:
			initrd = strings.Contains(e.Why, "initramfs-tools")
		case "/boot" + d.GrubCfgPath:
			grub = grub || slices.ContainsFunc(e.After, func(l string) bool { return strings.Contains(l, "root=UUID=<root-filesystem-UUID>") })
		}
	}
	if !initrd || !grub {
		t.Errorf("initrd edit the initramfs-tools way: %v; grub.cfg names the root by UUID: %v; edits: %+v", initrd, grub, rep.Edits)
	}
	if rep.Readiness == nil || rep.Readiness.Ready {
		t.Errorf("an encrypted disk is ready: %+v", rep.Readiness)
	}
}

// TestUbuntuDelta: a second pass after the guest rebuilt its initrd and regenerated grub.cfg on the
// ext2 /boot (debugfs -w on a copy of u2204: the initrd replaced by another, lz4, with ADE's scripts,
// grub.cfg rewritten longer) gives exactly a full conversion of the new state: the old initrd's
// blocks, now free, become zeros, the new one is rewritten without ADE's scripts, and the guest
// edits of both passes are redone from the second plan.
func TestUbuntuDelta(t *testing.T) {
	skipUbuntu(t)
	m := ubuntufixture.Load(t)
	d, _ := m.Disk(ubuntufixture.DiskU2204)
	other, _ := m.Disk(ubuntufixture.DiskU2004)
	boot, _ := d.Part(d.BootPartition)
	dir := t.TempDir()
	s2 := filepath.Join(dir, "s2.raw")
	if out, err := exec.Command("cp", "--sparse=always", m.Path(d.Disk), s2).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	cfg := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(cfg, []byte(d.BootFiles[d.GrubCfgPath]+"# regenerated by update-grub\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, req := range []string{"rm " + d.InitrdPath, "write " + m.Path(other.Initrd) + " " + d.InitrdPath,
		"rm " + d.GrubCfgPath, "write " + cfg + " " + d.GrubCfgPath} {
		if out, err := exec.Command("debugfs", "-w", "-R", req, ubuntufixture.ExtPath(s2, boot.Start)).CombinedOutput(); err != nil {
			t.Fatalf("debugfs -w -R %q: %v\n%s", req, err, out)
		}
	}
	opts := luksconv.PlanOptions{KeyFile: m.Path(m.Key)}
	p1, src1 := planFile(t, m.Path(d.Disk), opts)
	first := executeTo(t, p1, src1)
	p2, src2 := planFile(t, s2, opts)
	full, err := os.ReadFile(executeTo(t, p2, src2))
	if err != nil {
		t.Fatal(err)
	}
	changed := deltafixture.ChangedPages(t, m.Path(d.Disk), s2)
	delta, err := luksconv.Delta(p1, p2, changed)
	if err != nil {
		t.Fatal(err)
	}
	executeInto(t, delta, src2, first)
	got, _ := os.ReadFile(first)
	t.Logf("source changed %d bytes; the second pass rewrites %d of %d (copy %d, decrypt %d, zero %d)", extent.Total(changed),
		delta.Totals.Copy+delta.Totals.Decrypt+delta.Totals.Zero, p2.OutputSize, delta.Totals.Copy, delta.Totals.Decrypt, delta.Totals.Zero)
	if !bytes.Equal(got, full) {
		t.Fatal("the second pass differs from a full conversion of the new state")
	}
}
