package luksconv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/vhd"
)

// IsURL reports whether name is an http(s) URL (a page blob SAS URL) rather than a local path.
func IsURL(name string) bool {
	return strings.HasPrefix(name, "https://") || strings.HasPrefix(name, "http://")
}

// BlobOptions tune page-blob sources and sinks.
type BlobOptions struct {
	// Workers sizes the connection pool (the engine's workers).
	Workers int
	// Logf receives warnings and retry notices, SAS signatures already redacted.
	Logf func(format string, args ...any)
}

// OpenPageBlob opens a page blob that holds a fixed VHD — an exported snapshot or disk, by its SAS URL
// (`az snapshot grant-access`) — as a Source. Only the pages the blob has written are read.
func OpenPageBlob(ctx context.Context, sasURL string, opts BlobOptions) (*Source, error) {
	b, err := blobio.OpenPageBlob(ctx, sasURL, blobio.SourceOptions{Workers: opts.Workers, Logf: opts.Logf})
	if err != nil {
		return nil, err
	}
	s, err := NewSource(b, b.Size())
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("%s: %w", blobio.Redact(sasURL), err)
	}
	pages, err := b.Allocated(ctx)
	if err != nil {
		b.Close()
		return nil, err
	}
	s.pageMap = clipExtents(pages, s.Size)
	s.Path, s.closer = blobio.Redact(sasURL), b
	return s, nil
}

// clipExtents keeps the parts of the blob's written pages that lie inside the virtual disk (the VHD
// footer page is not disk data).
func clipExtents(pages []blobio.Extent, size int64) []vhd.Extent {
	out := []vhd.Extent{}
	for _, p := range pages {
		if e := min(p.Off+p.Len, size); e > p.Off {
			out = append(out, vhd.Extent{Off: p.Off, Len: e - p.Off})
		}
	}
	return out
}

// PageBlobSink writes the output disk to a page blob: a managed disk's upload URL (`az disk
// grant-access --access-level Write`) or a new blob. It is a Sink; Commit writes the VHD footer.
type PageBlobSink struct {
	*blobio.Sink
}

// CreatePageBlobSink opens the upload target for a disk of size bytes (the blob is size+512). With a
// journal file, an interrupted run resumes where it stopped; tag identifies the content (Plan.ID).
func CreatePageBlobSink(ctx context.Context, sasURL string, size int64, journal, tag string, opts BlobOptions) (*PageBlobSink, error) {
	if size%vhd.MiB != 0 {
		return nil, fmt.Errorf("disk size %d is not a whole MiB, as Azure requires (use the vhd format): %w", size, ErrUsage)
	}
	s, err := blobio.CreatePageBlobSink(ctx, sasURL, size, blobio.SinkOptions{Workers: opts.Workers, Logf: opts.Logf,
		Journal: journal, JournalTag: tag})
	if err != nil {
		return nil, err
	}
	return &PageBlobSink{s}, nil
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
