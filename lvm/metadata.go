package lvm

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// SectorSize is the unit of extent_size, pe_start, dev_size and stripe_size
// in the text metadata.
const SectorSize = 512

// Bounds on metadata values, so that byte arithmetic cannot overflow int64.
// LVM itself stores extents and extent sizes as 32-bit numbers.
const (
	maxExtentCount = math.MaxUint32
	maxSectors     = 1 << 53 // 4 EiB; beyond any device
)

// VG is a volume group as described by the text metadata.
type VG struct {
	Name       string   // the VG name: the key of the text's top-level section
	ID         string   // dashed, as in the text
	Seqno      int      // metadata sequence number; lvm raises it on every change
	Status     []string // the status flags ("RESIZEABLE", "READ", "WRITE", ...)
	ExtentSize int64    // bytes
	PVs        []PVInfo // the physical_volumes section, in text order
	LVs        []LV     // the logical_volumes section, in text order
	Raw        string   // the metadata text (without the terminating NUL)

	// pvIndex is each PV's index in PVs by name, as parsed: a text may list 100k PVs and name them in
	// 250k stripes, and scanning PVs for each took minutes.
	pvIndex map[string]int
	// lvIndex is each LV's index in LVs by name, as parsed: Verify looks each of a VG's LVs up by
	// name, and scanning 30k LVs for each took a second.
	lvIndex map[string]int
}

// PVInfo is one entry of the VG's physical_volumes section.
type PVInfo struct {
	Name    string   // "pv0", the name segments refer to
	ID      string   // dashed, as in the text
	Device  string   // last known device path; a hint only
	Status  []string // the status flags ("ALLOCATABLE", ...)
	PEStart int64    // bytes from the start of the PV to extent 0
	PECount int64    // number of extents (of VG.ExtentSize bytes) on the PV
	DevSize int64    // bytes; 0 when absent
}

// LV is a logical volume. Segments are sorted by StartExtent and cover
// extents 0..Extents()-1 without gaps.
type LV struct {
	Name     string    // the LV name: the key of its section ("root")
	ID       string    // dashed, as in the text
	Status   []string  // the status flags ("READ", "WRITE", "VISIBLE", ...)
	Segments []Segment // the segment subsections, sorted by StartExtent
	Size     int64     // bytes
}

// Segment maps LV extents [StartExtent, StartExtent+ExtentCount) to
// storage. A linear segment is Type "striped" with one stripe.
type Segment struct {
	StartExtent int64    // first LV extent the segment maps
	ExtentCount int64    // number of LV extents it maps
	Type        string   // "striped", "linear", "thin", "raid1", ...
	Stripes     []Stripe // the "stripes" array of striped/linear segments
	StripeSize  int64    // bytes; 0 for a single stripe
	// Areas lists every (volume, extent) pair found in the other area arrays
	// of the segment ("mirrors", "raids", ...), so that FreeRanges can treat
	// extents they name as used even for segment types Map refuses.
	Areas []Stripe
	// Names are the string values of the other segment types' fields (not
	// "type"): the volumes they name, such as a snapshot's origin and
	// cow_store or a thin pool's pool and metadata LVs. An LV named there
	// is read through another LV, not only on its own.
	Names []string
}

// Stripe is one area of a segment: a PV (or, for stacked LVs, an LV) name
// from the VG and the first extent on it.
type Stripe struct {
	PV          string // PVInfo.Name ("pv0"), or an LV name for a stacked LV
	StartExtent int64  // first extent on that volume (PV extents count from PEStart)
}

// Components returns the names of the VG's LVs that other LVs name in their
// segments: the origin and COW store of a snapshot, a thin pool's data and
// metadata LVs, RAID images and metadata, the LVs under stacked segments.
// Such an LV's bytes are read through the LV naming it (a snapshot reads
// the origin's blocks it has not copied), so what its own content says of
// itself, such as a filesystem's free space, is not all that is in use.
func (vg *VG) Components() map[string]bool {
	lvs := map[string]bool{}
	for _, lv := range vg.LVs {
		lvs[lv.Name] = true
	}
	out := map[string]bool{}
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			for _, a := range slices.Concat(s.Stripes, s.Areas) {
				if lvs[a.PV] {
					out[a.PV] = true
				}
			}
			for _, n := range s.Names {
				if lvs[n] {
					out[n] = true
				}
			}
		}
	}
	return out
}

// Extents returns the LV's length in extents.
func (lv *LV) Extents() int64 {
	if len(lv.Segments) == 0 {
		return 0
	}
	s := lv.Segments[len(lv.Segments)-1]
	return s.StartExtent + s.ExtentCount
}

// Visible reports whether the LV carries the VISIBLE flag (hidden LVs are
// the components of thin pools, RAID, mirrors and the like).
func (lv *LV) Visible() bool { return hasFlag(lv.Status, "VISIBLE") }

// LV returns the logical volume called name.
func (vg *VG) LV(name string) (*LV, bool) {
	// The index is a hint, as in PV: LVs may have been changed since the parse.
	if i, ok := vg.lvIndex[name]; ok && i < len(vg.LVs) && vg.LVs[i].Name == name {
		return &vg.LVs[i], true
	}
	for i := range vg.LVs {
		if vg.LVs[i].Name == name {
			return &vg.LVs[i], true
		}
	}
	return nil, false
}

// PV returns the physical volume entry called name ("pv0").
func (vg *VG) PV(name string) (*PVInfo, bool) {
	// The index is a hint: PVs may have been changed since the parse.
	if i, ok := vg.pvIndex[name]; ok && i < len(vg.PVs) && vg.PVs[i].Name == name {
		return &vg.PVs[i], true
	}
	for i := range vg.PVs {
		if vg.PVs[i].Name == name {
			return &vg.PVs[i], true
		}
	}
	return nil, false
}

// pvByUUID finds the PV whose id matches uuid (compared without dashes).
func (vg *VG) pvByUUID(uuid string) (*PVInfo, bool) {
	for i := range vg.PVs {
		if strings.ReplaceAll(vg.PVs[i].ID, "-", "") == uuid {
			return &vg.PVs[i], true
		}
	}
	return nil, false
}

func hasFlag(list []string, f string) bool {
	for _, s := range list {
		if s == f {
			return true
		}
	}
	return false
}

// ParseMetadata parses VG metadata text as found in a metadata area or
// written by vgcfgbackup. Errors are *FormatError with Structure
// "metadata text" and Offset 0; Open reports the device offset instead.
// Besides syntax and ranges it refuses what lvm2 refuses as corrupt:
// two PVs with one id, segments that do not tile their LV, stripe areas
// past their PV's pe_count, and stripe areas that share PV extents.
func ParseMetadata(text []byte) (*VG, error) {
	vg, err := parseVG(text)
	if err != nil {
		return nil, &FormatError{Structure: "metadata text", Offset: 0, Reason: err.Error()}
	}
	return vg, nil
}

// parseVG parses and validates one metadata text; errors carry no
// structure name so callers can place them.
func parseVG(text []byte) (*VG, error) {
	if len(text) > MaxTextSize {
		return nil, fmt.Errorf("text is %d bytes, more than %d", len(text), MaxTextSize)
	}
	root, err := parseConfig(text)
	if err != nil {
		return nil, err
	}
	// Top-level values describe the file; the one top-level section is the VG.
	if c := root.get("contents"); c != nil {
		if s, ok := strVal(c); !ok || s != "Text Format Volume Group" {
			return nil, fmt.Errorf("line %d: contents is not \"Text Format Volume Group\"", c.line)
		}
	}
	if v := root.get("version"); v != nil {
		if i, ok := intVal(v); !ok || i != 1 {
			return nil, fmt.Errorf("line %d: unsupported metadata version", v.line)
		}
	}
	var vgn *node
	for _, c := range root.children {
		if c.section {
			if vgn != nil {
				return nil, fmt.Errorf("line %d: second volume group section %q", c.line, c.key)
			}
			vgn = c
		}
	}
	if vgn == nil {
		return nil, fmt.Errorf("no volume group section")
	}
	raw := text
	if i := bytes.IndexByte(raw, 0); i >= 0 {
		raw = raw[:i] // the parser stops at the terminating NUL too
	}
	vg := &VG{Name: vgn.key, Raw: string(raw), pvIndex: map[string]int{}, lvIndex: map[string]int{}}
	d := decoder{where: "volume group " + vg.Name}
	vg.ID = d.str(vgn, "id", true)
	vg.Seqno = int(d.int(vgn, "seqno", 0, math.MaxInt32, true))
	vg.Status = d.strList(vgn, "status")
	vg.ExtentSize = d.int(vgn, "extent_size", 1, math.MaxUint32, true) * SectorSize
	if d.err != nil {
		return nil, d.err
	}

	pvs := vgn.get("physical_volumes")
	if pvs == nil || !pvs.section {
		return nil, fmt.Errorf("volume group %s: no physical_volumes section", vg.Name)
	}
	names := map[string]bool{}
	ids := map[string]string{} // PV name by id without dashes
	for _, pn := range pvs.children {
		if !pn.section {
			continue
		}
		d := decoder{where: "physical volume " + pn.key}
		pv := PVInfo{Name: pn.key}
		pv.ID = d.str(pn, "id", true)
		pv.Device = d.str(pn, "device", false)
		pv.Status = d.strList(pn, "status")
		pv.DevSize = d.int(pn, "dev_size", 0, maxSectors, false) * SectorSize
		pv.PEStart = d.int(pn, "pe_start", 0, maxSectors, true) * SectorSize
		pv.PECount = d.int(pn, "pe_count", 0, maxExtentCount, true)
		if d.err != nil {
			return nil, d.err
		}
		if pv.PECount > (math.MaxInt64/4-pv.PEStart)/vg.ExtentSize {
			return nil, fmt.Errorf("line %d: physical volume %s: pe_count %d too large", pn.line, pv.Name, pv.PECount)
		}
		if names[pv.Name] {
			return nil, fmt.Errorf("line %d: physical volume %s listed twice", pn.line, pv.Name)
		}
		// lvm2 refuses this too (vg_validate): Open matches a PV to its entry by id, so a second
		// entry would be the same disk under another name, its LVs' extents on the first's.
		id := strings.ReplaceAll(pv.ID, "-", "")
		if other, dup := ids[id]; dup {
			return nil, fmt.Errorf("line %d: physical volumes %s and %s have the same id %s", pn.line, other, pv.Name, pv.ID)
		}
		ids[id] = pv.Name
		names[pv.Name] = true
		vg.pvIndex[pv.Name] = len(vg.PVs)
		vg.PVs = append(vg.PVs, pv)
	}

	lvNames, segs := map[string]bool{}, 0
	if lvs := vgn.get("logical_volumes"); lvs != nil && lvs.section {
		for _, ln := range lvs.children {
			if !ln.section {
				continue
			}
			if lvNames[ln.key] {
				return nil, fmt.Errorf("line %d: logical volume %s listed twice", ln.line, ln.key)
			}
			lvNames[ln.key] = true
			lv, err := parseLV(ln, vg)
			if err != nil {
				return nil, err
			}
			if segs += len(lv.Segments); segs > MaxSegments {
				return nil, fmt.Errorf("line %d: more than %d segments in the volume group", ln.line, MaxSegments)
			}
			vg.lvIndex[lv.Name] = len(vg.LVs)
			vg.LVs = append(vg.LVs, *lv)
		}
	}
	// Area names may refer to LVs defined later in the text, so check them
	// once all are known (as lvm does, they must name a PV or an LV).
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			for _, a := range append(append([]Stripe(nil), s.Stripes...), s.Areas...) {
				if names[a.PV] || lvNames[a.PV] {
					continue
				}
				return nil, fmt.Errorf("logical volume %s: segment at extent %d refers to unknown volume %q", lv.Name, s.StartExtent, a.PV)
			}
		}
	}
	if err := checkOverlaps(vg); err != nil {
		return nil, err
	}
	return vg, nil
}

// checkOverlaps refuses two stripe areas (of linear and striped segments, what Map maps) that share
// PV extents. lvm2 refuses such metadata ("PV segments corrupted"); a conversion writing each LV to
// its extents would write one LV over another. A pvmove is no exception: the moved LV lies on the
// pvmove LV, whose mirror areas hold the PV extents. It sorts the areas by PV and first extent, so
// 100k segments cost no more than their parse.
func checkOverlaps(vg *VG) error {
	type use struct {
		pv, lv, seg, stripe int32
		lo, hi              int64 // PV extents [lo, hi)
	}
	n := 0
	for _, lv := range vg.LVs {
		for _, s := range lv.Segments {
			n += len(s.Stripes)
		}
	}
	uses := make([]use, 0, n)
	for li, lv := range vg.LVs {
		for si, s := range lv.Segments {
			if len(s.Stripes) == 0 {
				continue
			}
			per := s.ExtentCount / int64(len(s.Stripes))
			for k, st := range s.Stripes {
				pi, ok := vg.pvIndex[st.PV]
				if !ok || per == 0 {
					continue // an area on an LV (stacked), or an empty one
				}
				uses = append(uses, use{int32(pi), int32(li), int32(si), int32(k), st.StartExtent, st.StartExtent + per})
			}
		}
	}
	slices.SortFunc(uses, func(a, b use) int {
		return cmp.Or(cmp.Compare(a.pv, b.pv), cmp.Compare(a.lo, b.lo), cmp.Compare(a.lv, b.lv), cmp.Compare(a.seg, b.seg), cmp.Compare(a.stripe, b.stripe))
	})
	name := func(u use) string {
		lv := &vg.LVs[u.lv]
		s := &lv.Segments[u.seg]
		if len(s.Stripes) > 1 {
			return fmt.Sprintf("%s (segment at extent %d, stripe %d)", lv.Name, s.StartExtent, u.stripe+1)
		}
		return fmt.Sprintf("%s (segment at extent %d)", lv.Name, s.StartExtent)
	}
	reach := -1 // the use reaching furthest on the current PV so far
	for i, u := range uses {
		if reach >= 0 && uses[reach].pv == u.pv && u.lo < uses[reach].hi {
			r := uses[reach]
			at := fmt.Sprintf("extent %d", u.lo)
			if last := min(u.hi, r.hi) - 1; last > u.lo {
				at = fmt.Sprintf("extents %d..%d", u.lo, last)
			}
			return fmt.Errorf("logical volumes %s and %s both map %s %s", name(r), name(u), vg.PVs[u.pv].Name, at)
		}
		if reach < 0 || uses[reach].pv != u.pv || u.hi > uses[reach].hi {
			reach = i
		}
	}
	return nil
}

func parseLV(ln *node, vg *VG) (*LV, error) {
	d := decoder{where: "logical volume " + ln.key}
	lv := &LV{Name: ln.key}
	lv.ID = d.str(ln, "id", true)
	lv.Status = d.strList(ln, "status")
	count := d.int(ln, "segment_count", 0, maxExtentCount, true)
	if d.err != nil {
		return nil, d.err
	}
	for _, sn := range ln.children {
		if !sn.section { // every subsection is a segment
			continue
		}
		seg, err := parseSegment(sn, lv.Name, vg)
		if err != nil {
			return nil, err
		}
		lv.Segments = append(lv.Segments, seg)
	}
	if int64(len(lv.Segments)) != count {
		return nil, fmt.Errorf("line %d: logical volume %s: segment_count %d but %d segments", ln.line, lv.Name, count, len(lv.Segments))
	}
	// Segments may appear in any order in the text; they must tile the LV
	// from extent 0 without gaps or overlaps (lvm's check_lv_segments).
	sort.SliceStable(lv.Segments, func(i, j int) bool {
		return lv.Segments[i].StartExtent < lv.Segments[j].StartExtent
	})
	var le int64
	for _, s := range lv.Segments {
		if s.StartExtent != le {
			return nil, fmt.Errorf("logical volume %s: segment should begin at extent %d (found %d)", lv.Name, le, s.StartExtent)
		}
		le += s.ExtentCount
	}
	if le > maxExtentCount || le > math.MaxInt64/4/vg.ExtentSize {
		return nil, fmt.Errorf("logical volume %s: %d extents is too large", lv.Name, le)
	}
	lv.Size = le * vg.ExtentSize
	return lv, nil
}

func parseSegment(sn *node, lvName string, vg *VG) (Segment, error) {
	d := decoder{where: "logical volume " + lvName + " " + sn.key}
	var s Segment
	s.StartExtent = d.int(sn, "start_extent", 0, maxExtentCount, true)
	s.ExtentCount = d.int(sn, "extent_count", 0, maxExtentCount, true)
	s.Type = d.str(sn, "type", true)
	if d.err != nil {
		return s, d.err
	}
	if s.Type == "striped" || s.Type == "linear" {
		n := d.int(sn, "stripe_count", 1, 1<<16, true)
		if n != 1 {
			s.StripeSize = d.int(sn, "stripe_size", 1, math.MaxUint32, true) * SectorSize
		}
		st := sn.get("stripes")
		if d.err != nil {
			return s, d.err
		}
		if st == nil || st.val == nil || st.val.kind != kindArray {
			return s, fmt.Errorf("line %d: %s: no stripes array", sn.line, d.where)
		}
		areas, err := areaPairs(st.val.items)
		if err != nil {
			return s, fmt.Errorf("line %d: %s: stripes: %v", st.line, d.where, err)
		}
		if int64(len(areas)) != n {
			return s, fmt.Errorf("line %d: %s: stripe_count %d but %d stripes", st.line, d.where, n, len(areas))
		}
		if s.ExtentCount%n != 0 {
			return s, fmt.Errorf("line %d: %s: extent_count %d is not a multiple of stripe_count %d", sn.line, d.where, s.ExtentCount, n)
		}
		s.Stripes = areas
		per := s.ExtentCount / n
		for _, a := range areas {
			if pv, ok := vg.PV(a.PV); ok && a.StartExtent+per > pv.PECount {
				return s, fmt.Errorf("line %d: %s: extents %d..%d are beyond %s's %d extents", st.line, d.where, a.StartExtent, a.StartExtent+per-1, a.PV, pv.PECount)
			}
		}
		return s, nil
	}
	// Other types: keep whatever (volume, extent) pairs their arrays hold, and the names their
	// string fields give.
	for _, c := range sn.children {
		if c.val == nil || c.key == "tags" {
			continue
		}
		if c.val.kind == kindString && c.key != "type" {
			s.Names = append(s.Names, c.val.s)
		}
		if c.val.kind != kindArray {
			continue
		}
		if areas, err := areaPairs(c.val.items); err == nil {
			s.Areas = append(s.Areas, areas...)
		}
	}
	return s, nil
}

// areaPairs decodes ["pv0", 12, "pv1", 0, ...].
func areaPairs(items []value) ([]Stripe, error) {
	if len(items) == 0 || len(items)%2 != 0 {
		return nil, fmt.Errorf("want (volume, extent) pairs, found %d values", len(items))
	}
	out := make([]Stripe, 0, len(items)/2)
	for i := 0; i < len(items); i += 2 {
		if items[i].kind != kindString || items[i+1].kind != kindInt {
			return nil, fmt.Errorf("item %d: want a volume name and an extent", i/2)
		}
		if e := items[i+1].i; e < 0 || e > maxExtentCount {
			return nil, fmt.Errorf("item %d: extent %d out of range", i/2, e)
		}
		out = append(out, Stripe{PV: items[i].s, StartExtent: items[i+1].i})
	}
	return out, nil
}

// decoder reads typed fields and keeps the first error.
type decoder struct {
	where string
	err   error
}

func (d *decoder) fail(n *node, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("line %d: %s: %s", n.line, d.where, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) str(n *node, key string, required bool) string {
	c := n.get(key)
	if c == nil {
		if required {
			d.fail(n, "no %s", key)
		}
		return ""
	}
	s, ok := strVal(c)
	if !ok {
		d.fail(c, "%s is not a string", key)
	}
	return s
}

func (d *decoder) int(n *node, key string, lo, hi int64, required bool) int64 {
	c := n.get(key)
	if c == nil {
		if required {
			d.fail(n, "no %s", key)
		}
		return 0
	}
	i, ok := intVal(c)
	if !ok {
		d.fail(c, "%s is not an integer", key)
		return 0
	}
	if i < lo || i > hi {
		d.fail(c, "%s = %d out of range [%d, %d]", key, i, lo, hi)
		return 0
	}
	return i
}

func (d *decoder) strList(n *node, key string) []string {
	c := n.get(key)
	if c == nil {
		return nil
	}
	if c.val == nil || c.val.kind != kindArray {
		d.fail(c, "%s is not a list", key)
		return nil
	}
	out := make([]string, 0, len(c.val.items))
	for _, it := range c.val.items {
		if it.kind != kindString {
			d.fail(c, "%s holds a non-string", key)
			return nil
		}
		out = append(out, it.s)
	}
	return out
}

func strVal(n *node) (string, bool) {
	if n.val == nil || n.val.kind != kindString {
		return "", false
	}
	return n.val.s, true
}

func intVal(n *node) (int64, bool) {
	if n.val == nil || n.val.kind != kindInt {
		return 0, false
	}
	return n.val.i, true
}
