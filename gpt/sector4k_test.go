package gpt

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// attach4K attaches path as a loop device with 4096-byte logical sectors,
// or skips the test loudly when loop devices are unavailable.
func attach4K(t *testing.T, path string) (dev string, detach func()) {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", "4096", path).CombinedOutput()
	if err != nil {
		t.Skipf("SKIPPING 4096-byte-sector GPT case: losetup --sector-size 4096 failed (needs root and loop devices): %v\n%s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	done := false
	detach = func() {
		if !done {
			done = true
			if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
			}
		}
	}
	t.Cleanup(detach)
	return dev, detach
}

func Test4KSectorDisk(t *testing.T) {
	requireSgdisk(t)
	const size = 64 << 20
	const astral = "astral 😀 x" // outside the BMP: a UTF-16 surrogate pair
	path := filepath.Join(t.TempDir(), "4k.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	dev, detach := attach4K(t, path)
	mustSgdisk(t, "-n", "1:0:+8M", "-t", "1:EF00", "-c", "1:"+astral,
		"-n", "2:0:+16M", "-t", "2:8E00", "-c", "2:lvm ü",
		"-n", "3:0:+8M", "-t", "3:8309", dev)
	st := sgdiskTable(t, dev)
	detach()
	if st.sectorSize != 4096 {
		t.Fatalf("sgdisk sees %d-byte sectors on %s", st.sectorSize, dev)
	}
	// sgdisk stores the surrogate pair correctly but prints it mangled;
	// check the stored UTF-16 against Go's encoder and compare the rest.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw := readBytes(t, f, 2*4096+56, 72)
	for i, u := range utf16.Encode([]rune(astral)) {
		if binary.LittleEndian.Uint16(raw[2*i:]) != u {
			t.Fatalf("sgdisk stored name % x, not UTF-16LE of %q", raw, astral)
		}
	}
	st.parts[0].name = astral

	tab := mustRead(t, path)
	compareWithSgdisk(t, tab, st)
	if len(tab.Warnings) != 0 {
		t.Errorf("warnings: %q", tab.Warnings)
	}
	if tab.Primary == nil || tab.Backup == nil || tab.Backup.MyLBA != size/4096-1 {
		t.Errorf("copies: %+v %+v", tab.Primary, tab.Backup)
	}
	if _, err := readFile(t, path, 512); !errors.Is(err, ErrNoGPT) {
		t.Errorf("Read with 512-byte sectors = %v, want ErrNoGPT", err)
	}

	// Relocate on 4096-byte sectors, checked by sgdisk on a fresh loop device.
	const newSize = size + 3<<20
	if err := os.Truncate(path, newSize); err != nil {
		t.Fatal(err)
	}
	ws, err := tab.Relocate(f, newSize)
	if err != nil {
		t.Fatalf("Relocate: %v", err)
	}
	applyWrites(t, path, newSize, ws)
	after := mustRead(t, path)
	if len(after.Warnings) != 0 || after.Backup == nil || after.Backup.MyLBA != newSize/4096-1 {
		t.Errorf("after Relocate: warnings %q, backup %+v", after.Warnings, after.Backup)
	}
	dev2, _ := attach4K(t, path)
	if ok, out := sgdiskVerify(t, dev2); !ok {
		t.Errorf("sgdisk -v after Relocate:\n%s", out)
	}
	st2 := sgdiskTable(t, dev2)
	st2.parts[0].name = astral
	compareWithSgdisk(t, after, st2)
}
