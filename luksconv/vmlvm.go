package luksconv

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/luksconv/luksconv/lvm"
)

// Volume groups over several disks of a VM (LVM-on-crypt: a PV in each disk's LUKS volume, or plain
// PVs beside them). A disk's own plan sees only its PV; the whole-VM plan checks that every PV such a
// VG lists is among the VM's disks given, and reads the filesystems of LVs that span disks through the
// VG's segment map, so that their free space is skipped on each disk as on one.

// vgMember is a PV of a volume group on one of the VM's data disks, as the output holds it.
type vgMember struct {
	lun       int
	pv        *lvm.PV
	r         io.ReaderAt // the PV's plaintext
	out       int64       // output offset of the PV's byte 0 on its disk
	encrypted bool        // inside the disk's LUKS volume (LVM-on-crypt)
}

// vmVGs is what the whole-VM plan found in the volume groups spanning disks, per LUN.
type vmVGs struct {
	free, logs map[int][]span
	lvs        map[int]map[string]bool // the LVs read here ("vg/lv"), left out of each disk's analysis
	warnings   []Warning
}

// lunOfLV finds the data disk whose plain PV holds all of LV vg/lv (crypt-on-LVM); found is false
// when no disk holds a volume group called vg with that LV.
func lunOfLV(plain map[int][]diskPV, vg, lv string) (lun int, found bool, err error) {
	luns := make([]int, 0, len(plain))
	for l := range plain {
		luns = append(luns, l)
	}
	sort.Ints(luns)
	var hits []int
	spans := false
	for _, l := range luns {
		for _, d := range plain[l] {
			x, ok := d.pv.VG.LV(lv)
			if d.pv.VG.Name != vg || !ok {
				continue
			}
			if err := d.pv.Holds(x); err != nil {
				spans = true
				continue
			}
			hits = append(hits, l)
		}
	}
	switch {
	case len(hits) > 1:
		return 0, false, fmt.Errorf("%w: LUNs %d and %d both hold a volume group %s with an LV %s", ErrAmbiguous, hits[0], hits[1], vg, lv)
	case len(hits) == 1:
		return hits[0], true, nil
	case spans:
		return 0, false, fmt.Errorf("%w: the LUKS device %s/%s is an LV over several PVs; only an LV on one disk is converted", lvm.ErrUnsupported, vg, lv)
	}
	return 0, false, nil
}

// vmVolumeGroups checks the volume groups on the opened data disks — the PVs in their decrypted
// volumes and their plain PVs — and reads the filesystems of the LVs that span several disks. A VG
// inside a decrypted volume that lists a PV on none of the disks is ErrMissingDisk: converting the
// others alone would leave the VG without it.
func vmVolumeGroups(opened []*openedDisk, plain map[int][]diskPV) (*vmVGs, error) {
	res := &vmVGs{free: map[int][]span{}, logs: map[int][]span{}, lvs: map[int]map[string]bool{}}
	byVG := map[string][]vgMember{}
	var order []string
	add := func(m vgMember) {
		id := m.pv.VG.ID
		if _, ok := byVG[id]; !ok {
			order = append(order, id)
		}
		byVG[id] = append(byVG[id], m)
	}
	for _, o := range opened {
		v := o.v
		if v.content != ContentLVM2 || v.lv != nil {
			continue
		}
		pv, err := lvm.Open(v.analysed, v.payLen)
		if err != nil || pv.VG == nil {
			continue // the disk's own analysis warns
		}
		add(vgMember{lun: o.lun, pv: pv, r: v.analysed, out: v.gp.Offset, encrypted: true})
	}
	luns := make([]int, 0, len(plain))
	for l := range plain {
		luns = append(luns, l)
	}
	sort.Ints(luns)
	for _, l := range luns {
		for _, d := range plain[l] {
			add(vgMember{lun: l, pv: d.pv, r: d.r, out: d.part.Offset})
		}
	}

	for _, id := range order {
		ms := byVG[id]
		first := -1
		for i, m := range ms {
			if m.encrypted {
				first = i
				break
			}
		}
		if first < 0 {
			continue // a plain VG: its disks not given stay as they are, and so does it
		}
		vg := ms[0].pv.VG
		for _, m := range ms[1:] {
			if m.pv.VG.Seqno > vg.Seqno {
				vg = m.pv.VG
			}
		}
		byName := map[string]vgMember{}
		for _, info := range vg.PVs {
			var hit *vgMember
			for i := range ms {
				if self, ok := ms[i].pv.Info(); ok && sameLVMID(self.ID, info.ID) {
					hit = &ms[i]
					break
				}
			}
			if hit == nil {
				m := ms[first]
				self, _ := m.pv.Info()
				dev := ""
				if info.Device != "" {
					dev = ", last seen as " + info.Device
				}
				return nil, fmt.Errorf("LUN %d: %w: its volume group %s (PV %s here) also has PV %s (UUID %s%s), which is on none of the disks given: "+
					"converted without it the volume group cannot be activated", m.lun, ErrMissingDisk, vg.Name, self.Name, info.Name, info.ID, dev)
			}
			byName[info.Name] = *hit
		}
		components := vg.Components()
		for i := range vg.LVs {
			readSpanningLV(res, vg, &vg.LVs[i], byName, components[vg.LVs[i].Name])
		}
	}
	return res, nil
}

// readSpanningLV reads the filesystem of lv when its extents lie on PVs of more than one disk, and
// files its free space and XFS log under each disk. LVs on one disk are left to that disk's analysis.
// A component (lvm.VG.Components) keeps its free space, as in lvmFree.
func readSpanningLV(res *vmVGs, vg *lvm.VG, lv *lvm.LV, byName map[string]vgMember, component bool) {
	// PVRanges, not Map: where the bytes lie is all that is needed, and Map gives a piece per stripe
	// chunk (millions for a striped LV of some TiB).
	ext, err := vg.PVRanges(lv, 0, lv.Size)
	if err != nil {
		return // each disk's analysis says why
	}
	disks := map[int]bool{}
	for _, e := range ext {
		disks[byName[e.PV].lun] = true
	}
	if len(disks) < 2 {
		return
	}
	name := vg.Name + "/" + lv.Name
	for l := range disks {
		if res.lvs[l] == nil {
			res.lvs[l] = map[string]bool{}
		}
		res.lvs[l][name] = true
	}
	r := io.NewSectionReader(&vgLVReader{vg: vg, lv: lv, pvs: byName}, 0, lv.Size)
	head := make([]byte, probeSize)
	n, _ := r.ReadAt(head, 0)
	c := probeBytes(head[:n])
	if c != ContentXFS && c != ContentExt4 {
		return
	}
	if component {
		res.warnings = append(res.warnings, componentCopied("", name))
		return
	}
	var free, logs map[int][]span = map[int][]span{}, map[int][]span{}
	_, _, err = fsFree(r, lv.Size, c, func(off, n int64, why string) []span {
		ext, err := vg.PVRanges(lv, off, n)
		if err != nil {
			return nil
		}
		to := free
		if why == "xfs log" {
			to = logs
		}
		for _, e := range ext {
			m := byName[e.PV]
			to[m.lun] = append(to[m.lun], span{m.out + e.PVOff, e.Len, why + ": " + name})
		}
		return nil
	})
	if err != nil {
		luns := make([]string, 0, len(disks))
		for l := range disks {
			luns = append(luns, fmt.Sprint(l))
		}
		sort.Strings(luns)
		res.warnings = append(res.warnings, warning(WarnCopiedInFull, "LV %s (on LUNs %s) decrypted in full: %v", name, strings.Join(luns, ", "), err))
		return
	}
	for l, s := range free {
		res.free[l] = append(res.free[l], s...)
	}
	for l, s := range logs {
		res.logs[l] = append(res.logs[l], s...)
	}
}

// vgLVReader reads an LV through its VG's segment map, each piece from the PV holding it.
type vgLVReader struct {
	vg  *lvm.VG
	lv  *lvm.LV
	pvs map[string]vgMember
}

func (l *vgLVReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= l.lv.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), l.lv.Size-off)
	ext, err := l.vg.Map(l.lv, off, want)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, e := range ext {
		m, ok := l.pvs[e.PV]
		if !ok {
			return done, fmt.Errorf("LV %s: PV %s is not among the disks", l.lv.Name, e.PV)
		}
		k, err := m.r.ReadAt(p[e.LVOff-off:e.LVOff-off+e.Len], e.PVOff)
		done += k
		if int64(k) < e.Len {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
	if want < int64(len(p)) {
		return done, io.EOF
	}
	return done, nil
}

// sameLVMID compares two LVM UUIDs with or without their dashes.
func sameLVMID(a, b string) bool {
	return a != "" && strings.ReplaceAll(a, "-", "") == strings.ReplaceAll(b, "-", "")
}
