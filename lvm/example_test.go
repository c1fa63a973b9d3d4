package lvm_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/luksconv/luksconv/lvm"
)

// Open a PV image (built by testdata/mkexample.sh with pvcreate, vgcreate
// and vgcfgrestore), list its LVs with their PV extents and read the start
// of each LV through the PV.
func Example() {
	f, err := os.Open("testdata/example-pv.img.gz")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		log.Fatal(err)
	}
	img, err := io.ReadAll(zr)
	if err != nil {
		log.Fatal(err)
	}

	pv, err := lvm.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	vg := pv.VG
	fmt.Printf("VG %s, extent size %d, seqno %d\n", vg.Name, vg.ExtentSize, vg.Seqno)
	for i := range vg.LVs {
		lv := &vg.LVs[i]
		exts, err := pv.Map(lv, 0, lv.Size)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d bytes\n", lv.Name, lv.Size)
		for _, e := range exts {
			fmt.Printf("  LV %7d +%6d -> PV %7d\n", e.LVOff, e.Len, e.PVOff)
		}
		head := make([]byte, 27)
		if _, err := pv.LVReader(bytes.NewReader(img), lv).ReadAt(head, 0); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("  starts with %q\n", bytes.TrimRight(head, "\x00"))
	}
	// LV bytes past the first segment come from the second one.
	root, _ := vg.LV("root")
	third := make([]byte, 20)
	if _, err := pv.LVReader(bytes.NewReader(img), root).ReadAt(third, 2*vg.ExtentSize); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("root extent 2 starts with %q\n", third)
	for _, r := range pv.FreeRanges() {
		fmt.Printf("free: %d bytes at %d\n", r.Len, r.Off)
	}
	// Output:
	// VG vg0, extent size 65536, seqno 2
	// root: 196608 bytes
	//   LV       0 +131072 -> PV  692224
	//   LV  131072 + 65536 -> PV  233472
	//   starts with "root filesystem starts here"
	// swap: 131072 bytes
	//   LV       0 +131072 -> PV  364544
	//   starts with "swap"
	// root extent 2 starts with "third extent of root"
	// free: 196608 bytes at 36864
	// free: 65536 bytes at 299008
	// free: 196608 bytes at 495616
	// free: 3342336 bytes at 823296
}
