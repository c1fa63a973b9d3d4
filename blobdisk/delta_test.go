package blobdisk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/blobfake"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

// deltaFixture is an encrypted ext4 volume in two states, as luksconv's TestDelta builds them: the
// plans of both (VHD format, for a page blob), the first pass's delta to the second, and a full
// conversion of state 2 written locally, the bytes every second pass must end with.
type deltaFixture struct {
	p1, p2, d  *luksconv.Plan
	src1, src2 *luksconv.Source
	changed    []extent.Range
	want       []byte // state 2 converted in full, without the VHD footer
}

// newDeltaFixture plans internal/deltafixture's two states and the delta between them, and converts
// state 2 in full into a local VHD.
func newDeltaFixture(t *testing.T) *deltaFixture {
	set := deltafixture.Build(t)
	dir, pass := set.Dir, set.Pass
	f := &deltaFixture{changed: deltafixture.ChangedPages(t, set.S1.Disk, set.S2.Disk)}
	if n := extent.Total(f.changed); n == 0 || n > 12<<20 {
		t.Fatalf("%d bytes of ciphertext changed: the fixture is not what the test means", n)
	}
	plan := func(st deltafixture.State) (*luksconv.Plan, *luksconv.Source) {
		t.Helper()
		src, err := luksconv.OpenFile(st.Disk)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: pass, Header: header(t, st.Header),
			Format: luksconv.FormatVHD})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p, src
	}
	f.p1, f.src1 = plan(set.S1)
	f.p2, f.src2 = plan(set.S2)
	var err error
	if f.d, err = luksconv.Delta(f.p1, f.p2, f.changed); err != nil {
		t.Fatal(err)
	}
	if f.p2.OutputSize%vhd.MiB != 0 || f.d.ID() == f.p1.ID() || f.d.ID() == f.p2.ID() ||
		blobdisk.DefaultJournal(f.d) == blobdisk.DefaultJournal(f.p1) {
		t.Fatalf("plans: %d-byte output; IDs %s, %s, delta %s", f.p2.OutputSize, f.p1.ID(), f.p2.ID(), f.d.ID())
	}

	local := filepath.Join(dir, "full2.vhd")
	o, err := luksconv.CreateFile(f.p2, local, luksconv.OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := luksconv.Execute(context.Background(), f.p2, f.src2, o, luksconv.ExecuteOptions{}); err != nil {
		o.Abort()
		t.Fatal(err)
	}
	if err := o.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	f.want = b[:f.p2.OutputSize] // the VHD footers differ in their time stamp and unique ID
	return f
}

// rewritten is what the delta plan writes: every byte of its regions.
func (f *deltaFixture) rewritten() int64 {
	return f.d.Totals.Copy + f.d.Totals.Decrypt + f.d.Totals.Zero
}

// blobServer is a page-blob service a test writes into: Azurite or internal/blobfake.
type blobServer struct {
	// url returns a SAS URL of the blob name (which need not exist), for writing or reading.
	url  func(t *testing.T, name string, write bool) string
	fake *blobfake.Server // nil for Azurite
}

func azuriteServer(t *testing.T) blobServer {
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	return blobServer{url: func(t *testing.T, name string, write bool) string {
		if write {
			return az.BlobSAS(t, "disks", name, azurite.WriteSAS, time.Hour)
		}
		return az.BlobSAS(t, "disks", name, azurite.ReadSAS, time.Hour)
	}}
}

const fakeSig = "blobdisk-delta-signature"

// fakeServer serves internal/blobfake; wrap, if set, stands between the client and the fake.
func fakeServer(t *testing.T, wrap func(http.Handler) http.Handler) blobServer {
	srv := blobfake.New()
	srv.Signature = fakeSig
	var h http.Handler = srv
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return blobServer{fake: srv, url: func(t *testing.T, name string, write bool) string {
		sp := "r"
		if write {
			sp = "rw"
		}
		return ts.URL + "/acct/disks/" + name + "?sv=2024-08-04&sr=b&sp=" + sp + "&se=2099-01-01T00%3A00%3A00Z&sig=" + fakeSig
	}}
}

// pass is one run of a plan into a blob through a blobdisk Output.
type pass struct {
	res        *luksconv.Result
	stats      blobio.SinkStats
	zeroFilled bool
	err        error
}

// upload executes p into the blob at url with the journal. With stopAfter > 0 the run is cancelled
// after that many writes (a killed process) and the output aborted; otherwise it is committed when
// commit is set and aborted (left open, as an upload kept for a later pass) when not.
func upload(t *testing.T, p *luksconv.Plan, src *luksconv.Source, url, journal string, opts blobdisk.OutputOptions,
	stopAfter int64, commit bool) pass {
	t.Helper()
	opts.Journal = journal
	opts.Workers = 4
	opts.Logf = t.Logf
	o, err := blobdisk.CreateOutput(context.Background(), p, url, opts)
	if err != nil {
		return pass{err: err}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out luksconv.Output = o
	if stopAfter > 0 {
		out = &countingOutput{Output: o, cancel: cancel, after: stopAfter}
	}
	res, err := luksconv.Execute(ctx, p, src, out, luksconv.ExecuteOptions{Workers: 4, ChunkSize: 256 << 10})
	r := pass{res: res, zeroFilled: o.ZeroFilled(), err: err}
	if err != nil || !commit {
		if aerr := out.Abort(); aerr != nil && r.err == nil {
			r.err = aerr
		}
	} else {
		r.err = out.Commit(context.Background())
	}
	r.stats = o.Stats()
	return r
}

// readBlob reads the whole blob, footer included.
func readBlob(t *testing.T, url string) []byte {
	t.Helper()
	b, err := blobio.OpenPageBlob(context.Background(), url, blobio.SourceOptions{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make([]byte, b.Size())
	if _, err := b.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkFooter fails unless the last 512 bytes of blob are a fixed VHD footer for a size-byte disk.
func checkFooter(t *testing.T, blob []byte, size int64) {
	t.Helper()
	if int64(len(blob)) != size+512 {
		t.Fatalf("blob is %d bytes, want %d", len(blob), size+512)
	}
	f, err := vhd.ParseFooter(blob[size:])
	if err != nil {
		t.Fatalf("footer: %v", err)
	}
	if f.DiskType != vhd.TypeFixed || f.CurrentSize != uint64(size) {
		t.Fatalf("footer: type %v, %d bytes; want fixed, %d", f.DiskType, f.CurrentSize, size)
	}
}

// requests counts the requests of one operation the fake has answered ("put page", "clear pages",
// "create"), or -1 on Azurite, which does not count.
func requests(s blobServer, op string) int {
	if s.fake == nil {
		return -1
	}
	return s.fake.Requests()[op]
}

// checkNoFooter fails if the blob's last page is a VHD footer: it looks like a complete disk.
func checkNoFooter(t *testing.T, url string, size int64) {
	t.Helper()
	if _, err := vhd.ParseFooter(readBlob(t, url)[size:]); err == nil {
		t.Fatal("the blob ends with a VHD footer part-way through the second pass: it looks like a complete disk")
	}
}

// TestDeltaUpload: a first pass converts state 1 of an encrypted ext4 volume into a new page blob,
// committed (footer written) or left open (no footer, as an upload kept in ActiveUpload for a
// cutover); a second pass executes luksconv.Delta's plan to state 2 into the same blob through a new
// blobdisk Output and its own journal, the blob found to hold data by its page list or declared so
// (OutputOptions.HoldsData). The Output reports ZeroFilled false, so freed space is cleared rather
// than skipped; the blob shows no footer while the pass runs; the pass is cancelled part-way and rerun,
// and resumes from its journal; after its Commit the blob holds, byte for byte, a full conversion of
// state 2 and a valid footer, and verifies as a source; and the second pass sent exactly the delta's
// bytes (Put Page and Clear Pages), a small part of the disk. On internal/blobfake and on Azurite.
func TestDeltaUpload(t *testing.T) {
	f := newDeltaFixture(t)
	t.Logf("ciphertext changed: %d bytes; the delta rewrites %d of %d bytes (%d decrypted, %d zeroed) in %d regions",
		extent.Total(f.changed), f.rewritten(), f.p2.OutputSize, f.d.Totals.Decrypt, f.d.Totals.Zero, len(f.d.Regions))
	if f.rewritten() == 0 || f.rewritten() > f.p2.OutputSize/4 || f.d.Totals.Zero == 0 {
		t.Fatalf("the delta rewrites %d bytes, %d of them zeros: the fixture is not what the test means", f.rewritten(), f.d.Totals.Zero)
	}
	for _, srv := range []struct {
		name  string
		start func(t *testing.T) blobServer
	}{
		{"blobfake", func(t *testing.T) blobServer { return fakeServer(t, nil) }},
		{"azurite", azuriteServer},
	} {
		t.Run(srv.name, func(t *testing.T) {
			s := srv.start(t)
			for _, committed := range []bool{true, false} {
				for _, holdsData := range []bool{false, true} {
					name := map[bool]string{true: "committed", false: "open"}[committed] +
						map[bool]string{true: "-holdsdata", false: "-listed"}[holdsData]
					t.Run(name, func(t *testing.T) {
						deltaUpload(t, f, s, name+".vhd", committed, holdsData)
					})
				}
			}
		})
	}
}

func deltaUpload(t *testing.T, f *deltaFixture, s blobServer, blob string, committed, holdsData bool) {
	dst, ro := s.url(t, blob, true), s.url(t, blob, false)
	dir := t.TempDir()
	j1, j2 := filepath.Join(dir, "pass1.journal"), filepath.Join(dir, "pass2.journal")
	size := f.p2.OutputSize

	start := time.Now()
	first := upload(t, f.p1, f.src1, dst, j1, blobdisk.OutputOptions{}, 0, committed)
	if first.err != nil {
		t.Fatalf("first pass: %v", first.err)
	}
	if !first.zeroFilled {
		t.Fatal("first pass: a new blob is not ZeroFilled")
	}
	if _, err := os.Stat(j1); committed != errors.Is(err, os.ErrNotExist) {
		t.Fatalf("first pass (committed %v): journal %v", committed, err)
	}
	t.Logf("first pass: Put Page %d bytes, cleared %d, skipped %d, %d requests, %v",
		first.stats.BytesWritten, first.stats.BytesCleared, first.stats.BytesSkipped, first.stats.Requests, time.Since(start).Round(time.Millisecond))
	b1 := readBlob(t, ro)
	if committed {
		checkFooter(t, b1, size)
	}
	if bytes.Equal(b1[:size], f.want) {
		t.Fatal("the first pass already gave state 2: the test proves nothing")
	}

	// The second pass, cancelled after a few writes.
	opts := blobdisk.OutputOptions{HoldsData: holdsData}
	put0, clear0 := requests(s, "put page"), requests(s, "clear pages")
	start = time.Now()
	stopped := upload(t, f.d, f.src2, dst, j2, opts, 5, true)
	if !errors.Is(stopped.err, context.Canceled) {
		t.Fatalf("interrupted second pass: %v, want cancellation", stopped.err)
	}
	if stopped.zeroFilled {
		t.Fatal("second pass: the blob holds the first pass's disk, yet the output is ZeroFilled")
	}
	if _, err := os.Stat(j2); err != nil {
		t.Fatalf("after the interrupted second pass: journal %v", err)
	}
	checkNoFooter(t, ro, size)
	// Rerun: resumes from the journal.
	second := upload(t, f.d, f.src2, dst, j2, opts, 0, true)
	elapsed := time.Since(start)
	if second.err != nil {
		t.Fatalf("second pass, rerun: %v", second.err)
	}
	put1, clear1 := requests(s, "put page"), requests(s, "clear pages")
	if second.zeroFilled {
		t.Fatal("second pass, rerun: ZeroFilled")
	}
	if _, err := os.Stat(j2); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Commit: journal %v, want removed", err)
	}
	sent := stopped.stats.BytesWritten + stopped.stats.BytesCleared + second.stats.BytesWritten + second.stats.BytesCleared
	reqs := "requests not counted (Azurite)"
	if s.fake != nil {
		reqs = fmt.Sprintf("%d Put Page and %d Clear Pages requests, footer included", put1-put0, clear1-clear0)
	}
	t.Logf("second pass: interrupted run Put Page %d bytes, cleared %d; rerun resumed %d, Put Page %d, cleared %d; %s; %v",
		stopped.stats.BytesWritten, stopped.stats.BytesCleared, second.res.BytesResumed, second.stats.BytesWritten, second.stats.BytesCleared,
		reqs, elapsed.Round(time.Millisecond))
	switch {
	case stopped.res.BytesWritten == 0 || stopped.res.BytesWritten >= f.rewritten():
		t.Errorf("the interrupted run wrote %d of the delta's %d bytes: not interrupted part-way", stopped.res.BytesWritten, f.rewritten())
	case second.res.BytesResumed != stopped.res.BytesWritten:
		t.Errorf("the rerun resumed %d bytes; the interrupted run wrote %d", second.res.BytesResumed, stopped.res.BytesWritten)
	case stopped.res.BytesWritten+second.res.BytesWritten != f.rewritten() || sent != f.rewritten():
		t.Errorf("the second pass handed over %d+%d bytes and sent %d (Put Page and Clear Pages); the delta rewrites %d",
			stopped.res.BytesWritten, second.res.BytesWritten, sent, f.rewritten())
	case stopped.stats.BytesCleared+second.stats.BytesCleared == 0:
		t.Error("the second pass cleared nothing, yet the delta zeroes freed space")
	case stopped.stats.BytesSkipped+second.stats.BytesSkipped != 0 || stopped.res.BytesSkipped+second.res.BytesSkipped != 0:
		t.Error("the second pass skipped zeros in a blob that holds data")
	case sent > size/4 || stopped.stats.BytesWritten+second.stats.BytesWritten >= first.stats.BytesWritten:
		t.Errorf("the second pass sent %d bytes of a %d-byte disk; the first wrote %d", sent, size, first.stats.BytesWritten)
	}

	got := readBlob(t, ro)
	checkFooter(t, got, size)
	if !bytes.Equal(got[:size], f.want) {
		t.Fatalf("the blob after the second pass differs from a full conversion of state 2 (first at byte %d)", testenv.FirstDiff(got[:size], f.want))
	}
	back, err := blobdisk.OpenSource(context.Background(), ro, blobdisk.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if back.Format != "vhd-fixed" || back.Size != size {
		t.Fatalf("blob source: %s, %d bytes", back.Format, back.Size)
	}
	if rep, err := luksconv.Verify(context.Background(), f.p2, f.src2, back, luksconv.VerifyOptions{}); err != nil || !rep.Pass {
		t.Fatalf("verify of the blob against state 2's plan: %v", err)
	}
}

// TestDeltaUploadUnlisted: when the blob's page list cannot be read (here refused with 403), the sink
// takes an existing blob for one that holds data: a second pass clears the zeros it must write, and the
// result equals a full conversion of state 2 (it was taken for empty, and the first pass's data stayed
// where state 2 has zeros). OutputOptions.HoldsData, what a second pass sets, gives the same without
// the list; a journal made for a blob the caller said was Empty is refused with it (its records count
// skipped zeros as done), and a blob that does not exist is refused rather than created.
func TestDeltaUploadUnlisted(t *testing.T) {
	f := newDeltaFixture(t)
	s := fakeServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("comp") == "pagelist" {
				w.Header().Set("x-ms-error-code", "AuthorizationPermissionMismatch")
				w.WriteHeader(http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	size := f.p2.OutputSize
	dir := t.TempDir()
	firstPass := func(blob string) string {
		t.Helper()
		dst := s.url(t, blob, true)
		if r := upload(t, f.p1, f.src1, dst, filepath.Join(dir, blob+".1"), blobdisk.OutputOptions{}, 0, true); r.err != nil {
			t.Fatalf("first pass: %v", r.err)
		}
		return dst
	}

	// Without HoldsData: not listed, so taken for holding data.
	dst := firstPass("unlisted.vhd")
	r := upload(t, f.d, f.src2, dst, filepath.Join(dir, "unlisted.2"), blobdisk.OutputOptions{}, 0, true)
	if r.err != nil || r.zeroFilled {
		t.Fatalf("second pass into an unlisted blob: %v, ZeroFilled %v", r.err, r.zeroFilled)
	}
	got := readBlob(t, s.url(t, "unlisted.vhd", false))
	checkFooter(t, got, size)
	if !bytes.Equal(got[:size], f.want) {
		t.Fatalf("without HoldsData, the unlisted blob differs from a full conversion of state 2 (first at byte %d)", testenv.FirstDiff(got[:size], f.want))
	}

	// A journal of a pass told the blob was Empty, resumed with HoldsData: refused.
	dst = firstPass("said-empty.vhd")
	j := filepath.Join(dir, "said-empty.2")
	if r = upload(t, f.d, f.src2, dst, j, blobdisk.OutputOptions{Empty: true}, 3, true); !errors.Is(r.err, context.Canceled) || !r.zeroFilled {
		t.Fatalf("interrupted second pass told Empty: %v, ZeroFilled %v", r.err, r.zeroFilled)
	}
	if r = upload(t, f.d, f.src2, dst, j, blobdisk.OutputOptions{HoldsData: true}, 0, true); !errors.Is(r.err, blobio.ErrJournalMismatch) {
		t.Fatalf("a journal of a pass that took the blob for empty, resumed with HoldsData: %v, want ErrJournalMismatch", r.err)
	}

	// With HoldsData: right, interrupted or not.
	dst = firstPass("safe.vhd")
	j = filepath.Join(dir, "safe.2")
	opts := blobdisk.OutputOptions{HoldsData: true}
	stopped := upload(t, f.d, f.src2, dst, j, opts, 5, true)
	if !errors.Is(stopped.err, context.Canceled) || stopped.zeroFilled {
		t.Fatalf("interrupted second pass with HoldsData: %v, ZeroFilled %v", stopped.err, stopped.zeroFilled)
	}
	checkNoFooter(t, s.url(t, "safe.vhd", false), size)
	second := upload(t, f.d, f.src2, dst, j, opts, 0, true)
	if second.err != nil || second.zeroFilled || second.res.BytesResumed != stopped.res.BytesWritten {
		t.Fatalf("second pass with HoldsData, rerun: %v, ZeroFilled %v, resumed %d of the %d written", second.err, second.zeroFilled,
			second.res.BytesResumed, stopped.res.BytesWritten)
	}
	got = readBlob(t, s.url(t, "safe.vhd", false))
	checkFooter(t, got, size)
	if !bytes.Equal(got[:size], f.want) {
		t.Fatalf("with HoldsData, the blob differs from a full conversion of state 2 (first at byte %d)", testenv.FirstDiff(got[:size], f.want))
	}
	if sent := stopped.stats.BytesWritten + stopped.stats.BytesCleared + second.stats.BytesWritten + second.stats.BytesCleared; sent != f.rewritten() {
		t.Errorf("with HoldsData: sent %d bytes, the delta rewrites %d", sent, f.rewritten())
	}

	// A blob that does not exist holds no earlier pass: refused, not created.
	creates := requests(s, "create")
	if r := upload(t, f.d, f.src2, s.url(t, "missing.vhd", true), filepath.Join(dir, "missing"), opts, 0, true); r.err == nil ||
		requests(s, "create") != creates {
		t.Fatalf("HoldsData on a missing blob: %v; %d blobs created", r.err, requests(s, "create")-creates)
	}
}
