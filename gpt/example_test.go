package gpt_test

import (
	"bytes"
	"fmt"
	"log"
	"os"

	"github.com/luksconv/luksconv/gpt"
)

// smallDisk loads the 1 MiB sgdisk-made test disk (stored as its first and
// last sectors only).
func smallDisk() []byte {
	head, err := os.ReadFile("testdata/small-1MiB.head")
	if err != nil {
		log.Fatal(err)
	}
	tail, err := os.ReadFile("testdata/small-1MiB.tail")
	if err != nil {
		log.Fatal(err)
	}
	disk := make([]byte, 1<<20)
	copy(disk, head)
	copy(disk[len(disk)-len(tail):], tail)
	return disk
}

func ExampleRead() {
	disk := smallDisk()
	t, err := gpt.Read(bytes.NewReader(disk), int64(len(disk)), 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("disk %s, %d-byte sectors, %d warnings\n", t.Header.DiskGUID, t.SectorSize, len(t.Warnings))
	for _, p := range t.Partitions {
		fmt.Printf("%d %-10s %-11q offset %-6d size %-6d PARTUUID %s\n",
			p.Number, gpt.TypeName(p.Type), p.Name, p.Offset, p.Size, p.GUID)
	}
	// Output:
	// disk 6c1e6a06-9d0f-4b8e-9f3a-2f1d5c7b8a90, 512-byte sectors, 0 warnings
	// 1 EFI System "ESP"       offset 17408  size 102400 PARTUUID 0b1e5c2d-3f4a-4b6c-8d7e-9f0a1b2c3d4e
	// 2 Linux LUKS "crypt ü"   offset 119808 size 927744 PARTUUID 11111111-2222-4333-8444-555555555555
}

// Padding an image to a whole number of MiB (as Azure requires) moves the
// end of the disk; Relocate moves the backup GPT along.
func ExampleTable_Relocate() {
	disk := smallDisk()
	t, err := gpt.Read(bytes.NewReader(disk), int64(len(disk)), 0)
	if err != nil {
		log.Fatal(err)
	}
	grown := append(disk, make([]byte, 1<<20)...)
	writes, err := t.Relocate(bytes.NewReader(grown), int64(len(grown)))
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range writes {
		copy(grown[w.Offset:], w.Data)
	}
	t2, err := gpt.Read(bytes.NewReader(grown), int64(len(grown)), 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("backup header moved from LBA %d to %d; %d warnings\n", t.Backup.MyLBA, t2.Backup.MyLBA, len(t2.Warnings))
	// Output:
	// backup header moved from LBA 2047 to 4095; 0 warnings
}

func ExampleParseGUID() {
	g, err := gpt.ParseGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(g, gpt.TypeName(g), g == gpt.TypeEFISystem)
	fmt.Printf("% x\n", g[:8]) // first three fields are stored little-endian
	// Output:
	// c12a7328-f81f-11d2-ba4b-00a0c93ec93b EFI System true
	// 28 73 2a c1 1f f8 d2 11
}
