package ubuntufixture_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("qemu boot tests take 20-60 s each; skipped with -short")
	}
}

// TestBootUnconvertedWithBEK boots each ADE-encrypted Ubuntu disk with its BEK volume attached, through
// the initrd mkinitramfs made, and requires the root filesystem's init to report / on
// /dev/mapper/osencrypt over p1. u2204, u2204k (4096-byte LUKS sectors), u2004 and u2404 (the 24.04
// online flow, /boot on the image's ext4 p16): ADE's crypt-ade-boot (stand-in) mounts /boot and the BEK
// volume and opens p1 with the detached header (virtio disks); u1804: cryptsetup-initramfs' cryptroot runs ADE's keyscript
// (stand-in), which finds the BEK volume on the SCSI disks, and opens p1 with the header from the initrd.
func TestBootUnconvertedWithBEK(t *testing.T) {
	skipShort(t)
	set := ubuntufixture.Load(t)
	for i := range set.Disks {
		d := &set.Disks[i]
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			// On SCSI the kernel may name the BEK disk sda (sd probes are asynchronous); u1804's crypttab
			// names /dev/sda1, so that boot cannot reach its root: boot again (at most 4 times).
			var r *qemuboot.Result
			for attempt := 1; ; attempt++ {
				r = ubuntufixture.BootDisk(t, set, d, true, qemuboot.Options{
					Timeout: 150 * time.Second,
					StopOn:  regexp.MustCompile(`^\(initramfs\)|ALERT!|Kernel panic|FAILED to find suitable passphrase`),
				})
				if r.MarkerFound || d.Bus != ubuntufixture.BusSCSI || !ubuntufixture.SCSISwapped(r) || attempt == 4 {
					break
				}
				t.Logf("attempt %d: the kernel named the BEK disk sda, so /dev/sda1 was not p1; booting again", attempt)
			}
			t.Logf("%s with BEK: %s to the marker", d.Name, r.Elapsed.Round(time.Second))
			if !r.MarkerFound {
				t.Fatalf("no marker (timed out: %v, stopped: %v); console tail:\n%s", r.TimedOut, r.Stopped, r.Tail(40))
			}
			if r.Root != "/dev/mapper/osencrypt" {
				t.Errorf("root=%q, want /dev/mapper/osencrypt", r.Root)
			}
			dm, ok := r.DMByName(d.Mapper)
			if !ok {
				t.Fatalf("no %s device-mapper device: %+v", d.Mapper, r.DM)
			}
			p1, _ := d.Part(d.LUKSPartition)
			slave := "vda1"
			if d.Bus == ubuntufixture.BusSCSI {
				slave = "sda1"
			}
			wantUUID := fmt.Sprintf("CRYPT-LUKS%d-%s-%s", d.LUKS.Version, strings.ReplaceAll(d.LUKS.UUID, "-", ""), d.Mapper)
			if dm.UUID != wantUUID || strings.Join(dm.Slaves, ",") != slave {
				t.Errorf("%s = %+v, want uuid %s over %s", d.Mapper, dm, wantUUID, slave)
			}
			// the path ADE set up, not some other unlock
			var want []string
			switch d.Name {
			case ubuntufixture.DiskU2204, ubuntufixture.DiskU2204K, ubuntufixture.DiskU2004, ubuntufixture.DiskU2404:
				want = []string{"Running /scripts/init-premount", "+ mount -a",
					"+ cryptsetup luksOpen /dev/disk/by-partuuid/" + p1.GUID + " osencrypt --header /boot/luks/osluksheader -d " + set.KeyPath}
				// the BEK volume and /boot were mounted without errors
				if r.Match(regexp.MustCompile(`mount: mounting .* failed`)) {
					t.Errorf("a mount in crypt-ade-boot failed:\n%s", r.Tail(60))
				}
				// u2404: mount -a found the image's ext4 /boot on p16 through the initrd fstab's "auto" line
				if d.Name == ubuntufixture.DiskU2404 && !r.Match(regexp.MustCompile(`EXT4-fs \(vda16\): mounted filesystem`)) {
					t.Errorf("the kernel did not mount p16 (ext4 /boot):\n%s", r.Tail(60))
				}
			case ubuntufixture.DiskU1804:
				want = []string{"Trying to get the key from disks ...", "> Trying device: sdb ...", "Success loading keyfile!",
					"cryptsetup: osencrypt: set up successfully"}
			default:
				t.Errorf("no expected unlock path for disk %s", d.Name)
			}
			for _, w := range want {
				if !r.Contains(w) {
					t.Errorf("console lacks %q", w)
				}
			}
		})
	}
}

// TestBootUnconvertedWithoutBEK boots each disk with no BEK volume: the unlock must fail for want of the
// key (u2204: cryptsetup cannot open the key file; u1804: the keyscript finds no BEK volume) and the
// root must not come up. The boot is stopped at that failure.
func TestBootUnconvertedWithoutBEK(t *testing.T) {
	skipShort(t)
	set := ubuntufixture.Load(t)
	for i := range set.Disks {
		d := &set.Disks[i]
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			failed := map[string]string{
				ubuntufixture.DiskU2204:  "Failed to open key file",
				ubuntufixture.DiskU2204K: "Failed to open key file",
				ubuntufixture.DiskU2004:  "Failed to open key file",
				ubuntufixture.DiskU2404:  "Failed to open key file",
				ubuntufixture.DiskU1804:  "FAILED to find suitable passphrase file",
			}[d.Name]
			if failed == "" {
				t.Fatalf("no expected failure for disk %s", d.Name)
			}
			r := ubuntufixture.BootDisk(t, set, d, false, qemuboot.Options{
				Timeout: 150 * time.Second,
				StopOn:  regexp.MustCompile(regexp.QuoteMeta(failed) + `|ALERT!|Gave up waiting for root|LUKSCONV-BOOT-OK`),
			})
			t.Logf("%s without BEK: %s", d.Name, r.Elapsed.Round(time.Second))
			if r.MarkerFound {
				t.Fatalf("the disk booted to its root without the BEK volume:\n%s", r.Tail(30))
			}
			if !r.Contains(failed) {
				t.Errorf("console lacks %q; tail:\n%s", failed, r.Tail(30))
			}
			if _, ok := r.DMByName(d.Mapper); ok {
				t.Errorf("%s is open without the key", d.Mapper)
			}
		})
	}
}
