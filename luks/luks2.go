package luks

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// LUKS2 binary header layout (docs/on-disk-format-luks2.pdf §2; cryptsetup
// lib/luks2/luks2.h). All integers are big-endian.
const (
	luks2BinLen       = 4096
	luks2MinHdrSize   = 16 << 10
	luks2MaxHdrSize   = 4 << 20
	luks2MaxKeyslots  = 32 // LUKS2_KEYSLOTS_MAX
	luks2MaxTokens    = 32 // LUKS2_TOKENS_MAX
	luks2MaxSegments  = 32
	luks2MaxDigests   = 32
	luks2Stripes      = 4000
	maxSectorSize     = 4096
	offHdrSize        = 8
	offSeqID          = 16
	offLabel          = 24
	offCsumAlg        = 72
	offUUID           = 168
	offSubsystem      = 208
	offHdrOffset      = 256
	offCsum           = 448
	csumFieldLen      = 64
	labelLen          = 48
	csumAlgLen        = 32
	uuidLen           = 40
	subsystemLen      = 48
	maxArgon2Memory   = 4 << 20 // KiB: 4 GiB, the LUKS2 limit (cryptsetup v2.4.0 release notes)
	maxArgon2Time     = 1 << 24 // far beyond what any benchmark picks; refuses absurd headers
	maxArgon2CPUs     = 255     // Argon2 lanes; golang.org/x/crypto/argon2 takes a uint8
	maxPBKDF2Iter     = 1<<32 - 1
	maxJSONDepth      = 32
	dynamicSizeString = "dynamic"
)

// luks2Copy is one validated copy (primary or secondary) of a LUKS2 header.
type luks2Copy struct {
	off       int64
	hdrSize   int64
	seqID     uint64
	label     string
	subsystem string
	uuid      string
	json      []byte // without the terminating NUL
	meta      *luks2Meta
}

func copyName(primary bool) string {
	if primary {
		return "LUKS2 primary header"
	}
	return "LUKS2 secondary header"
}

func validHdrSize(n uint64) bool {
	for s := uint64(luks2MinHdrSize); s <= luks2MaxHdrSize; s <<= 1 {
		if n == s {
			return true
		}
	}
	return false
}

// readCopy reads and fully validates the copy at off. It returns a
// *FormatError for anything wrong with the metadata and another error only
// for I/O failures.
func readCopy(r io.ReaderAt, size, off int64, primary bool) (*luks2Copy, error) {
	st := copyName(primary)
	if off+luks2BinLen > size {
		return nil, formatErr(st, off, "beyond the end of the %d-byte device", size)
	}
	bin := make([]byte, luks2BinLen)
	if err := readFull(r, bin, off); err != nil {
		return nil, err
	}
	want := magicLUKS
	if !primary {
		want = magicSKUL
	}
	if !bytes.Equal(bin[:luksMagicLen], want) {
		return nil, formatErr(st, off, "bad magic % x", bin[:luksMagicLen])
	}
	if v := binary.BigEndian.Uint16(bin[6:]); v != 2 {
		return nil, formatErr(st, off, "version %d, want 2", v)
	}
	hdrSize := binary.BigEndian.Uint64(bin[offHdrSize:])
	if !validHdrSize(hdrSize) {
		return nil, formatErr(st, off, "hdr_size %d is not a power of two between 16 KiB and 4 MiB", hdrSize)
	}
	if ho := binary.BigEndian.Uint64(bin[offHdrOffset:]); ho != uint64(off) {
		return nil, formatErr(st, off, "hdr_offset %d does not match the header's position", ho)
	}
	if off+int64(hdrSize) > size {
		return nil, formatErr(st, off, "hdr_size %d runs past the end of the %d-byte device", hdrSize, size)
	}
	c := &luks2Copy{off: off, hdrSize: int64(hdrSize), seqID: binary.BigEndian.Uint64(bin[offSeqID:])}
	var ok [4]bool
	c.label, ok[0] = cString(bin[offLabel : offLabel+labelLen])
	alg, ok1 := cString(bin[offCsumAlg : offCsumAlg+csumAlgLen])
	c.uuid, ok[2] = cString(bin[offUUID : offUUID+uuidLen])
	c.subsystem, ok[3] = cString(bin[offSubsystem : offSubsystem+subsystemLen])
	ok[1] = ok1
	if slices.Contains(ok[:], false) {
		return nil, formatErr(st, off, "a string field is not NUL-terminated")
	}
	newHash, err := hashByName(alg)
	if err != nil {
		return nil, formatErr(st, off, "checksum algorithm %q is not supported", alg)
	}

	area := make([]byte, hdrSize-luks2BinLen)
	if err := readFull(r, area, off+luks2BinLen); err != nil {
		return nil, err
	}
	// The checksum covers the binary header with the csum field zeroed and
	// the whole JSON area (lib/luks2/luks2_disk_metadata.c).
	stored := slices.Clone(bin[offCsum : offCsum+csumFieldLen])
	clear(bin[offCsum : offCsum+csumFieldLen])
	hh := newHash()
	if hh.Size() > csumFieldLen {
		return nil, formatErr(st, off, "checksum algorithm %q digest is longer than the csum field", alg)
	}
	hh.Write(bin)
	hh.Write(area)
	if subtle.ConstantTimeCompare(hh.Sum(nil), stored[:hh.Size()]) != 1 {
		return nil, formatErr(st, off, "checksum mismatch")
	}

	n := bytes.IndexByte(area, 0)
	if n < 0 {
		return nil, formatErr(st, off, "JSON area is not NUL-terminated")
	}
	c.json = area[:n:n]
	meta, err := parseMeta(c.json, int64(hdrSize))
	if err != nil {
		return nil, formatErr(st+" JSON", off+luks2BinLen, "%v", err)
	}
	c.meta = meta
	return c, nil
}

func readLUKS2(r io.ReaderAt, size int64, primaryMagic bool) (*Header, error) {
	var p, s *luks2Copy
	var perr, serr error
	if primaryMagic {
		p, perr = readCopy(r, size, 0, true)
		if perr != nil && !errors.Is(perr, ErrCorrupt) {
			return nil, perr
		}
	} else {
		perr = formatErr(copyName(true), 0, "no LUKS magic")
	}
	if p != nil {
		s, serr = readCopy(r, size, p.hdrSize, false)
		if serr != nil && !errors.Is(serr, ErrCorrupt) {
			return nil, serr
		}
	} else {
		// The primary cannot tell where the secondary is: try every offset
		// the specification allows, as cryptsetup does.
		for o := int64(luks2MinHdrSize); o <= luks2MaxHdrSize && o+luks2BinLen <= size; o <<= 1 {
			var magic [luksMagicLen]byte
			if err := readFull(r, magic[:], o); err != nil {
				return nil, err
			}
			if !bytes.Equal(magic[:], magicSKUL) {
				continue
			}
			c, err := readCopy(r, size, o, false)
			if err == nil {
				s, serr = c, nil
				break
			}
			if !errors.Is(err, ErrCorrupt) {
				return nil, err
			}
			if serr == nil {
				serr = err
			}
		}
		if s == nil && serr == nil {
			serr = formatErr(copyName(false), luks2MinHdrSize, "no secondary header at any offset from 16 KiB to 4 MiB")
		}
	}

	var use *luks2Copy
	var warnings []string
	switch {
	case p != nil && s != nil:
		use = p
		if s.seqID > p.seqID {
			use = s
			warnings = append(warnings, fmt.Sprintf("LUKS2 primary header at offset 0 is older (seqid %d) than the secondary copy at %d (seqid %d); using the secondary copy", p.seqID, s.off, s.seqID))
		} else if s.seqID < p.seqID {
			warnings = append(warnings, fmt.Sprintf("LUKS2 secondary header at offset %d is older (seqid %d) than the primary (seqid %d)", s.off, s.seqID, p.seqID))
		}
	case p != nil:
		use = p
		warnings = append(warnings, errString(serr)+"; using the primary copy")
	case s != nil:
		use = s
		warnings = append(warnings, fmt.Sprintf("%s; using the secondary copy at %d", errString(perr), s.off))
	default:
		if !primaryMagic {
			return nil, ErrNotLUKS
		}
		var pe *FormatError
		if !errors.As(perr, &pe) {
			return nil, perr
		}
		return nil, &FormatError{Structure: pe.Structure, Offset: pe.Offset,
			Reason: fmt.Sprintf("%s; no valid secondary copy (%s)", pe.Reason, errString(serr))}
	}
	h, err := buildHeader2(use, r, size)
	if err != nil {
		return nil, err
	}
	h.UsedSecondary = use != p
	h.Warnings = append(warnings, h.Warnings...)
	return h, nil
}

// errString formats a FormatError for a warning without the "luks: " prefix.
func errString(err error) string {
	var fe *FormatError
	if errors.As(err, &fe) {
		return fmt.Sprintf("%s at offset %d: %s", fe.Structure, fe.Offset, fe.Reason)
	}
	return err.Error()
}

func buildHeader2(c *luks2Copy, r io.ReaderAt, size int64) (*Header, error) {
	m := c.meta
	h := &Header{
		Version: 2, UUID: c.uuid, Label: c.label, Subsystem: c.subsystem,
		SeqID: c.seqID, MetadataSize: c.hdrSize, JSON: c.json,
		HeaderSize:   2*c.hdrSize + int64(m.keyslotsSize),
		Requirements: m.requirements, Flags: m.flags,
		SegmentCount: len(m.segments),
		DataSize:     -1,
		r:            r, size: size, v2: m,
	}
	seg := m.dataSegment()
	if seg != nil {
		h.DataSegment = seg.id
		h.Cipher = seg.Encryption
		h.SectorSize = seg.SectorSize
		h.DataOffset = int64(*seg.Offset)
		if !seg.Size.dynamic {
			h.DataSize = int64(seg.Size.n)
		}
		if seg.IVTweak != nil {
			h.IVTweak = uint64(*seg.IVTweak)
		}
		if d := m.digestForSegment(seg.id); d != nil {
			for _, ks := range m.keyslots {
				if ks.digest == d && ks.KeySize != nil {
					h.KeySize = *ks.KeySize
					break
				}
			}
		}
	}
	for _, ks := range m.keyslots {
		k := Keyslot{ID: ks.id, Type: ks.Type, Active: true, Priority: 1, digest: ks.digest}
		if ks.KeySize != nil {
			k.KeySize = *ks.KeySize
		}
		if ks.Priority != nil {
			k.Priority = *ks.Priority
		}
		if a := ks.Area; a != nil {
			k.Encryption = a.Encryption
			k.EncryptionKeySize = a.KeySize
			if a.Offset != nil && a.Size != nil {
				k.AreaOffset, k.AreaSize = int64(*a.Offset), int64(*a.Size)
			}
		}
		if af := ks.AF; af != nil {
			k.Stripes, k.AFHash = af.Stripes, af.Hash
		}
		if kdf := ks.KDF; kdf != nil {
			k.KDF, k.Hash, k.Iterations = kdf.Type, kdf.Hash, kdf.Iterations
			k.Time, k.MemoryKiB, k.CPUs = kdf.Time, kdf.Memory, kdf.CPUs
			k.salt = kdf.Salt
		}
		if ks.digest != nil {
			k.Segments = slices.Clone(ks.digest.segments)
		}
		h.Keyslots = append(h.Keyslots, k)
	}
	return h, nil
}

func (h *Header) supported2() error {
	m := h.v2
	for _, ks := range m.keyslots {
		if ks.Type == "reencrypt" {
			return fmt.Errorf("%w: keyslot %d is a LUKS2 re-encryption keyslot", ErrReencryptInProgress, ks.id)
		}
	}
	for _, req := range m.requirements {
		if req == "offline-reencrypt" || strings.HasPrefix(req, "online-reencrypt") {
			return fmt.Errorf("%w: mandatory requirement %q", ErrReencryptInProgress, req)
		}
	}
	if len(m.segments) != 1 {
		// Without a re-encryption keyslot or requirement (checked above), several segments are a
		// re-encryption only if one is its backup or still linear; otherwise the header is damaged.
		for _, seg := range m.segments {
			for _, f := range seg.Flags {
				if strings.HasPrefix(f, "backup-") {
					return fmt.Errorf("%w: %d data segments (segment %d has flag %q)", ErrReencryptInProgress, len(m.segments), seg.id, f)
				}
			}
			if seg.Type == "linear" {
				return fmt.Errorf("%w: %d data segments (segment %d is linear)", ErrReencryptInProgress, len(m.segments), seg.id)
			}
		}
		return formatErr("LUKS2 JSON", 0, "%d data segments and no re-encryption in progress", len(m.segments))
	}
	seg := m.segments[0]
	for _, f := range seg.Flags {
		if strings.HasPrefix(f, "backup-") {
			return fmt.Errorf("%w: segment %d has flag %q", ErrReencryptInProgress, seg.id, f)
		}
	}
	if seg.Type == "linear" {
		return fmt.Errorf("%w: segment %d is linear (not yet encrypted)", ErrReencryptInProgress, seg.id)
	}
	for _, req := range m.requirements {
		return fmt.Errorf("%w: mandatory requirement %q", ErrUnsupported, req)
	}
	if seg.Type != "crypt" {
		return fmt.Errorf("%w: segment %d has type %q", ErrUnsupported, seg.id, seg.Type)
	}
	if len(seg.Integrity) > 0 && string(seg.Integrity) != "null" {
		return fmt.Errorf("%w: segment %d uses dm-integrity", ErrUnsupported, seg.id)
	}
	d := m.digestForSegment(seg.id)
	if d == nil || h.KeySize == 0 {
		return fmt.Errorf("%w: no keyslot is bound to data segment %d", ErrUnsupported, seg.id)
	}
	if d.Type != "pbkdf2" {
		return fmt.Errorf("%w: digest %d has type %q", ErrUnsupported, d.id, d.Type)
	}
	if _, err := hashByName(d.Hash); err != nil {
		return fmt.Errorf("digest %d: %w", d.id, err)
	}
	return checkCipher(h.Cipher, h.KeySize, h.SectorSize)
}

// ---- JSON metadata ----

// luks2Meta is the validated JSON metadata. Object ids are decimal strings
// on disk; here they are ints, and each list is sorted by id.
type luks2Meta struct {
	keyslots     []*jsonKeyslot
	segments     []*jsonSegment
	digests      []*digest
	keyslotsSize uint64
	flags        []string
	requirements []string
}

// dataSegment is the segment the header's summary fields describe: the only
// one, or during re-encryption the target ("backup-final"), else the crypt
// segment with the lowest id (cryptsetup's LUKS2_get_default_segment).
func (m *luks2Meta) dataSegment() *jsonSegment {
	for _, s := range m.segments {
		if slices.Contains(s.Flags, "backup-final") {
			return s
		}
	}
	for _, s := range m.segments {
		if s.Type == "crypt" {
			return s
		}
	}
	if len(m.segments) > 0 {
		return m.segments[0]
	}
	return nil
}

func (m *luks2Meta) digestForSegment(id int) *digest {
	for _, d := range m.digests {
		if slices.Contains(d.segments, id) {
			return d
		}
	}
	return nil
}

// u64s is a uint64 stored as a decimal JSON string, the LUKS2 encoding of
// offsets and sizes (spec §3: json numbers cannot hold 64 bits).
type u64s uint64

func (u *u64s) UnmarshalJSON(b []byte) error {
	var s string
	if err := unmarshalStrict(b, &s); err != nil {
		return errors.New("64-bit value is not a JSON string")
	}
	v, err := parseU64(s)
	if err != nil {
		return err
	}
	*u = u64s(v)
	return nil
}

func parseU64(s string) (uint64, error) {
	if s == "" || len(s) > 20 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q overflows 64 bits", s)
	}
	return v, nil
}

// segSize is a segment size: a decimal string or "dynamic".
type segSize struct {
	dynamic bool
	n       uint64
}

func (z *segSize) UnmarshalJSON(b []byte) error {
	var s string
	if err := unmarshalStrict(b, &s); err != nil {
		return errors.New("size is not a JSON string")
	}
	if s == dynamicSizeString {
		z.dynamic = true
		return nil
	}
	v, err := parseU64(s)
	z.n = v
	return err
}

type jsonArea struct {
	Type       string `json:"type"`
	Offset     *u64s  `json:"offset"`
	Size       *u64s  `json:"size"`
	Encryption string `json:"encryption"`
	KeySize    int    `json:"key_size"`
}

type jsonAF struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

type jsonKDF struct {
	Type       string `json:"type"`
	Hash       string `json:"hash"`
	Iterations int    `json:"iterations"`
	Time       int    `json:"time"`
	Memory     int    `json:"memory"`
	CPUs       int    `json:"cpus"`
	Salt       []byte `json:"salt"`
}

type jsonKeyslot struct {
	id       int
	digest   *digest
	Type     string    `json:"type"`
	KeySize  *int      `json:"key_size"`
	Priority *int      `json:"priority"`
	Area     *jsonArea `json:"area"`
	AF       *jsonAF   `json:"af"`
	KDF      *jsonKDF  `json:"kdf"`
}

type jsonSegment struct {
	id         int
	Type       string          `json:"type"`
	Offset     *u64s           `json:"offset"`
	Size       *segSize        `json:"size"`
	IVTweak    *u64s           `json:"iv_tweak"`
	Encryption string          `json:"encryption"`
	SectorSize int             `json:"sector_size"`
	Integrity  json.RawMessage `json:"integrity"`
	Flags      []string        `json:"flags"`
}

type digest struct {
	id         int
	keyslots   []int
	segments   []int
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int      `json:"iterations"`
	Salt       []byte   `json:"salt"`
	Digest     []byte   `json:"digest"`
}

type jsonToken struct {
	Type     *string  `json:"type"`
	Keyslots []string `json:"keyslots"`
}

type jsonConfig struct {
	JSONSize     *u64s    `json:"json_size"`
	KeyslotsSize *u64s    `json:"keyslots_size"`
	Flags        []string `json:"flags"`
	Requirements *struct {
		Mandatory []string `json:"mandatory"`
	} `json:"requirements"`
}

type jsonTop struct {
	Keyslots map[string]json.RawMessage `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]json.RawMessage `json:"segments"`
	Digests  map[string]json.RawMessage `json:"digests"`
	Config   *jsonConfig                `json:"config"`
}

// parseID parses an object id: a canonical decimal number below limit.
func parseID(kind, s string, limit int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%s id %q is not a decimal number", kind, s)
	}
	if n >= limit {
		return 0, fmt.Errorf("%s id %d is out of range (max %d)", kind, n, limit-1)
	}
	return n, nil
}

// decodeObjects decodes every member of an id-keyed object into a fresh T,
// sorted by id.
func decodeObjects[T any](kind string, objs map[string]json.RawMessage, limit int, setID func(*T, int)) ([]*T, error) {
	var out []*T
	ids := make(map[*T]int)
	for k, raw := range objs {
		id, err := parseID(kind, k, limit)
		if err != nil {
			return nil, err
		}
		v := new(T)
		if err := unmarshalStrict(raw, v); err != nil {
			return nil, fmt.Errorf("%s %d: %v", kind, id, err)
		}
		setID(v, id)
		ids[v] = id
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return ids[out[i]] < ids[out[j]] })
	return out, nil
}

// parseMeta parses and validates the JSON metadata of a header copy whose
// hdr_size is hdrSize. Its checks follow the LUKS2 specification §3 and
// cryptsetup's lib/luks2/luks2_json_metadata.c (LUKS2_hdr_validate).
func parseMeta(text []byte, hdrSize int64) (*luks2Meta, error) {
	if err := checkJSONSyntax(text); err != nil {
		return nil, err
	}
	var top jsonTop
	if err := unmarshalStrict(text, &top); err != nil {
		return nil, err
	}
	if top.Keyslots == nil || top.Tokens == nil || top.Segments == nil || top.Digests == nil || top.Config == nil {
		return nil, errors.New("missing one of the mandatory objects keyslots, tokens, segments, digests, config")
	}
	m := &luks2Meta{}

	// config
	cfg := top.Config
	if cfg.JSONSize == nil || cfg.KeyslotsSize == nil {
		return nil, errors.New("config: json_size or keyslots_size missing")
	}
	if uint64(*cfg.JSONSize) != uint64(hdrSize-luks2BinLen) {
		return nil, fmt.Errorf("config: json_size %d does not match hdr_size %d", *cfg.JSONSize, hdrSize)
	}
	m.keyslotsSize = uint64(*cfg.KeyslotsSize)
	if m.keyslotsSize%4096 != 0 {
		return nil, fmt.Errorf("config: keyslots_size %d is not a multiple of 4096", m.keyslotsSize)
	}
	if m.keyslotsSize > 1<<56 {
		return nil, fmt.Errorf("config: keyslots_size %d is absurd", m.keyslotsSize)
	}
	areaStart := uint64(2 * hdrSize)
	areaEnd := areaStart + m.keyslotsSize
	m.flags = cfg.Flags
	if cfg.Requirements != nil {
		m.requirements = cfg.Requirements.Mandatory
	}

	var err error
	m.keyslots, err = decodeObjects("keyslot", top.Keyslots, luks2MaxKeyslots, func(k *jsonKeyslot, id int) { k.id = id })
	if err != nil {
		return nil, err
	}
	m.segments, err = decodeObjects("segment", top.Segments, luks2MaxSegments, func(s *jsonSegment, id int) { s.id = id })
	if err != nil {
		return nil, err
	}
	m.digests, err = decodeObjects("digest", top.Digests, luks2MaxDigests, func(d *digest, id int) { d.id = id })
	if err != nil {
		return nil, err
	}
	tokens, err := decodeObjects("token", top.Tokens, luks2MaxTokens, func(*jsonToken, int) {})
	if err != nil {
		return nil, err
	}

	// keyslots
	type span struct {
		id       int
		off, end uint64
	}
	var spans []span
	ksIDs := map[int]*jsonKeyslot{}
	for _, ks := range m.keyslots {
		ksIDs[ks.id] = ks
		if err := validateKeyslot(ks); err != nil {
			return nil, fmt.Errorf("keyslot %d: %v", ks.id, err)
		}
		if a := ks.Area; a != nil && a.Offset != nil && a.Size != nil {
			off, sz := uint64(*a.Offset), uint64(*a.Size)
			if off < areaStart || sz > areaEnd || off > areaEnd-sz {
				return nil, fmt.Errorf("keyslot %d: area [%d, +%d) is outside the keyslots area [%d, %d)", ks.id, off, sz, areaStart, areaEnd)
			}
			spans = append(spans, span{ks.id, off, off + sz})
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	for i := 1; i < len(spans); i++ {
		if spans[i].off < spans[i-1].end {
			return nil, fmt.Errorf("keyslot %d: area overlaps keyslot %d", spans[i].id, spans[i-1].id)
		}
	}

	// segments
	segIDs := map[int]bool{}
	var firstOffset uint64
	haveFirst := false
	for _, s := range m.segments {
		segIDs[s.id] = true
		if err := validateSegment(s); err != nil {
			return nil, fmt.Errorf("segment %d: %v", s.id, err)
		}
		if !slices.ContainsFunc(s.Flags, func(f string) bool { return strings.HasPrefix(f, "backup-") }) {
			if o := uint64(*s.Offset); !haveFirst || o < firstOffset {
				firstOffset, haveFirst = o, true
			}
		}
	}
	// Offset 0 is a detached header; otherwise data must follow the keyslots.
	if haveFirst && firstOffset != 0 && firstOffset < areaEnd {
		return nil, fmt.Errorf("segment offset %d overlaps the metadata and keyslots areas (end %d)", firstOffset, areaEnd)
	}

	// digests
	// A keyslot belongs to at most one digest; a segment may be listed by
	// several (cryptsetup accepts that too).
	ksSeen := map[int]int{}
	for _, d := range m.digests {
		if d.Type == "" {
			return nil, fmt.Errorf("digest %d: type missing", d.id)
		}
		if d.Keyslots == nil || d.Segments == nil {
			return nil, fmt.Errorf("digest %d: keyslots or segments missing", d.id)
		}
		for _, s := range d.Keyslots {
			id, err := parseID("keyslot", s, luks2MaxKeyslots)
			if err != nil || ksIDs[id] == nil {
				return nil, fmt.Errorf("digest %d: references missing keyslot %q", d.id, s)
			}
			if prev, dup := ksSeen[id]; dup {
				return nil, fmt.Errorf("digest %d: keyslot %d is already assigned to digest %d", d.id, id, prev)
			}
			ksSeen[id] = d.id
			d.keyslots = append(d.keyslots, id)
			ksIDs[id].digest = d
		}
		for _, s := range d.Segments {
			id, err := parseID("segment", s, luks2MaxSegments)
			if err != nil || !segIDs[id] {
				return nil, fmt.Errorf("digest %d: references missing segment %q", d.id, s)
			}
			d.segments = append(d.segments, id)
		}
		if d.Type == "pbkdf2" {
			if d.Hash == "" || d.Iterations < 1 || int64(d.Iterations) > maxPBKDF2Iter || len(d.Salt) == 0 || len(d.Digest) == 0 || len(d.Digest) > 64 {
				return nil, fmt.Errorf("digest %d: invalid pbkdf2 parameters", d.id)
			}
		}
	}

	// tokens
	for _, t := range tokens {
		if t.Type == nil {
			return nil, errors.New("token without a type")
		}
		for _, s := range t.Keyslots {
			id, err := parseID("keyslot", s, luks2MaxKeyslots)
			if err != nil || ksIDs[id] == nil {
				return nil, fmt.Errorf("token references missing keyslot %q", s)
			}
		}
	}
	return m, nil
}

func validateKeyslot(ks *jsonKeyslot) error {
	if ks.Type == "" {
		return errors.New("type missing")
	}
	if ks.KeySize == nil {
		return errors.New("key_size missing")
	}
	if ks.Priority != nil && (*ks.Priority < 0 || *ks.Priority > 2) {
		return fmt.Errorf("priority %d out of range 0..2", *ks.Priority)
	}
	if a := ks.Area; a != nil && (a.Offset == nil) != (a.Size == nil) {
		return errors.New("area needs both offset and size")
	}
	if ks.Type != "luks2" {
		// Not usable for unlocking (reencrypt or unknown); only its area
		// placement is checked.
		if ks.Area == nil || ks.Area.Type == "" {
			return errors.New("area missing")
		}
		return nil
	}
	if *ks.KeySize < 1 || *ks.KeySize > maxKeyBytes {
		return fmt.Errorf("key_size %d out of range 1..%d", *ks.KeySize, maxKeyBytes)
	}
	a, af, kdf := ks.Area, ks.AF, ks.KDF
	if a == nil || af == nil || kdf == nil {
		return errors.New("area, af or kdf missing")
	}
	if a.Type != "raw" {
		return fmt.Errorf("area type %q, want raw", a.Type)
	}
	if a.Offset == nil || a.Encryption == "" || a.KeySize < 1 || a.KeySize > maxKeyBytes {
		return errors.New("area offset, size, encryption or key_size missing or invalid")
	}
	if af.Type != "luks1" || af.Hash == "" {
		return fmt.Errorf("af type %q or hash %q invalid", af.Type, af.Hash)
	}
	if af.Stripes != luks2Stripes {
		return fmt.Errorf("af stripes %d, want %d", af.Stripes, luks2Stripes)
	}
	if need := afSectors(*ks.KeySize, af.Stripes) * sectorSize; int64(*a.Size) < need {
		return fmt.Errorf("area size %d is smaller than the %d bytes of key material", *a.Size, need)
	}
	if kdf.Type == "" || len(kdf.Salt) == 0 {
		return errors.New("kdf type or salt missing")
	}
	return nil
}

func validateSegment(s *jsonSegment) error {
	if s.Type == "" || s.Offset == nil || s.Size == nil {
		return errors.New("type, offset or size missing")
	}
	if uint64(*s.Offset)%sectorSize != 0 {
		return fmt.Errorf("offset %d is not a multiple of 512", *s.Offset)
	}
	if uint64(*s.Offset) > 1<<62 || (!s.Size.dynamic && s.Size.n > 1<<62) {
		return errors.New("offset or size is absurd")
	}
	if s.Type != "crypt" {
		return nil
	}
	if s.IVTweak == nil || s.Encryption == "" {
		return errors.New("iv_tweak or encryption missing")
	}
	switch s.SectorSize {
	case 512, 1024, 2048, maxSectorSize:
	default:
		return fmt.Errorf("sector_size %d is not 512, 1024, 2048 or 4096", s.SectorSize)
	}
	if !s.Size.dynamic && s.Size.n%uint64(s.SectorSize) != 0 {
		return fmt.Errorf("size %d is not a multiple of sector_size %d", s.Size.n, s.SectorSize)
	}
	return nil
}
