package luksconv

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/lvm"
)

// Crypt-on-LVM: ADE also encrypts a logical volume of a plain volume group (DiskUtil accepts lvm
// device types): the LUKS device, attached header and all, is the LV, and crypttab names it
// /dev/mapper/<vg>-<lv>. The disk stays an LVM PV; its conversion decrypts the LV's payload and moves
// it to the LV's start, through the LV's extents, and copies everything else of the disk as it is.

// lvTarget names the LV holding a LUKS device.
type lvTarget struct{ vg, lv string }

// lvVolume is an LV holding a LUKS device, on a plain PV of the disk.
type lvVolume struct {
	name string        // "vg/lv"
	part PartitionInfo // the PV's partition (partition 0: the whole disk)
	pv   *lvm.PV       // read from the plain disk
	lv   *lvm.LV
}

// toOut maps LV bytes to output (= source) bytes: the PV's extents.
func (l *lvVolume) toOut(off, n int64) ([]extent.Range, error) {
	ext, err := l.pv.Map(l.lv, off, n)
	if err != nil {
		return nil, err
	}
	out := make([]extent.Range, 0, len(ext))
	for _, e := range ext {
		out = append(out, extent.Range{Off: l.part.Offset + e.PVOff, Len: e.Len})
	}
	return out, nil
}

// diskPV is a plain (unencrypted) LVM PV on a disk.
type diskPV struct {
	part PartitionInfo
	pv   *lvm.PV
	r    io.ReaderAt // the PV's bytes
}

// plainPVs reads the disk's partition table (a disk without one may be a PV itself, partition 0)
// and returns the report and the LVM PVs with volume group metadata on it, unencrypted.
func plainPVs(ctx context.Context, src *Source) (*Report, []diskPV, error) {
	rep, err := readPartitions(ctx, src, false)
	if err != nil {
		return nil, nil, err
	}
	var pvs []diskPV
	for _, pi := range rep.Partitions {
		if pi.Content != ContentLVM2 {
			continue
		}
		r := io.NewSectionReader(src, pi.Offset, pi.Size)
		pv, err := lvm.Open(r, pi.Size)
		if err != nil || pv.VG == nil {
			continue
		}
		pvs = append(pvs, diskPV{part: pi, pv: pv, r: r})
	}
	return rep, pvs, nil
}

// findLV finds LV vg/lv on a plain PV of the disk. The LV must lie on that PV alone.
func findLV(ctx context.Context, src *Source, vg, lv string) (*Report, *lvVolume, error) {
	rep, pvs, err := plainPVs(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range pvs {
		if d.pv.VG.Name != vg {
			continue
		}
		l, ok := d.pv.VG.LV(lv)
		if !ok {
			return nil, nil, fmt.Errorf("%w: volume group %s on partition %d has no logical volume %s", ErrNothingToConvert, vg, d.part.Number, lv)
		}
		if err := d.pv.Holds(l); err != nil {
			return nil, nil, fmt.Errorf("LV %s/%s (a LUKS device) is not all on partition %d: %w", vg, lv, d.part.Number, err)
		}
		// All on this PV, several stripes are stripes over this one PV, which lvcreate never makes; in
		// small chunks they would make the payload's plan a region per chunk (millions per TiB).
		for _, s := range l.Segments {
			if len(s.Stripes) > 1 {
				return nil, nil, fmt.Errorf("%w: LV %s/%s (a LUKS device) is striped %d times over one PV (partition %d) at extent %d",
					lvm.ErrUnsupported, vg, lv, len(s.Stripes), d.part.Number, s.StartExtent)
			}
		}
		return rep, &lvVolume{name: vg + "/" + lv, part: d.part, pv: d.pv, lv: l}, nil
	}
	return nil, nil, fmt.Errorf("%w: no volume group %s on this disk", ErrNothingToConvert, vg)
}

// lvRegions lays out the output of a volume inside an LV: the disk copied, except the LV's extents,
// where the payload's plaintext comes first (each piece decrypted from wherever its ciphertext lies,
// at its own IV) and the rest of the LV (the header's old room) is zeros.
func (v *volume) lvRegions() ([]Region, error) {
	l, src := v.lv, v.src
	dst, err := l.pv.Map(l.lv, 0, v.payLen)
	if err != nil {
		return nil, err
	}
	from, err := l.pv.Map(l.lv, v.payOff, v.payLen)
	if err != nil {
		return nil, err
	}
	base := l.part.Offset
	var over []Region
	// Walk both maps by payload offset, cutting where either changes extent.
	i, j := 0, 0
	for pos := int64(0); pos < v.payLen; {
		for dst[i].LVOff+dst[i].Len <= pos {
			i++
		}
		for from[j].LVOff-v.payOff+from[j].Len <= pos {
			j++
		}
		d, f := dst[i], from[j]
		n := min(d.LVOff+d.Len, f.LVOff-v.payOff+f.Len) - pos
		over = append(over, Region{Kind: Decrypt, Offset: base + d.PVOff + pos - d.LVOff, Length: n,
			Source: base + f.PVOff + pos - (f.LVOff - v.payOff), IV: v.h.IV(pos)})
		pos += n
	}
	if tail := l.lv.Size - v.payLen; tail > 0 {
		rs, err := l.toOut(v.payLen, tail)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			over = append(over, Region{Kind: Zero, Offset: r.Off, Length: r.Len, Reason: "LUKS header space"})
		}
	}
	sort.Slice(over, func(a, b int) bool { return over[a].Offset < over[b].Offset })
	var regions []Region
	pos := int64(0)
	for _, r := range over {
		regions = append(regions, copyRegions(src, pos, r.Offset-pos)...)
		regions = append(regions, r)
		pos = r.Offset + r.Length
	}
	return append(regions, copyRegions(src, pos, src.Size-pos)...), nil
}

// lvUsedOnly is usedOnly for a volume inside an LV: the free space of the disk's other filesystems
// (partitions, and the PV's other LVs), the PV's free extents, and the free space of the filesystem
// in the decrypted LV.
func (v *volume) lvUsedOnly(done map[string]bool) (spans, logs []span, warns []Warning) {
	l, p := v.lv, v.p
	spans, warns = partitionsFree(v.src, v.rep.Partitions, l.part.Number)
	pvName := fmt.Sprintf("partition %d (LVM PV)", l.part.Number)
	s, lg, w := lvmFree(io.NewSectionReader(v.src, l.part.Offset, l.part.Size), l.part.Size, l.part.Offset, l.part.Offset,
		pvName, "copied in full", done)
	spans, logs, warns = append(spans, s...), append(logs, lg...), append(warns, w...)
	switch v.content {
	case ContentXFS, ContentExt4:
		s, lg, err := fsFree(v.analysed, v.payLen, v.content, func(off, n int64, why string) []span {
			rs, err := l.toOut(off, n)
			if err != nil {
				return nil
			}
			o := make([]span, 0, len(rs))
			for _, r := range rs {
				o = append(o, span{r.Off, r.Len, why + ": LV " + l.name})
			}
			return o
		})
		if err != nil {
			warns = append(warns, warning(WarnCopiedInFull, "decrypted in full: %v",
				layerErr("LV "+l.name+" (decrypted)", p.Volume.PayloadOffset, nil, err)))
		}
		spans, logs = append(spans, s...), append(logs, lg...)
	case ContentLVM2:
		// LVM inside the LUKS volume inside the LV: its spans, in plaintext offsets, go through the LV.
		s, lg, w := lvmFree(v.analysed, v.payLen, 0, -1, "LV "+l.name+" (decrypted)", "decrypted in full", done)
		remap := func(in []span) []span {
			var out []span
			for _, sp := range in {
				rs, err := l.toOut(sp.off, sp.n)
				if err != nil {
					continue
				}
				for _, r := range rs {
					out = append(out, span{r.Off, r.Len, sp.why})
				}
			}
			return out
		}
		spans, logs, warns = append(spans, remap(s)...), append(logs, remap(lg)...), append(warns, w...)
	}
	return spans, logs, warns
}

// lvDevice parses a crypttab device that names an LV: /dev/mapper/<vg>-<lv> (dashes inside either name
// doubled, as device-mapper writes them) or /dev/<vg>/<lv>.
func lvDevice(dev string) (vg, lv string, ok bool) {
	if name, found := strings.CutPrefix(dev, "/dev/mapper/"); found {
		// The first single dash separates the VG from the LV.
		for i := 0; i < len(name); i++ {
			if name[i] != '-' {
				continue
			}
			if i+1 < len(name) && name[i+1] == '-' {
				i++
				continue
			}
			vg, lv = strings.ReplaceAll(name[:i], "--", "-"), strings.ReplaceAll(name[i+1:], "--", "-")
			if vg == "" || lv == "" {
				return "", "", false
			}
			return vg, lv, true
		}
		return "", "", false
	}
	rest, found := strings.CutPrefix(dev, "/dev/")
	if !found {
		return "", "", false
	}
	f := strings.Split(rest, "/")
	if len(f) != 2 || f[0] == "" || f[1] == "" || f[0] == "disk" || f[0] == "mapper" || f[0] == "md" {
		return "", "", false
	}
	return f[0], f[1], true
}
