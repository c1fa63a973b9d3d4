package mbr_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log"

	"github.com/luksconv/luksconv/mbr"
)

// A 1 MiB disk laid out like an older RHEL 7 Azure image: a bootable
// /boot (0x83) and an encrypted root partition (0x83), 512-byte sectors.
func rhel7Disk() []byte {
	disk := make([]byte, 1<<20)
	binary.LittleEndian.PutUint32(disk[440:], 0x000aa6e2) // disk signature
	entry := func(slot int, status, typ byte, start, sectors uint32) {
		e := disk[446+16*slot:]
		e[0], e[4] = status, typ
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], sectors)
	}
	entry(0, 0x80, 0x83, 64, 512)
	entry(1, 0x00, 0x83, 576, 1472)
	disk[510], disk[511] = 0x55, 0xAA
	return disk
}

func ExampleRead() {
	disk := rhel7Disk()
	t, err := mbr.Read(bytes.NewReader(disk), int64(len(disk)), 512)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("disk signature %08x, protective %v\n", t.DiskSignature, t.Protective)
	for _, p := range t.Partitions {
		fmt.Printf("%d type %#02x bootable %-5v offset %-6d size %d\n", p.Number, p.Type, p.Bootable, p.Start, p.Size)
	}
	if root, ok := t.Partition(2); ok {
		fmt.Println("root at byte", root.Start)
	}
	// Output:
	// disk signature 000aa6e2, protective false
	// 1 type 0x83 bootable true  offset 32768  size 262144
	// 2 type 0x83 bootable false offset 294912 size 753664
	// root at byte 294912
}
