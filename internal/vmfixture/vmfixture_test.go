package vmfixture_test

import (
	"bytes"
	"crypto/aes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/xts"

	"github.com/luksconv/luksconv/internal/vmfixture"
)

// TestFixture checks the VM set against its manifest with tools and libraries luksconv did not write:
// cryptsetup (headers, key <-> disk), golang.org/x/crypto/xts (byte-exact decryption), e2fsck, debugfs,
// dumpe2fs, xfs_repair, xfs_db, pvck, sgdisk, sfdisk, fsck.fat and mtools.

var tools = []string{"cryptsetup", "e2fsck", "debugfs", "dumpe2fs", "xfs_repair", "xfs_db", "pvck", "sgdisk",
	"sfdisk", "fsck.fat", "mcopy", "mdir"}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if st, err := os.Stat(filepath.Join(d, name)); err == nil && !st.IsDir() {
			return filepath.Join(d, name), nil
		}
	}
	return "", fmt.Errorf("%s not installed", name)
}

// run returns the command's standard output and its standard error (with the error, if any).
func run(name string, args ...string) (stdout []byte, stderr string, err error) {
	path, err := lookPath(name)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LVM_SUPPRESS_FD_WARNINGS=1", "MTOOLS_SKIP_CHECK=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.Bytes(), e.String(), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	o, e, err := run(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, o, e)
	}
	return string(o)
}

// extract copies n bytes at off of src into a new temporary file.
func extract(t *testing.T, src string, off, n int64) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(t.TempDir(), filepath.Base(src)+".*")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if m, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil || m != n {
		t.Fatalf("extract %s [%d,+%d): %d bytes, %v", src, off, n, m, err)
	}
	return out.Name()
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func fileSHA(t *testing.T, path string) string {
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

func size(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// vol is one encrypted device of the set.
type vol struct {
	name      string
	file      string // the disk image
	devOff    int64  // the LUKS device in file
	luks      vmfixture.LUKS
	key       string
	plain     string
	plainSize int64
	plainSHA  string
}

func volumes(m *vmfixture.Manifest) []vol {
	vs := []vol{{name: "os", file: m.Path(m.OS.File), devOff: m.OS.DeviceOffset, luks: m.OS.LUKS,
		key: m.Path(m.OS.KeyFile), plain: m.Path(m.OS.Plaintext), plainSize: m.OS.DeviceSize, plainSHA: m.OS.PlaintextSHA256}}
	for _, d := range m.Disks {
		file := m.Path(d.File)
		if d.DeviceFile != "" {
			file = m.Path(d.DeviceFile) // an LV, assembled
		}
		vs = append(vs, vol{name: d.Name, file: file, devOff: d.DeviceOffset, luks: d.LUKS,
			key: m.Path(d.KeyFile), plain: m.Path(d.Plaintext), plainSize: d.PlaintextSize, plainSHA: d.PlaintextSHA256})
	}
	return vs
}

// header returns a file cryptsetup can read the volume's header from.
func (v vol) header(t *testing.T, m *vmfixture.Manifest) string {
	if v.luks.Header == "detached" {
		return m.Path(v.luks.HeaderFile)
	}
	return extract(t, v.file, v.devOff, v.luks.DataOffset)
}

// dumpInfo is what luksDump says of a header.
type dumpInfo struct {
	version, sector, keyBits int
	uuid, cipher             string
	offset                   int64
}

func parseDump(s string) dumpInfo {
	var d dumpInfo
	var name, mode string
	seg := false
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		num := func() int64 { n, _ := strconv.ParseInt(strings.Fields(v + " 0")[0], 10, 64); return n }
		switch {
		case k == "Version":
			d.version = int(num())
		case k == "UUID":
			d.uuid = v
		case k == "Cipher name": // LUKS1
			name = v
		case k == "Cipher mode":
			mode = v
		case k == "Payload offset":
			d.offset, d.sector = num()*512, 512
		case k == "MK bits":
			d.keyBits = int(num())
		case k == "Data segments":
			seg = true
		case k == "Keyslots":
			seg = false
		case seg && k == "offset":
			d.offset = num()
		case seg && k == "cipher":
			d.cipher = v
		case seg && k == "sector":
			d.sector = int(num())
		case k == "Key" && d.keyBits == 0:
			d.keyBits = int(num())
		}
	}
	if name != "" {
		d.cipher = name + "-" + mode
	}
	return d
}

var mkDumpRE = regexp.MustCompile(`(?s)MK dump:\s*((?:[0-9a-f]{2}\s+)+)`)

// volumeKey dumps the volume key with cryptsetup, unlocking the header with the key file.
func volumeKey(hdr, key string) ([]byte, error) {
	o, e, err := run("cryptsetup", "luksDump", "--dump-volume-key", "--key-file", key, "-q", hdr)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(e))
	}
	mm := mkDumpRE.FindSubmatch(o)
	if mm == nil {
		return nil, fmt.Errorf("no MK dump in %q", o)
	}
	return hex.DecodeString(strings.Join(strings.Fields(string(mm[1])), ""))
}

func TestFixture(t *testing.T) {
	for _, tool := range tools {
		if _, err := lookPath(tool); err != nil {
			t.Skipf("VM FIXTURE UNAVAILABLE: %v (scripts/install-deps.sh)", err)
		}
	}
	m := vmfixture.Load(t)
	vols := volumes(m)
	keys := map[string][]byte{}

	t.Run("keys", func(t *testing.T) {
		for name, kf := range m.BEKFiles {
			b, err := os.ReadFile(m.Path(kf))
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != 172 || !regexp.MustCompile(`^[A-Za-z0-9+/]+=*$`).Match(b) {
				t.Errorf("%s (%s): not 172 base64 characters without a newline: %q", name, kf, b)
			}
		}
		for _, d := range m.Disks {
			if m.BEKFiles[d.BEKName] != d.KeyFile {
				t.Errorf("%s: BEK file %s is %s, the disk says %s", d.Name, d.BEKName, m.BEKFiles[d.BEKName], d.KeyFile)
			}
		}
	})

	t.Run("luks", func(t *testing.T) {
		for i, v := range vols {
			hdr := v.header(t, m)
			got := parseDump(mustRun(t, "cryptsetup", "luksDump", hdr))
			want := dumpInfo{version: v.luks.Version, sector: v.luks.SectorSize, keyBits: v.luks.KeySizeBits,
				uuid: v.luks.UUID, cipher: v.luks.Cipher, offset: v.luks.DataOffset}
			if got != want {
				t.Errorf("%s: luksDump gives %+v, the manifest %+v", v.name, got, want)
			}
			vk, err := volumeKey(hdr, v.key)
			if err != nil {
				t.Errorf("%s: %s does not open its header: %v", v.name, filepath.Base(v.key), err)
				continue
			}
			if hex.EncodeToString(vk) != v.luks.VolumeKey || len(vk)*8 != v.luks.KeySizeBits {
				t.Errorf("%s: volume key %x, the manifest says %s", v.name, vk, v.luks.VolumeKey)
			}
			keys[v.name] = vk
			// and the next volume's key does not open it (the OS and resource disks share the OS BEK)
			other := vols[(i+1)%len(vols)]
			if other.key != v.key {
				if _, err := volumeKey(hdr, other.key); err == nil {
					t.Errorf("%s: %s opens it too", v.name, filepath.Base(other.key))
				}
			}
		}
	})

	t.Run("decrypt", func(t *testing.T) {
		for _, v := range vols {
			vk := keys[v.name]
			if vk == nil {
				t.Fatalf("%s: no volume key (see the luks test)", v.name)
			}
			if got := size(t, v.plain); got != v.plainSize {
				t.Errorf("%s: %s is %d bytes, want %d", v.name, filepath.Base(v.plain), got, v.plainSize)
			}
			decryptCompare(t, v, vk)
		}
	})

	t.Run("filesystems", func(t *testing.T) {
		for _, d := range m.Disks {
			if d.Filesystem == nil {
				continue
			}
			img := m.Path(d.Plaintext)
			if d.Filesystem.Offset != 0 || d.Filesystem.Size != d.PlaintextSize {
				img = extract(t, img, d.Filesystem.Offset, d.Filesystem.Size)
			}
			checkFS(t, d.Name, img, d.Filesystem)
			// ADE's backup of the mount information, byte for byte
			for name, want := range d.BackupMountInfo {
				got := readFile(t, d.Filesystem.Type, img, "/.azure_ade_backup_mount_info/"+name)
				if string(got) != want {
					t.Errorf("%s: /.azure_ade_backup_mount_info/%s is %q, want %q", d.Name, name, got, want)
				}
			}
		}
	})

	t.Run("before", func(t *testing.T) {
		for _, d := range m.Disks {
			if d.Before == "" {
				continue
			}
			img := m.Path(d.Before)
			if d.Partition != 0 {
				p, ok := d.Part(d.Partition)
				if !ok {
					t.Fatalf("%s: no partition %d", d.Name, d.Partition)
				}
				img = extract(t, img, p.Start, p.Size)
			}
			mustRun(t, "e2fsck", "-fn", img)
			if u := dumpe2fs(t, img)["Filesystem UUID"]; u != d.Filesystem.UUID {
				t.Errorf("%s: the filesystem before ADE has UUID %s, want %s (in-place keeps it)", d.Name, u, d.Filesystem.UUID)
			}
			if o, _, _ := run("debugfs", "-R", "stat /.azure_ade_backup_mount_info", img); bytes.Contains(o, []byte("Inode:")) {
				t.Errorf("%s: the disk before ADE already has .azure_ade_backup_mount_info", d.Name)
			}
			if d.Filesystem.Size >= size(t, img) && d.Layout != vmfixture.LayoutDualPass {
				t.Errorf("%s: in-place encryption shrank nothing: %d bytes before, %d after", d.Name, size(t, img), d.Filesystem.Size)
			}
		}
	})

	t.Run("datavg", func(t *testing.T) {
		vg := &m.DataVG
		plain := map[string]string{}
		for _, pv := range vg.PVs {
			d, ok := m.Disk(pv.Disk)
			if !ok || d.Layout != vmfixture.LayoutLVMPV || d.PlaintextSize != pv.DevSize {
				t.Fatalf("PV %s: disk %q is not an LVM PV disk of %d bytes", pv.Name, pv.Disk, pv.DevSize)
			}
			plain[pv.Name] = m.Path(d.Plaintext)
			checkPV(t, plain[pv.Name], vg, &pv)
		}
		lv, ok := vg.LV("datalv")
		if !ok {
			t.Fatal("no datalv")
		}
		img := assembleLV(t, vg, lv, plain)
		if got := fileSHA(t, img); got != m.DataLV.SHA256 {
			t.Errorf("datalv reassembled from the PVs has SHA-256 %s, want %s", got, m.DataLV.SHA256)
		}
		checkFS(t, "datalv", img, &m.DataLV)
	})

	t.Run("cryptvg", func(t *testing.T) {
		vg := &m.CryptVG
		d, ok := m.Disk("lun7")
		if !ok || d.Layout != vmfixture.LayoutCryptOnLVM || d.LV != vg.VG+"/crypt-lv" || len(vg.PVs) != 1 || vg.PVs[0].Disk != d.Name {
			t.Fatalf("lun7 is not the crypt-on-LVM disk holding %s: %+v", vg.VG, d)
		}
		pv := &vg.PVs[0]
		if pv.DevSize != d.DiskSize || pv.Device != "/dev/disk/azure/scsi1/lun7" {
			t.Errorf("PV %s: %d bytes on %s, want the whole disk", pv.Name, pv.DevSize, pv.Device)
		}
		// the disk itself is the PV: pvck reads its label and metadata
		checkPV(t, m.Path(d.File), vg, pv)
		plain := map[string]string{pv.Name: m.Path(d.File)}
		clv, ok := vg.LV("crypt-lv")
		if !ok || clv.Size != d.DeviceSize || len(clv.Segments) != 2 {
			t.Fatalf("crypt-lv: %+v, want two segments, %d bytes", clv, d.DeviceSize)
		}
		if got, want := fileSHA(t, assembleLV(t, vg, clv, plain)), fileSHA(t, m.Path(d.DeviceFile)); got != want {
			t.Errorf("crypt-lv reassembled from lun7 has SHA-256 %s, %s has %s", got, d.DeviceFile, want)
		}
		plv, ok := vg.LV("plainlv")
		if !ok {
			t.Fatal("no plainlv")
		}
		img := assembleLV(t, vg, plv, plain)
		if got := fileSHA(t, img); got != m.PlainLV.SHA256 {
			t.Errorf("plainlv reassembled from lun7 has SHA-256 %s, want %s", got, m.PlainLV.SHA256)
		}
		checkFS(t, "plainlv", img, &m.PlainLV)
		// the device name crypttab gives is the LV's dm name, dashes doubled
		dm := strings.ReplaceAll(vg.VG, "-", "--") + "-" + strings.ReplaceAll(clv.Name, "-", "--")
		if d.DevicePath != "/dev/mapper/"+dm {
			t.Errorf("lun7: device %s, want /dev/mapper/%s", d.DevicePath, dm)
		}
	})

	t.Run("os", func(t *testing.T) { checkOS(t, m) })
	t.Run("guest", func(t *testing.T) { checkGuest(t, m) })
	t.Run("partitions", func(t *testing.T) {
		for _, d := range m.Disks {
			if d.PartitionTable == "gpt" {
				checkGPT(t, d.Name, m.Path(d.File), d.DiskGUID, d.Partitions)
				p, _ := d.Part(d.Partition)
				if p.Start != d.DeviceOffset || p.Size != d.DeviceSize {
					t.Errorf("%s: partition %d is [%d,+%d), the device [%d,+%d)", d.Name, d.Partition, p.Start, p.Size, d.DeviceOffset, d.DeviceSize)
				}
			} else if d.DeviceFile != "" {
				if d.DeviceOffset != 0 || size(t, m.Path(d.DeviceFile)) != d.DeviceSize || size(t, m.Path(d.File)) != d.DiskSize {
					t.Errorf("%s: the LV device must be the whole of %s", d.Name, d.DeviceFile)
				}
			} else if d.DeviceOffset != 0 || d.DeviceSize != d.DiskSize || size(t, m.Path(d.File)) != d.DiskSize {
				t.Errorf("%s: a whole-disk device must be the whole file", d.Name)
			}
		}
	})
}

// decryptCompare decrypts v's data segment with golang.org/x/crypto/xts and compares it with v.plain.
func decryptCompare(t *testing.T, v vol, vk []byte) {
	t.Helper()
	c, err := xts.NewCipher(aes.NewCipher, vk)
	if err != nil {
		t.Fatalf("%s: %v", v.name, err)
	}
	src, err := os.Open(v.file)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	want, err := os.Open(v.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	sector := int64(v.luks.SectorSize)
	const chunk = 1 << 20
	ct, pt, w := make([]byte, chunk), make([]byte, chunk), make([]byte, chunk)
	h := sha256.New()
	start := v.devOff + v.luks.DataOffset
	for off := int64(0); off < v.plainSize; off += chunk {
		n := min(int64(chunk), v.plainSize-off)
		if _, err := src.ReadAt(ct[:n], start+off); err != nil {
			t.Fatalf("%s: ciphertext at %d: %v", v.name, start+off, err)
		}
		for s := int64(0); s < n; s += sector {
			// plain64: the IV is the 512-byte sector number from the segment start, whatever the sector size
			c.Decrypt(pt[s:s+sector], ct[s:s+sector], uint64((off+s)/512))
		}
		if _, err := want.ReadAt(w[:n], off); err != nil {
			t.Fatalf("%s: plaintext at %d: %v", v.name, off, err)
		}
		if !bytes.Equal(pt[:n], w[:n]) {
			for i := range n {
				if pt[i] != w[i] {
					t.Fatalf("%s: decryption differs from %s at byte %d", v.name, filepath.Base(v.plain), off+i)
				}
			}
		}
		h.Write(pt[:n])
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != v.plainSHA {
		t.Errorf("%s: decrypted SHA-256 %s, the manifest says %s", v.name, got, v.plainSHA)
	}
}

func dumpe2fs(t *testing.T, img string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for _, l := range strings.Split(mustRun(t, "dumpe2fs", "-h", img), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

// checkFS runs the filesystem's checker, compares UUID and size, and every file with the manifest.
func checkFS(t *testing.T, name, img string, fs *vmfixture.Filesystem) {
	t.Helper()
	switch fs.Type {
	case "ext4":
		mustRun(t, "e2fsck", "-fn", img)
		kv := dumpe2fs(t, img)
		bc, _ := strconv.ParseInt(kv["Block count"], 10, 64)
		bs, _ := strconv.ParseInt(kv["Block size"], 10, 64)
		if kv["Filesystem UUID"] != fs.UUID || bc*bs != fs.Size {
			t.Errorf("%s: ext4 UUID %s size %d, want %s %d", name, kv["Filesystem UUID"], bc*bs, fs.UUID, fs.Size)
		}
	case "xfs":
		mustRun(t, "xfs_repair", "-n", img)
		g := xfsGeom(t, img)
		if g.uuid != fs.UUID || g.dblocks*g.bs != fs.Size {
			t.Errorf("%s: xfs UUID %s size %d, want %s %d", name, g.uuid, g.dblocks*g.bs, fs.UUID, fs.Size)
		}
	default:
		t.Fatalf("%s: no check for %s", name, fs.Type)
	}
	if len(fs.Files) == 0 {
		t.Errorf("%s: the manifest lists no files", name)
	}
	for _, f := range fs.Files {
		switch f.Type {
		case "symlink":
			if got := readLink(t, fs.Type, img, f.Path); got != f.Target {
				t.Errorf("%s: %s -> %q, want %q", name, f.Path, got, f.Target)
			}
		case "file":
			b, mode := readFileMode(t, fs.Type, img, f.Path)
			if int64(len(b)) != f.Size || sha(b) != f.SHA256 || mode != f.Mode {
				t.Errorf("%s: %s: %d bytes mode %s sha256 %s, want %d %s %s", name, f.Path, len(b), mode, sha(b), f.Size, f.Mode, f.SHA256)
			}
		default:
			t.Errorf("%s: %s: unknown type %q", name, f.Path, f.Type)
		}
	}
}

func readFile(t *testing.T, fstype, img, path string) []byte {
	t.Helper()
	b, _ := readFileMode(t, fstype, img, path)
	return b
}

var debugfsModeRE = regexp.MustCompile(`Mode:\s+0?([0-7]+)`)

// readFileMode returns a file's content and permission bits (octal, as "644").
func readFileMode(t *testing.T, fstype, img, path string) ([]byte, string) {
	t.Helper()
	if fstype == "xfs" {
		return xfsFile(t, img, path)
	}
	st := mustRun(t, "debugfs", "-R", "stat "+path, img)
	mm := debugfsModeRE.FindStringSubmatch(st)
	if mm == nil {
		t.Fatalf("debugfs stat %s: no mode in %q", path, st)
	}
	o, e, err := run("debugfs", "-R", "cat "+path, img)
	if err != nil || strings.Contains(e, "not found") {
		t.Fatalf("debugfs cat %s: %v %s", path, err, e)
	}
	return o, strings.TrimLeft(mm[1], "0")
}

var fastLinkRE = regexp.MustCompile(`Fast link dest: "(.*)"`)

func readLink(t *testing.T, fstype, img, path string) string {
	t.Helper()
	if fstype == "xfs" {
		out := xfsDB(t, img, "path "+path, "print core.mode u3")
		mm := regexp.MustCompile(`u3\.symlink = "(.*)"`).FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("%s: not an inline symlink: %q", path, out)
		}
		return mm[1]
	}
	mm := fastLinkRE.FindStringSubmatch(mustRun(t, "debugfs", "-R", "stat "+path, img))
	if mm == nil {
		t.Fatalf("%s: not a fast symlink", path)
	}
	return mm[1]
}

func xfsDB(t *testing.T, img string, cmds ...string) string {
	t.Helper()
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	o, e, err := run("xfs_db", append(args, img)...)
	if err != nil || strings.Contains(e+string(o), "No such file") || strings.Contains(e, "not found") {
		t.Fatalf("xfs_db %s: %v\n%s%s", strings.Join(cmds, "; "), err, o, e)
	}
	return string(o)
}

type xfsGeometry struct {
	bs, agblocks, dblocks int64
	uuid                  string
}

func xfsGeom(t *testing.T, img string) xfsGeometry {
	t.Helper()
	var g xfsGeometry
	for _, l := range strings.Split(xfsDB(t, img, "sb 0", "print blocksize agblocks dblocks uuid"), "\n") {
		k, v, _ := strings.Cut(l, " = ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "blocksize":
			g.bs = n
		case "agblocks":
			g.agblocks = n
		case "dblocks":
			g.dblocks = n
		case "uuid":
			g.uuid = v
		}
	}
	return g
}

var bmapRE = regexp.MustCompile(`data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) flag (\d+)`)

// xfsFile reads a regular file through its extent map as xfs_db prints it.
func xfsFile(t *testing.T, img, path string) ([]byte, string) {
	t.Helper()
	g := xfsGeom(t, img)
	out := xfsDB(t, img, "path "+path, "print core.size core.mode", "bmap")
	var sz int64
	mode := ""
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "core.size = "); ok {
			sz, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "core.mode = "); ok {
			m, _ := strconv.ParseInt(v, 8, 64)
			if m&0o170000 != 0o100000 {
				t.Fatalf("%s is not a regular file (mode %s)", path, v)
			}
			mode = strconv.FormatInt(m&0o7777, 8)
		}
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, (sz+g.bs-1)/g.bs*g.bs)
	for _, mm := range bmapRE.FindAllStringSubmatch(out, -1) {
		var n [5]int64
		for i := range n {
			n[i], _ = strconv.ParseInt(mm[i+1], 10, 64)
		}
		fileOff, agno, agbno, count, flag := n[0]*g.bs, n[1], n[2], n[3]*g.bs, n[4]
		if fileOff+count > int64(len(buf)) {
			count = int64(len(buf)) - fileOff
		}
		if flag != 0 || count <= 0 { // unwritten: reads as zeros
			continue
		}
		if _, err := f.ReadAt(buf[fileOff:fileOff+count], (agno*g.agblocks+agbno)*g.bs); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return buf[:sz], mode
}

// checkPV compares what pvck reads from a PV's label and metadata area with the manifest.
func checkPV(t *testing.T, file string, vg *vmfixture.VG, pv *vmfixture.PV) {
	t.Helper()
	hd := mustRun(t, "pvck", "--dump", "headers", file)
	if !strings.Contains(hd, "pv_header.pv_uuid "+strings.ReplaceAll(pv.UUID, "-", "")) ||
		!strings.Contains(hd, fmt.Sprintf("pv_header.disk_locn[0].offset %d", pv.PEStart)) {
		t.Errorf("%s: pvck --dump headers does not show PV %s with data at %d:\n%s", filepath.Base(file), pv.UUID, pv.PEStart, hd)
	}
	md := mustRun(t, "pvck", "--dump", "metadata", file)
	want := []string{fmt.Sprintf(`(?m)^%s \{\s*id = "%s"`, regexp.QuoteMeta(vg.VG), regexp.QuoteMeta(vg.VGUUID)),
		fmt.Sprintf(`(?m)^extent_size = %d$`, vg.ExtentSize/512)}
	for _, p := range vg.PVs {
		want = append(want, fmt.Sprintf(`(?s)\b%s \{\s*id = "%s"[^}]*dev_size = %d\s+pe_start = %d\s+pe_count = %d\s`,
			p.Name, regexp.QuoteMeta(p.UUID), p.DevSize/512, p.PEStart/512, p.PECount))
	}
	for _, lv := range vg.LVs {
		want = append(want, fmt.Sprintf(`(?s)\b%s \{\s*id = "%s"[^}]*segment_count = %d\s`, lv.Name, regexp.QuoteMeta(lv.UUID), len(lv.Segments)))
		for _, s := range lv.Segments {
			want = append(want, fmt.Sprintf(`(?s)segment\d+ \{\s*start_extent = %d\s+extent_count = %d\s[^}]*"%s", %d\s`,
				s.StartExtent, s.ExtentCount, s.PV, s.PE))
		}
	}
	for _, re := range want {
		if !regexp.MustCompile(re).MatchString(md) {
			t.Errorf("%s: the metadata pvck reads lacks %s:\n%s", filepath.Base(file), re, md)
		}
	}
}

// assembleLV copies an LV's extents out of the PV plaintexts into a new temporary file.
func assembleLV(t *testing.T, vg *vmfixture.VG, lv *vmfixture.LV, plain map[string]string) string {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), lv.Name+".*")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var total int64
	for _, s := range lv.Segments {
		pv, ok := vg.PV(s.PV)
		if !ok {
			t.Fatalf("%s: segment on unknown PV %s", lv.Name, s.PV)
		}
		in, err := os.Open(plain[s.PV])
		if err != nil {
			t.Fatal(err)
		}
		n := s.ExtentCount * vg.ExtentSize
		if _, err := io.Copy(io.NewOffsetWriter(out, s.StartExtent*vg.ExtentSize),
			io.NewSectionReader(in, pv.PEStart+s.PE*vg.ExtentSize, n)); err != nil {
			t.Fatal(err)
		}
		in.Close()
		total += n
	}
	if total != lv.Size {
		t.Errorf("%s: segments cover %d bytes, the LV is %d", lv.Name, total, lv.Size)
	}
	return out.Name()
}

// checkGPT compares the disk's GPT (sgdisk -v, sfdisk --json) with the manifest.
func checkGPT(t *testing.T, name, img, guid string, want []vmfixture.Partition) {
	t.Helper()
	if v := mustRun(t, "sgdisk", "-v", img); !strings.Contains(v, "No problems found") {
		t.Errorf("%s: sgdisk -v:\n%s", name, v)
	}
	var pt struct {
		PartitionTable struct {
			ID         string `json:"id"`
			Partitions []struct {
				Node  string `json:"node"`
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
				Type  string `json:"type"`
				UUID  string `json:"uuid"`
				Name  string `json:"name"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "sfdisk", "--json", img)), &pt); err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(pt.PartitionTable.ID, guid) {
		t.Errorf("%s: disk GUID %s, want %s", name, pt.PartitionTable.ID, guid)
	}
	if len(pt.PartitionTable.Partitions) != len(want) {
		t.Fatalf("%s: %d partitions, want %d", name, len(pt.PartitionTable.Partitions), len(want))
	}
	for i, p := range pt.PartitionTable.Partitions {
		w := want[i]
		num, _ := strconv.Atoi(regexp.MustCompile(`[0-9]+$`).FindString(p.Node))
		got := vmfixture.Partition{Number: num, Start: p.Start * 512, Size: p.Size * 512, TypeGUID: strings.ToLower(p.Type),
			GUID: strings.ToLower(p.UUID), Name: p.Name}
		if got != w {
			t.Errorf("%s: partition %+v, want %+v", name, got, w)
		}
	}
}

// checkOS checks the OS disk: GPT, ESP, /boot with the header and ADE's kernel arguments, the PV and
// rootlv's filesystem, and that the expected image is the disk with p4 decrypted.
func checkOS(t *testing.T, m *vmfixture.Manifest) {
	o := &m.OS
	img := m.Path(o.File)
	checkGPT(t, "os", img, o.DiskGUID, o.Partitions)
	p4, _ := o.Part(o.LUKSPartition)
	if p4.GUID != o.PartUUID || p4.Start != o.DeviceOffset || p4.Size != o.DeviceSize {
		t.Errorf("os: p4 %+v, want GUID %s at [%d,+%d)", p4, o.PartUUID, o.DeviceOffset, o.DeviceSize)
	}

	esp, _ := o.Filesystem("esp")
	pe, _ := o.Part(esp.Partition)
	espImg := extract(t, img, pe.Start, pe.Size)
	mustRun(t, "fsck.fat", "-n", espImg)
	if d := mustRun(t, "mdir", "-i", espImg, "::"); !strings.Contains(d, "Volume Serial Number is "+esp.UUID) {
		t.Errorf("os: ESP serial is not %s:\n%s", esp.UUID, d)
	}
	for _, f := range esp.Files {
		b := []byte(mustRun(t, "mcopy", "-n", "-i", espImg, "::"+f.Path, "-"))
		if sha(b) != f.SHA256 {
			t.Errorf("os: ESP %s: sha256 %s, want %s", f.Path, sha(b), f.SHA256)
		}
	}

	boot, _ := o.Filesystem("boot")
	pb, _ := o.Part(boot.Partition)
	bootImg := extract(t, img, pb.Start, pb.Size)
	checkFS(t, "boot", bootImg, boot)
	inBoot, ok := strings.CutPrefix(o.LUKS.HeaderPath, "/boot/")
	if !ok {
		t.Fatalf("os: header %s is not on /boot", o.LUKS.HeaderPath)
	}
	if sha(readFile(t, "xfs", bootImg, "/"+inBoot)) != fileSHA(t, m.Path(o.LUKS.HeaderFile)) {
		t.Errorf("os: /boot%s differs from %s", o.LUKS.HeaderPath, o.LUKS.HeaderFile)
	}
	env := string(readFile(t, "xfs", bootImg, "/grub2/grubenv"))
	ade := fmt.Sprintf("rd.luks.ade.partuuid=%s rd.luks.ade.bootuuid=%s rd.debug", o.PartUUID, o.BootUUID)
	if len(env) != 1024 || !strings.Contains(env, "\nkernelopts="+o.Cmdline+"\n") || !strings.Contains(o.Cmdline, ade) {
		t.Errorf("os: grubenv lacks kernelopts=%s (with %s):\n%s", o.Cmdline, ade, env)
	}

	// the PV and rootlv
	plain := m.Path(o.Plaintext)
	pv, _ := o.LVM.PV("pv0")
	checkPV(t, plain, &o.LVM, pv)
	lv, ok := o.LVM.LV("rootlv")
	if !ok || o.RootLV != o.LVM.VG+"/"+lv.Name {
		t.Fatalf("os: no %s", o.RootLV)
	}
	root, _ := o.Filesystem("root")
	rootImg := assembleLV(t, &o.LVM, lv, map[string]string{"pv0": plain})
	checkFS(t, "root", rootImg, root)
	if root.UUID != o.RootUUID {
		t.Errorf("os: root UUID %s, want %s", root.UUID, o.RootUUID)
	}
	for p, want := range o.GuestFiles {
		if got := string(readFile(t, "xfs", rootImg, p)); got != want {
			t.Errorf("os: %s is\n%q\nwant\n%q", p, got, want)
		}
	}
	if sha(readFile(t, "xfs", rootImg, m.DualPassHeader)) != fileSHA(t, m.Path("lun6.luksheader")) {
		t.Errorf("os: %s differs from lun6.luksheader", m.DualPassHeader)
	}

	// os.expected.raw = os.raw with p4 decrypted
	exp := m.Path(o.Expected)
	if size(t, exp) != o.DiskSize || size(t, img) != o.DiskSize {
		t.Errorf("os: image sizes %d/%d, want %d", size(t, img), size(t, exp), o.DiskSize)
	}
	same := func(a string, aoff int64, b string, boff, n int64) bool {
		fa, _ := os.Open(a)
		defer fa.Close()
		fb, _ := os.Open(b)
		defer fb.Close()
		ha, hb := sha256.New(), sha256.New()
		io.Copy(ha, io.NewSectionReader(fa, aoff, n))
		io.Copy(hb, io.NewSectionReader(fb, boff, n))
		return bytes.Equal(ha.Sum(nil), hb.Sum(nil))
	}
	if !same(img, 0, exp, 0, o.DeviceOffset) || !same(img, o.DeviceOffset+o.DeviceSize, exp, o.DeviceOffset+o.DeviceSize, o.DiskSize-o.DeviceOffset-o.DeviceSize) {
		t.Errorf("os: %s differs from %s outside p4", o.Expected, o.File)
	}
	if !same(exp, o.DeviceOffset, plain, 0, o.DeviceSize) {
		t.Errorf("os: p4 of %s is not %s", o.Expected, o.Plaintext)
	}
}

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func hasLine(s, l string) bool {
	for _, x := range lines(s) {
		if x == l {
			return true
		}
	}
	return false
}

// checkGuest checks that the guest files (proved equal to the root filesystem's by checkOS) say what
// the disks are, in ADE's formats.
func checkGuest(t *testing.T, m *vmfixture.Manifest) {
	g, o := m.OS.GuestFiles, &m.OS
	crypttab, fstab := g["/etc/crypttab"], g["/etc/fstab"]
	osLine := fmt.Sprintf("osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=%s", o.PartUUID, o.LUKS.HeaderPath)
	if !strings.HasSuffix(crypttab, "\n"+osLine) {
		t.Errorf("crypttab does not end with ADE's OS line (no newline): %q", crypttab)
	}
	if !hasLine(fstab, `LABEL=BEK\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0`) {
		t.Error("fstab lacks the BEK line")
	}
	if !hasLine(g["/etc/lvm/lvm.conf"], fmt.Sprintf(`devices { filter = ["a|osencrypt|", "r|%s|"] }`, o.PartUUID)) {
		t.Error("lvm.conf lacks ADE's filter")
	}
	if !hasLine(g["/etc/os-release"], `VERSION_ID="8.10"`) {
		t.Error("os-release is not RHEL 8.10")
	}
	wa := g["/etc/waagent.conf"]
	if !hasLine(wa, "ResourceDisk.Format=n") || !hasLine(wa, "ResourceDisk.MountPoint=/mnt/resource") ||
		!hasLine(g["/etc/waagent.conf.rdbak2"], "ResourceDisk.Format=y") || !hasLine(g["/etc/waagent.conf.rdbak1"], "ResourceDisk.Format=y") {
		t.Error("waagent.conf and its .rdbak1/.rdbak2 are not as ADE's sed -i leaves them")
	}
	nb := 0
	for p := range g {
		if strings.HasPrefix(p, "/etc/fstab.backup.") {
			nb++
		}
	}
	if nb == 0 {
		t.Error("no /etc/fstab.backup.<uuid>")
	}
	header := map[string]bool{}
	for _, d := range m.Disks {
		fsUUID := ""
		if d.Filesystem != nil {
			fsUUID = d.Filesystem.UUID
		}
		if d.CrypttabLine != "" {
			opts := "luks,nofail"
			if d.LUKS.Header == "detached" {
				opts += ",header=" + d.LUKS.HeaderPath
				header[d.LUKS.HeaderPath] = true
			}
			want := fmt.Sprintf("%s %s /mnt/azure_bek_disk/%s %s", d.Mapper, d.DevicePath, d.BEKName, opts)
			if d.CrypttabLine != want || !hasLine(crypttab, want) {
				t.Errorf("%s: crypttab line %q, want %q in crypttab", d.Name, d.CrypttabLine, want)
			}
		}
		if d.AzureCryptMountLine != "" {
			want := fmt.Sprintf("%s %s None %s %s False 0", d.Mapper, d.DevicePath, d.MountPoint, d.Filesystem.Type)
			if d.AzureCryptMountLine != want || !hasLine(g["/var/lib/azure_disk_encryption_config/azure_crypt_mount"], want) {
				t.Errorf("%s: azure_crypt_mount line %q, want %q", d.Name, d.AzureCryptMountLine, want)
			}
			if strings.Contains(crypttab, d.Mapper) || strings.Contains(fstab, d.Mapper) || strings.Contains(fstab, " "+d.MountPoint+" ") {
				t.Errorf("%s: a legacy azure_crypt_mount volume is in crypttab or fstab", d.Name)
			}
		}
		if (d.CrypttabLine == "") == (d.AzureCryptMountLine == "") {
			t.Errorf("%s: must be in exactly one of crypttab and azure_crypt_mount", d.Name)
		}
		if d.FstabLine != "" {
			f := strings.Fields(d.FstabLine)
			if !hasLine(fstab, d.FstabLine) || f[0] != "/dev/mapper/"+d.Mapper || f[1] != d.MountPoint || !strings.Contains(","+f[3]+",", ",nofail,") {
				t.Errorf("%s: fstab line %q is not ADE's /dev/mapper line with nofail for %s", d.Name, d.FstabLine, d.MountPoint)
			}
			if d.Layout == vmfixture.LayoutDualPass && !strings.Contains(fstab, "\n#This line was added by Azure Disk Encryption\n"+d.FstabLine) {
				t.Errorf("%s: the migrated fstab line is not after ADE's marker", d.Name)
			}
		}
		if d.FstabBackupLine != "" {
			f := strings.Fields(d.FstabBackupLine)
			uuid := fsUUID
			if d.StaleUUID != "" {
				uuid = d.StaleUUID
				if d.StaleUUID == fsUUID {
					t.Errorf("%s: the stale UUID is the filesystem's", d.Name)
				}
			}
			if !hasLine(g["/etc/fstab.azure.backup"], d.FstabBackupLine) || f[0] != "UUID="+uuid {
				t.Errorf("%s: fstab.azure.backup line %q, want one for UUID=%s", d.Name, d.FstabBackupLine, uuid)
			}
		}
		for name, content := range d.BackupMountInfo {
			var want string
			switch name {
			case "crypttab_line":
				want = d.CrypttabLine
			case "fstab_line":
				want = d.FstabLine
				content = strings.TrimSuffix(content, "\n")
			case "azure_crypt_mount_line":
				want = d.AzureCryptMountLine
				content = strings.TrimSuffix(content, "\n")
			}
			if content != want {
				t.Errorf("%s: backup %s is %q, want %q", d.Name, name, content, want)
			}
		}
	}
	if !header[m.DualPassHeader] {
		t.Errorf("no crypttab line names %s", m.DualPassHeader)
	}
	// the LVM devices file: every PV on its dm-crypt device, by crypt_uuid; lun7's plain PV by its WWID
	dev := g["/etc/lvm/devices/system.devices"]
	for _, pv := range m.CryptVG.PVs {
		if !regexp.MustCompile(`(?m)^IDTYPE=sys_wwid IDNAME=naa\.[0-9a-f]{32} DEVNAME=/dev/sd[a-z] PVID=` + strings.ReplaceAll(pv.UUID, "-", "") + `$`).MatchString(dev) {
			t.Errorf("system.devices lacks a sys_wwid line for %s's PV %s", m.CryptVG.VG, pv.UUID)
		}
	}
	for _, vg := range []*vmfixture.VG{&o.LVM, &m.DataVG} {
		for _, pv := range vg.PVs {
			luksUUID, mapper := o.LUKS.UUID, o.Mapper
			if d, ok := m.Disk(pv.Disk); ok {
				luksUUID, mapper = d.LUKS.UUID, d.Mapper
			}
			want := fmt.Sprintf("IDTYPE=crypt_uuid IDNAME=CRYPT-LUKS2-%s-%s DEVNAME=/dev/mapper/%s PVID=%s",
				strings.ReplaceAll(luksUUID, "-", ""), mapper, mapper, strings.ReplaceAll(pv.UUID, "-", ""))
			if "/dev/mapper/"+mapper != pv.Device || !hasLine(dev, want) {
				t.Errorf("system.devices lacks %q", want)
			}
		}
	}
}
