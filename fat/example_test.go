package fat_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/luksconv/luksconv/fat"
)

// loadExample returns the 256 KiB example EFI System Partition (made by
// mkfs.vfat and mtools; see testdata/mkexample.sh).
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

// Example reads the GRUB environment block of an EFI System Partition, then
// replaces its content in place: Rewrite only plans byte patches, which the
// caller applies.
func Example() {
	img := loadExample()
	fsys, err := fat.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("FAT%d, %d-byte clusters, UUID=%s\n", fsys.Bits, fsys.ClusterSize, fsys.UUID())

	f, err := fsys.Lookup("/efi/REDHAT/GrubEnv") // FAT names are case-insensitive
	if err != nil {
		log.Fatal(err)
	}
	env, clusters, err := fsys.ReadFile(f, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d bytes in %d clusters\n", f.Name, len(env), len(clusters))

	// Drop rd.luks.uuid, keeping the block's 1024 bytes.
	newEnv := strings.Replace(string(env), " rd.luks.uuid=luks-0b5d", "", 1)
	newEnv += strings.Repeat("#", len(env)-len(newEnv))
	writes, err := fsys.Rewrite(f, clusters, []byte(newEnv))
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range writes {
		copy(img[w.Offset:], w.Data) // apply the patches
		fmt.Printf("write %d bytes at offset %d\n", len(w.Data), w.Offset)
	}

	fsys, err = fat.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	f, err = fsys.Lookup("EFI/redhat/grubenv")
	if err != nil {
		log.Fatal(err)
	}
	env, _, err = fsys.ReadFile(f, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(strings.TrimRight(string(env), "#"))
	// Output:
	// FAT12, 512-byte clusters, UUID=5E1F-0A7C
	// grubenv: 1024 bytes in 2 clusters
	// write 1024 bytes at offset 20480
	// # GRUB Environment Block
	// saved_entry=rhel-5.14.0
	// kernelopts=root=/dev/mapper/rootvg-rootlv ro
}

// ExampleFS_ReadDir lists a directory; nil is the root.
func ExampleFS_ReadDir() {
	img := loadExample()
	fsys, err := fat.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	dir, err := fsys.Lookup("EFI/redhat")
	if err != nil {
		log.Fatal(err)
	}
	files, err := fsys.ReadDir(dir)
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range files {
		fmt.Println(f.Name, f.Size, f.IsDir())
	}
	// Output:
	// grubenv 1024 false
	// grub.cfg 1375 false
}

// ExamplePadToClusters shrinks a grub.cfg of three clusters: the new text
// is padded with a comment line so that it still needs three, as Rewrite
// requires.
func ExamplePadToClusters() {
	img := loadExample()
	fsys, err := fat.Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	f, err := fsys.Lookup("EFI/redhat/grub.cfg")
	if err != nil {
		log.Fatal(err)
	}
	_, clusters, err := fsys.ReadFile(f, 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	cfg := []byte("menuentry \"RHEL\" { linux /vmlinuz root=/dev/sda2 }\n")
	if _, err := fsys.Rewrite(f, clusters, cfg); err != nil {
		fmt.Println(err)
	}
	padded := fat.PadToClusters(cfg, len(clusters), fsys.ClusterSize)
	writes, err := fsys.Rewrite(f, clusters, padded)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes, %d writes\n", len(padded), len(writes))
	// Output:
	// fat: cannot edit in place: "grub.cfg": 51 bytes need 1 clusters of 512 bytes, the file has 3 (nothing is allocated or freed)
	// 1025 bytes, 2 writes
}
