package initramfs_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/initramfs"
)

// Parse an initramfs, drop Azure Disk Encryption's hooks with ADEEdit and rebuild it with Rewrite.
func Example() {
	// A tiny gzip-compressed initramfs such as 91adeOnline leaves behind.
	var img bytes.Buffer
	zw := gzip.NewWriter(&img)
	w := initramfs.NewWriter(zw)
	for _, e := range []*initramfs.Entry{
		{Header: initramfs.Header{Name: "etc", Mode: initramfs.ModeDir | 0o755, NLink: 2}},
		{Header: initramfs.Header{Name: "etc/crypttab", Mode: initramfs.ModeRegular | 0o600, NLink: 1},
			Data: []byte("home UUID=42 none\nosencrypt /dev/disk/by-partuuid/8a3f /mnt/azure_bek_disk/LinuxPassPhraseFileName luks")},
		{Header: initramfs.Header{Name: "usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh", Mode: initramfs.ModeRegular | 0o755, NLink: 1},
			Data: []byte("#!/bin/sh\n")},
	} {
		if err := w.WriteEntry(e); err != nil {
			log.Fatal(err)
		}
	}
	w.Close()
	zw.Close()

	im, err := initramfs.Parse(bytes.NewReader(img.Bytes()), int64(img.Len()))
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range im.Segments {
		fmt.Printf("segment at %d: %s, %d entries\n", s.Offset, s.Compression, len(s.Entries))
	}
	edit, findings := initramfs.ADEEdit(im, guest.Policy{})
	for _, f := range findings {
		fmt.Println(f)
	}
	out, rep, err := im.Rewrite(context.Background(), bytes.NewReader(img.Bytes()), edit)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed:", rep.Removed, "replaced:", rep.Replaced)
	im2, err := initramfs.Parse(bytes.NewReader(out), int64(len(out)))
	if err != nil {
		log.Fatal(err)
	}
	crypttab, _ := im2.ReadFile("/etc/crypttab")
	fmt.Printf("etc/crypttab: %q\n", crypttab)
	// Output:
	// segment at 0: gzip, 3 entries
	// remove usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh: ADE cmdline hook (91adeOnline/91ade parse-crypt-ade.sh)
	// rewrite etc/crypttab: drop the crypttab entry of ADE's OS volume osencrypt
	// removed: [usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh] replaced: [etc/crypttab]
	// etc/crypttab: "home UUID=42 none\n"
}

// Pad an image that ends in a zstd archive with 3096 bytes: zero bytes would stop zstd's tools, a frame
// of zeros does not. Parsed, the frame is one more zstd segment holding no archive.
func ExampleZstdPadding() {
	frame, err := initramfs.ZstdPadding(3096)
	if err != nil {
		log.Fatal(err)
	}
	im, err := initramfs.Parse(bytes.NewReader(frame), int64(len(frame)))
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range im.Segments {
		fmt.Printf("%s segment of %d bytes, %d entries\n", s.Compression, s.Length, len(s.Entries))
	}
	// Output: zstd segment of 3096 bytes, 0 entries
}

// Continue an lz4 legacy stream with 1000 bytes of chunks that decode to zeros: zero bytes would stop
// lz4's tools. Here the stream is only its magic, so the segment holds no archive.
func ExampleLZ4LegacyPadding() {
	chunks, err := initramfs.LZ4LegacyPadding(1000)
	if err != nil {
		log.Fatal(err)
	}
	img := append([]byte{0x02, 0x21, 0x4c, 0x18}, chunks...) // the legacy magic, little-endian
	im, err := initramfs.Parse(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range im.Segments {
		fmt.Printf("%s segment of %d bytes, %d entries\n", s.Compression, s.Length, len(s.Entries))
	}
	// Output: lz4-legacy segment of 1004 bytes, 0 entries
}
