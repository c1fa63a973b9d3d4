package ubuntufixture_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
)

// ------------------------------------------------------------------------------ parsing (fast)

func TestParseGrubCfg(t *testing.T) {
	cfg := `### BEGIN /etc/grub.d/00_header ###
function recordfail {
  set recordfail=1
}
menuentry 'Ubuntu' --class ubuntu $menuentry_id_option 'gnulinux-simple-x' {
	recordfail
	if [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
	search --no-floppy --fs-uuid --set=root 2c0d
	linux	/vmlinuz-6.1 root=/dev/mapper/osencrypt ro  console=ttyS0
	initrd	/initrd.img-6.1
}
submenu 'Advanced options for Ubuntu' $menuentry_id_option 'gnulinux-advanced-x' {
	menuentry "Ubuntu, with Linux 6.1 (recovery mode)" {
		linux	/vmlinuz-6.1 root=UUID=abc ro recovery root=/dev/mapper/osencrypt
		initrd	/initrd.img-6.1 /extra.img
	}
}
linux /not-in-an-entry
`
	es := ubuntufixture.ParseGrubCfg(cfg)
	if len(es) != 2 {
		t.Fatalf("entries = %+v, want 2", es)
	}
	if e := es[0]; e.Title != "Ubuntu" || e.Linux != "/vmlinuz-6.1" || e.Args != "root=/dev/mapper/osencrypt ro console=ttyS0" ||
		strings.Join(e.Initrd, ",") != "/initrd.img-6.1" {
		t.Errorf("entry 0 = %+v", e)
	}
	if e := es[1]; e.Title != "Ubuntu, with Linux 6.1 (recovery mode)" || e.Args != "root=UUID=abc ro recovery root=/dev/mapper/osencrypt" ||
		strings.Join(e.Initrd, ",") != "/initrd.img-6.1,/extra.img" {
		t.Errorf("entry 1 = %+v", e)
	}
}

// ------------------------------------------------------------------- the set's claims (real tools)

func sha(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAt returns n bytes of the host file path at off.
func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// extract copies [off, off+n) of src into a new file in dir.
func extract(t *testing.T, src string, off, n int64, dir, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(dir, name)
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T) *ubuntufixture.Manifest {
	t.Helper()
	testenv.Need(t, "sgdisk", "cryptsetup", "debugfs", "e2fsck", "mtype", "mlabel", "lsinitramfs", "unmkinitramfs")
	set := ubuntufixture.Load(t)
	if len(set.Disks) != len(ubuntufixture.Disks) {
		t.Errorf("manifest lists %d disks, want %d", len(set.Disks), len(ubuntufixture.Disks))
	}
	for i, name := range ubuntufixture.Disks {
		if _, ok := set.Disk(name); !ok || i < len(set.Disks) && set.Disks[i].Name != name {
			t.Fatalf("manifest lists no %s disk (or not at index %d)", name, i)
		}
	}
	return set
}

// eachDisk runs f as a subtest per disk of the set.
func eachDisk(t *testing.T, f func(t *testing.T, set *ubuntufixture.Manifest, d *ubuntufixture.Disk)) {
	set := load(t)
	for i := range set.Disks {
		d := &set.Disks[i]
		t.Run(d.Name, func(t *testing.T) { f(t, set, d) })
	}
}

func part(t *testing.T, d *ubuntufixture.Disk, n int) ubuntufixture.Partition {
	t.Helper()
	p, ok := d.Part(n)
	if !ok {
		t.Fatalf("%s: no partition %d in the manifest", d.Name, n)
	}
	return p
}

// TestGPT checks the partition table against the manifest with sgdisk (and the project's gpt reader):
// Ubuntu cloud image numbering (p14 BIOS boot, p15 ESP), ADE's p1/p2 split with p2 at the disk's end, or
// (u2404) the 24.04 image's p16 /boot after the ESP and p1 up to the disk's end.
func TestGPT(t *testing.T) {
	eachDisk(t, func(t *testing.T, set *ubuntufixture.Manifest, d *ubuntufixture.Disk) {
		disk := set.Path(d.Disk)
		for _, img := range []string{disk, set.Path(d.PlainDisk)} {
			if st, err := os.Stat(img); err != nil || st.Size() != d.Size {
				t.Fatalf("%s: size %v (%v), want %d", img, st, err, d.Size)
			}
			if out := testenv.Run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
				t.Errorf("sgdisk -v %s:\n%s", img, out)
			}
			if out := testenv.Run(t, "sgdisk", "-p", img); !strings.Contains(strings.ToLower(out), "disk identifier (guid): "+d.DiskGUID) {
				t.Errorf("sgdisk -p %s: disk GUID is not %s:\n%s", img, d.DiskGUID, out)
			}
			for _, p := range d.Partitions {
				out := testenv.Run(t, "sgdisk", "-i", fmt.Sprint(p.Number), img)
				for _, w := range []string{
					"Partition GUID code: " + p.Type,
					"Partition unique GUID: " + strings.ToUpper(p.GUID),
					fmt.Sprintf("First sector: %d ", p.Start/512),
					fmt.Sprintf("Last sector: %d ", (p.Start+p.Size)/512-1),
				} {
					if !strings.Contains(out, w) {
						t.Errorf("sgdisk -i %d %s lacks %q:\n%s", p.Number, filepath.Base(img), w, out)
					}
				}
			}
		}
		parts, err := ubuntufixture.Partitions(disk)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != len(d.Partitions) {
			t.Errorf("gpt: %d partitions, manifest %d", len(parts), len(d.Partitions))
		}
		boot, luks := part(t, d, d.BootPartition), part(t, d, d.LUKSPartition)
		end := d.Size - 33*512 // the backup GPT: 32 sectors of entries and its header
		if d.Size%(1<<20) != 0 {
			t.Errorf("disk size %d is not a whole MiB (Azure's disks are)", d.Size)
		}
		if luks.Size%int64(d.LUKS.SectorSize) != 0 {
			t.Errorf("p1 (%d bytes) is not a whole number of %d-byte LUKS sectors", luks.Size, d.LUKS.SectorSize)
		}
		switch d.BootPartition {
		case 2: // ADE's split
			if boot.Start+boot.Size != end {
				t.Errorf("/boot ends at %d, want after the last usable sector (%d)", boot.Start+boot.Size, end)
			}
			if luks.Start+luks.Size != boot.Start {
				t.Errorf("p1 ends at %d, p2 starts at %d: ADE's split leaves no gap", luks.Start+luks.Size, boot.Start)
			}
			wantSize := int64(256 << 20)
			if d.Name == ubuntufixture.DiskU2204K {
				wantSize += 7 * 512 // p1 cut to whole 4 KiB sectors
			}
			if boot.Size != wantSize || boot.Start%(1<<20) == 0 || boot.Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
				t.Errorf("/boot: %d bytes at %d, type %s, want %d bytes not MiB-aligned, Linux data", boot.Size, boot.Start, boot.Type, wantSize)
			}
			if luks.Size < d.RootFS.Size {
				t.Errorf("p1 (%d bytes) smaller than the root filesystem (%d)", luks.Size, d.RootFS.Size)
			}
		case 16: // the 24.04 cloud image: p16 right after the ESP, p1 after it up to the end, both untouched by ADE
			esp := part(t, d, d.ESPPartition)
			if boot.Start != esp.Start+esp.Size || luks.Start != boot.Start+boot.Size || luks.Start+luks.Size != end {
				t.Errorf("p16 [%d, +%d), p1 [%d, +%d): want p16 after the ESP and p1 from its end to %d",
					boot.Start, boot.Size, luks.Start, luks.Size, end)
			}
			if boot.Type != "BC13C2FF-59E6-4262-A352-B275FD6F7172" || boot.FS != "ext4" || boot.FSLabel != "BOOT" {
				t.Errorf("p16: %+v, want XBOOTLDR type, ext4 labelled BOOT", boot)
			}
			if luks.Size-d.RootFS.Size < 0 || luks.Size-d.RootFS.Size >= 4096 {
				t.Errorf("p1 (%d bytes): the root filesystem (%d) does not fill it", luks.Size, d.RootFS.Size)
			}
		default:
			t.Errorf("/boot is partition %d", d.BootPartition)
		}
	})
}

// TestLUKS checks the detached header with cryptsetup luksDump --header, that it is /boot's
// osluksheader, that the BEK key opens it, and that p1 holds ciphertext from byte 0 while the plain disk
// and the root image hold the ext4 root.
func TestLUKS(t *testing.T) {
	flows := map[string]struct {
		luks           int
		pbkdf, initrd  string
		release, cflow string
	}{
		ubuntufixture.DiskU2204:  {2, "argon2id", "zstd", "22.04", "ubuntu-20.04/22.04"},
		ubuntufixture.DiskU2204K: {2, "argon2id", "zstd", "22.04", "ubuntu-20.04/22.04"},
		ubuntufixture.DiskU2004:  {2, "argon2i", "lz4", "20.04", "ubuntu-20.04/22.04"},
		ubuntufixture.DiskU1804:  {1, "pbkdf2", "gzip", "18.04", "ubuntu-16.04/18.04"},
		ubuntufixture.DiskU2404:  {2, "argon2id", "zstd", "24.04", "ubuntu-23.10/24.04"},
	}
	sectors := map[string]int{ubuntufixture.DiskU2204K: 4096}
	eachDisk(t, func(t *testing.T, set *ubuntufixture.Manifest, d *ubuntufixture.Disk) {
		if f, ok := flows[d.Name]; !ok || d.LUKS.Version != f.luks || d.LUKS.PBKDF != f.pbkdf || d.InitrdCompression != f.initrd ||
			d.OSRelease != f.release || d.Flow != f.cflow {
			t.Errorf("%s: LUKS%d %s, %s initrd, %s, %s; want %+v", d.Name, d.LUKS.Version, d.LUKS.PBKDF, d.InitrdCompression,
				d.OSRelease, d.Flow, f)
		}
		if want := cmp.Or(sectors[d.Name], 512); d.LUKS.SectorSize != want || d.LUKS.DataOffset != 0 {
			t.Errorf("%s: %d-byte sectors, data offset %d; want %d, 0", d.Name, d.LUKS.SectorSize, d.LUKS.DataOffset, want)
		}
		hdr := set.Path(d.Header)
		dump := testenv.Run(t, "cryptsetup", "luksDump", "--header", hdr, hdr)
		res := []string{fmt.Sprintf(`(?m)^Version:\s+%d$`, d.LUKS.Version), `(?m)^UUID:\s+` + regexp.QuoteMeta(d.LUKS.UUID) + `$`}
		switch d.LUKS.Version {
		case 2:
			res = append(res, `(?m)^\s+offset:\s+0 \[bytes\]$`, `(?m)^\s+length:\s+\(whole device\)$`,
				`(?m)^\s+cipher:\s+`+regexp.QuoteMeta(d.LUKS.Cipher)+`$`,
				fmt.Sprintf(`(?m)^\s+sector:\s+%d \[bytes\]$`, d.LUKS.SectorSize),
				fmt.Sprintf(`(?m)^\s+Key:\s+%d bits$`, d.LUKS.KeyBits),
				`(?m)^\s+PBKDF:\s+`+regexp.QuoteMeta(d.LUKS.PBKDF)+`$`)
		case 1:
			cipher, mode, _ := strings.Cut(d.LUKS.Cipher, "-")
			res = append(res, `(?m)^Payload offset:\s+0$`, `(?m)^Cipher name:\s+`+cipher+`$`,
				`(?m)^Cipher mode:\s+`+regexp.QuoteMeta(mode)+`$`, fmt.Sprintf(`(?m)^MK bits:\s+%d$`, d.LUKS.KeyBits),
				`(?m)^Hash spec:\s+sha256$`, `(?m)^Key Slot 0: ENABLED$`)
			if d.LUKS.PBKDF != "pbkdf2" {
				t.Errorf("LUKS1 with PBKDF %q", d.LUKS.PBKDF)
			}
		default:
			t.Fatalf("LUKS version %d", d.LUKS.Version)
		}
		for _, re := range res {
			if !regexp.MustCompile(re).MatchString(dump) {
				t.Errorf("luksDump --header lacks %s:\n%s", re, dump)
			}
		}
		if st, err := os.Stat(hdr); err != nil || st.Size() != d.LUKS.HeaderSize {
			t.Errorf("header file: %v %v, want %d bytes", st, err, d.LUKS.HeaderSize)
		}
		// the key (and the copy on the BEK volume) opens the header
		testenv.Run(t, "cryptsetup", "open", "--test-passphrase", "--header", hdr, "--key-file", set.Path(set.Key), hdr)
		key := readFile(t, set.Path(set.Key))
		if len(key) != 172 || bytes.ContainsAny(key, "\r\n") {
			t.Errorf("key file: %d bytes %q, want 172 base64 characters with no newline", len(key), key)
		}
		if got := testenv.Run(t, "mtype", "-i", set.Path(set.BEK)+"@@1M", "::"+set.KeyName); got != string(key) {
			t.Errorf("BEK volume's %s differs from the key file", set.KeyName)
		}
		if label := testenv.Run(t, "mlabel", "-s", "-i", set.Path(set.BEK)+"@@1M", "::"); !strings.Contains(label, set.BEKLabel) {
			t.Errorf("BEK label: %q", label)
		}
		// /boot/luks/osluksheader on both disks is the header
		boot := part(t, d, d.BootPartition)
		tmp := t.TempDir()
		for _, img := range []string{set.Path(d.Disk), set.Path(d.PlainDisk)} {
			dst := filepath.Join(tmp, "hdr")
			if err := ubuntufixture.DumpFile(img, boot.Start, d.LUKS.HeaderPath, dst); err != nil {
				t.Fatal(err)
			}
			if sha(t, dst) != sha(t, hdr) {
				t.Errorf("%s: /boot%s is not the header", filepath.Base(img), d.LUKS.HeaderPath)
			}
		}
		// ciphertext on the encrypted disk, the ext4 root on the plain disk and in the root image
		luks := part(t, d, d.LUKSPartition)
		magic := func(img string, off int64) []byte { return readAt(t, img, off+0x438, 2) }
		if m := magic(set.Path(d.Disk), luks.Start); bytes.Equal(m, []byte{0x53, 0xef}) {
			t.Errorf("p1 of the encrypted disk starts with an ext superblock")
		}
		if m := magic(set.Path(d.PlainDisk), luks.Start); !bytes.Equal(m, []byte{0x53, 0xef}) {
			t.Errorf("p1 of the plain disk: magic %x, want ext's 53ef", m)
		}
		if !bytes.Equal(readAt(t, set.Path(d.PlainDisk), luks.Start, 1<<20), readAt(t, set.Path(d.RootImage), 0, 1<<20)) {
			t.Errorf("p1 of the plain disk does not start with the root image")
		}
		// everything but p1 is the same on both disks
		enc, plain := set.Path(d.Disk), set.Path(d.PlainDisk)
		for _, r := range [][2]int64{{0, luks.Start}, {luks.Start + luks.Size, d.Size - luks.Start - luks.Size}} {
			if !bytes.Equal(readAt(t, enc, r[0], r[1]), readAt(t, plain, r[0], r[1])) {
				t.Errorf("bytes [%d, %d) differ between the encrypted and the plain disk", r[0], r[0]+r[1])
			}
		}
	})
}

// TestDecrypt decrypts p1 offline with cryptsetup (reencrypt --decrypt --header on a loop device, no
// device-mapper; a LUKS1 header is converted to LUKS2 first, which leaves the volume key and data as
// they are) and compares it with the plain disk's p1.
func TestDecrypt(t *testing.T) {
	eachDisk(t, func(t *testing.T, set *ubuntufixture.Manifest, d *ubuntufixture.Disk) {
		testenv.NeedRoot(t)
		testenv.Need(t, "losetup")
		luks := part(t, d, d.LUKSPartition)
		tmp := t.TempDir()
		p1 := extract(t, set.Path(d.Disk), luks.Start, luks.Size, tmp, "p1")
		hdr := testenv.CopyFile(t, set.Path(d.Header))
		if d.LUKS.Version == 1 {
			testenv.Run(t, "cryptsetup", "convert", "--type", "luks2", "-q", hdr)
		}
		dev, detach := testenv.AttachLoop(t, p1)
		testenv.Run(t, "cryptsetup", "reencrypt", "--decrypt", "--header", hdr, "--key-file", set.Path(set.Key), "-q", dev)
		detach()
		got := sha(t, p1)
		want := sha(t, extract(t, set.Path(d.PlainDisk), luks.Start, luks.Size, tmp, "p1.plain"))
		if got != want {
			t.Fatalf("p1 decrypted with the BEK key (sha256 %s) is not the plain disk's p1 (%s)", got, want)
		}
	})
}

// TestFilesystems checks the ext filesystems with e2fsck -fn and the files the manifest lists, read
// with debugfs: ADE's /etc lines and initramfs-tools files in the root, grub.cfg, kernel and initrd on
// /boot, the ESP's grub.cfg.
func TestFilesystems(t *testing.T) {
	eachDisk(t, func(t *testing.T, set *ubuntufixture.Manifest, d *ubuntufixture.Disk) {
		plain, enc := set.Path(d.PlainDisk), set.Path(d.Disk)
		luks, boot, esp := part(t, d, d.LUKSPartition), part(t, d, d.BootPartition), part(t, d, d.ESPPartition)
		root := set.Path(d.RootImage)
		for _, fs := range []string{ubuntufixture.ExtPath(root, 0), ubuntufixture.ExtPath(plain, luks.Start),
			ubuntufixture.ExtPath(enc, boot.Start), ubuntufixture.ExtPath(plain, boot.Start)} {
			testenv.Run(t, "e2fsck", "-fn", fs)
		}
		stats, err := ubuntufixture.Debugfs(root, 0, "stats")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"Filesystem UUID:          " + d.RootFS.UUID, "Filesystem volume name:   " + d.RootFS.Label,
			fmt.Sprintf("Block count:              %d", d.RootFS.Size/4096), "has_journal", "extent"} {
			if !strings.Contains(stats, w) {
				t.Errorf("root stats lack %q", w)
			}
		}
		if st, err := os.Stat(root); err != nil || st.Size() != d.RootFS.Size {
			t.Errorf("root image: %v %v, want %d bytes", st, err, d.RootFS.Size)
		}
		// /boot: ADE's split made an ext2 (no journal, no extents) with mkfs.ext2's defaults: 1 KiB blocks
		// on 256 MiB; the 24.04 image's own is ext4 labelled BOOT with 4 KiB blocks
		bstats, err := ubuntufixture.Debugfs(enc, boot.Start, "stats")
		if err != nil {
			t.Fatal(err)
		}
		bwant, bno := []string{"Filesystem UUID:          " + boot.FSUUID, "Block size:               1024"}, []string{"has_journal", "extent", "metadata_csum"}
		if boot.FS == "ext4" {
			bwant, bno = []string{"Filesystem UUID:          " + boot.FSUUID, "Filesystem volume name:   " + boot.FSLabel,
				"Block size:               4096", "has_journal", "extent", "metadata_csum"}, nil
		} else if boot.FS != "ext2" {
			t.Errorf("/boot is %q", boot.FS)
		}
		for _, w := range bwant {
			if !strings.Contains(bstats, w) {
				t.Errorf("/boot stats lack %q", w)
			}
		}
		for _, no := range bno {
			if strings.Contains(bstats, no) {
				t.Errorf("/boot has %s: not ext2", no)
			}
		}
		check := func(what, img string, off int64, files map[string]string) {
			t.Helper()
			if len(files) == 0 {
				t.Errorf("%s: manifest lists no files", what)
			}
			for p, want := range files {
				got, err := ubuntufixture.ReadExtFile(img, off, p)
				if err != nil {
					t.Errorf("%s: %v", what, err)
					continue
				}
				if string(got) != want {
					t.Errorf("%s %s:\n got %q\nwant %q", what, p, got, want)
				}
			}
		}
		check("root image", root, 0, d.RootFiles)
		check("plain p1", plain, luks.Start, d.RootFiles)
		check("/boot", enc, boot.Start, d.BootFiles)

		// ADE's lines, as the manifest's own claims
		p1 := part(t, d, d.LUKSPartition)
		bekLine := "LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0\n"
		want := map[string]string{
			"/etc/fstab":              "\nUUID=" + boot.FSUUID + "\t/boot\text2\tdefaults\t0 0\n" + bekLine,
			"/etc/default/cryptdisks": "\nCRYPTDISKS_MOUNT=\"$CRYPTDISKS_MOUNT /mnt/azure_bek_disk\"\n",
			"/etc/os-release":         "\nVERSION_ID=\"" + d.OSRelease + "\"\n",
		}
		if d.Name == ubuntufixture.DiskU2404 {
			// the image's /boot and ESP lines, then ADE's BEK line; ADE adds no /boot line
			want["/etc/fstab"] = "\nLABEL=BOOT\t/boot\text4\tdefaults\t0 2\nLABEL=UEFI\t/boot/efi\tvfat\tumask=0077\t0 1\n" + bekLine
			if strings.Contains(d.RootFiles["/etc/fstab"], "UUID=") {
				t.Errorf("u2404's fstab names a filesystem by UUID:\n%s", d.RootFiles["/etc/fstab"])
			}
		}
		grubRoot := "root=/dev/mapper/osencrypt"
		switch d.Name {
		case ubuntufixture.DiskU2204, ubuntufixture.DiskU2204K, ubuntufixture.DiskU2004, ubuntufixture.DiskU2404:
			want["/etc/crypttab"] = "\nosencrypt /dev/disk/by-partuuid/" + p1.GUID + " " + set.KeyPath + " luks,discard,header=/boot/luks/osluksheader"
			want["/etc/default/grub"] = "\nGRUB_CMDLINE_LINUX=\"root=/dev/mapper/osencrypt \"\n"
			want["/usr/share/initramfs-tools/scripts/init-premount/crypt-ade-boot"] = "\ncryptsetup luksOpen /dev/disk/by-partuuid/" + p1.GUID +
				" osencrypt --header /boot/luks/osluksheader -d /mnt/azure_bek_disk/LinuxPassPhraseFileName\n"
			want["/usr/share/initramfs-tools/hooks/crypt-ade-hook"] = "\ncopy_exec /boot/luks/osluksheader /boot/luks\n"
			bootType := "ext2"
			if d.Name == ubuntufixture.DiskU2404 {
				bootType = "auto" // 91adeOnlineUbu's one change
			}
			if !strings.Contains(d.RootFiles["/usr/share/initramfs-tools/hooks/crypt-ade-hook"], " /boot "+bootType+" defaults 0 0") {
				t.Errorf("crypt-ade-hook does not type /boot %s", bootType)
			}
			if d.CrypttabSource != "/dev/disk/by-partuuid/"+p1.GUID || d.Bus != ubuntufixture.BusVirtio {
				t.Errorf("crypttab source %q, bus %q", d.CrypttabSource, d.Bus)
			}
		case ubuntufixture.DiskU1804:
			want["/etc/crypttab"] = "\nosencrypt /dev/sda1 none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh"
			want["/etc/default/grub"] = "\nGRUB_CMDLINE_LINUX=\"\"\n"
			want["/usr/sbin/azure_crypt_key.sh"] = "\nkeyname=LinuxPassPhraseFileName\n"
			want["/usr/share/initramfs-tools/hooks/luksheader"] = "\ncopy_exec /boot/luks/osluksheader /boot/luks\n"
			want["/usr/share/initramfs-tools/hooks/cryptroot"] = "\n        crypttab_find_and_print_entry osencrypt || true\n"
			if strings.Contains(d.RootFiles["/usr/share/initramfs-tools/hooks/cryptroot.orig"], "osencrypt") ||
				!strings.Contains(d.RootFiles["/usr/share/initramfs-tools/hooks/cryptroot.orig"], "generate_initrd_crypttab") {
				t.Errorf("cryptroot.orig is not the unpatched hook")
			}
			// patch -b keeps the mode: both hooks are executable
			for _, h := range []string{"cryptroot", "cryptroot.orig"} {
				out, err := ubuntufixture.Debugfs(root, 0, "stat /usr/share/initramfs-tools/hooks/"+h)
				if err != nil || !strings.Contains(out, "Mode:  0755") {
					t.Errorf("hooks/%s: %v\n%s", h, err, out)
				}
			}
			grubRoot = "root=UUID=" + d.RootFS.UUID
			if d.CrypttabSource != "/dev/sda1" || d.Bus != ubuntufixture.BusSCSI {
				t.Errorf("crypttab source %q, bus %q", d.CrypttabSource, d.Bus)
			}
		default:
			t.Fatalf("unknown disk %s", d.Name)
		}
		for p, w := range want {
			if !strings.Contains(d.RootFiles[p], w) {
				t.Errorf("manifest's %s lacks %q:\n%s", p, w, d.RootFiles[p])
			}
		}
		if !strings.HasSuffix(d.RootFiles["/etc/crypttab"], "header=/boot/luks/osluksheader") &&
			!strings.HasSuffix(d.RootFiles["/etc/crypttab"], "keyscript=/usr/sbin/azure_crypt_key.sh") {
			t.Errorf("crypttab ends with a newline; ADE writes its line without one")
		}
		if _, err := ubuntufixture.ReadExtFile(root, 0, "/etc/default/grub.d/40-force-partuuid.cfg"); err == nil {
			t.Errorf("40-force-partuuid.cfg exists; ADE deletes it")
		}
		// grub.cfg: every linux line boots the root, /boot found by its UUID
		cfg := d.BootFiles[d.GrubCfgPath]
		es := ubuntufixture.ParseGrubCfg(cfg)
		if len(es) < 2 {
			t.Fatalf("grub.cfg has %d entries", len(es))
		}
		for _, e := range es {
			if e.Linux != d.KernelPath || len(e.Initrd) != 1 || e.Initrd[0] != d.InitrdPath || !strings.Contains(e.Args, grubRoot) {
				t.Errorf("grub.cfg entry %+v", e)
			}
			// u2404: grub-mkconfig ran with / on plain p1, so every entry names it by UUID before ADE's root=
			if d.Name == ubuntufixture.DiskU2404 && !strings.HasPrefix(e.Args, "root=UUID="+d.RootFS.UUID+" ro ") {
				t.Errorf("u2404 grub.cfg entry %q does not start with root=UUID=<root fs> ro", e.Args)
			}
		}
		if d.Name == ubuntufixture.DiskU2404 && !strings.Contains(cfg, " ro root=/dev/mapper/osencrypt  console=tty1 ") {
			t.Errorf("u2404 grub.cfg lacks grub-mkconfig's two spaces after GRUB_CMDLINE_LINUX:\n%s", cfg)
		}
		if es[0].Args != d.Cmdline {
			t.Errorf("default entry args %q, manifest cmdline %q", es[0].Args, d.Cmdline)
		}
		if !strings.Contains(cfg, "search --no-floppy --fs-uuid --set=root "+boot.FSUUID) {
			t.Errorf("grub.cfg does not find /boot by its UUID")
		}
		// kernel and initrd on /boot are the set's copies
		tmp := t.TempDir()
		for p, want := range map[string]string{d.KernelPath: set.VmlinuzSHA256, d.InitrdPath: d.InitrdSHA256} {
			dst := filepath.Join(tmp, "f")
			if err := ubuntufixture.DumpFile(enc, boot.Start, p, dst); err != nil {
				t.Fatal(err)
			}
			if got := sha(t, dst); got != want {
				t.Errorf("/boot%s: sha256 %s, want %s", p, got, want)
			}
		}
		if sha(t, set.Path(set.Vmlinuz)) != set.VmlinuzSHA256 || sha(t, set.Path(d.Initrd)) != d.InitrdSHA256 {
			t.Errorf("host copies of the kernel or initrd do not match the manifest")
		}
		// the ESP's grub.cfg sends grub to /boot
		for p, want := range d.ESPFiles {
			got := testenv.Run(t, "mtype", "-i", fmt.Sprintf("%s@@%d", enc, esp.Start), "::"+p)
			if got != want {
				t.Errorf("ESP %s:\n got %q\nwant %q", p, got, want)
			}
			if !strings.Contains(want, boot.FSUUID) {
				t.Errorf("ESP %s does not name /boot's UUID", p)
			}
		}
	})
}

// TestInitrd checks the initrd mkinitramfs made: its compression, cryptsetup and the
// cryptsetup-initramfs scripts, and ADE's pieces: for u2204 crypt-ade-boot in init-premount's ORDER, the
// header, the fstab lines crypt-ade-hook added; for u1804 the osencrypt line in cryptroot/crypttab, the
// keyscript and the header where luksheader and the patched cryptroot put it.
func TestInitrd(t *testing.T) {
	eachDisk(t, func(t *testing.T, set *ubuntufixture.Manifest, d *ubuntufixture.Disk) {
		initrd := set.Path(d.Initrd)
		magic := map[string][]byte{"zstd": {0x28, 0xb5, 0x2f, 0xfd}, "lz4": {0x02, 0x21, 0x4c, 0x18}, "gzip": {0x1f, 0x8b}}[d.InitrdCompression]
		if magic == nil || !bytes.Equal(readAt(t, initrd, 0, int64(len(magic))), magic) {
			t.Errorf("initrd is not a %q stream", d.InitrdCompression)
		}
		list := testenv.Run(t, "lsinitramfs", initrd)
		names := map[string]bool{}
		for _, l := range strings.Split(list, "\n") {
			names[strings.TrimSpace(l)] = true
		}
		for _, f := range d.InitrdFiles {
			if !names[f] {
				t.Errorf("lsinitramfs does not list %s", f)
			}
		}
		x := t.TempDir()
		testenv.Run(t, "unmkinitramfs", initrd, x)
		read := func(p string) string {
			b, err := os.ReadFile(filepath.Join(x, p))
			if err != nil {
				t.Errorf("initrd: %v", err)
			}
			return string(b)
		}
		hdr := sha(t, set.Path(d.Header))
		if got := sha(t, filepath.Join(x, "boot/luks/osluksheader")); got != hdr {
			t.Errorf("the initrd's boot/luks/osluksheader is not the header")
		}
		conf := read("conf/initramfs.conf")
		if !strings.Contains(conf, "\nCOMPRESS="+d.InitrdCompression+"\n") || !strings.Contains(conf, "\nMODULES=most\n") {
			t.Errorf("initrd conf/initramfs.conf:\n%s", conf)
		}
		// the modules the unlock needs: virtio and SCSI disks, dm-crypt, the BEK volume's vfat
		for _, m := range []string{"virtio_blk.ko", "virtio_scsi.ko", "sd_mod.ko", "dm-crypt.ko", "vfat.ko", "nls_ascii.ko"} {
			if !strings.Contains(list, "/"+m) {
				t.Errorf("initrd lacks %s", m)
			}
		}
		if !strings.Contains(read("conf/modules"), "vfat") {
			t.Errorf("initrd conf/modules does not load vfat")
		}
		boot := part(t, d, d.BootPartition)
		switch d.Name {
		case ubuntufixture.DiskU2204, ubuntufixture.DiskU2204K, ubuntufixture.DiskU2004, ubuntufixture.DiskU2404:
			bootType := "ext2"
			if d.Name == ubuntufixture.DiskU2404 {
				bootType = "auto"
			}
			wantFstab := "/dev/disk/by-uuid/" + boot.FSUUID + " /boot " + bootType + " defaults 0 0\n" +
				`/dev/disk/by-label/BEK\x20VOLUME /mnt/azure_bek_disk auto defaults 0 0` + "\n"
			if got := read("etc/fstab"); got != wantFstab {
				t.Errorf("initrd etc/fstab:\n got %q\nwant %q", got, wantFstab)
			}
			if got, want := read("scripts/init-premount/crypt-ade-boot"),
				d.RootFiles["/usr/share/initramfs-tools/scripts/init-premount/crypt-ade-boot"]; got != want {
				t.Errorf("initrd crypt-ade-boot differs from the root's:\n%s", got)
			}
			if !strings.Contains(read("scripts/init-premount/ORDER"), "/scripts/init-premount/crypt-ade-boot \"$@\"") {
				t.Errorf("init-premount/ORDER does not run crypt-ade-boot")
			}
			// cryptsetup-initramfs skips ADE's crypttab line (no newline, and / is not on it at build time)
			if got := read("cryptroot/crypttab"); got != "" {
				t.Errorf("initrd cryptroot/crypttab = %q, want empty", got)
			}
		case ubuntufixture.DiskU1804:
			if got, want := read("cryptroot/crypttab"), d.RootFiles["/etc/crypttab"][strings.LastIndex(d.RootFiles["/etc/crypttab"], "\n")+1:]+"\n"; got != want {
				t.Errorf("initrd cryptroot/crypttab:\n got %q\nwant %q", got, want)
			}
			if got, want := read("usr/sbin/azure_crypt_key.sh"), d.RootFiles["/usr/sbin/azure_crypt_key.sh"]; got != want {
				t.Errorf("initrd keyscript differs from the root's")
			}
			if got := sha(t, filepath.Join(x, "conf/conf.d/cryptheader/osluksheader")); got != hdr {
				t.Errorf("the initrd's conf/conf.d/cryptheader/osluksheader is not the header")
			}
			if names["scripts/init-premount/crypt-ade-boot"] {
				t.Errorf("u1804's initrd has crypt-ade-boot")
			}
		}
	})
}

func TestSCSIArgs(t *testing.T) {
	o := qemuboot.Options{Kernel: "/k", Append: "root=/x", Accel: "tcg",
		Drives: []qemuboot.Drive{{Path: "/os.raw"}, {Path: "/bek.raw", ReadOnly: true}}}
	got := strings.Join(ubuntufixture.SCSIArgs(o.Args()), " ")
	for _, want := range []string{
		"-drive file=/os.raw,format=raw,if=none,id=scsihd0,snapshot=on",
		"-drive file=/bek.raw,format=raw,if=none,id=scsihd1,readonly=on",
		"-device virtio-scsi-pci,id=scsi0 -device scsi-hd,drive=scsihd0,bus=scsi0.0,channel=0,scsi-id=0,lun=0 " +
			"-device scsi-hd,drive=scsihd1,bus=scsi0.0,channel=0,scsi-id=1,lun=0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("SCSIArgs = %q, lacks %q", got, want)
		}
	}
	if strings.Contains(got, "if=virtio") {
		t.Errorf("SCSIArgs left a virtio drive: %q", got)
	}
}

func TestSCSISwapped(t *testing.T) {
	for log, want := range map[string]bool{
		"> Trying device: sda ...\r\n> Trying device: sdb ...\r\nSuccess loading keyfile!\r\n": false,
		"> Trying device: sda ...\r\n[   9.1] sd 0:0:1:0: x\r\nSuccess loading keyfile!\r\n":   true,
		"> Trying device: sda ...\nSuccess loading keyfile!\n> Trying device: sdb ...\n":       true,
		"Trying to get the key from disks ...\nFAILED to find suitable passphrase file ...\n":  false,
	} {
		if got := ubuntufixture.SCSISwapped(&qemuboot.Result{Log: log}); got != want {
			t.Errorf("SCSISwapped(%q) = %v, want %v", log, got, want)
		}
	}
}
