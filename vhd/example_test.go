package vhd_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/luksconv/luksconv/vhd"
)

// Turn a raw disk into a fixed VHD for Azure by padding it to a whole MiB and
// appending a footer, then read it back.
func Example() {
	disk := make([]byte, 3*vhd.MiB+4096) // a raw disk image
	copy(disk[1024:], "hello, VHD")

	size := vhd.AzureSize(int64(len(disk)))
	disk = append(disk, make([]byte, size-int64(len(disk)))...) // zero padding
	footer, err := vhd.FixedFooterBytes(size)
	if err != nil {
		log.Fatal(err)
	}
	file := append(disk, footer...)

	im, err := vhd.Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := im.ReadAt(buf, 1024); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%v %d %d %v %q\n", im.Kind, im.Size(), len(file), im.Footer.DiskType, im.Footer.CreatorApp[:])
	fmt.Printf("%s\n", buf)
	// Output:
	// vhd-fixed 4194304 4194816 fixed "lcv "
	// hello, VHD
}
