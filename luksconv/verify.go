package luksconv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/mbr"
	"github.com/luksconv/luksconv/xfs"
)

// VerifyOptions tune Verify. The zero value is usable.
type VerifyOptions struct {
	// Workers is the number of chunks compared in parallel, at most MaxWorkers (default as for
	// Execute).
	Workers int
	// ChunkSize is the unit of work in bytes, a multiple of 4096 up to MaxChunkSize (default
	// DefaultChunkSize).
	ChunkSize int
	// MaxMismatches caps the mismatching ranges listed in the report (default 20); all are counted.
	MaxMismatches int
	// Progress, if set, receives events as for Execute: Done and Total count every output byte.
	Progress func(Progress)
	// ProgressInterval defaults to 250ms.
	ProgressInterval time.Duration
}

// Mismatch is a range of the output whose bytes differ from the expected ones.
type Mismatch struct {
	Offset int64      `json:"offset"`        // in the output
	Length int64      `json:"length"`        // in bytes
	Kind   RegionKind `json:"kind"`          // the kind of the region the range lies in
	Region int64      `json:"region_offset"` // that region's output offset
	// Reason is the region's (why a Zero region is zero: the free space of which filesystem, padding).
	Reason string `json:"reason,omitempty"`
	// Partition is the number of the source's partition the range starts in (0: none, or no table).
	Partition int `json:"partition,omitempty"`
	// Patch is the reason of a patch the range overlaps, if any.
	Patch string `json:"patch,omitempty"`
}

// StructureCheck is one consistency check of the output's metadata against the source's.
type StructureCheck struct {
	Name   string `json:"name"`             // what is compared: "size", "format", a table or superblock
	OK     bool   `json:"ok"`               // the check passed
	Detail string `json:"detail,omitempty"` // what was expected, or the error found
}

// VerifyReport is the result of Verify: plain data.
type VerifyReport struct {
	// Pass reports that no byte mismatched and every structure check passed.
	Pass bool `json:"pass"`
	// Checked counts the output bytes compared, by region kind; Patched the patch bytes among them.
	Checked Totals `json:"checked"`
	Patched int64  `json:"patched"` // see Checked
	// Mismatches lists the first mismatching ranges by offset; MismatchCount and MismatchBytes count all.
	Mismatches    []Mismatch `json:"mismatches,omitempty"`
	MismatchCount int        `json:"mismatch_count"` // all mismatching ranges
	MismatchBytes int64      `json:"mismatch_bytes"` // all mismatching bytes
	// Structure lists the consistency checks of the output's metadata, in the order made.
	Structure []StructureCheck `json:"structure"`
	// Duration is the run's wall-clock time (in nanoseconds in JSON).
	Duration time.Duration `json:"duration_ns"`
}

// Verify re-reads out, an output written by Execute from p and src, and compares every byte with what
// Execute would have produced: Copy regions with the source, Decrypt regions with a fresh decryption of
// the source, Zero regions with zeros, each with the plan's patches overlaid. It then checks the output's
// size (a disk of exactly p.OutputSize bytes), its container (a fixed VHD for FormatVHD, its footer right
// after the disk, else raw), its GPT, LVM metadata and XFS superblocks against the source's. Where out
// is an Allocator (a page blob), the ranges it never wrote are taken as zeros without being read.
//
// It returns the report and, when anything differs, an error wrapping ErrVerifyFailed that sums it
// up. An output shorter than the plan, which cannot be compared, is an error wrapping ErrTruncated
// and no report. Memory use is Workers × 2 × ChunkSize.
func Verify(ctx context.Context, p *Plan, src io.ReaderAt, out *Source, opts VerifyOptions) (*VerifyReport, error) {
	pl, err := newPipeline(opts.Workers, opts.ChunkSize, opts.Progress, opts.ProgressInterval)
	if err != nil {
		return nil, err
	}
	name := out.Path
	if name == "" {
		name = "the output"
	}
	if out.Size < p.OutputSize {
		return nil, fmt.Errorf("%s holds a %d-byte disk, shorter than the planned %d bytes (interrupted?): %w", name, out.Size, p.OutputSize, ErrTruncated)
	}
	maxMis := opts.MaxMismatches
	if maxMis <= 0 {
		maxMis = 20
	}
	ctx, rd, release, err := p.use(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	rd = rd.WithData(src)
	// Output ranges that read as zero without being read (pages a page blob never wrote).
	written := out.Allocated()

	start := time.Now()
	rep := &VerifyReport{}
	var done atomic.Int64
	var mu sync.Mutex
	patches := newPatchIndex(p.Patches)
	work := func(ctx context.Context, bufs [][]byte, c chunk) error {
		w, g := bufs[0][:c.n], bufs[1][:c.n]
		switch c.r.Kind {
		case Zero:
			clear(w)
		case Copy:
			if err := readFull(src, w, c.src(), "source"); err != nil {
				return err
			}
		case Decrypt:
			if _, err := rd.ReadSectorsAt(w, c.src(), c.iv(), c.r.ZeroCiphertextAsZero); err != nil {
				return sourceErr(err, c.src(), int64(c.n))
			}
		}
		patches.apply(w, c.off)
		if !extent.Overlaps(written, c.off, int64(c.n)) {
			clear(g)
		} else if err := readFull(out, g, c.off, name); err != nil {
			return err
		}
		mis := p.diff(w, g, c.off, c.r)
		patched := p.patchBytes(c.off, int64(c.n))
		done.Add(int64(c.n))
		mu.Lock()
		defer mu.Unlock()
		switch c.r.Kind {
		case Copy:
			rep.Checked.Copy += int64(c.n)
		case Decrypt:
			rep.Checked.Decrypt += int64(c.n)
		case Zero:
			rep.Checked.Zero += int64(c.n)
		}
		rep.Patched += patched
		for _, m := range mis {
			rep.MismatchCount++
			rep.MismatchBytes += m.Length
		}
		rep.Mismatches = append(rep.Mismatches, mis...)
		if len(rep.Mismatches) > 4*maxMis {
			sortMismatches(rep.Mismatches)
			rep.Mismatches = rep.Mismatches[:maxMis]
		}
		return nil
	}
	snapshot := func() Progress { return Progress{Done: done.Load(), Total: p.OutputSize} }
	if err := pl.run(ctx, 2, pl.chunks(p.Regions, nil), work, snapshot); err != nil {
		return nil, err
	}
	sortMismatches(rep.Mismatches)
	if len(rep.Mismatches) > maxMis {
		rep.Mismatches = rep.Mismatches[:maxMis]
	}
	size := StructureCheck{Name: "size", OK: out.Size == p.OutputSize, Detail: fmt.Sprintf("a %d-byte disk as planned", p.OutputSize)}
	if !size.OK {
		size.Detail = fmt.Sprintf("a %d-byte disk, %d bytes longer than planned (another format?)", out.Size, out.Size-p.OutputSize)
	}
	// The container: a fixed VHD that lost its footer holds the same bytes as the raw disk, but Azure
	// does not take it as a disk.
	wantFormat := "raw"
	if p.Format == FormatVHD {
		wantFormat = "vhd-fixed"
	}
	format := StructureCheck{Name: "format", OK: out.Format == wantFormat, Detail: fmt.Sprintf("%s as planned (%s)", out.Format, p.Format)}
	if !format.OK {
		format.Detail = fmt.Sprintf("the output is %s, the plan's format %s is %s", out.Format, p.Format, wantFormat)
	}
	plainRd := rd // the source's plaintext view: through the LV for a volume inside one
	if p.lvView != nil {
		plainRd = rd.WithData(p.lvView(src))
	}
	checks := []StructureCheck{size, format}
	if p.Format == FormatVHD && out.Format == "vhd-fixed" {
		checks = append(checks, footerCheck(out))
	}
	more, parts := p.checkStructure(plainRd.WithZeroCiphertextAsZero(true), src, out)
	rep.Structure = append(checks, more...)
	// Where each listed mismatch lies: a Copy region spans every partition before the volume (ESP,
	// /boot, BIOS boot) and its offset alone does not say which was damaged.
	for i := range rep.Mismatches {
		m := &rep.Mismatches[i]
		for _, e := range parts {
			if e.Number != 0 && e.Offset <= m.Offset && m.Offset < e.Offset+e.Size {
				m.Partition = e.Number
			}
		}
	}
	rep.Pass = rep.MismatchCount == 0
	var failed []string
	for _, c := range rep.Structure {
		rep.Pass = rep.Pass && c.OK
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	rep.Duration = time.Since(start)
	if !rep.Pass {
		return rep, fmt.Errorf("%w: %s: %d mismatching ranges (%d bytes), failed checks: %s", ErrVerifyFailed, name,
			rep.MismatchCount, rep.MismatchBytes, strings.Join(append(failed, "none")[:max(len(failed), 1)], ", "))
	}
	return rep, nil
}

// footerCheck checks what the size and format checks leave of a fixed VHD's footer: that it follows the
// disk directly (a file of the disk and 512 bytes, N MiB + 512 as Azure takes it; bytes between the two
// belong to neither) and describes a fixed disk (no data offset) in no saved state. The creator, time,
// unique id and geometry differ between writers (qemu-img, Azure's exports) and are not compared: Azure
// and Hyper-V size the disk by the footer's current size, which the size check compares.
func footerCheck(out *Source) StructureCheck {
	c := StructureCheck{Name: "vhd footer", OK: true, Detail: "right after the disk, a fixed disk in no saved state"}
	ft := out.img.Footer
	switch {
	case out.img.Trailing != 0:
		c.OK, c.Detail = false, fmt.Sprintf("%d bytes lie between the disk's end and the footer (a %d-byte file for a %d-byte disk)",
			out.img.Trailing, out.FileSize, out.Size)
	case ft.DataOffset != ^uint64(0):
		c.OK, c.Detail = false, fmt.Sprintf("data offset %d: a fixed disk has none (0xffffffffffffffff)", ft.DataOffset)
	case ft.SavedState != 0:
		c.OK, c.Detail = false, fmt.Sprintf("saved state %d: the disk is marked as belonging to a saved VM", ft.SavedState)
	}
	return c
}

func sortMismatches(m []Mismatch) {
	sort.Slice(m, func(i, j int) bool { return m[i].Offset < m[j].Offset })
}

// diffGap joins differing runs closer than this, so that a garbled range is one mismatch, not hundreds.
const diffGap = 64

// diff lists the ranges where got differs from want, for the chunk at output offset off in region r.
func (p *Plan) diff(want, got []byte, off int64, r *Region) []Mismatch {
	if bytes.Equal(want, got) {
		return nil
	}
	var out []Mismatch
	for i := 0; i < len(want); {
		if want[i] == got[i] {
			i++
			continue
		}
		s, e := i, i+1
		for k := e; k < len(want) && k < e+diffGap; k++ {
			if want[k] != got[k] {
				e = k + 1
			}
		}
		m := Mismatch{Offset: off + int64(s), Length: int64(e - s), Kind: r.Kind, Region: r.Offset, Reason: r.Reason}
		for _, pt := range p.Patches {
			if pt.Offset < m.Offset+m.Length && m.Offset < pt.Offset+int64(len(pt.Data)) {
				m.Patch = pt.Why
				break
			}
		}
		out = append(out, m)
		i = e
	}
	return out
}

// patchBytes counts the patch bytes inside [off, off+n).
func (p *Plan) patchBytes(off, n int64) int64 {
	var t int64
	for _, pt := range p.Patches {
		if s, e := max(pt.Offset, off), min(pt.Offset+int64(len(pt.Data)), off+n); s < e {
			t += e - s
		}
	}
	return t
}

// checkStructure compares the output's partition table (GPT or DOS), the LVM metadata in its converted
// partition and the XFS superblocks it holds with the source's. plain reads the source volume's
// plaintext as the plan's analysis did.
func (p *Plan) checkStructure(plain *luks.Reader, src, out io.ReaderAt) (checks []StructureCheck, parts []partExtent) {
	add := func(name string, err error, detail string) {
		c := StructureCheck{Name: name, OK: err == nil, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		checks = append(checks, c)
	}
	parts, ok := p.checkTable(src, out, add)
	if !ok {
		return checks, nil
	}

	// The converted partition's plaintext, in the source (decrypted afresh) and in the output.
	var gp partExtent
	ok = false
	for _, e := range parts {
		if e.Number == p.Volume.Partition {
			gp, ok = e, true
		}
	}
	if !ok {
		return checks, parts
	}
	srcPlain := plain
	var outPlain io.ReaderAt = io.NewSectionReader(out, gp.Offset, p.Volume.PayloadSize)
	type fsPair struct {
		name     string
		src, out io.ReaderAt
		size     int64
	}
	var fss []fsPair
	if p.Volume.LV != "" {
		// A volume inside an LV: the disk is still that plain PV, holding the same VG; the plaintext is
		// at the start of the output's LV, and the other LVs are as they were.
		spr, opr := io.NewSectionReader(src, gp.Offset, gp.Size), io.NewSectionReader(out, gp.Offset, gp.Size)
		spv, err := lvm.Open(spr, gp.Size)
		if err == nil && spv.VG == nil {
			err = errors.New("source: no volume group metadata")
		}
		var opv *lvm.PV
		if err == nil {
			if opv, err = lvm.Open(opr, gp.Size); err == nil {
				err = sameVG(spv.VG, opv.VG)
			}
		}
		add("lvm", err, fmt.Sprintf("the PV of %s as in the source", p.Volume.LV))
		if err != nil {
			return checks, parts
		}
		for i := range spv.VG.LVs {
			lv := &spv.VG.LVs[i]
			olv, _ := opv.VG.LV(lv.Name)
			if spv.VG.Name+"/"+lv.Name == p.Volume.LV {
				outPlain = io.NewSectionReader(opv.LVReader(opr, olv), 0, p.Volume.PayloadSize)
				continue
			}
			fss = append(fss, fsPair{"LV " + spv.VG.Name + "/" + lv.Name, spv.LVReader(spr, lv), opv.LVReader(opr, olv), lv.Size})
		}
	}
	for _, part := range parts {
		if part.Number != p.Volume.Partition {
			fss = append(fss, fsPair{fmt.Sprintf("partition %d", part.Number),
				io.NewSectionReader(src, part.Offset, part.Size), io.NewSectionReader(out, part.Offset, part.Size), part.Size})
		}
	}
	switch Content(p.Volume.Content) {
	case ContentXFS, ContentExt4:
		name := fmt.Sprintf("partition %d", p.Volume.Partition)
		if p.Volume.LV != "" {
			name = "LV " + p.Volume.LV
		}
		fss = append(fss, fsPair{name, srcPlain, outPlain, p.Volume.PayloadSize})
	case ContentLVM2:
		spv, err := lvm.Open(srcPlain, p.Volume.PayloadSize)
		if err != nil || spv.VG == nil {
			break // nothing to compare with
		}
		opv, err := lvm.Open(outPlain, p.Volume.PayloadSize)
		if err == nil {
			err = sameVG(spv.VG, opv.VG)
		}
		add("lvm", err, fmt.Sprintf("VG %s seqno %d, %d LVs as in the source", spv.VG.Name, spv.VG.Seqno, len(spv.VG.LVs)))
		if err != nil {
			break
		}
		for i := range spv.VG.LVs {
			lv := &spv.VG.LVs[i]
			olv, _ := opv.VG.LV(lv.Name)
			fss = append(fss, fsPair{"LV " + spv.VG.Name + "/" + lv.Name, spv.LVReader(srcPlain, lv), opv.LVReader(outPlain, olv), lv.Size})
		}
	}
	for _, f := range fss {
		if sfs, err := xfs.Open(f.src, f.size); err == nil {
			ofs, err := xfs.Open(f.out, f.size)
			if err == nil && ofs.SB.UUID != sfs.SB.UUID {
				err = fmt.Errorf("output: superblock UUID %x differs from the source's %x", ofs.SB.UUID, sfs.SB.UUID)
			}
			if err == nil {
				_, err = ofs.ReadDir("/")
			}
			add("xfs "+f.name, err, fmt.Sprintf("superblock and root directory readable, %d blocks", sfs.SB.DBlocks))
			continue
		}
		if sfs, err := ext.Open(f.src, f.size); err == nil {
			ofs, err := ext.Open(f.out, f.size)
			if err == nil && ofs.UUID() != sfs.UUID() {
				err = fmt.Errorf("output: superblock UUID %s differs from the source's %s", ofs.UUID(), sfs.UUID())
			}
			if err == nil {
				_, err = ofs.ReadDir("/")
			}
			add("ext "+f.name, err, fmt.Sprintf("superblock and root directory readable, %d blocks", sfs.SB.BlocksCount()))
		}
		// Neither: nothing to check.
	}
	return checks, parts
}

// partExtent is where a partition lies, whichever table describes it.
type partExtent struct {
	Number       int
	Offset, Size int64
}

// checkTable compares the output's partition table with the source's (a GPT, or else a DOS table) and
// returns the source's partitions; ok is false when the source's table cannot be read.
func (p *Plan) checkTable(src, out io.ReaderAt, add func(string, error, string)) (parts []partExtent, ok bool) {
	if p.Volume.Partition == 0 {
		// A whole-disk volume: no table, the volume is the disk.
		add("partition table", nil, "none: the whole disk is the volume")
		return []partExtent{{0, 0, p.Source.Size}}, true
	}
	st, err := gpt.Read(src, p.Source.Size, 0)
	if errors.Is(err, gpt.ErrNoGPT) {
		if sm, merr := mbr.Read(src, p.Source.Size, 512); merr == nil && !sm.Protective {
			return p.checkMBR(sm, out, add), true
		}
	}
	if err != nil {
		add("gpt", fmt.Errorf("source: %w", err), "")
		return nil, false
	}
	ot, err := gpt.Read(out, p.OutputSize, st.SectorSize)
	if err == nil {
		// A warning the source carries too is the source's layout, kept as it is (a disk grown after
		// partitioning keeps its backup table at the old end); only a new one is the output's fault.
		for _, w := range ot.Warnings {
			if !slices.Contains(st.Warnings, w) {
				err = fmt.Errorf("output: %s", w)
				break
			}
		}
	}
	if err == nil {
		err = samePartitions(st.Partitions, ot.Partitions)
	}
	add("gpt", err, fmt.Sprintf("%d partitions as in the source", len(st.Partitions)))
	for _, gp := range st.Partitions {
		parts = append(parts, partExtent{gp.Number, gp.Offset, gp.Size})
	}
	return parts, true
}

// checkMBR compares the output's DOS partition table with the source's sm and returns the source's
// partitions other than extended containers.
func (p *Plan) checkMBR(sm *mbr.Table, out io.ReaderAt, add func(string, error, string)) []partExtent {
	om, err := mbr.Read(out, p.OutputSize, sm.SectorSize)
	if err == nil {
		err = sameMBR(sm, om)
	}
	add("mbr", err, fmt.Sprintf("%d partitions as in the source", len(sm.Partitions)))
	var parts []partExtent
	for _, mp := range sm.Partitions {
		if !mbr.IsExtended(mp.Type) {
			parts = append(parts, partExtent{mp.Number, mp.Start, mp.Size})
		}
	}
	return parts
}

func sameMBR(a, b *mbr.Table) error {
	if b.Protective {
		return errors.New("output: LBA 0 holds a protective MBR, the source a DOS partition table")
	}
	if a.DiskSignature != b.DiskSignature {
		return fmt.Errorf("output: disk signature %08x, the source has %08x", b.DiskSignature, a.DiskSignature)
	}
	if len(a.Partitions) != len(b.Partitions) {
		return fmt.Errorf("output has %d partitions, the source %d", len(b.Partitions), len(a.Partitions))
	}
	for i := range a.Partitions {
		if a.Partitions[i] != b.Partitions[i] {
			return fmt.Errorf("output partition %d differs from the source's", b.Partitions[i].Number)
		}
	}
	return nil
}

func samePartitions(a, b []gpt.Partition) error {
	if len(a) != len(b) {
		return fmt.Errorf("output has %d partitions, the source %d", len(b), len(a))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Number != y.Number || x.Type != y.Type || x.GUID != y.GUID || x.FirstLBA != y.FirstLBA ||
			x.LastLBA != y.LastLBA || x.Name != y.Name || x.Attributes != y.Attributes {
			return fmt.Errorf("output partition %d differs from the source's", y.Number)
		}
	}
	return nil
}

func sameVG(a, b *lvm.VG) error {
	if b == nil {
		return errors.New("output: the physical volume has no VG metadata")
	}
	if a.Name != b.Name || a.ID != b.ID || a.Seqno != b.Seqno {
		return fmt.Errorf("output: VG %s (%s) seqno %d, the source has %s (%s) seqno %d", b.Name, b.ID, b.Seqno, a.Name, a.ID, a.Seqno)
	}
	if len(a.LVs) != len(b.LVs) {
		return fmt.Errorf("output: VG %s has %d LVs, the source %d", b.Name, len(b.LVs), len(a.LVs))
	}
	for i := range a.LVs {
		if a.LVs[i].Name != b.LVs[i].Name || a.LVs[i].ID != b.LVs[i].ID || a.LVs[i].Size != b.LVs[i].Size {
			return fmt.Errorf("output: LV %s differs from the source's %s", b.LVs[i].Name, a.LVs[i].Name)
		}
	}
	return nil
}
