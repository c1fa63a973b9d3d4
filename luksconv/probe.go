package luksconv

import (
	"encoding/binary"
	"io"

	"github.com/luksconv/luksconv/internal/zeros"
)

// Content names what a partition holds, judged by its signature.
type Content string

// The contents Inspect tells apart, by the signature at the partition's start (or, for BIOS boot, its type).
const (
	ContentLUKS1 Content = "luks1"   // a LUKS1 header
	ContentLUKS2 Content = "luks2"   // a LUKS2 header
	ContentXFS   Content = "xfs"     // an XFS superblock
	ContentExt4  Content = "ext"     // an ext2, ext3 or ext4 superblock
	ContentFAT   Content = "vfat"    // a FAT12, FAT16 or FAT32 boot sector
	ContentLVM2  Content = "lvm2-pv" // an LVM2 physical volume label in one of the first four sectors
	ContentSwap  Content = "swap"    // a Linux swap signature
	// ContentBtrfs is a btrfs filesystem: recognised (its UUID mounts it), its free space not judged.
	ContentBtrfs Content = "btrfs"
	// ContentBIOSBoot is a GPT BIOS boot partition (GRUB's core image), recognised by its type GUID.
	ContentBIOSBoot Content = "bios-boot"
	// ContentEmpty is a start of only zero bytes.
	ContentEmpty Content = "empty"
	// ContentUnknown is data with no known signature: what a volume encrypted under a detached LUKS
	// header (ADE's OS disk) looks like.
	ContentUnknown Content = "no-signature"
)

// probeSize is how much of a partition's start probe reads: enough for the LVM label (sectors 0-3),
// a 4 KiB swap header and btrfs's superblock (at 64 KiB).
const probeSize = btrfsSuper + 4096

// btrfsSuper is the offset of btrfs's primary superblock; its magic is at +0x40, its fsid at +0x20.
const btrfsSuper = 64 << 10

// probe identifies the content of the volume at the start of r by its magic numbers.
func probe(r io.ReaderAt, size int64) (Content, error) {
	buf := make([]byte, probeSize)
	n, err := r.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	if int64(n) < size && n < len(buf) {
		return "", io.ErrUnexpectedEOF
	}
	return probeBytes(buf[:n]), nil
}

func probeBytes(b []byte) Content {
	has := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "LUKS\xba\xbe\x00\x01"):
		return ContentLUKS1
	case has(0, "LUKS\xba\xbe\x00\x02"):
		return ContentLUKS2
	case has(0, "XFSB"):
		return ContentXFS
	case len(b) >= 1024+58 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53:
		return ContentExt4
	case has(510, "\x55\xaa") && (has(82, "FAT32   ") || has(54, "FAT16   ") || has(54, "FAT12   ") || has(54, "FAT     ")):
		return ContentFAT
	case has(4096-10, "SWAPSPACE2") || has(4096-10, "SWAP-SPACE"):
		return ContentSwap
	case has(btrfsSuper+0x40, "_BHRfS_M"):
		return ContentBtrfs
	}
	// The LVM2 label may sit in any of the first four sectors.
	for s := 0; s < 4; s++ {
		if has(s*512, "LABELONE") && has(s*512+24, "LVM2 001") {
			return ContentLVM2
		}
	}
	if zeros.Only(b) {
		return ContentEmpty
	}
	return ContentUnknown
}
