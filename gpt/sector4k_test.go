package gpt

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"unicode/utf16"

	"github.com/luksconv/luksconv/internal/testenv"
)

func Test4KSectorDisk(t *testing.T) {
	testenv.Need(t, "sgdisk")
	const size = 64 << 20
	const astral = "astral 😀 x" // outside the BMP: a UTF-16 surrogate pair
	path := testenv.SparseFile(t, t.TempDir(), "4k.img", size)
	dev, detach := testenv.AttachLoop(t, path, "--sector-size", "4096")
	testenv.Run(t, "sgdisk", "-n", "1:0:+8M", "-t", "1:EF00", "-c", "1:"+astral,
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
	dev2, _ := testenv.AttachLoop(t, path, "--sector-size", "4096")
	if ok, out := sgdiskVerify(t, dev2); !ok {
		t.Errorf("sgdisk -v after Relocate:\n%s", out)
	}
	st2 := sgdiskTable(t, dev2)
	st2.parts[0].name = astral
	compareWithSgdisk(t, after, st2)
}
