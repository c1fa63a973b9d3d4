package ubuntufixture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/qemuboot"
)

// BootFiles are what grub would boot from a disk's ext2/3/4 /boot: the default grub.cfg entry's kernel
// and initrd, copied to host files, and its command line.
type BootFiles struct {
	Partition int    // the GPT partition holding /boot/grub/grub.cfg
	Entry     string // the menuentry's title
	Kernel    string // host file
	Initrd    string // host file ("" when the entry has none)
	Cmdline   string
}

// ExtPath is debugfs's name for the ext filesystem at byte offset off of the image file img.
func ExtPath(img string, off int64) string { return fmt.Sprintf("%s?offset=%d", img, off) }

// Debugfs runs debugfs read-only with one request on the ext filesystem at byte offset off of img and
// returns its standard output.
func Debugfs(img string, off int64, request string) (string, error) {
	bin, err := lookTool("debugfs", "e2fsprogs")
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-R", request, ExtPath(img, off))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debugfs -R %q %s: %v: %s", request, ExtPath(img, off), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// DumpFile copies the file p of the ext filesystem at byte offset off of img to the host file dst.
func DumpFile(img string, off int64, p, dst string) error {
	if strings.ContainsAny(p, "\"\n") || strings.ContainsAny(dst, "\"\n") {
		return fmt.Errorf("ubuntufixture: unsupported path %q", p)
	}
	os.Remove(dst)
	if _, err := Debugfs(img, off, fmt.Sprintf(`dump -p "%s" "%s"`, p, dst)); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err != nil {
		return fmt.Errorf("ubuntufixture: %s has no %s", ExtPath(img, off), p)
	}
	return nil
}

// ReadExtFile returns the content of the file p of the ext filesystem at byte offset off of img.
func ReadExtFile(img string, off int64, p string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "ubuntufixture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dst := filepath.Join(dir, "f")
	if err := DumpFile(img, off, p, dst); err != nil {
		return nil, err
	}
	return os.ReadFile(dst)
}

// Partitions reads a raw disk image's GPT (512-byte sectors).
func Partitions(disk string) ([]gpt.Partition, error) {
	f, err := os.Open(disk)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	t, err := gpt.Read(f, st.Size(), 512)
	if err != nil {
		return nil, fmt.Errorf("ubuntufixture: %s: %w", disk, err)
	}
	return t.Partitions, nil
}

// ReadBootFiles finds the partition whose ext filesystem holds /grub/grub.cfg (a separate /boot, as
// ADE's Ubuntu split makes) or /boot/grub/grub.cfg, takes grub.cfg's first menuentry, and copies its
// kernel and initrd into dir.
func ReadBootFiles(disk, dir string) (*BootFiles, error) {
	parts, err := Partitions(disk)
	if err != nil {
		return nil, err
	}
	if _, err := lookTool("debugfs", "e2fsprogs"); err != nil {
		return nil, err
	}
	for _, p := range parts {
		for _, prefix := range []string{"", "/boot"} {
			cfg, err := ReadExtFile(disk, p.Offset, prefix+"/grub/grub.cfg")
			if err != nil {
				continue
			}
			entries := ParseGrubCfg(string(cfg))
			if len(entries) == 0 || entries[0].Linux == "" {
				return nil, fmt.Errorf("ubuntufixture: %s partition %d: grub.cfg has no menuentry with a linux line", disk, p.Number)
			}
			e := entries[0]
			bf := &BootFiles{Partition: p.Number, Entry: e.Title, Cmdline: e.Args, Kernel: filepath.Join(dir, "vmlinuz")}
			if err := DumpFile(disk, p.Offset, prefix+e.Linux, bf.Kernel); err != nil {
				return nil, err
			}
			if len(e.Initrd) > 0 {
				if len(e.Initrd) > 1 {
					return nil, fmt.Errorf("ubuntufixture: %s: menuentry %q has %d initrds; one is supported", disk, e.Title, len(e.Initrd))
				}
				bf.Initrd = filepath.Join(dir, "initrd")
				if err := DumpFile(disk, p.Offset, prefix+e.Initrd[0], bf.Initrd); err != nil {
					return nil, err
				}
			}
			return bf, nil
		}
	}
	return nil, fmt.Errorf("ubuntufixture: %s: no ext filesystem with grub/grub.cfg", disk)
}

// Boot boots the raw disk image disk the way grub would (ReadBootFiles: the default entry of its /boot's
// grub.cfg), with the set's BEK disk attached as the second drive if withBEK, and returns what the
// console showed. The disk is attached with snapshot=on, so it is never changed. "panic=-1" is appended.
// o is used as in qemuboot.BootDiskWith: o.Append, if set, replaces the command line, o.ExtraAppend is
// appended, o.Drives come after the disk (and the BEK disk). It skips when qemu, the set or a tool cannot
// be had; a boot that does not reach the marker is reported in the Result, for the caller to assert.
func Boot(t testing.TB, disk string, withBEK bool, o qemuboot.Options) *qemuboot.Result {
	t.Helper()
	return BootBus(t, disk, withBEK, BusVirtio, o)
}

// BootDisk boots a disk of the set as Boot does, on the bus it needs (Disk.Bus).
func BootDisk(t testing.TB, set *Manifest, d *Disk, withBEK bool, o qemuboot.Options) *qemuboot.Result {
	t.Helper()
	bus := d.Bus
	if bus == "" {
		bus = BusVirtio
	}
	return BootBus(t, set.Path(d.Disk), withBEK, bus, o)
}

// BootBus is Boot with the drives on bus: BusVirtio (vda, vdb, ...) or BusSCSI (one virtio-scsi
// controller; the drives become sda, sdb, ... in order, as Azure attaches the OS disk and the BEK volume).
// For BusSCSI o.QEMU is replaced by a wrapper that runs the real qemu with the drives moved to SCSI, and
// "scsi_mod.scan=sync" is appended so the names usually follow the drive order (not always: see
// SCSISwapped).
func BootBus(t testing.TB, disk string, withBEK bool, bus string, o qemuboot.Options) *qemuboot.Result {
	t.Helper()
	qemuboot.NeedQEMU(t)
	set := Load(t)
	dir := t.TempDir()
	bf, err := ReadBootFiles(disk, dir)
	if err != nil {
		var nt *ErrNoTool
		if errors.As(err, &nt) {
			t.Skipf("BOOT TESTS UNAVAILABLE: %v", err)
		}
		t.Fatalf("ubuntufixture: %v", err)
	}
	o.Kernel, o.Initrd = bf.Kernel, bf.Initrd
	if o.Append == "" {
		o.Append = bf.Cmdline
	}
	o.ExtraAppend = strings.TrimSpace("panic=-1 " + o.ExtraAppend)
	if o.Marker == "" {
		o.Marker = set.Marker
	}
	drives := []qemuboot.Drive{{Path: disk}}
	if withBEK {
		drives = append(drives, qemuboot.Drive{Path: set.Path(set.BEK), ReadOnly: true})
	}
	o.Drives = append(drives, o.Drives...)
	if o.LogFile == "" {
		o.LogFile = filepath.Join(dir, "serial.log")
	}
	switch bus {
	case BusVirtio:
	case BusSCSI:
		// sd names follow probe order, and sd probes run asynchronously, so the BEK disk can become sda and
		// the OS disk sdb (as on Azure, which is why ADE later rewrote /dev/sda1 crypttab lines to stable
		// links); u1804's crypttab names /dev/sda1 and then "opens" the BEK partition with the detached
		// header. Scanning targets in order makes the OS disk sda most of the time; callers retry the rest.
		o.ExtraAppend = strings.TrimSpace(o.ExtraAppend + " scsi_mod.scan=sync")
		if o.QEMU, err = scsiWrapper(dir, o); err != nil {
			if errors.Is(err, qemuboot.ErrNoQEMU) {
				t.Skipf("BOOT TESTS UNAVAILABLE: %v", err)
			}
			t.Fatalf("ubuntufixture: %v", err)
		}
	default:
		t.Fatalf("ubuntufixture: unknown bus %q", bus)
	}
	t.Logf("ubuntufixture: booting %s on %s (BEK attached: %v) from partition %d, %q: %s %s", disk, bus, withBEK,
		bf.Partition, bf.Entry, o.Append, o.ExtraAppend)
	res, err := qemuboot.Boot(context.Background(), o)
	if err != nil {
		if errors.Is(err, qemuboot.ErrNoQEMU) {
			t.Skipf("BOOT TESTS UNAVAILABLE: %v", err)
		}
		t.Fatalf("ubuntufixture: %v", err)
	}
	t.Logf("ubuntufixture: %s: marker %v after %s (timed out: %v, stopped: %v, root=%q)", filepath.Base(disk),
		res.MarkerFound, res.Elapsed.Round(100*time.Millisecond), res.TimedOut, res.Stopped, res.Root)
	return res
}

// SCSIArgs rewrites qemu arguments so that every "-drive ...,if=virtio" becomes a disk on one virtio-scsi
// controller (target i for the i-th such drive, LUN 0), so the guest names them sda, sdb, ... in order.
func SCSIArgs(args []string) []string {
	out := make([]string, 0, len(args)+8)
	var devs []string
	n := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-drive" && i+1 < len(args) && strings.Contains(args[i+1], ",if=virtio") {
			id := fmt.Sprintf("scsihd%d", n)
			out = append(out, a, strings.Replace(args[i+1], ",if=virtio", ",if=none,id="+id, 1))
			devs = append(devs, "-device", fmt.Sprintf("scsi-hd,drive=%s,bus=scsi0.0,channel=0,scsi-id=%d,lun=0", id, n))
			n++
			i++
			continue
		}
		out = append(out, a)
	}
	if n == 0 {
		return out
	}
	out = append(out, "-device", "virtio-scsi-pci,id=scsi0")
	return append(out, devs...)
}

// scsiWrapper writes dir/qemu-scsi, a script that runs the real qemu with SCSIArgs(o.Args()) (the
// arguments qemuboot.Boot passes are the same o.Args(), so they are ignored), and returns its path.
func scsiWrapper(dir string, o qemuboot.Options) (string, error) {
	bin := o.QEMU
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", qemuboot.ErrNoQEMU
	}
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# ubuntufixture: qemu with the drives on virtio-scsi\nexec " + quote(path))
	for _, a := range SCSIArgs(o.Args()) {
		b.WriteString(" " + quote(a))
	}
	b.WriteString("\n")
	w := filepath.Join(dir, "qemu-scsi")
	if err := os.WriteFile(w, []byte(b.String()), 0o755); err != nil {
		return "", err
	}
	return w, nil
}

// swappedRE matches u1804's keyscript finding the BEK volume on sda: the BEK disk took the OS disk's name.
var swappedRE = regexp.MustCompile(`> Trying device: sda \.\.\.\n(\[[^\n]*\n)*Success loading keyfile!`)

// SCSISwapped reports whether a BusSCSI boot of a disk whose crypttab names /dev/sda1 had the kernel name
// the BEK disk sda (its keyscript found the key on sda): the boot then fails for a reason of the
// test machine's device naming, not of the disk, and is worth repeating.
func SCSISwapped(r *qemuboot.Result) bool { return swappedRE.MatchString(qemuboot.StripANSI(r.Log)) }
