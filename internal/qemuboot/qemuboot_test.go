package qemuboot_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/qemuboot"
)

// ----------------------------------------------------------------------------- parsing (fast)

func TestParseConsole(t *testing.T) {
	log := "[  1.0] Kernel command line: root=/dev/mapper/rootvg-rootlv LUKSCONV-BOOT-OKAY\r\n" +
		"[\x1b[0;32m  OK  \x1b[0m] Finished \x1b[0;1;39msystemd-cryptsetup@osencrypt.service\x1b[0m.\r\n" +
		"LUKSCONV-BOOT-DM dm-0 name=osencrypt uuid=CRYPT-LUKS2-abc-osencrypt slaves=vda4 \r\n" +
		"LUKSCONV-BOOT-DM dm-1 name=rootvg-rootlv uuid=LVM-xyz slaves=dm-0 dm-2 \r\n" +
		"LUKSCONV-BOOT-OK root=/dev/mapper/rootvg-rootlv\r\n" +
		"LUKSCONV-BOOT-OK root=/dev/second\r\n"
	r := qemuboot.ParseConsole(log, "")
	if !r.MarkerFound || r.Root != "/dev/mapper/rootvg-rootlv" || r.MarkerLine != "LUKSCONV-BOOT-OK root=/dev/mapper/rootvg-rootlv" {
		t.Fatalf("marker: found %v root %q line %q", r.MarkerFound, r.Root, r.MarkerLine)
	}
	if len(r.DM) != 2 {
		t.Fatalf("DM = %+v, want 2 devices", r.DM)
	}
	d, ok := r.DMByName("rootvg-rootlv")
	if !ok || d.Dev != "dm-1" || d.UUID != "LVM-xyz" || strings.Join(d.Slaves, ",") != "dm-0,dm-2" {
		t.Fatalf("rootvg-rootlv = %+v, %v", d, ok)
	}
	if !r.Contains("Finished systemd-cryptsetup@osencrypt.service.") {
		t.Error("Contains does not see through ANSI colours")
	}
	// a marker inside a longer word (the kernel echoing its command line) is not the marker
	if r := qemuboot.ParseConsole("x LUKSCONV-BOOT-OK root=/a\nLUKSCONV-BOOT-OKAY\n", ""); r.MarkerFound {
		t.Errorf("marker found in %q", r.Log)
	}
}

func TestParseGrubenvAndBLS(t *testing.T) {
	env := qemuboot.ParseGrubenv([]byte("# GRUB Environment Block\nsaved_entry=abc-6.1\n" +
		"kernelopts=root=/dev/mapper/rootvg-rootlv ro rd.luks.ade.partuuid=p4 rd.debug\nboot_success=0\n" +
		"esc=a\\\\b\n" + strings.Repeat("#", 40)))
	if env["saved_entry"] != "abc-6.1" || env["kernelopts"] != "root=/dev/mapper/rootvg-rootlv ro rd.luks.ade.partuuid=p4 rd.debug" || env["esc"] != `a\b` {
		t.Fatalf("grubenv = %q", env)
	}
	e := qemuboot.ParseBLS([]byte("title T\nversion 6.1\nlinux /vmlinuz-6.1\n"+
		"initrd /initramfs-6.1.img $tuned_initrd\ninitrd ${extra}\noptions $kernelopts $tuned_params\n"+
		"options console=ttyS0\ngrub_arg --unrestricted\n"), map[string]string{
		"kernelopts": env["kernelopts"], "extra": "/early.cpio"})
	if e.Linux != "/vmlinuz-6.1" || strings.Join(e.Initrd, ",") != "/initramfs-6.1.img,/early.cpio" ||
		e.Options != env["kernelopts"]+" console=ttyS0" || e.Title != "T" || e.Version != "6.1" {
		t.Fatalf("entry = %+v", e)
	}
}

func TestArgs(t *testing.T) {
	o := qemuboot.Options{Kernel: "/k", Initrd: "/i", Append: "root=/x ", ExtraAppend: "panic=-1", Accel: "tcg",
		Drives: []qemuboot.Drive{{Path: "/a,b.raw"}, {Path: "/bek.raw", ReadOnly: true, Format: "vpc"}}}
	got := strings.Join(o.Args(), " ")
	for _, want := range []string{
		"-accel tcg", "-m 1024", "-smp 2", "-no-reboot", "-kernel /k", "-initrd /i", "-append root=/x panic=-1",
		"-drive file=/a,,b.raw,format=raw,if=virtio,snapshot=on",
		"-drive file=/bek.raw,format=vpc,if=virtio,readonly=on",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args %q lack %q", got, want)
		}
	}
}

// ------------------------------------------------------------------ process handling (fast)

// fakeQEMU writes a stand-in for qemu-system-x86_64 whose behaviour is picked by "mode=" in -append.
func fakeQEMU(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-qemu")
	script := `#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -append ] && app=$2; shift; done
echo "[    0.000000] Kernel command line: $app"
case $app in
*mode=marker*) echo "LUKSCONV-BOOT-DM dm-0 name=osencrypt uuid=CRYPT-LUKS2-x-osencrypt slaves=vda4"
  printf '\033[0;32mLUKSCONV-BOOT-OK root=/dev/mapper/rootvg-rootlv\033[0m\r\n'; exit 0 ;;
*mode=linger*) echo "LUKSCONV-BOOT-OK root=/dev/vda2"; exec sleep 30 ;;
*mode=hang*) exec sleep 30 ;;
*mode=emergency*) echo "Entering emergency mode"; exec sleep 30 ;;
*mode=waitkey*) echo "Please enter passphrase"; exec sleep 30 ;;
*mode=fail*) echo "qemu: could not open disk" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	return p
}

func TestBootProcessHandling(t *testing.T) {
	q := fakeQEMU(t)
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	boot := func(mode string, o qemuboot.Options) (*qemuboot.Result, error) {
		o.QEMU, o.Kernel, o.Append = q, kernel, "mode="+mode
		if o.Timeout == 0 {
			o.Timeout = 10 * time.Second
		}
		return qemuboot.Boot(context.Background(), o)
	}
	t.Run("marker", func(t *testing.T) {
		r, err := boot("marker", qemuboot.Options{})
		if err != nil || !r.MarkerFound || r.Root != "/dev/mapper/rootvg-rootlv" || r.TimedOut || r.ExitCode != 0 {
			t.Fatalf("r=%+v err=%v", r, err)
		}
		if d, ok := r.DMByName("osencrypt"); !ok || d.Slaves[0] != "vda4" {
			t.Errorf("DM = %+v", r.DM)
		}
	})
	t.Run("grace", func(t *testing.T) {
		start := time.Now()
		r, err := boot("linger", qemuboot.Options{Grace: 200 * time.Millisecond})
		if err != nil || !r.MarkerFound || r.TimedOut || time.Since(start) > 5*time.Second {
			t.Fatalf("r=%+v err=%v after %s", r, err, time.Since(start))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		r, err := boot("hang", qemuboot.Options{Timeout: 300 * time.Millisecond})
		if err != nil || r.MarkerFound || !r.TimedOut || time.Since(start) > 5*time.Second {
			t.Fatalf("r=%+v err=%v after %s", r, err, time.Since(start))
		}
		if !r.Contains("Kernel command line: mode=hang") {
			t.Errorf("log = %q", r.Log)
		}
	})
	t.Run("grace-after", func(t *testing.T) {
		start := time.Now()
		r, err := boot("waitkey", qemuboot.Options{GraceAfter: regexp.MustCompile(`enter passphrase`), Grace: 200 * time.Millisecond})
		if err != nil || r.MarkerFound || r.TimedOut || r.Stopped || time.Since(start) > 5*time.Second || !r.Contains("Please enter passphrase") {
			t.Fatalf("r=%+v err=%v after %s", r, err, time.Since(start))
		}
	})
	t.Run("stop", func(t *testing.T) {
		r, err := boot("emergency", qemuboot.Options{StopOn: regexp.MustCompile(`emergency mode`)})
		if err != nil || !r.Stopped || r.TimedOut || r.MarkerFound {
			t.Fatalf("r=%+v err=%v", r, err)
		}
	})
	t.Run("fail", func(t *testing.T) {
		_, err := boot("fail", qemuboot.Options{})
		if err == nil || !strings.Contains(err.Error(), "could not open disk") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := qemuboot.Boot(ctx, qemuboot.Options{QEMU: q, Kernel: kernel, Append: "mode=hang", Timeout: time.Minute})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("noqemu", func(t *testing.T) {
		_, err := qemuboot.Boot(context.Background(), qemuboot.Options{QEMU: "/nonexistent/qemu", Kernel: kernel})
		if !errors.Is(err, qemuboot.ErrNoQEMU) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing-drive", func(t *testing.T) {
		_, err := boot("marker", qemuboot.Options{Drives: []qemuboot.Drive{{Path: "/nonexistent.raw"}}})
		if err == nil || !strings.Contains(err.Error(), "nonexistent.raw") {
			t.Fatalf("err = %v", err)
		}
	})
}

// ------------------------------------------------------------------------- the boot disk set

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		p = "/usr/sbin/" + name
	}
	cmd := exec.Command(p, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBootSet checks the built set with tools written elsewhere: the kernel, initramfs and command line
// a grub would boot from /boot are the saved copies; the header is LUKS2 with its data at offset 0
// (detached header); the BEK volume holds the key.
func TestBootSet(t *testing.T) {
	set := qemuboot.Fixture(t)
	for _, disk := range []string{set.Disk, set.PlainDisk} {
		bf, err := qemuboot.ReadBootFiles(disk, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if bf.Partition != set.BootPartition || bf.Entry != set.BLSEntry || bf.KernelPath != set.KernelPath ||
			len(bf.InitrdPaths) != 1 || bf.InitrdPaths[0] != set.InitramfsPath {
			t.Errorf("%s: boot files %+v", disk, bf)
		}
		if bf.Cmdline != set.Cmdline {
			t.Errorf("%s: cmdline %q, want %q", disk, bf.Cmdline, set.Cmdline)
		}
		if got := fileSHA(t, bf.Kernel); got != set.VmlinuzSHA256 || got != fileSHA(t, set.Vmlinuz) {
			t.Errorf("%s: kernel from /boot has sha256 %s, saved copy %s", disk, got, set.VmlinuzSHA256)
		}
		if got := fileSHA(t, bf.Initrd); got != set.InitramfsSHA256 || got != fileSHA(t, set.Initramfs) {
			t.Errorf("%s: initramfs from /boot has sha256 %s, saved copy %s", disk, got, set.InitramfsSHA256)
		}
	}
	for _, want := range []string{"rd.luks.ade.partuuid=" + set.PartUUID, "rd.luks.ade.bootuuid=" + set.BootUUID,
		"rd.debug", "root=/dev/mapper/rootvg-rootlv", "rd.lvm.lv=rootvg/rootlv", "console=ttyS0"} {
		if !strings.Contains(" "+set.Cmdline+" ", " "+want+" ") {
			t.Errorf("cmdline %q lacks %q", set.Cmdline, want)
		}
	}
	dump := tool(t, "cryptsetup", "luksDump", set.Header)
	for _, want := range []string{"Version:       \t2", "aes-xts-plain64", "offset: 0 [bytes]"} {
		if !strings.Contains(dump, want) {
			t.Errorf("luksDump lacks %q:\n%s", want, dump)
		}
	}
	key, err := os.ReadFile(set.Key)
	if err != nil || len(key) != 172 {
		t.Fatalf("key: %d bytes, %v", len(key), err)
	}
	if got := tool(t, "mtype", "-i", set.BEK+"@@1M", "::LinuxPassPhraseFileName"); got != string(key) {
		t.Errorf("BEK volume key differs from %s", set.Key)
	}
	if label := tool(t, "mlabel", "-s", "-i", set.BEK+"@@1M", "::"); !strings.Contains(label, "BEK VOLUME") {
		t.Errorf("BEK label: %q", label)
	}
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("qemu boot tests take about a minute each; skipped with -short")
	}
}

// adeOpened are console lines proving 91adeOnline unlocked osencrypt with the BEK key.
var adeOpened = []*regexp.Regexp{
	regexp.MustCompile(`ADE: crypt-run-generator-ade: adding osencrypt for /dev/vda4 `),
	// systemd shortens unit names to fit 80 columns: "Finished systemd-cryptsetu… Cryptography Setup for osencrypt."
	regexp.MustCompile(`Finished systemd-cryptsetu.*Cryptography Setup for osencrypt`),
	regexp.MustCompile(`ADE: crypt-run-generator-ade: /dev/mapper/osencrypt is open`),
}

func TestBootEncryptedWithBEK(t *testing.T) {
	skipShort(t)
	t.Parallel()
	set := qemuboot.Fixture(t)
	r := qemuboot.BootDisk(t, set.Disk, true)
	t.Logf("encrypted disk with BEK: %s to the marker", r.Elapsed.Round(time.Second))
	if !r.MarkerFound {
		t.Fatalf("no %s line after %s (timed out: %v); console tail:\n%s", set.Marker, r.Elapsed, r.TimedOut, r.Tail(60))
	}
	for _, re := range adeOpened {
		if !r.Match(re) {
			t.Errorf("console lacks %q; tail:\n%s", re, r.Tail(60))
		}
	}
	if r.Root != "/dev/mapper/rootvg-rootlv" {
		t.Errorf("root = %q", r.Root)
	}
	crypt, ok := r.DMByName("osencrypt")
	if !ok || !strings.HasPrefix(crypt.UUID, "CRYPT-LUKS2-") || strings.Join(crypt.Slaves, " ") != "vda4" {
		t.Errorf("osencrypt = %+v (%v); DM %+v", crypt, ok, r.DM)
	}
	root, ok := r.DMByName("rootvg-rootlv")
	if !ok || strings.Join(root.Slaves, " ") != crypt.Dev {
		t.Errorf("rootvg-rootlv = %+v, want it on %s (osencrypt)", root, crypt.Dev)
	}
}

func TestBootEncryptedWithoutBEK(t *testing.T) {
	skipShort(t)
	t.Parallel()
	set := qemuboot.Fixture(t)
	// Ended 45 s after ADE's generator tried to open the volume (it opens one with the BEK within
	// that time), not at a fixed time since the start: on a loaded host the guest took 85 s to get
	// there, and a 90 s timeout cut the boot before the line this test needs.
	r := qemuboot.BootDiskWith(t, set.Disk, false, qemuboot.Options{GraceAfter: adeOpened[0], Grace: 45 * time.Second})
	if r.MarkerFound {
		t.Fatalf("reached %q without the BEK volume", r.MarkerLine)
	}
	// The ADE module must have tried (so the hang is the missing key, not a broken initramfs) and
	// must not have opened osencrypt.
	if !r.Match(adeOpened[0]) {
		t.Errorf("console lacks %q; tail:\n%s", adeOpened[0], r.Tail(60))
	}
	for _, re := range adeOpened[1:] {
		if r.Match(re) {
			t.Errorf("console shows %q without the BEK volume", re)
		}
	}
	if r.TimedOut {
		t.Errorf("the boot timed out (%s) before ADE's generator tried the volume", r.Elapsed.Round(time.Second))
	}
	t.Logf("encrypted disk without BEK: no marker after %s", r.Elapsed.Round(time.Second))
}

// TestBootPlainDisk boots the disk before encryption (what a byte-level decryption of p4 gives) with
// ADE's arguments replaced by rd.ade=0 (91adeOnline off) and rd.lvm.conf=0 (the initramfs' lvm.conf
// carries ADE's filter, which rejects the plaintext PV by its PARTUUID).
func TestBootPlainDisk(t *testing.T) {
	skipShort(t)
	t.Parallel()
	set := qemuboot.Fixture(t)
	var args []string
	for _, a := range strings.Fields(set.Cmdline) {
		if !strings.HasPrefix(a, "rd.luks.ade.") && a != "rd.debug" {
			args = append(args, a)
		}
	}
	args = append(args, "rd.ade=0", "rd.lvm.conf=0")
	r := qemuboot.BootDiskWith(t, set.PlainDisk, false, qemuboot.Options{Append: strings.Join(args, " ")})
	t.Logf("plaintext disk: %s to the marker", r.Elapsed.Round(time.Second))
	if !r.MarkerFound {
		t.Fatalf("no marker after %s; console tail:\n%s", r.Elapsed, r.Tail(60))
	}
	if _, ok := r.DMByName("osencrypt"); ok {
		t.Errorf("osencrypt open on the plaintext disk: %+v", r.DM)
	}
	if root, ok := r.DMByName("rootvg-rootlv"); !ok || strings.Join(root.Slaves, " ") != "vda4" {
		t.Errorf("rootvg-rootlv = %+v, want it straight on vda4", root)
	}
	if !r.Contains("ADE: rd.ade=0") {
		t.Errorf("console lacks the 91adeOnline rd.ade=0 message")
	}
}
