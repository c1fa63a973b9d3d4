package luksconv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/luksconv/luksconv/gpt"
	"github.com/luksconv/luksconv/lvm"
	"github.com/luksconv/luksconv/mbr"
	"github.com/luksconv/luksconv/vhd"
	"github.com/luksconv/luksconv/xfs"
)

// ErrVerifyFailed reports an output that differs from what its plan describes.
var ErrVerifyFailed = errors.New("luksconv: output does not match the plan")

// VerifyOptions tune Verify. The zero value is usable.
type VerifyOptions struct {
	// Workers is the number of chunks compared in parallel (default: the number of CPUs).
	Workers int
	// ChunkSize is the unit of work in bytes, a multiple of 4096 (default DefaultChunkSize).
	ChunkSize int
	// MaxMismatches caps the mismatching ranges listed in the report (default 20); all are counted.
	MaxMismatches int
}

// Mismatch is a range of the output whose bytes differ from the expected ones.
type Mismatch struct {
	Offset int64      `json:"offset"` // in the output
	Length int64      `json:"length"`
	Kind   RegionKind `json:"kind"`          // the kind of the region the range lies in
	Region int64      `json:"region_offset"` // that region's output offset
	// Patch is the reason of a patch the range overlaps, if any.
	Patch string `json:"patch,omitempty"`
}

// StructureCheck is one consistency check of the output's metadata against the source's.
type StructureCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Pass bool `json:"pass"`
	// Checked counts the output bytes compared, by region kind; Patched the patch bytes among them.
	Checked Totals `json:"checked"`
	Patched int64  `json:"patched"`
	// Mismatches lists the first mismatching ranges by offset; MismatchCount and MismatchBytes count all.
	Mismatches    []Mismatch       `json:"mismatches,omitempty"`
	MismatchCount int              `json:"mismatch_count"`
	MismatchBytes int64            `json:"mismatch_bytes"`
	Structure     []StructureCheck `json:"structure"`
	Duration      time.Duration    `json:"duration_ns"`
}

// Verify re-reads out, an output written by Execute from p and src, and compares every byte with what
// Execute would have produced: Copy regions with the source, Decrypt regions with a fresh decryption of
// the source, Zero regions with zeros, each with the plan's patches overlaid. It then checks the output's
// GPT, LVM metadata and XFS superblocks against the source's. A mismatch is reported, not returned as an
// error; errors are reserved for outputs that cannot be read (a truncated output wraps ErrTruncated).
// Memory use is Workers × 2 × ChunkSize.
func Verify(ctx context.Context, p *Plan, src io.ReaderAt, out io.ReaderAt, opts VerifyOptions) (*VerifyReport, error) {
	if p.cipher == nil {
		return nil, errors.New("luksconv: plan has no unlocked key (closed, or decoded from JSON)")
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	chunk := opts.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	if chunk%4096 != 0 {
		return nil, fmt.Errorf("chunk size %d is not a multiple of 4096: %w", chunk, ErrUsage)
	}
	maxMis := opts.MaxMismatches
	if maxMis <= 0 {
		maxMis = 20
	}
	// Output ranges that read as zero without being read (pages a page blob never wrote).
	var holes func(off, n int64) bool
	if a, ok := out.(interface{ Allocated() []vhd.Extent }); ok {
		ext := a.Allocated()
		holes = func(off, n int64) bool {
			i := sort.Search(len(ext), func(i int) bool { return ext[i].Off+ext[i].Len > off })
			return i == len(ext) || ext[i].Off >= off+n
		}
	}

	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rep := &VerifyReport{}
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	type vjob struct {
		r      *Region
		off, s int64 // output and source offsets
		n      int
		iv     uint64
	}
	jobs := make(chan vjob, workers)
	go func() {
		defer close(jobs)
		for i := range p.Regions {
			r := &p.Regions[i]
			for o := int64(0); o < r.Length; o += int64(chunk) {
				j := vjob{r: r, off: r.Offset + o, s: r.Source + o, n: int(min(int64(chunk), r.Length-o))}
				if r.Kind == Decrypt {
					j.iv = r.IV + uint64(o/512)
				}
				select {
				case jobs <- j:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want, got := make([]byte, chunk), make([]byte, chunk)
			defer clear(want) // plaintext
			defer clear(got)
			for j := range jobs {
				if ctx.Err() != nil {
					continue
				}
				w, g := want[:j.n], got[:j.n]
				if j.r.Kind == Zero {
					clear(w)
				} else {
					if _, err := src.ReadAt(w, j.s); err != nil {
						if err == io.EOF {
							err = fmt.Errorf("source ends before byte %d: %w", j.s+int64(j.n), ErrTruncated)
						}
						fail(fmt.Errorf("reading source at %d: %w", j.s, err))
						continue
					}
					if j.r.Kind == Decrypt {
						decryptChunk(p.cipher, w, j.iv, j.r.ZeroCiphertextAsZero)
					}
				}
				p.applyPatches(w, j.off)
				if holes != nil && holes(j.off, int64(j.n)) {
					clear(g)
				} else if n, err := out.ReadAt(g, j.off); err != nil {
					if err == io.EOF || n < len(g) {
						err = fmt.Errorf("output ends before byte %d of %d: %w", j.off+int64(j.n), p.OutputSize, ErrTruncated)
					}
					fail(fmt.Errorf("reading output at %d: %w", j.off, err))
					continue
				}
				mis := p.diff(w, g, j.off, j.r)
				patched := p.patchBytes(j.off, int64(j.n))
				mu.Lock()
				switch j.r.Kind {
				case Copy:
					rep.Checked.Copy += int64(j.n)
				case Decrypt:
					rep.Checked.Decrypt += int64(j.n)
				case Zero:
					rep.Checked.Zero += int64(j.n)
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
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	sortMismatches(rep.Mismatches)
	if len(rep.Mismatches) > maxMis {
		rep.Mismatches = rep.Mismatches[:maxMis]
	}
	rep.Structure = p.checkStructure(src, out)
	rep.Pass = rep.MismatchCount == 0
	for _, c := range rep.Structure {
		rep.Pass = rep.Pass && c.OK
	}
	rep.Duration = time.Since(start)
	return rep, nil
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
		m := Mismatch{Offset: off + int64(s), Length: int64(e - s), Kind: r.Kind, Region: r.Offset}
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

// plainReader decrypts the volume's payload in the source on the fly, with the plan's cipher.
type plainReader struct {
	p    *Plan
	src  io.ReaderAt
	iv0  uint64
	size int64
}

func (r *plainReader) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= r.size {
		return 0, io.EOF
	}
	ss := int64(r.p.cipher.SectorSize())
	end := min(off+int64(len(b)), r.size)
	s, e := off/ss*ss, (end+ss-1)/ss*ss
	if e-s > 64<<20 {
		return 0, fmt.Errorf("luksconv: read of %d bytes too large", e-s)
	}
	buf := make([]byte, e-s)
	defer clear(buf)
	if _, err := r.src.ReadAt(buf, r.p.Volume.PayloadOffset+s); err != nil {
		return 0, err
	}
	r.p.cipher.Decrypt(buf, buf, r.iv0+uint64(s/512))
	n := copy(b, buf[off-s:end-s])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// checkStructure compares the output's partition table (GPT or DOS), the LVM metadata in its converted partition and the XFS
// superblocks it holds with the source's.
func (p *Plan) checkStructure(src, out io.ReaderAt) []StructureCheck {
	var checks []StructureCheck
	add := func(name string, err error, detail string) {
		c := StructureCheck{Name: name, OK: err == nil, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		checks = append(checks, c)
	}
	parts, ok := p.checkTable(src, out, add)
	if !ok {
		return checks
	}

	// The converted partition's plaintext, in the source (decrypted afresh) and in the output.
	var gp extent
	ok = false
	for _, e := range parts {
		if e.Number == p.Volume.Partition {
			gp, ok = e, true
		}
	}
	var iv0 uint64
	found := false
	for _, r := range p.Regions {
		if r.Kind == Decrypt {
			iv0, found = r.IV-uint64((r.Offset-gp.Offset)/512), true
			break
		}
	}
	if !ok || !found {
		return checks
	}
	srcPlain := &plainReader{p: p, src: src, iv0: iv0, size: p.Volume.PayloadSize}
	outPlain := io.NewSectionReader(out, gp.Offset, p.Volume.PayloadSize)
	type fsPair struct {
		name     string
		src, out io.ReaderAt
		size     int64
	}
	var fss []fsPair
	for _, part := range parts {
		if part.Number != p.Volume.Partition {
			fss = append(fss, fsPair{fmt.Sprintf("partition %d", part.Number),
				io.NewSectionReader(src, part.Offset, part.Size), io.NewSectionReader(out, part.Offset, part.Size), part.Size})
		}
	}
	switch Content(p.Volume.Content) {
	case ContentXFS:
		fss = append(fss, fsPair{fmt.Sprintf("partition %d", p.Volume.Partition), srcPlain, outPlain, p.Volume.PayloadSize})
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
		sfs, err := xfs.Open(f.src, f.size)
		if err != nil {
			continue // not XFS in the source: nothing to check
		}
		ofs, err := xfs.Open(f.out, f.size)
		if err == nil && ofs.SB.UUID != sfs.SB.UUID {
			err = fmt.Errorf("output: superblock UUID %x differs from the source's %x", ofs.SB.UUID, sfs.SB.UUID)
		}
		if err == nil {
			_, err = ofs.ReadDir("/")
		}
		add("xfs "+f.name, err, fmt.Sprintf("superblock and root directory readable, %d blocks", ofs.SB.DBlocks))
	}
	return checks
}

// extent is where a partition lies, whichever table describes it.
type extent struct {
	Number       int
	Offset, Size int64
}

// checkTable compares the output's partition table with the source's (a GPT, or else a DOS table) and
// returns the source's partitions; ok is false when the source's table cannot be read.
func (p *Plan) checkTable(src, out io.ReaderAt, add func(string, error, string)) (parts []extent, ok bool) {
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
	if err == nil && len(ot.Warnings) > 0 {
		err = fmt.Errorf("output: %s", ot.Warnings[0])
	}
	if err == nil {
		err = samePartitions(st.Partitions, ot.Partitions)
	}
	add("gpt", err, fmt.Sprintf("%d partitions as in the source", len(st.Partitions)))
	for _, gp := range st.Partitions {
		parts = append(parts, extent{gp.Number, gp.Offset, gp.Size})
	}
	return parts, true
}

// checkMBR compares the output's DOS partition table with the source's sm and returns the source's
// partitions other than extended containers.
func (p *Plan) checkMBR(sm *mbr.Table, out io.ReaderAt, add func(string, error, string)) []extent {
	om, err := mbr.Read(out, p.OutputSize, sm.SectorSize)
	if err == nil {
		err = sameMBR(sm, om)
	}
	add("mbr", err, fmt.Sprintf("%d partitions as in the source", len(sm.Partitions)))
	var parts []extent
	for _, mp := range sm.Partitions {
		if !mbr.IsExtended(mp.Type) {
			parts = append(parts, extent{mp.Number, mp.Start, mp.Size})
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
