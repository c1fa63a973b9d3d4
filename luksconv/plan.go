package luksconv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/mbr"
	"github.com/luksconv/luksconv/vhd"
)

// RegionKind says how an output region is produced.
type RegionKind string

const (
	// Copy copies source bytes unchanged.
	Copy RegionKind = "copy"
	// Decrypt decrypts source ciphertext into plaintext.
	Decrypt RegionKind = "decrypt"
	// Zero leaves the output zero: unallocated source ranges, the space a LUKS header used, padding.
	Zero RegionKind = "zero"
)

// Region is one contiguous range of the output disk.
type Region struct {
	Kind   RegionKind `json:"kind"`   // how the range is produced
	Offset int64      `json:"offset"` // in the output
	Length int64      `json:"length"` // in bytes
	// Source is the byte offset in the source disk that Copy and Decrypt regions read.
	Source int64 `json:"source,omitempty"`
	// IV is the IV sector number (512-byte units) of the region's first byte, for Decrypt regions.
	IV uint64 `json:"iv,omitempty"`
	// Reason says why a Zero region is not copied (free space, padding, the old LUKS header), or why a
	// Decrypt region is ZeroCiphertextAsZero.
	Reason string `json:"reason,omitempty"`
	// ZeroCiphertextAsZero, on a Decrypt region, writes encryption sectors whose ciphertext is all zero
	// (RHEL 7's sparse copy, discards) as zero plaintext instead of decrypting them: the region is free
	// space read with FullCopy, or the log of a clean XFS filesystem. Elsewhere such sectors are
	// decrypted like any other. See Result.ZeroCiphertextZeroed.
	ZeroCiphertextAsZero bool `json:"zero_ciphertext_as_zero,omitempty"`
}

// Patch overwrites output bytes after the regions are produced (GPT relocation, guest edits).
type Patch struct {
	Offset int64 `json:"offset"` // byte offset in the output
	Length int   `json:"length"` // bytes patched (len(Data) when Data is there)
	// Why says what the patch changes ("GPT: move the backup table …", a guest file).
	Why string `json:"why"`
	// Data is the bytes written at Offset. It is not marshalled: a plan read back from JSON has none.
	Data []byte `json:"-"`
	// Sum is the hex SHA-256 of Data. MarshalJSON sets it, so that a plan read back from JSON, without
	// the data, still tells Delta whether a later plan patches the same bytes the same way.
	Sum string `json:"sum,omitempty"`
}

// MarshalJSON writes the patch with Sum computed from Data (when Data is there).
func (pt Patch) MarshalJSON() ([]byte, error) {
	type plain Patch
	q := plain(pt)
	if q.Data != nil {
		q.Sum = pt.sum()
	}
	return json.Marshal(q)
}

// sum is Sum, computed from Data when the patch holds it.
func (pt Patch) sum() string {
	if pt.Data == nil {
		return pt.Sum
	}
	h := sha256.Sum256(pt.Data)
	return hex.EncodeToString(h[:])
}

// Format is an output container format.
type Format string

const (
	// FormatRaw is a plain (sparse) disk image of exactly the source's virtual size.
	FormatRaw Format = "raw"
	// FormatVHD is a fixed VHD whose virtual size is rounded up to a whole MiB, as Azure requires.
	FormatVHD Format = "vhd"
)

// VolumeInfo describes the encrypted volume a plan converts.
type VolumeInfo struct {
	Partition int    `json:"partition"` // partition number, as in PartitionInfo (0: the whole disk)
	PartUUID  string `json:"partuuid"`  // the partition's PARTUUID
	Header    string `json:"header"`    // "attached" or "detached"
	// HeaderPath names a detached header as Header.Path does ("" when attached).
	HeaderPath string `json:"header_path,omitempty"`
	Version    int    `json:"luks_version"` // 1 or 2
	UUID       string `json:"luks_uuid"`    // the LUKS header's UUID
	// Cipher is the data cipher as a dm-crypt spec ("aes-xts-plain64").
	Cipher      string `json:"cipher"`
	KeySizeBits int    `json:"key_size_bits"` // volume key size in bits
	SectorSize  int    `json:"sector_size"`   // encryption sector size in bytes (512 for LUKS1)
	// Keyslot is the keyslot that yielded the volume key.
	Keyslot       int   `json:"keyslot"`
	PayloadOffset int64 `json:"payload_offset"` // in the source, absolute (of its first byte, in an LV)
	// PayloadSize is the encrypted payload's length in bytes (a dynamic size, as LUKS1's always is,
	// resolved to the end of the device in whole encryption sectors).
	PayloadSize int64  `json:"payload_size"`
	Content     string `json:"content"` // what the plaintext holds, by signature
	// LV is the logical volume ("vg/lv") holding the LUKS device when it is inside one (crypt-on-LVM, on
	// a plain PV); Partition and PartUUID are then the PV's (partition 0: the whole disk).
	LV string `json:"lv,omitempty"`
}

// Plan is the complete description of a conversion: plain data, free of secrets, that marshals to
// JSON. The unlocked key it carries is not marshalled; Close destroys it.
//
// A Plan is safe for concurrent use: several Execute and Verify calls may run on it at once, and
// Close may be called while they run (they then stop with ErrPlanClosed). Its exported fields are
// read-only once NewPlan returns.
type Plan struct {
	// Source describes the disk the plan was made from.
	Source ImageInfo `json:"source"`
	// Format is the output container format.
	Format Format `json:"format"`
	// OutputSize is the output's virtual disk size in bytes: the source's, padded to a whole MiB for
	// FormatVHD (whose 512-byte footer comes on top).
	OutputSize int64 `json:"output_size"`
	// Volume describes the encrypted volume converted.
	Volume VolumeInfo `json:"volume"`
	// Regions tile the output from byte 0 to OutputSize, in order and without overlap.
	Regions []Region `json:"regions"`
	// Patches, sorted by offset, overlay the regions' bytes in order (a later patch wins where two
	// overlap).
	Patches []Patch `json:"patches,omitempty"`
	// Totals sums the regions' lengths by kind.
	Totals Totals `json:"totals"`
	// Skipped sums the Zero regions that hold free space, by reason (empty with FullCopy).
	Skipped []Skip `json:"skipped,omitempty"`
	// Edits lists the changes made inside the guest (applied as Patches) so that the output boots
	// without ADE; empty with PlanOptions.KeepGuest.
	Edits []Edit `json:"edits,omitempty"`
	// Readiness is the LEAPP-style check of the guest as the output will hold it (nil when no guest
	// filesystem was found, or with KeepGuest).
	Readiness *Readiness `json:"readiness,omitempty"`
	// Warnings are the source report's and NewPlan's own: what the plan could not do as asked, or
	// facts worth a look.
	Warnings []Warning `json:"warnings,omitempty"`

	key    *planKey
	inputs []input // the files the plan reads, which no output may be
	// lvView, for a volume inside an LV, reads that LV of a disk like the source (the LUKS device as the
	// plaintext view reads it); nil for a partition.
	lvView func(disk io.ReaderAt) io.ReaderAt
}

// Totals sums region lengths by kind.
type Totals struct {
	Copy    int64 `json:"copy"`    // bytes of Copy regions
	Decrypt int64 `json:"decrypt"` // bytes of Decrypt regions
	Zero    int64 `json:"zero"`    // bytes of Zero regions
}

// add counts region r.
func (t *Totals) add(r Region) {
	switch r.Kind {
	case Copy:
		t.Copy += r.Length
	case Decrypt:
		t.Decrypt += r.Length
	case Zero:
		t.Zero += r.Length
	}
}

// PlanOptions say what to convert and how. The zero value with a passphrase converts an ADE OS disk.
type PlanOptions struct {
	// Passphrase unlocks a keyslot: the exact bytes of the key file. NewPlan does not keep it.
	Passphrase []byte
	// KeyFile names the file the passphrase comes from. NewPlan reads it (ReadKeyFile) when Passphrase
	// is nil; either way, no output may be that file (ErrOutputIsInput): it may be the only copy of
	// the key.
	KeyFile string
	// Base64Fallback also tries the base64 decoding of the passphrase when the passphrase itself opens
	// no keyslot. Set it for a passphrase unwrapped from an ADE secret with a key-encryption key: old
	// ADE extension builds base64-encoded the passphrase before wrapping it.
	Base64Fallback bool
	// Header is a detached LUKS header. Nil means: the volume's own (attached) header, or else ADE's
	// detached header /boot/luks/osluksheader, found on the disk's /boot.
	Header *Header
	// Partition is the number of the encrypted partition, as Linux numbers it (0: find it; negative:
	// ErrInvalidOption).
	Partition int
	// Keyslot restricts unlocking to one keyslot; nil tries every active one.
	Keyslot *int
	// Format is the output container (default FormatRaw).
	Format Format
	// AllowUnknownContent converts even when the decrypted volume has no recognisable signature, which
	// usually means the detached header belongs to another disk (ErrHeaderMismatch otherwise).
	AllowUnknownContent bool
	// FullCopy copies and decrypts everything, free space included. By default free LVM extents, the
	// free space of XFS and ext filesystems and the log area of an empty ext journal are written as
	// zeros without being read.
	FullCopy bool
	// KeepGuest leaves the guest as it is: the output is the source with the volume decrypted, byte for
	// byte. By default the guest is edited so that it boots without ADE: the kernel arguments,
	// crypttab, fstab, lvm.conf filter and dracut settings ADE added are removed, ADE's dracut modules
	// disabled, its hooks removed from the initramfs images on /boot, and /boot/luks/osluksheader and
	// /var/lib/azure_disk_encryption_config wiped (see Plan.Edits). Every edit rewrites a file inside
	// the blocks it already owns; what cannot be done that way is a warning.
	KeepGuest bool
	// StrictInitramfs makes NewPlan fail when an initramfs holding ADE's hooks cannot be rewritten in
	// place (the image without them does not fit the file's blocks, or cannot be re-encoded). By
	// default that is a warning: the image keeps the hooks, and the boot loader's command lines get
	// rd.ade=0 (and rd.lvm.conf=0, rd.luks.crypttab=0 where the image needs them) to switch them off
	// until the guest rebuilds its initramfs with dracut, which leaves the disabled module out.
	StrictInitramfs bool
	// KDFLimits bound the memory and estimated time of one keyslot's key derivation (the zero value:
	// luks's defaults, Argon2 at most 4 GiB and half the available memory, 60 s). A keyslot over them
	// is not tried; when no other keyslot opens, NewPlan fails with its *luks.CostError
	// (luks.ErrKDFLimit).
	KDFLimits luks.KDFLimits

	vm *vmEdits  // set by NewVMPlan for the OS disk
	lv *lvTarget // set by NewVMPlan for a LUKS volume inside an LV of a plain PV on the disk
	// vmFree and vmLogs are free space and XFS logs found by NewVMPlan in filesystems whose LV spans
	// several disks of the VM (vmLVs, "vg/lv"), in this disk's output coordinates.
	vmFree, vmLogs []span
	vmLVs          map[string]bool
}

// NewPlan reads the disk's metadata, unlocks the volume and lays out the output. It reads no bulk data.
// It stops with ctx's error when ctx ends, also during key derivation and initramfs re-compression.
//
// A passphrase that opens no keyslot gives a *PassphraseError wrapping luks.ErrWrongPassphrase, whose
// Hint says what is likely wrong with it.
func NewPlan(ctx context.Context, src *Source, opts PlanOptions) (*Plan, error) {
	v, err := openVolume(ctx, src, &opts)
	if err != nil {
		return nil, err
	}
	defer clear(v.pass)
	p, err := v.layout(ctx, opts)
	if err != nil {
		v.p.Close()
		return nil, err
	}
	return p, nil
}

// volume is a disk's encrypted volume, unlocked, and the plan being made of it: what NewPlan lays out
// once it has found and unlocked it, and what a whole-VM plan reads the OS disk's files through first.
type volume struct {
	src            *Source
	rep            *Report
	gp             *gpt.Partition // the volume's partition (the whole disk for partition 0); an LV's PV's
	lv             *lvVolume      // the LV holding the LUKS device (crypt-on-LVM), nil for a partition
	h              *luks.Header
	where          string // "attached" or "detached"
	payOff, payLen int64  // the payload, relative to the partition
	analysed       *luks.Reader
	content        Content
	p              *Plan  // Source, Format, Volume, Warnings, the key and the inputs set
	pass           []byte // a passphrase read from PlanOptions.KeyFile, cleared when the caller is done
}

// openVolume finds the encrypted volume of src and unlocks it. It completes opts (the format, the
// detached header found on /boot). On error nothing is left to close.
func openVolume(ctx context.Context, src *Source, opts *PlanOptions) (v *volume, err error) {
	if opts.Format == "" {
		opts.Format = FormatRaw
	}
	if opts.Format != FormatRaw && opts.Format != FormatVHD {
		return nil, fmt.Errorf("%w: unknown output format %q (want raw or vhd)", ErrInvalidOption, opts.Format)
	}
	if opts.Partition < 0 {
		return nil, fmt.Errorf("%w: partition %d (want a partition number, or 0 to find it)", ErrInvalidOption, opts.Partition)
	}
	var inputs []input
	var readPass []byte
	if src.id != nil {
		inputs = append(inputs, input{"the source image", src.id})
	}
	if opts.KeyFile != "" {
		if opts.Passphrase == nil {
			pass, err := ReadKeyFile(opts.KeyFile)
			if err != nil {
				return nil, err
			}
			opts.Passphrase = pass
			defer func() {
				if v == nil {
					clear(pass)
				}
			}()
			readPass = pass
		}
		if fi, err := os.Stat(opts.KeyFile); err == nil {
			inputs = append(inputs, input{"the key file", fi})
		}
	}
	if len(opts.Passphrase) == 0 {
		return nil, fmt.Errorf("%w: no passphrase", ErrInvalidOption)
	}
	var (
		rep     *Report
		gp      *gpt.Partition // the partition (or whole disk) holding the LUKS device
		part    PartitionInfo
		lvv     *lvVolume // the LV holding the LUKS device (crypt-on-LVM), nil for a partition
		partR   io.ReaderAt
		devSize int64 // the LUKS device: the partition, or the LV
	)
	if opts.lv != nil {
		if opts.Header != nil {
			return nil, fmt.Errorf("%w: a detached header for a LUKS volume inside an LV", ErrInvalidOption)
		}
		if rep, lvv, err = findLV(ctx, src, opts.lv.vg, opts.lv.lv); err != nil {
			return nil, err
		}
		gp = &gpt.Partition{Number: lvv.part.Number, Offset: lvv.part.Offset, Size: lvv.part.Size}
		part = lvv.part
		partR, devSize = lvv.pv.LVReader(io.NewSectionReader(src, gp.Offset, gp.Size), lvv.lv), lvv.lv.Size
	} else {
		var hdr *Header
		rep, hdr, err = inspect(ctx, src, InspectOptions{Header: opts.Header, Partition: opts.Partition})
		if err != nil {
			return nil, err
		}
		opts.Header = hdr // given, or found on /boot
		if fi := hdr.fileInfo(); fi != nil {
			inputs = append(inputs, input{"the detached header file", fi})
		}
		if part, err = pickPartition(rep, *opts); err != nil {
			return nil, err
		}
		// The partition's extent comes from the table itself (GPT, or DOS on older BIOS disks); a whole-disk
		// volume has none.
		tab := rep.tab
		gp = &gpt.Partition{Offset: 0, Size: src.Size}
		switch {
		case tab != nil:
			if gp, _ = tab.Partition(part.Number); gp == nil {
				return nil, fmt.Errorf("%w: no partition %d in the GPT", ErrNoSuchPartition, part.Number)
			}
		case rep.mtab != nil:
			mp, ok := rep.mtab.Partition(part.Number)
			if !ok || mbr.IsExtended(mp.Type) {
				return nil, fmt.Errorf("%w: no partition %d in the DOS partition table", ErrNoSuchPartition, part.Number)
			}
			gp = &gpt.Partition{Number: mp.Number, Offset: mp.Start, Size: mp.Size}
		}
		partR, devSize = io.NewSectionReader(src, gp.Offset, gp.Size), gp.Size
	}
	p := &Plan{Source: rep.Image, Format: opts.Format, OutputSize: src.Size, Warnings: rep.Warnings, inputs: inputs}
	partName := fmt.Sprintf("partition %d", part.Number)
	devBase := gp.Offset // image offset of the LUKS device's byte 0; -1 when it is not linear (an LV)
	var devToImage func(int64) (int64, bool)
	if lvv != nil {
		partName, devBase, devToImage = "LV "+lvv.name, -1, lvToImage(lvv.pv, lvv.lv, gp.Offset)
	}

	// The header device: the partition (or LV) itself, or the detached file.
	var hdrR io.ReaderAt = partR
	hdrSize, where, hdrPath := devSize, "attached", ""
	hdrLayer, hdrBase, hdrToImage := partName, devBase, devToImage
	if opts.Header != nil {
		hdrR, hdrSize, where, hdrPath = opts.Header.R, opts.Header.Size, "detached", opts.Header.Path
		hdrLayer, hdrBase, hdrToImage = "header "+opts.Header.Path, -1, nil
	}
	h, err := luks.ReadHeader(hdrR, hdrSize)
	if err != nil {
		return nil, layerErr(hdrLayer, hdrBase, hdrToImage, err)
	}
	p.Warnings = append(p.Warnings, warnings(WarnLUKSHeader, hdrLayer+": ", h.Warnings)...)
	payOff, payLen, err := h.Payload(devSize)
	if err != nil {
		return nil, layerErr(partName, devBase, devToImage, err)
	}
	if where == "attached" && payOff < h.HeaderSize {
		return nil, layerErr(partName, devBase, devToImage, fmt.Errorf("LUKS payload at %d overlaps the %d-byte header: %w", payOff, h.HeaderSize, luks.ErrCorrupt))
	}
	key, err := unlock(ctx, h, *opts)
	if err != nil {
		return nil, layerErr(hdrLayer, hdrBase, hdrToImage, err)
	}
	c, err := h.NewCipher(key)
	slot := key.Slot
	key.Destroy() // the cipher keeps its own key schedule
	if err != nil {
		return nil, layerErr(hdrLayer, hdrBase, hdrToImage, err)
	}
	// The plaintext view reads the ciphertext from the disk, or through the LV's extents. Execute and
	// Verify read each Decrypt region's ciphertext where the region says, at its IV.
	var rd *luks.Reader
	payImage := gp.Offset + payOff
	if lvv != nil {
		rd, err = luks.NewCipherReader(partR, payOff, payLen, c, h.IVTweak)
		if o, ok := devToImage(payOff); ok {
			payImage = o
		}
	} else {
		rd, err = luks.NewCipherReader(src, gp.Offset+payOff, payLen, c, h.IVTweak)
	}
	if err != nil {
		return nil, layerErr(partName, devBase, devToImage, err)
	}
	p.key = &planKey{rd: rd}

	p.Volume = VolumeInfo{Partition: part.Number, PartUUID: part.GUID, Header: where, HeaderPath: hdrPath,
		Version: h.Version, UUID: h.UUID, Cipher: h.Cipher, KeySizeBits: h.KeySize * 8, SectorSize: h.SectorSize,
		Keyslot: slot, PayloadOffset: payImage, PayloadSize: payLen}
	if lvv != nil {
		p.Volume.LV = lvv.name
		pv, lv, off, size := lvv.pv, lvv.lv, gp.Offset, gp.Size
		p.lvView = func(disk io.ReaderAt) io.ReaderAt { return pv.LVReader(io.NewSectionReader(disk, off, size), lv) }
	}

	// The analysis and the guest edits read all-zero ciphertext as zero plaintext (see Result), as the
	// output's free space and XFS logs are written.
	analysed := rd.WithZeroCiphertextAsZero(true)

	// Look at what the plaintext holds: garbage means the header and the partition do not belong together.
	content, err := probe(analysed, payLen)
	if err != nil {
		p.Close()
		return nil, layerErr(partName+" (decrypted)", p.Volume.PayloadOffset, nil, fmt.Errorf("reading the start of the plaintext: %w", err))
	}
	p.Volume.Content = string(content)
	if content == ContentUnknown || content == ContentEmpty {
		msg := fmt.Sprintf("partition %d decrypts to data with no recognisable signature (%s)", part.Number, content)
		if !opts.AllowUnknownContent && where == "detached" {
			p.Close()
			return nil, fmt.Errorf("%w: %s: the detached header probably belongs to another disk", ErrHeaderMismatch, msg)
		}
		p.Warnings = append(p.Warnings, warning(WarnUnknownContent, "%s", msg))
	}
	return &volume{src: src, rep: rep, gp: gp, lv: lvv, h: h, where: where, payOff: payOff, payLen: payLen, analysed: analysed,
		content: content, p: p, pass: readPass}, nil
}

// layout lays out the output of the unlocked volume v: regions, free space, guest edits, padding.
func (v *volume) layout(ctx context.Context, opts PlanOptions) (*Plan, error) {
	src, rep, gp, h, p := v.src, v.rep, v.gp, v.h, v.p
	where, payOff, payLen, analysed, content, tab := v.where, v.payOff, v.payLen, v.analysed, v.content, rep.tab
	var err error

	// Output layout: the source copied, the volume decrypted in place of its partition. With an attached
	// header the plaintext moves to the partition start and the rest of the partition (the header's old
	// room) becomes zeros, so no keyslot material survives. A volume inside an LV moves to the LV's
	// start the same way, through the LV's extents (lvRegions).
	var regions []Region
	var free, logs []span
	var warns []Warning
	var vols []guestVolume
	var luksLeft []string
	if v.lv == nil {
		regions = append(regions, copyRegions(src, 0, gp.Offset)...)
		regions = append(regions, Region{Kind: Decrypt, Offset: gp.Offset, Length: payLen, Source: gp.Offset + payOff, IV: h.IV(0)})
		if tail := gp.Size - payLen; tail > 0 {
			if where == "detached" && payOff == 0 {
				// Bytes past the last whole encryption sector were never encrypted.
				regions = append(regions, copyRegions(src, gp.Offset+payLen, tail)...)
			} else {
				regions = append(regions, Region{Kind: Zero, Offset: gp.Offset + payLen, Length: tail, Reason: "LUKS header space"})
			}
		}
		regions = append(regions, copyRegions(src, gp.Offset+gp.Size, src.Size-gp.Offset-gp.Size)...)
		free, logs, warns = p.usedOnly(src, rep.Partitions, analysed, payLen, gp.Offset, opts.vmLVs)
		vols, luksLeft = guestVolumes(src, rep, p.Volume.Partition, analysed, gp.Offset, payLen, content)
	} else {
		if regions, err = v.lvRegions(); err != nil {
			return nil, err
		}
		free, logs, warns = v.lvUsedOnly(opts.vmLVs)
		vols, luksLeft = guestVolumes(src, rep, -1, nil, 0, 0, "")
		vols = append(vols, guestVolume{part: gp.Number, partUUID: v.lv.part.GUID, r: analysed, size: payLen, content: content,
			toOut: v.lv.toOut, name: "LV " + v.lv.name})
	}
	free, logs = append(free, opts.vmFree...), append(logs, opts.vmLogs...)
	if !opts.FullCopy {
		p.Warnings = append(p.Warnings, warns...)
		regions, p.Skipped = carve(regions, free, int64(h.SectorSize))
	} else {
		// Free space is read and decrypted, but all-zero ciphertext there still becomes zeros.
		logs = append(logs, free...)
	}
	regions = markZeroCiphertext(regions, logs, int64(h.SectorSize))

	if !opts.KeepGuest {
		if err := p.editGuest(ctx, rep, vols, luksLeft, opts); err != nil {
			return nil, err
		}
	}

	if opts.Format == FormatVHD {
		if size := vhd.AzureSize(src.Size); size != src.Size {
			// A DOS partition table names no disk end, so its LBA 0 is copied unchanged; only a GPT has a
			// backup table to move to the new end.
			var writes []gpt.Write
			if tab != nil {
				if writes, err = tab.Relocate(src, size); err != nil {
					return nil, fmt.Errorf("moving the backup GPT to the padded end: %w", err)
				}
			}
			for _, w := range writes {
				p.Patches = append(p.Patches, Patch{Offset: w.Offset, Length: len(w.Data), Data: w.Data,
					Why: "GPT: move the backup table to the end of the disk padded to a whole MiB for Azure"})
			}
			regions = append(regions, Region{Kind: Zero, Offset: src.Size, Length: size - src.Size, Reason: "padding to a whole MiB"})
			p.OutputSize = size
			p.Warnings = append(p.Warnings, warning(WarnPadded, "disk size %d is not a whole MiB; the VHD is padded to %d bytes", src.Size, size))
		}
	}
	// Stable: patches at one offset keep the order they were made in, run after run.
	sort.SliceStable(p.Patches, func(i, j int) bool { return p.Patches[i].Offset < p.Patches[j].Offset })
	p.Regions = mergeRegions(regions)
	for _, r := range p.Regions {
		p.Totals.add(r)
	}
	return p, nil
}

// ID is a digest of everything the plan writes (layout and patch bytes), for resume journals: a journal
// written for one plan is never applied to another.
func (p *Plan) ID() string {
	h := sha256.New()
	src := p.Source
	if i := strings.IndexByte(src.Path, '?'); i >= 0 && strings.Contains(src.Path, "://") {
		// A SAS URL's query (expiry, signature) changes with every grant of the same blob.
		src.Path = src.Path[:i]
	}
	b, _ := json.Marshal(struct {
		Source  ImageInfo
		Size    int64
		Regions []Region
	}{src, p.OutputSize, p.Regions})
	h.Write(b)
	for _, pt := range p.Patches {
		fmt.Fprintf(h, "%d:%d:", pt.Offset, len(pt.Data))
		h.Write(pt.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// unlock opens a keyslot of h with the passphrase, or with its base64 decoding (Base64Fallback).
func unlock(ctx context.Context, h *luks.Header, opts PlanOptions) (*luks.VolumeKey, error) {
	key, err := h.UnlockLimits(ctx, opts.Passphrase, keyslotArg(opts.Keyslot), opts.KDFLimits)
	if err != nil && opts.Base64Fallback && errors.Is(err, luks.ErrWrongPassphrase) {
		if alt, derr := decodeBase64Key(opts.Passphrase); derr == nil {
			k, err2 := h.UnlockLimits(ctx, alt, keyslotArg(opts.Keyslot), opts.KDFLimits)
			clear(alt)
			if err2 == nil {
				return k, nil
			}
		}
	}
	if errors.Is(err, luks.ErrWrongPassphrase) {
		return nil, &PassphraseError{Err: err, Hint: passphraseHint(opts.Passphrase)}
	}
	return key, err
}

// Close destroys the unlocked volume key. It may be called while Execute or Verify run on the plan:
// they stop with ErrPlanClosed, and the key is gone once the last of them returns. The plan's data
// stays readable. Close is idempotent.
func (p *Plan) Close() {
	if p.key != nil {
		p.key.close()
	}
}

func keyslotArg(k *int) int {
	if k == nil {
		return -1
	}
	return *k
}

// pickPartition chooses the encrypted partition: the one named, the one the detached header was matched to,
// or the only one with an attached LUKS header.
func pickPartition(rep *Report, opts PlanOptions) (PartitionInfo, error) {
	var luksParts []PartitionInfo
	for _, pi := range rep.Partitions {
		if opts.Partition > 0 && pi.Number == opts.Partition {
			if opts.Header == nil && pi.LUKS == nil && pi.Content != ContentLUKS1 && pi.Content != ContentLUKS2 {
				return pi, fmt.Errorf("%w: partition %d has no LUKS header (%s) and no detached header was given", ErrNeedHeader, pi.Number, pi.Content)
			}
			return pi, nil
		}
		if pi.LUKS != nil || pi.Content == ContentLUKS1 || pi.Content == ContentLUKS2 {
			// A damaged attached header still counts, so that its error surfaces below.
			luksParts = append(luksParts, pi)
		}
	}
	if opts.Partition > 0 {
		return PartitionInfo{}, fmt.Errorf("%w: no partition %d on this disk", ErrNoSuchPartition, opts.Partition)
	}
	switch len(luksParts) {
	case 1:
		return luksParts[0], nil
	case 0:
		for _, pi := range rep.Partitions {
			if pi.Content == ContentLVM2 {
				return PartitionInfo{}, fmt.Errorf("%w: no LUKS header on any partition and no /boot/luks/osluksheader; partition %d is a plain LVM "+
					"physical volume: a LUKS volume inside one of its logical volumes (ADE's crypt-on-LVM) is converted together with "+
					"the VM's OS disk, whose crypttab names it", ErrNothingToConvert, pi.Number)
			}
		}
		return PartitionInfo{}, fmt.Errorf("%w: no LUKS header on any partition and no /boot/luks/osluksheader", ErrNothingToConvert)
	}
	return PartitionInfo{}, fmt.Errorf("%w: %d partitions carry LUKS headers", ErrAmbiguous, len(luksParts))
}

// copyRegions copies [off, off+length) of the source, leaving the parts the source never allocated zero.
func copyRegions(src *Source, off, length int64) []Region {
	var out []Region
	end := off + length
	pos := off
	for _, e := range src.Allocated() {
		s, t := max(e.Off, off), min(e.Off+e.Len, end)
		if s >= t {
			continue
		}
		if s > pos {
			out = append(out, Region{Kind: Zero, Offset: pos, Length: s - pos, Reason: "unallocated in the source"})
		}
		out = append(out, Region{Kind: Copy, Offset: s, Length: t - s, Source: s})
		pos = t
	}
	if pos < end {
		out = append(out, Region{Kind: Zero, Offset: pos, Length: end - pos, Reason: "unallocated in the source"})
	}
	return out
}

// mergeRegions joins neighbours that continue each other and drops empty ones.
func mergeRegions(in []Region) []Region {
	var out []Region
	for _, r := range in {
		if r.Length <= 0 {
			continue
		}
		if n := len(out); n > 0 {
			last := &out[n-1]
			if last.Kind == r.Kind && last.Offset+last.Length == r.Offset &&
				((r.Kind == Zero && last.Reason == r.Reason) || (r.Kind == Copy && last.Source+last.Length == r.Source)) {
				last.Length += r.Length
				continue
			}
		}
		out = append(out, r)
	}
	return out
}
