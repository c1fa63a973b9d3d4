// Package blobfake is an in-memory Azure page-blob service for tests: an
// http.Handler that answers the Blob service REST calls luksconv makes, as
// the REST specification describes them, including the one Azurite does not
// implement: Get Page Ranges against a previous snapshot (prevsnapshot, and
// the x-ms-previous-snapshot-url header of managed-disk incremental
// snapshots), with its ClearRange elements.
//
// The calls, per learn.microsoft.com/rest/api/storageservices and
// azure-rest-api-specs (specification/storage/data-plane/Microsoft.BlobStorage):
//
//   - Put Blob (PUT, x-ms-blob-type: PageBlob, x-ms-blob-content-length, a
//     multiple of 512; If-None-Match: * refuses an existing blob),
//   - Put Page (PUT ?comp=page, x-ms-page-write: update or clear, the pages
//     in x-ms-range or Range, 512-byte aligned, at most 4 MiB per update),
//   - Get Blob (GET, whole or x-ms-range / Range) and Get Blob Properties (HEAD),
//   - Snapshot Blob (PUT ?comp=snapshot, answers x-ms-snapshot),
//   - Set Blob Properties (PUT ?comp=properties), only to resize a page blob
//     (x-ms-blob-content-length),
//   - Get Page Ranges (GET ?comp=pagelist, of the blob or ?snapshot=, in a
//     range, with marker / maxresults continuation, and against a previous
//     snapshot named by ?prevsnapshot= or by x-ms-previous-snapshot-url).
//
// Pages are 512-byte arrays in a map, shared between a blob and its
// snapshots until one is rewritten. Every Put Page gives the pages it writes
// a new generation: a page has changed between two versions of a blob when
// its generation differs, as the service tracks writes rather than
// comparing bytes (a page rewritten with the same bytes has changed). A
// version that has a page the previous one lacks lists it in a PageRange; one
// that lacks a page the previous one had lists it in a ClearRange.
//
// Ranges are reported coalesced (adjacent pages in one range) and clipped to
// the requested range, rounded out to whole pages. Containers, accounts and
// SAS permissions are not modelled: the blob is the URL path, the SAS query
// parameters are accepted and, with Signature set, the sig must be that value.
// Managed-disk snapshots, each exported under its own URL, are modelled by
// Publish.
package blobfake

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PageSize is the page size of a page blob.
const PageSize = 512

// MaxPutPage is the most one Put Page update may carry.
const MaxPutPage = 4 << 20

// DefaultMaxRanges is the most ranges one Get Page Ranges response lists
// when the server is not told otherwise (the service's 10,000).
const DefaultMaxRanges = 10000

// SnapshotFormat is the form of the x-ms-snapshot values it hands out.
const SnapshotFormat = "2006-01-02T15:04:05.0000000Z"

// Server is the fake blob service. Set its exported fields before it serves.
type Server struct {
	// MaxRanges bounds the PageRange and ClearRange elements of one Get Page
	// Ranges response (default DefaultMaxRanges); a small value makes every
	// listing continue with NextMarker.
	MaxRanges int
	// Signature, if set, is the sig every request's SAS must carry, and so
	// must the URL in x-ms-previous-snapshot-url: others are refused with
	// 403 AuthenticationFailed.
	Signature string

	mu          sync.Mutex
	refuseClear bool // SetRefuseClear
	blobs       map[string]*blob
	aliases     map[string]*version // Publish
	gen         uint64              // the last page generation
	seq         uint64              // the last version sequence number
	lineage     uint64              // the last blob incarnation
	last        time.Time           // the last snapshot time
	counts      map[string]int
	requests    int
}

type blob struct {
	live      *version
	snapshots map[string]*version
}

// version is a blob or one of its snapshots.
type version struct {
	lineage  uint64 // the incarnation (Put Blob) it belongs to
	seq      uint64 // snapshots: the order they were taken in (the live blob is newer than all)
	snapshot string // "" for the live blob
	size     int64
	pages    map[int64]page // by page index
	etag     string
	modified time.Time
	created  time.Time
}

type page struct {
	data *[PageSize]byte // never modified once stored: versions share it
	gen  uint64
}

// New returns an empty server.
func New() *Server {
	return &Server{blobs: map[string]*blob{}, aliases: map[string]*version{}, counts: map[string]int{}}
}

// Start serves a new Server on a loopback port until the test ends and
// returns it with its base URL (http://127.0.0.1:PORT).
func Start(t testing.TB) (*Server, string) {
	s := New()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// Publish serves snapshot of the blob at blobPath, read-only, at the URL
// path alias as well, the way a managed disk's incremental snapshot is
// exported under its own grant-access URL. Diffs between published
// snapshots of one blob work as between its snapshots.
func (s *Server) Publish(alias, blobPath, snapshot string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.blobs[blobPath]
	if b == nil || b.snapshots[snapshot] == nil {
		return fmt.Errorf("blobfake: no snapshot %q of %s", snapshot, blobPath)
	}
	if s.blobs[alias] != nil {
		return fmt.Errorf("blobfake: %s is a blob", alias)
	}
	s.aliases[alias] = b.snapshots[snapshot]
	return nil
}

// SetRefuseClear makes the server refuse Put Page's clear (403 AuthorizationPermissionMismatch), as
// a destination that takes writes but not clears would, or take it again.
func (s *Server) SetRefuseClear(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseClear = refuse
}

// Requests returns how many requests of each operation the server answered
// ("create", "put page", "clear pages", "snapshot", "get", "properties",
// "page list", "page list diff"), and as "marker" those that continued a
// page list.
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// storageError is a failed request: status, x-ms-error-code, message.
type storageError struct {
	status int
	code   string
	msg    string
}

func fail(status int, code, format string, args ...any) *storageError {
	return &storageError{status, code, fmt.Sprintf(format, args...)}
}

func errBlobNotFound() *storageError {
	return fail(http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
}

// ServeHTTP answers one Blob service request: Server is an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The body is read before the lock, the response written after it.
	var body []byte
	var readErr error
	if r.Body != nil {
		body, readErr = io.ReadAll(io.LimitReader(r.Body, MaxPutPage+1))
	}
	s.mu.Lock()
	s.requests++
	w.Header().Set("x-ms-request-id", fmt.Sprintf("blobfake-%d", s.requests))
	w.Header().Set("x-ms-version", r.Header.Get("x-ms-version"))
	q := r.URL.Query()
	var (
		status int
		out    []byte
		err    *storageError
	)
	switch comp := q.Get("comp"); {
	case readErr != nil:
		err = fail(http.StatusBadRequest, "InvalidInput", "reading the body: %v", readErr)
	case s.Signature != "" && q.Get("sig") != s.Signature:
		err = fail(http.StatusForbidden, "AuthenticationFailed",
			"Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
	case r.Method == http.MethodPut && comp == "":
		status, err = s.putBlob(w, r)
	case r.Method == http.MethodPut && comp == "page":
		status, err = s.putPage(w, r, body)
	case r.Method == http.MethodPut && comp == "snapshot":
		status, err = s.snapshotBlob(w, r)
	case r.Method == http.MethodPut && comp == "properties":
		status, err = s.setProperties(w, r)
	case r.Method == http.MethodGet && comp == "pagelist":
		status, out, err = s.getPageRanges(w, r)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && comp == "":
		status, out, err = s.getBlob(w, r)
	default:
		err = fail(http.StatusNotImplemented, "NotImplemented", "blobfake does not implement %s ?comp=%s", r.Method, comp)
	}
	s.mu.Unlock()
	if err != nil {
		writeError(w, r, err)
		return
	}
	if r.Method != http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	}
	w.WriteHeader(status)
	w.Write(out)
}

func writeError(w http.ResponseWriter, r *http.Request, e *storageError) {
	h := w.Header()
	h.Set("x-ms-error-code", e.code)
	if r.Method == http.MethodHead {
		w.WriteHeader(e.status)
		return
	}
	body := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s
RequestId:%s
Time:%s</Message></Error>`, xmlEscape(e.code), xmlEscape(e.msg), h.Get("x-ms-request-id"), time.Now().UTC().Format(time.RFC3339Nano))
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	io.WriteString(w, body)
}

func xmlEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// touch gives v a new ETag and modification time.
func (s *Server) touch(v *version) {
	s.seq++
	v.etag = fmt.Sprintf(`"0x8D%013X"`, s.seq)
	v.modified = time.Now().UTC()
}

func versionHeaders(w http.ResponseWriter, v *version) {
	w.Header().Set("ETag", v.etag)
	w.Header().Set("Last-Modified", v.modified.Format(http.TimeFormat))
}

// resolve finds the version a request names: path and ?snapshot=.
func (s *Server) resolve(path, snapshot string) (*version, *storageError) {
	if v := s.aliases[path]; v != nil {
		if snapshot != "" {
			return nil, errBlobNotFound()
		}
		return v, nil
	}
	b := s.blobs[path]
	if b == nil {
		return nil, errBlobNotFound()
	}
	if snapshot == "" {
		return b.live, nil
	}
	if v := b.snapshots[snapshot]; v != nil {
		return v, nil
	}
	return nil, errBlobNotFound()
}

// writable finds the live blob a write names.
func (s *Server) writable(r *http.Request) (*blob, *storageError) {
	path := r.URL.Path
	if s.aliases[path] != nil {
		return nil, fail(http.StatusForbidden, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
	}
	if r.URL.Query().Get("snapshot") != "" {
		return nil, fail(http.StatusBadRequest, "InvalidQueryParameterValue", "A snapshot cannot be written.")
	}
	b := s.blobs[path]
	if b == nil {
		return nil, errBlobNotFound()
	}
	return b, nil
}

func (s *Server) putBlob(w http.ResponseWriter, r *http.Request) (int, *storageError) {
	s.counts["create"]++
	path := r.URL.Path
	if s.aliases[path] != nil {
		return 0, fail(http.StatusForbidden, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
	}
	if t := r.Header.Get("x-ms-blob-type"); !strings.EqualFold(t, "PageBlob") {
		return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "blobfake serves page blobs only, not x-ms-blob-type %q.", t)
	}
	if r.ContentLength > 0 {
		return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "Content-Length must be 0 for Create Page Blob request.")
	}
	size, err := strconv.ParseInt(r.Header.Get("x-ms-blob-content-length"), 10, 64)
	if err != nil || size < 0 || size%PageSize != 0 {
		return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "x-ms-blob-content-length %q is not a multiple of 512.", r.Header.Get("x-ms-blob-content-length"))
	}
	b := s.blobs[path]
	if b != nil && r.Header.Get("If-None-Match") == "*" {
		return 0, fail(http.StatusConflict, "BlobAlreadyExists", "The specified blob already exists.")
	}
	if b == nil {
		b = &blob{snapshots: map[string]*version{}}
		s.blobs[path] = b
	}
	s.lineage++
	now := time.Now().UTC()
	b.live = &version{lineage: s.lineage, size: size, pages: map[int64]page{}, created: now}
	s.touch(b.live)
	versionHeaders(w, b.live)
	w.Header().Set("x-ms-request-server-encrypted", "true")
	return http.StatusCreated, nil
}

// setProperties is Set Blob Properties, of which only the page blob's resize (x-ms-blob-content-length,
// a multiple of 512) is modelled: pages past a smaller size are dropped, a larger size adds pages that
// were never written.
func (s *Server) setProperties(w http.ResponseWriter, r *http.Request) (int, *storageError) {
	b, serr := s.writable(r)
	if serr != nil {
		return 0, serr
	}
	if v := r.Header.Get("x-ms-blob-content-length"); v != "" {
		size, err := strconv.ParseInt(v, 10, 64)
		if err != nil || size < 0 || size%PageSize != 0 {
			return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "x-ms-blob-content-length %q is not a multiple of 512.", v)
		}
		pages := map[int64]page{}
		for i, pg := range b.live.pages {
			if i < size/PageSize {
				pages[i] = pg
			}
		}
		b.live.size, b.live.pages = size, pages
	}
	s.touch(b.live)
	versionHeaders(w, b.live)
	return http.StatusOK, nil
}

// parseRange reads "bytes=first-last" from x-ms-range, which wins, or Range.
// present is false when neither header is there, ok false when the value is
// malformed; last is -1 when the range is open ("bytes=first-").
func parseRange(r *http.Request) (first, last int64, present, ok bool) {
	v := r.Header.Get("x-ms-range")
	if v == "" {
		v = r.Header.Get("Range")
	}
	if v == "" {
		return 0, 0, false, false
	}
	spec, found := strings.CutPrefix(v, "bytes=")
	a, b, found2 := strings.Cut(spec, "-")
	if !found || !found2 {
		return 0, 0, true, false
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, true, false
	}
	if b == "" {
		return first, -1, true, true
	}
	last, err = strconv.ParseInt(b, 10, 64)
	if err != nil || last < first {
		return 0, 0, true, false
	}
	return first, last, true, true
}

func (s *Server) putPage(w http.ResponseWriter, r *http.Request, body []byte) (int, *storageError) {
	write := strings.ToLower(r.Header.Get("x-ms-page-write"))
	switch write {
	case "update":
		s.counts["put page"]++
		if len(body) > MaxPutPage {
			return 0, fail(http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", "The request body is too large and exceeds the maximum permissible limit.")
		}
		if len(body)%PageSize != 0 {
			return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "Content-Length %d is not a multiple of 512.", len(body))
		}
	case "clear":
		s.counts["clear pages"]++
		if s.refuseClear {
			return 0, fail(http.StatusForbidden, "AuthorizationPermissionMismatch", "This request is not authorized to perform this operation using this permission.")
		}
		if len(body) > 0 {
			return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "Content-Length must be 0 to clear pages.")
		}
	default:
		return 0, fail(http.StatusBadRequest, "InvalidHeaderValue", "x-ms-page-write %q is neither update nor clear.", write)
	}
	b, serr := s.writable(r)
	if serr != nil {
		return 0, serr
	}
	first, last, present, ok := parseRange(r)
	switch {
	case !present:
		return 0, fail(http.StatusBadRequest, "MissingRequiredHeader", "Put Page needs x-ms-range or Range.")
	case !ok || last < 0 || first%PageSize != 0 || (last+1)%PageSize != 0:
		return 0, fail(http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The page range specified is invalid.")
	case write == "update" && last-first+1 != int64(len(body)):
		return 0, fail(http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The range does not match the %d bytes of the body.", len(body))
	case last >= b.live.size:
		return 0, fail(http.StatusRequestedRangeNotSatisfiable, "InvalidPageRange", "The page range specified is invalid.")
	}
	v := b.live
	if write == "update" {
		s.gen++
		for o := int64(0); o < int64(len(body)); o += PageSize {
			var p [PageSize]byte
			copy(p[:], body[o:])
			v.pages[(first+o)/PageSize] = page{data: &p, gen: s.gen}
		}
	} else {
		s.clearPages(v, first/PageSize, (last+1)/PageSize)
	}
	s.touch(v)
	versionHeaders(w, v)
	w.Header().Set("x-ms-blob-sequence-number", "0")
	return http.StatusCreated, nil
}

// clearPages drops the pages [lo, hi) of v.
func (s *Server) clearPages(v *version, lo, hi int64) {
	if hi-lo < int64(len(v.pages)) {
		for i := lo; i < hi; i++ {
			delete(v.pages, i)
		}
		return
	}
	for i := range v.pages {
		if i >= lo && i < hi {
			delete(v.pages, i)
		}
	}
}

func (s *Server) snapshotBlob(w http.ResponseWriter, r *http.Request) (int, *storageError) {
	s.counts["snapshot"]++
	b, serr := s.writable(r)
	if serr != nil {
		return 0, serr
	}
	// Snapshot times are unique and increasing, in the service's format.
	t := time.Now().UTC().Truncate(100 * time.Nanosecond)
	if !t.After(s.last) {
		t = s.last.Add(100 * time.Nanosecond)
	}
	s.last = t
	name := t.Format(SnapshotFormat)
	live := b.live
	snap := &version{lineage: live.lineage, seq: s.seq + 1, snapshot: name, size: live.size,
		pages: make(map[int64]page, len(live.pages)), etag: live.etag, modified: live.modified, created: live.created}
	for i, p := range live.pages {
		snap.pages[i] = p // the page data is shared: a write replaces it, never changes it
	}
	s.seq++
	b.snapshots[name] = snap
	w.Header().Set("x-ms-snapshot", name)
	versionHeaders(w, live)
	return http.StatusCreated, nil
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) (int, []byte, *storageError) {
	head := r.Method == http.MethodHead
	if head {
		s.counts["properties"]++
	} else {
		s.counts["get"]++
	}
	v, serr := s.resolve(r.URL.Path, r.URL.Query().Get("snapshot"))
	if serr != nil {
		return 0, nil, serr
	}
	h := w.Header()
	versionHeaders(w, v)
	h.Set("x-ms-blob-type", "PageBlob")
	h.Set("x-ms-creation-time", v.created.Format(http.TimeFormat))
	h.Set("x-ms-blob-sequence-number", "0")
	h.Set("x-ms-server-encrypted", "true")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	if v.snapshot != "" {
		h.Set("x-ms-snapshot", v.snapshot)
	}
	if head {
		h.Set("Content-Length", strconv.FormatInt(v.size, 10))
		return http.StatusOK, nil, nil
	}
	off, n, status := int64(0), v.size, http.StatusOK
	if first, last, present, ok := parseRange(r); present && ok {
		if first >= v.size {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", v.size))
			return 0, nil, fail(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource.")
		}
		if last < 0 || last >= v.size {
			last = v.size - 1
		}
		off, n, status = first, last-first+1, http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, v.size))
	}
	out := make([]byte, n)
	for pos := off; pos < off+n; {
		i, in := pos/PageSize, pos%PageSize
		m := min(PageSize-in, off+n-pos)
		if p, ok := v.pages[i]; ok {
			copy(out[pos-off:], p.data[in:in+m])
		}
		pos += m
	}
	return status, out, nil
}

// rng is a run of pages of one kind in a page list.
type rng struct {
	first, end int64 // byte offsets, end exclusive
	clear      bool
}

func (s *Server) getPageRanges(w http.ResponseWriter, r *http.Request) (int, []byte, *storageError) {
	q := r.URL.Query()
	prevSnap, prevURL := q.Get("prevsnapshot"), r.Header.Get("x-ms-previous-snapshot-url")
	diff := prevSnap != "" || prevURL != ""
	if diff {
		s.counts["page list diff"]++
	} else {
		s.counts["page list"]++
	}
	if q.Get("marker") != "" {
		s.counts["marker"]++
	}
	target, serr := s.resolve(r.URL.Path, q.Get("snapshot"))
	if serr != nil {
		return 0, nil, serr
	}
	var prev *version
	if diff {
		if prev, serr = s.previous(r, target, prevSnap, prevURL); serr != nil {
			return 0, nil, serr
		}
	}
	limit := s.MaxRanges
	if limit <= 0 {
		limit = DefaultMaxRanges
	}
	if v := q.Get("maxresults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return 0, nil, fail(http.StatusBadRequest, "InvalidQueryParameterValue", "maxresults %q is not a positive integer.", v)
		}
		limit = min(limit, n)
	}
	// The window, rounded out to whole pages.
	lo, hi := int64(0), target.size
	if first, last, present, ok := parseRange(r); present {
		if !ok {
			return 0, nil, fail(http.StatusBadRequest, "InvalidHeaderValue", "The range header is not in the correct format.")
		}
		if first >= target.size {
			return 0, nil, fail(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The range specified is invalid for the current size of the resource.")
		}
		if last < 0 || last >= target.size {
			last = target.size - 1
		}
		lo, hi = first/PageSize*PageSize, (last/PageSize+1)*PageSize
	}
	from := lo
	if m := q.Get("marker"); m != "" {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < lo || n > hi || n%PageSize != 0 {
			return 0, nil, fail(http.StatusBadRequest, "InvalidQueryParameterValue", "The marker %q is not valid for this request.", m)
		}
		from = n
	}
	ranges := listPages(target, prev, from/PageSize, hi/PageSize)
	var next string
	if len(ranges) > limit {
		next = strconv.FormatInt(ranges[limit].first, 10)
		ranges = ranges[:limit]
	}
	var body strings.Builder
	body.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
	for _, x := range ranges {
		el := "PageRange"
		if x.clear {
			el = "ClearRange"
		}
		fmt.Fprintf(&body, "<%s><Start>%d</Start><End>%d</End></%s>", el, x.first, x.end-1, el)
	}
	if next != "" {
		fmt.Fprintf(&body, "<NextMarker>%s</NextMarker>", next)
	} else {
		body.WriteString("<NextMarker />")
	}
	body.WriteString("</PageList>")
	h := w.Header()
	versionHeaders(w, target)
	h.Set("Content-Type", "application/xml")
	h.Set("x-ms-blob-content-length", strconv.FormatInt(target.size, 10))
	return http.StatusOK, []byte(body.String()), nil
}

// previous finds the older version a diff names and checks that it is one.
func (s *Server) previous(r *http.Request, target *version, prevSnap, prevURL string) (*version, *storageError) {
	var prev *version
	var serr *storageError
	switch {
	case prevSnap != "" && prevURL != "":
		return nil, fail(http.StatusBadRequest, "InvalidHeaderValue", "prevsnapshot and x-ms-previous-snapshot-url exclude each other.")
	case prevSnap != "":
		b := s.blobs[r.URL.Path]
		if b == nil || b.snapshots[prevSnap] == nil {
			return nil, fail(http.StatusConflict, "PreviousSnapshotNotFound", "The previous snapshot is not found.")
		}
		prev = b.snapshots[prevSnap]
	default:
		u, err := url.Parse(prevURL)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fail(http.StatusBadRequest, "InvalidHeaderValue", "x-ms-previous-snapshot-url is not a blob URL.")
		}
		uq := u.Query()
		if s.Signature != "" && uq.Get("sig") != s.Signature {
			return nil, fail(http.StatusForbidden, "AuthenticationFailed", "The SAS of the previous snapshot URL was not accepted.")
		}
		if prev, serr = s.resolve(u.Path, uq.Get("snapshot")); serr != nil {
			return nil, fail(http.StatusConflict, "PreviousSnapshotNotFound", "The previous snapshot is not found.")
		}
		if prev.snapshot == "" {
			return nil, fail(http.StatusConflict, "PreviousSnapshotOperationNotSupported", "The previous snapshot URL names a blob, not a snapshot.")
		}
	}
	switch {
	case prev.lineage != target.lineage:
		return nil, fail(http.StatusConflict, "BlobOverwritten", "The blob has been recreated since the previous snapshot was taken.")
	case target.snapshot != "" && prev.seq > target.seq:
		return nil, fail(http.StatusBadRequest, "PreviousSnapshotCannotBeNewer", "The prevsnapshot query parameter value cannot be newer than snapshot query parameter value.")
	}
	return prev, nil
}

// listPages lists the pages [lo, hi) of target (prev == nil), or those that
// differ from prev, as coalesced runs in address order.
func listPages(target, prev *version, lo, hi int64) []rng {
	var idx []int64
	collect := func(pages map[int64]page) {
		if hi-lo <= int64(len(pages)) {
			for i := lo; i < hi; i++ {
				if _, ok := pages[i]; ok {
					idx = append(idx, i)
				}
			}
			return
		}
		for i := range pages {
			if i >= lo && i < hi {
				idx = append(idx, i)
			}
		}
	}
	collect(target.pages)
	if prev != nil {
		collect(prev.pages)
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	var out []rng
	for _, i := range idx {
		t, inT := target.pages[i]
		var clear bool
		if prev != nil {
			p, inP := prev.pages[i]
			switch {
			case inT && inP && t.gen == p.gen:
				continue // unchanged
			case !inT && !inP:
				continue
			}
			clear = !inT
		}
		off := i * PageSize
		if n := len(out); n > 0 && out[n-1].end == off && out[n-1].clear == clear {
			out[n-1].end += PageSize
			continue
		}
		out = append(out, rng{first: off, end: off + PageSize, clear: clear})
	}
	return out
}
