package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/internal/zeros"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/mbr"
)

// Header is a detached LUKS header (ADE keeps the OS disk's in /boot/luks/osluksheader). OpenHeader
// opens a header file; Inspect and NewPlan find ADE's on /boot by themselves. A Header is safe for
// concurrent use when R is.
type Header struct {
	// R reads the header; its byte 0 is the header's first byte (the LUKS magic).
	R io.ReaderAt
	// Size is the length in bytes of what R reads (for OpenHeader, the file's size).
	Size int64
	// Path names the header in reports; it is not opened.
	Path string

	closer io.Closer
}

// OpenHeader opens a detached header file read-only. No output may be that file (ErrOutputIsInput).
func OpenHeader(path string) (*Header, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && !isBlockDevice(fi) {
		return nil, fmt.Errorf("%w: header %s (%s)", ErrInputType, path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Header{R: f, Size: size, Path: path, closer: f}, nil
}

// Close closes the file OpenHeader opened; for other headers it does nothing.
func (h *Header) Close() error {
	if h == nil || h.closer == nil {
		return nil
	}
	return h.closer.Close()
}

// fileInfo identifies the file or device behind the header, when R can tell (an *os.File).
func (h *Header) fileInfo() os.FileInfo {
	if h == nil {
		return nil
	}
	if st, ok := h.R.(interface{ Stat() (os.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil {
			return fi
		}
	}
	return nil
}

// Report is what Inspect found on a disk: plain data that holds no secrets and marshals to JSON. It is
// not modified once Inspect returns.
type Report struct {
	// Image describes the source container.
	Image ImageInfo `json:"image"`
	// Table describes the partition table; nil when the disk has none (a whole-disk LUKS volume or
	// LVM PV, reported as partition 0).
	Table *TableInfo `json:"partition_table,omitempty"`
	// Partitions lists the table's partitions, or the whole disk as partition 0.
	Partitions []PartitionInfo `json:"partitions"`
	// ADE is set when /boot holds ADE's detached header.
	ADE *ADEInfo `json:"ade,omitempty"`
	// Edits lists what convert would change in the guest, as far as it can be seen without the key
	// (for an encrypted root: the /boot side only; `plan` shows all).
	Edits []Edit `json:"edits,omitempty"`
	// Readiness is the LEAPP-style check of the guest as it is now (nil when no guest filesystem is
	// readable).
	Readiness *Readiness `json:"readiness,omitempty"`
	// Warnings reports what Inspect could not read or found unusual; none of them stops a conversion.
	Warnings []Warning `json:"warnings,omitempty"`

	tab  *gpt.Table // the table read, for NewPlan (nil without a GPT)
	mtab *mbr.Table // the DOS table read when there is no GPT (nil otherwise)
}

// ImageInfo describes the source container.
type ImageInfo struct {
	// Path is Source.Path: the file the image was read from, or how the caller names it ("" if
	// neither).
	Path string `json:"path,omitempty"`
	// Format is "raw", "vhd-fixed" or "vhd-dynamic".
	Format string `json:"format"`
	// FileSize is the container's size in bytes: the image file, device or blob, VHD structures
	// included.
	FileSize int64 `json:"file_size"`
	// Size is the virtual disk size in bytes: what the guest sees as its disk.
	Size int64 `json:"virtual_size"`
}

// TableInfo describes the partition table.
type TableInfo struct {
	Type string `json:"type"` // "gpt" or "mbr"
	// SectorSize is the logical sector size in bytes the table was read with (512 or 4096).
	SectorSize int `json:"sector_size"`
	// DiskGUID is the GPT disk GUID, or for an MBR the disk signature as Linux shows it for PTUUID
	// (8 hex digits).
	DiskGUID string `json:"disk_guid"`
	// UsedBackup reports that the primary GPT was unusable and the backup at the end of the disk was
	// read instead (always false for an MBR).
	UsedBackup bool `json:"used_backup,omitempty"`
}

// PartitionInfo describes one partition and what it holds. On an MBR disk Number is the Linux number
// (logical partitions from 5), Type the system ID ("0x8e"), GUID the PARTUUID Linux derives from the disk
// signature ("1a2b3c4d-02") and Name is empty; extended partitions are not listed.
type PartitionInfo struct {
	Number int `json:"number"` // partition number, from 1; 0 for the whole disk
	// Name is the GPT partition name ("(whole disk)" for partition 0).
	Name string `json:"name"`
	// Type is the GPT partition type GUID, or the MBR system ID.
	Type string `json:"type_guid"`
	// TypeName is the type's usual name, when known.
	TypeName string `json:"type_name,omitempty"`
	// GUID is the partition's PARTUUID: the GPT unique partition GUID, or the MBR form above.
	GUID string `json:"partuuid"`
	// Offset and Size are the partition's first byte on the disk and its length, in bytes.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"` // in bytes
	// Content is what the partition holds, judged by its signature.
	Content Content `json:"content"`
	// LUKS describes the partition's LUKS header, attached or detached (nil when it has none).
	LUKS *LUKSInfo `json:"luks,omitempty"`
}

// LUKSInfo describes a LUKS header, attached or detached.
type LUKSInfo struct {
	Header string `json:"header"` // "attached" or "detached"
	// HeaderPath names a detached header as Header.Path does ("" when attached).
	HeaderPath string `json:"header_path,omitempty"`
	Version    int    `json:"version"` // 1 or 2
	UUID       string `json:"uuid"`    // the LUKS header's UUID
	// Cipher is the data cipher as a dm-crypt spec ("aes-xts-plain64").
	Cipher      string `json:"cipher"`
	KeySizeBits int    `json:"key_size_bits"` // volume key size in bits (512 for AES-256-XTS)
	// SectorSize is the encryption sector size in bytes (always 512 for LUKS1).
	SectorSize int `json:"sector_size"`
	// DataOffset is the byte offset of the encrypted payload from the start of the partition.
	DataOffset int64 `json:"data_offset"`
	// DataSize is the payload's length in bytes.
	DataSize int64 `json:"data_size"` // -1: to the end of the partition
	// Keyslots lists the active keyslots (LUKS1: enabled; LUKS2: present).
	Keyslots []KeyslotInfo `json:"keyslots"`
	// Convertible reports whether the header is one luksconv can convert; Reason says why not.
	Convertible bool      `json:"convertible"`
	Reason      string    `json:"reason,omitempty"`   // why it cannot be converted
	Warnings    []Warning `json:"warnings,omitempty"` // damaged or stale LUKS2 copy, re-encryption markers
}

// KeyslotInfo describes one keyslot.
type KeyslotInfo struct {
	ID   int    `json:"id"`   // slot number: 0-7 in LUKS1, the keyslots object's key in LUKS2
	Type string `json:"type"` // "luks1", "luks2", "reencrypt" (or another LUKS2 type, never usable)
	// KDF is "pbkdf2", "argon2i" or "argon2id" (or what the header says).
	KDF        string `json:"kdf,omitempty"`
	Hash       string `json:"hash,omitempty"`       // pbkdf2 hash
	Iterations int    `json:"iterations,omitempty"` // pbkdf2 iterations
	Time       int    `json:"time,omitempty"`       // argon2 time cost
	MemoryKiB  int    `json:"memory_kib,omitempty"` // argon2 memory cost in KiB
	CPUs       int    `json:"cpus,omitempty"`       // argon2 lanes/threads
	// Priority is 0 (ignore: tried only when named), 1 (normal, and always for LUKS1) or 2 (prefer).
	Priority int `json:"priority,omitempty"`
}

// InspectOptions tune Inspect.
type InspectOptions struct {
	// Header is a detached LUKS header to describe; it is matched to the partition named by Partition,
	// or to the only partition with no recognisable signature.
	Header *Header
	// Partition is the partition number the detached header belongs to (0: find it).
	Partition int
}

// Inspect reads the partition table and identifies what each partition holds. It reads only metadata.
// Without InspectOptions.Header it looks for ADE's detached header on /boot (luks/osluksheader).
//
// It also reports the guest edits convert would make and the guest's readiness for a LEAPP upgrade,
// from the filesystems it can read without a key.
func Inspect(ctx context.Context, src *Source, opts InspectOptions) (*Report, error) {
	rep, _, err := inspect(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	if err := inspectGuest(ctx, src, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// inspect is Inspect that also returns the detached header in use (given or found on /boot).
func inspect(ctx context.Context, src *Source, opts InspectOptions) (*Report, *Header, error) {
	rep, err := readPartitions(ctx, src, opts.Header != nil)
	if err != nil {
		return nil, nil, err
	}
	hdr, want := opts.Header, opts.Partition
	if hdr == nil {
		ade, found, warns := discoverADE(src, rep.Partitions)
		rep.Warnings = append(rep.Warnings, warns...)
		if found != nil {
			rep.ADE, hdr = ade, found
			if want == 0 && ade.PartUUID != "" {
				for _, p := range rep.Partitions {
					if strings.EqualFold(p.GUID, ade.PartUUID) {
						want = p.Number
					}
				}
				if want == 0 {
					rep.Warnings = append(rep.Warnings, warning(WarnADEHeader, "%s names rd.luks.ade.partuuid=%s, which no partition has", ade.ArgSource, ade.PartUUID))
				}
			}
		}
	}
	if hdr == nil {
		return rep, nil, nil
	}
	h, err := luks.ReadHeader(hdr.R, hdr.Size)
	if err != nil {
		if opts.Header == nil && wiped(hdr.R) {
			// A converted disk: the header file is still there, zeroed.
			rep.Warnings = append(rep.Warnings, warning(WarnADEHeader, "%s holds no LUKS header, only zeros (wiped by a conversion)", hdr.Path))
			rep.ADE = nil
			return rep, nil, nil
		}
		return nil, nil, layerErr("detached header "+hdr.Path, -1, nil, err)
	}
	n, err := detachedTarget(rep.Partitions, want)
	if err != nil {
		if opts.Header == nil {
			// A header left on /boot of a disk that is already plaintext, or of an unusual layout:
			// report it, and let the caller name the partition.
			rep.Warnings = append(rep.Warnings, warning(WarnADEHeader, "found %s but no encrypted partition for it: %v", hdr.Path, err))
			return rep, nil, nil
		}
		return nil, nil, err
	}
	if opts.Header == nil && opts.Partition == 0 && contentOf(rep.Partitions, n) != ContentUnknown {
		rep.Warnings = append(rep.Warnings, warning(WarnADEHeader, "found %s, but partition %d already holds %s (converted before?)",
			hdr.Path, n, contentOf(rep.Partitions, n)))
		return rep, nil, nil
	}
	for i := range rep.Partitions {
		if rep.Partitions[i].Number == n {
			rep.Partitions[i].LUKS = describeLUKS(h, "detached", hdr.Path)
		}
	}
	return rep, hdr, nil
}

// readPartitions reads the GPT, or else a DOS partition table, and probes every partition.
func readPartitions(ctx context.Context, src *Source, detached bool) (*Report, error) {
	rep := &Report{Image: ImageInfo{Path: src.Path, Format: src.Format, FileSize: src.FileSize, Size: src.Size}}
	tab, err := gpt.Read(src, src.Size, 0)
	if errors.Is(err, gpt.ErrNoGPT) {
		return withoutGPT(ctx, src, rep, err, detached)
	}
	if err != nil {
		return nil, err
	}
	rep.tab = tab
	rep.Table = &TableInfo{Type: "gpt", SectorSize: tab.SectorSize, DiskGUID: tab.Header.DiskGUID.String(),
		UsedBackup: tab.Primary == nil}
	rep.Warnings = append(rep.Warnings, warnings(WarnPartitionTable, "", tab.Warnings)...)
	for _, p := range tab.Partitions {
		pi := PartitionInfo{Number: p.Number, Name: p.Name, Type: p.Type.String(), TypeName: gpt.TypeName(p.Type),
			GUID: p.GUID.String(), Offset: p.Offset, Size: p.Size}
		if p.Type == gpt.TypeBIOSBoot {
			pi.Content = ContentBIOSBoot
		}
		if err := probePartition(ctx, src, rep, pi); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// probePartition identifies what pi holds (unless its Content is already known) and appends it to rep.
func probePartition(ctx context.Context, src *Source, rep *Report, pi PartitionInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if pi.Offset+pi.Size > src.Size {
		return fmt.Errorf("partition %d ends at byte %d, beyond the end of the %d-byte disk: the image is truncated: %w",
			pi.Number, pi.Offset+pi.Size, src.Size, ErrTruncated)
	}
	part := io.NewSectionReader(src, pi.Offset, pi.Size)
	if pi.Content == "" {
		c, err := probe(part, pi.Size)
		if err != nil {
			return fmt.Errorf("partition %d: %w", pi.Number, err)
		}
		pi.Content = c
	}
	if pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2 {
		h, err := luks.ReadHeader(part, pi.Size)
		if err != nil {
			// Inspect reports what it can; Plan refuses.
			rep.Warnings = append(rep.Warnings, warning(WarnLUKSHeader, "%v", layerErr(fmt.Sprintf("partition %d", pi.Number), pi.Offset, nil, err)))
		} else {
			pi.LUKS = describeLUKS(h, "attached", "")
		}
	}
	rep.Partitions = append(rep.Partitions, pi)
	return nil
}

// withoutGPT handles a disk without a GPT: a LUKS device that fills the whole image (a data disk
// encrypted without partitions, or a bare LUKS image) is reported as partition 0; otherwise the disk
// may have a DOS partition table (older BIOS-booted RHEL 7 images).
//
// With a detached header given (detached), a disk without a table is taken to be the encrypted volume
// itself, data at its first byte: what ADE's dual-pass encryption made of a whole data disk. Its
// ciphertext holds no table, and a random sector that passes for an MBR does not stop that either.
func withoutGPT(ctx context.Context, src *Source, rep *Report, noGPT error, detached bool) (*Report, error) {
	c, err := probe(src, src.Size)
	if err != nil {
		return nil, err
	}
	// The whole-disk check comes first: a LUKS1 keyslot salt may happen to end LBA 0 with 0x55AA.
	if c == ContentLUKS1 || c == ContentLUKS2 {
		return wholeDisk(src, rep, c)
	}
	mt, err := mbr.Read(src, src.Size, 512)
	if err != nil && detached {
		rep.Partitions = []PartitionInfo{{Number: 0, Name: "(whole disk)", Size: src.Size, Content: c}}
		rep.Warnings = append(rep.Warnings, warning(WarnPartitionTable, "no partition table: the whole disk is the volume of the detached header (partition 0)"))
		return rep, nil
	}
	if errors.Is(err, mbr.ErrNoTable) && c == ContentLVM2 {
		// A plain PV on the whole disk (pvcreate /dev/sdX); ADE may have encrypted one of its LVs.
		rep.Partitions = []PartitionInfo{{Number: 0, Name: "(whole disk)", Size: src.Size, Content: c}}
		rep.Warnings = append(rep.Warnings, warning(WarnPartitionTable, "no partition table: the whole disk is an LVM physical volume (partition 0)"))
		return rep, nil
	}
	if errors.Is(err, mbr.ErrNoTable) {
		if c == ContentUnknown {
			// Ciphertext without a header: ADE's dual-pass data disks keep theirs on the OS disk.
			return nil, fmt.Errorf("%w: no partition table and no LUKS header, only data without a signature: a volume "+
				"whose detached header is elsewhere (ADE's dual-pass data disks keep it on the OS disk; a whole-VM plan reads it there)",
				ErrNothingToConvert)
		}
		return nil, noGPT
	}
	if err != nil {
		return nil, fmt.Errorf("%w, and the DOS partition table cannot be read: %w", noGPT, err)
	}
	if mt.Protective {
		return nil, fmt.Errorf("%w, yet LBA 0 holds a protective MBR (the GPT is missing or damaged)", noGPT)
	}
	rep.mtab = mt
	rep.Table = &TableInfo{Type: "mbr", SectorSize: mt.SectorSize, DiskGUID: fmt.Sprintf("%08x", mt.DiskSignature)}
	for _, p := range mt.Partitions {
		if mbr.IsExtended(p.Type) {
			continue // a container of logical partitions, listed themselves
		}
		pi := PartitionInfo{Number: p.Number, Type: fmt.Sprintf("0x%02x", p.Type), TypeName: mbrTypeName(p.Type),
			GUID: fmt.Sprintf("%08x-%02x", mt.DiskSignature, p.Number), Offset: p.Start, Size: p.Size}
		if err := probePartition(ctx, src, rep, pi); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// mbrTypeName names the DOS system IDs a Linux disk uses.
func mbrTypeName(t byte) string {
	names := map[byte]string{0x07: "HPFS/NTFS/exFAT", 0x0b: "W95 FAT32", 0x0c: "W95 FAT32 (LBA)", 0x82: "Linux swap",
		0x83: "Linux", 0x8e: "Linux LVM", 0xef: "EFI (FAT-12/16/32)", 0xfd: "Linux raid autodetect"}
	if n, ok := names[t]; ok {
		return fmt.Sprintf("%s (0x%02x)", n, t)
	}
	return fmt.Sprintf("0x%02x", t)
}

// wholeDisk reports a LUKS volume that fills the whole disk as partition 0.
func wholeDisk(src *Source, rep *Report, c Content) (*Report, error) {
	pi := PartitionInfo{Number: 0, Name: "(whole disk)", Offset: 0, Size: src.Size, Content: c}
	h, err := luks.ReadHeader(src, src.Size)
	if err != nil {
		rep.Warnings = append(rep.Warnings, warning(WarnLUKSHeader, "whole disk: %v", err))
	} else {
		pi.LUKS = describeLUKS(h, "attached", "")
	}
	rep.Partitions = []PartitionInfo{pi}
	rep.Warnings = append(rep.Warnings, warning(WarnPartitionTable, "no partition table: the whole disk is one LUKS volume (partition 0)"))
	return rep, nil
}

func describeLUKS(h *luks.Header, where, path string) *LUKSInfo {
	li := &LUKSInfo{Header: where, HeaderPath: path, Version: h.Version, UUID: h.UUID, Cipher: h.Cipher,
		KeySizeBits: h.KeySize * 8, SectorSize: h.SectorSize, DataOffset: h.DataOffset, DataSize: h.DataSize,
		Convertible: true, Warnings: warnings(WarnLUKSHeader, "", h.Warnings)}
	for _, k := range h.Keyslots {
		if !k.Active {
			continue
		}
		li.Keyslots = append(li.Keyslots, KeyslotInfo{ID: k.ID, Type: k.Type, KDF: k.KDF, Hash: k.Hash,
			Iterations: k.Iterations, Time: k.Time, MemoryKiB: k.MemoryKiB, CPUs: k.CPUs, Priority: k.Priority})
	}
	if err := h.Supported(); err != nil {
		li.Convertible = false
		li.Reason = err.Error()
	}
	return li
}

// detachedTarget picks the partition a detached header belongs to: the one named, or else the only
// partition whose content has no signature.
func detachedTarget(parts []PartitionInfo, want int) (int, error) {
	if want > 0 {
		for _, p := range parts {
			if p.Number == want {
				if p.Content == ContentLUKS1 || p.Content == ContentLUKS2 {
					return 0, fmt.Errorf("%w: partition %d carries its own LUKS header; a detached header does not apply", ErrHeaderMismatch, want)
				}
				return want, nil
			}
		}
		return 0, fmt.Errorf("%w: no partition %d on this disk", ErrNoSuchPartition, want)
	}
	var cands []int
	for _, p := range parts {
		if p.Content == ContentUnknown {
			cands = append(cands, p.Number)
		}
	}
	switch len(cands) {
	case 1:
		return cands[0], nil
	case 0:
		return 0, fmt.Errorf("%w: no partition without a filesystem signature for the detached header", ErrNoSuchPartition)
	}
	return 0, fmt.Errorf("%w: partitions %v all lack a signature", ErrAmbiguous, cands)
}

// wiped reports whether a header file starts with zeros where a LUKS header would be.
func wiped(r io.ReaderAt) bool {
	b := make([]byte, 4096)
	n, _ := r.ReadAt(b, 0)
	return n > 0 && zeros.Only(b[:n])
}

func contentOf(parts []PartitionInfo, n int) Content {
	for _, p := range parts {
		if p.Number == n {
			return p.Content
		}
	}
	return ""
}
