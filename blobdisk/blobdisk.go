// Package blobdisk opens Azure page blobs as the sources and outputs of a luksconv conversion: an
// exported snapshot or disk by its read SAS URL (`az snapshot grant-access`), and a managed disk's
// upload URL (`az disk grant-access --access-level Write`) or any page blob by a write SAS, resumable
// through a journal file. It joins the offline engine (package luksconv), which knows nothing of
// Azure, to the data plane (package blobio).
package blobdisk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

// IsURL reports whether name is an http(s) URL (a page blob SAS URL) rather than a local path.
func IsURL(name string) bool {
	return strings.HasPrefix(name, "https://") || strings.HasPrefix(name, "http://")
}

// Options tune page-blob sources and outputs.
type Options struct {
	// Workers sizes the connection pool: the engine's workers (default blobio.DefaultWorkers).
	Workers int
	// Logf receives warnings and retry notices, SAS signatures already redacted.
	Logf func(format string, args ...any)
	// Bearer, if set, sends an Entra token with every request (a disk with
	// dataAccessAuthMode=AzureActiveDirectory).
	Bearer *blobio.Bearer
	// Timeout, if set, ends the run once no request has succeeded for this long
	// (blobio.RetryOptions.NoProgress): a server that stops answering is not retried for ever.
	Timeout time.Duration
}

// OpenSource opens the page blob at sasURL, holding a fixed VHD (an exported snapshot or disk), as a
// source. Only the pages the blob has written are read. The Source's Path is the URL with its SAS
// signature redacted; Close releases the blob's connections.
func OpenSource(ctx context.Context, sasURL string, opts Options) (*luksconv.Source, error) {
	b, err := blobio.OpenPageBlob(ctx, sasURL, blobio.SourceOptions{Workers: opts.Workers, Logf: opts.Logf, Bearer: opts.Bearer,
		Retry: blobio.RetryOptions{NoProgress: opts.Timeout}})
	if err != nil {
		return nil, err
	}
	pages, err := b.Allocated(ctx)
	if err != nil {
		b.Close()
		return nil, err
	}
	s, err := luksconv.OpenReader(pagedBlob{b, pages}, b.Size(), b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", blobio.Redact(sasURL), err)
	}
	s.Path = blobio.Redact(sasURL)
	return s, nil
}

// pagedBlob is a blob with the page list read at open, so that it is a luksconv.Allocator.
type pagedBlob struct {
	*blobio.Source
	pages []extent.Range
}

func (b pagedBlob) Allocated() []extent.Range { return b.pages }

// OutputOptions tune CreateOutput.
type OutputOptions struct {
	Options
	// Journal is the resume journal file (default: DefaultJournal(p) in the current directory). A run
	// interrupted by a crash, a cancellation or an expired SAS is started again with the same plan and
	// journal and skips what is done.
	Journal string
	// Finish, if set, runs in Commit once the footer is written: the step that ends the upload in
	// Azure (revoking the disk's write access). The journal is removed only after it succeeds, so
	// that a rerun after a failed Finish writes nothing again and only finishes.
	Finish func(ctx context.Context) error
	// SameTarget says the caller has proved that sasURL reaches the very disk the journal was written
	// for (a managed disk tagged with the plan's ID): the journal then applies although the URL's host
	// or path changed, which Azure does not promise to keep across grants of the same disk.
	SameTarget bool
	// HoldsData says the blob holds the conversion an earlier pass wrote, which p (a luksconv.Delta
	// plan) updates in place: the blob must exist, and the Output is never ZeroFilled, as Delta
	// requires.
	HoldsData bool
	// Empty says the caller created the blob (a new upload disk) just now: it holds no data, and its
	// page list is not read (see blobio.SinkOptions.Empty).
	Empty bool
}

// DefaultJournal is the journal file name an upload of p uses unless told otherwise.
func DefaultJournal(p *luksconv.Plan) string { return ".luksconv-" + p.ID()[:16] + ".journal" }

// Output writes a converted disk into a page blob: the disk, then on Commit a fixed VHD footer, so
// the blob is Plan.OutputSize+512 bytes as a managed-disk upload requires. It keeps the
// luksconv.Output contract: until Commit returns nil the upload is unfinished (a managed disk stays
// in ActiveUpload, which no VM can attach); Abort keeps the journal for a rerun. It is safe for
// concurrent use.
type Output struct {
	s       *blobio.Sink
	journal string
	finish  func(ctx context.Context) error
	ended   atomic.Bool // Commit or Abort ran
}

// CreateOutput opens the page blob at sasURL as the output of p. p.OutputSize must be a whole MiB, as
// Azure requires (luksconv.FormatVHD plans are). A URL naming the plan's own source blob is refused
// (luksconv.ErrOutputIsInput). The journal, made or resumed, belongs to this plan (Plan.ID): a
// journal of another plan is refused (blobio.ErrJournalMismatch).
func CreateOutput(ctx context.Context, p *luksconv.Plan, sasURL string, opts OutputOptions) (*Output, error) {
	if p.OutputSize%vhd.MiB != 0 {
		return nil, fmt.Errorf("%w: disk size %d is not a whole MiB, as Azure requires (plan with the vhd format)", luksconv.ErrInvalidOption, p.OutputSize)
	}
	if IsURL(p.Source.Path) && target(p.Source.Path) == target(sasURL) {
		return nil, fmt.Errorf("%w: %s is the source blob; luksconv never writes to its inputs", luksconv.ErrOutputIsInput, blobio.Redact(sasURL))
	}
	journal := opts.Journal
	if journal == "" {
		journal = DefaultJournal(p)
	}
	s, err := blobio.CreatePageBlobSink(ctx, sasURL, p.OutputSize, blobio.SinkOptions{Workers: opts.Workers, Logf: opts.Logf, Bearer: opts.Bearer,
		Retry:   blobio.RetryOptions{NoProgress: opts.Timeout},
		Journal: journal, JournalTag: p.ID(), JournalRetarget: opts.SameTarget, HoldsData: opts.HoldsData, Empty: opts.Empty})
	if err != nil {
		return nil, err
	}
	return &Output{s: s, journal: journal, finish: opts.Finish}, nil
}

// target is a blob URL without its query (the SAS), which changes with every grant.
func target(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	return strings.ToLower(u)
}

// JournalPath is the resume journal's file name.
func (o *Output) JournalPath() string { return o.journal }

// URL is the blob's URL with the SAS signature redacted.
func (o *Output) URL() string { return o.s.URL() }

// Stats returns the upload's counters so far.
func (o *Output) Stats() blobio.SinkStats { return o.s.Stats() }

// WriteAt writes whole 512-byte pages within the disk.
func (o *Output) WriteAt(b []byte, off int64) (int, error) { return o.s.WriteAt(b, off) }

// ZeroFilled reports whether the blob held no data when the upload began (a new managed disk).
func (o *Output) ZeroFilled() bool { return o.s.ZeroFilled() }

// Journal is the upload's resume journal.
func (o *Output) Journal() luksconv.Journal { return o.s }

// Commit writes the VHD footer, checks it, runs OutputOptions.Finish and then removes the journal. On
// error the journal stays, so that the same run started again only does what is left.
func (o *Output) Commit(ctx context.Context) error {
	if !o.ended.CompareAndSwap(false, true) {
		return errors.New("blobdisk: output already committed or aborted")
	}
	err := o.s.Commit(ctx)
	err = errors.Join(err, o.s.Close())
	if err == nil && o.finish != nil {
		err = o.finish(ctx)
	}
	if err != nil {
		return err
	}
	if err := os.Remove(o.journal); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Abort flushes and closes the journal, which a rerun resumes from, and leaves the upload unfinished.
func (o *Output) Abort() error {
	if !o.ended.CompareAndSwap(false, true) {
		return nil
	}
	return o.s.Close()
}
