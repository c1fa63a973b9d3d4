package ext_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/extent"
)

// loadExample returns the 2 MiB example filesystem (made by mkfs.ext4 -d;
// see testdata/mkexample.sh).
func loadExample() []byte {
	f, err := os.Open("testdata/example.img.gz")
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
	return img
}

// Example reads a file through a symlink, then replaces its content in
// place: Rewrite only plans byte patches, which the caller applies.
func Example() {
	img := loadExample()
	fsys, err := ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("LABEL=%s UUID=%s, %d-byte blocks, metadata_csum: %v, writable: %v\n",
		fsys.Label(), fsys.UUID(), fsys.SB.BlockSize(), fsys.SB.HasMetadataCsum(), fsys.Writable() == nil)

	target, _ := fsys.Readlink("/etc/grubenv")
	env, err := fsys.ReadFile("/etc/grubenv") // follows the symlink
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("/etc/grubenv -> %s (%d bytes)\n", target, len(env))

	// Drop rd.luks.uuid, keeping the block's 1024 bytes.
	newEnv := strings.Replace(string(env), " rd.luks.uuid=luks-0b5d", "", 1)
	newEnv += strings.Repeat("#", len(env)-len(newEnv))
	writes, err := fsys.Rewrite("/boot/grub2/grubenv", []byte(newEnv), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range writes {
		copy(img[w.Offset:], w.Data) // apply the patches
		fmt.Printf("write %d bytes at offset %d\n", len(w.Data), w.Offset)
	}

	fsys, err = ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	env, err = fsys.ReadFile("/boot/grub2/grubenv")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(strings.TrimRight(string(env), "#"))
	// Output:
	// LABEL=root UUID=7c3a9e2b-51d4-4f86-a0c2-9d1e8b6f4a35, 1024-byte blocks, metadata_csum: true, writable: true
	// /etc/grubenv -> ../boot/grub2/grubenv (1024 bytes)
	// write 1024 bytes at offset 1101824
	// # GRUB Environment Block
	// saved_entry=rhel-5.14.0
	// kernelopts=root=/dev/mapper/rootvg-rootlv ro
}

// ExampleFS_ReadDir lists a directory.
func ExampleFS_ReadDir() {
	img := loadExample()
	fsys, err := ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	ents, err := fsys.ReadDir("/etc")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ents {
		fmt.Println(e.Name, e.Type == ext.FTSymlink)
	}
	// Output:
	// fstab false
	// grubenv true
}

// ExampleFS_FreeSpace shows what a converter may skip without reading.
func ExampleFS_FreeSpace() {
	img := loadExample()
	fsys, err := ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	free, err := fsys.FreeSpace()
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range free {
		fmt.Printf("free: %d bytes at offset %d\n", r.Len, r.Off)
	}
	fmt.Printf("%d of %d bytes need copying\n", int64(len(img))-extent.Total(free), len(img))
	// Output:
	// free: 992256 bytes at offset 1104896
	// 1104896 of 2097152 bytes need copying
}

// ExampleFS_JournalLog shows the empty journal's log area, which a converter may write as zeros.
func ExampleFS_JournalLog() {
	img := loadExample()
	fsys, err := ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range fsys.JournalLog() {
		fmt.Printf("journal log: %d bytes at offset %d\n", r.Len, r.Off)
	}
	// Output:
	// journal log: 1024 bytes at offset 33792
	// journal log: 14336 bytes at offset 36864
	// journal log: 1032192 bytes at offset 67584
}

// ExampleFS_UnusedInodeTables shows the inode-table blocks past the watermark of inodes ever used,
// which a converter may write as zeros, as the kernel's lazy init does.
func ExampleFS_UnusedInodeTables() {
	img := loadExample()
	fsys, err := ext.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	g, _ := fsys.Group(0)
	fmt.Printf("%d of %d inodes never used\n", g.ItableUnused, fsys.SB.InodesPerGroup)
	rs, err := fsys.UnusedInodeTables()
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range rs {
		fmt.Printf("unused inode table: %d bytes at offset %d\n", r.Len, r.Off)
	}
	// Output:
	// 47 of 64 inodes never used
	// unused inode table: 11264 bytes at offset 56320
}
