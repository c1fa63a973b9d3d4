package xfs_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/luksconv/luksconv/xfs"
)

// loadExample returns the 16 MiB example filesystem (made by mkfs.xfs from a
// protofile; see testdata/mkfixtures.sh).
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
	fsys, err := xfs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("XFS v%d, %d-byte blocks, %d AG(s), writable: %v\n",
		fsys.SB.Version(), fsys.SB.BlockSize, fsys.SB.AGCount, fsys.Writable() == nil)

	target, _ := fsys.Readlink("/etc/grubenv")
	env, err := fsys.ReadFile("/etc/grubenv") // follows the symlink
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("/etc/grubenv -> %s (%d bytes)\n", target, len(env))

	// Same-size edit of the GRUB environment block.
	newEnv := "# GRUB Environment Block\nsaved_entry=rhel-5.14.0\nkernelopts=root=/dev/sda4 ro\n"
	newEnv += strings.Repeat("#", len(env)-len(newEnv))
	writes, err := fsys.Rewrite("/boot/grub2/grubenv", []byte(newEnv))
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range writes {
		copy(img[w.Offset:], w.Data) // apply the patches
		fmt.Printf("write %d bytes at offset %d\n", len(w.Data), w.Offset)
	}

	fsys, err = xfs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	env, err = fsys.ReadFile("/boot/grub2/grubenv")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(strings.TrimRight(string(env), "#"))
	// Output:
	// XFS v5, 4096-byte blocks, 1 AG(s), writable: true
	// /etc/grubenv -> ../boot/grub2/grubenv (1024 bytes)
	// write 4096 bytes at offset 5644288
	// # GRUB Environment Block
	// saved_entry=rhel-5.14.0
	// kernelopts=root=/dev/sda4 ro
}

// ExampleFS_ReadDir lists a directory.
func ExampleFS_ReadDir() {
	img := loadExample()
	fsys, err := xfs.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	ents, err := fsys.ReadDir("/")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ents {
		fmt.Println(e.Name, e.Type == xfs.FTDir)
	}
	// Output:
	// boot true
	// etc true
}
