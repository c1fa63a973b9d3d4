package blobio

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/luksconv/luksconv/extent"
)

// Previous names the older version of a page blob that ChangedSince
// compares a Source with. Exactly one field is set.
//
// Both forms are Get Page Ranges with a previous snapshot, as the Blob
// service REST specification defines it (azure-rest-api-specs,
// specification/storage/data-plane/Microsoft.BlobStorage/stable/2026-12-06/blob.json,
// operation PageBlob_GetPageRangesDiff, "GET /{containerName}/{blob}?comp=pagelist&diff",
// parameters PrevSnapshot and PrevSnapshotUrl; and learn.microsoft.com/rest/api/storageservices/get-page-ranges):
//
//   - prevsnapshot (query, version 2015-07-08 and later) "is a DateTime value
//     that specifies that the response will contain only pages that were
//     changed between target blob and previous snapshot. Changed pages include
//     both updated and cleared pages. The target blob may be a snapshot, as
//     long as the snapshot specified by prevsnapshot is the older of the two."
//   - x-ms-previous-snapshot-url (header, version 2019-04-19 and later)
//     "specifies the URL of a previous snapshot of the target blob": the form
//     managed-disk incremental snapshots use, where each snapshot is exported
//     as its own blob URL (grant-access) rather than as ?snapshot= of one blob.
//
// The response is the PageList of a plain Get Page Ranges with, besides the
// <PageRange> elements (pages changed), <ClearRange> elements (pages cleared).
type Previous struct {
	// Snapshot is the DateTime of an older snapshot of the same blob, as
	// Snapshot Blob returned it in x-ms-snapshot (the prevsnapshot parameter).
	Snapshot string
	// URL is the URL of the previous incremental snapshot of the same managed
	// disk, with its SAS (the x-ms-previous-snapshot-url header). Its
	// signature is a secret like the Source's: errors and logs redact it.
	URL string
}

// ChangedSince lists the pages of the blob that differ from the previous
// snapshot prev: changed are the pages written since (PageRange), cleared the
// pages cleared since (ClearRange), both sorted and merged byte ranges inside
// the blob, and never overlapping each other. Everything else is as it was in
// prev. The Source's URL is the newer of the two: the live blob, a snapshot
// URL (?snapshot=), or for a managed disk the newer incremental snapshot's
// grant-access URL.
//
// The blob is listed in windows (SourceOptions.PageRangeWindow) with
// continuation markers, under the same bounds as Allocated: a response that
// lists ranges out of order, overlapping, unaligned or outside the blob, a
// changed page that is also cleared, or a continuation that does not end is
// an error wrapping ErrProtocol. Unlike Allocated, a failure is returned,
// never replaced by "everything changed": the caller decides what to do.
func (s *Source) ChangedSince(ctx context.Context, prev Previous) (changed, cleared []extent.Range, err error) {
	const op = "get page ranges diff"
	if prev.URL != "" {
		// Before anything can fail: its signature must not show in the error.
		s.c.red.addURL(prev.URL)
	}
	fail := func(err error) ([]extent.Range, []extent.Range, error) {
		return nil, nil, s.c.red.newError(op, s.c.url, 0, 0, 0, err)
	}
	switch {
	case (prev.Snapshot == "") == (prev.URL == ""):
		return fail(errors.New("name the previous snapshot by its time or by its URL (exactly one)"))
	case !s.pageBlob:
		return fail(fmt.Errorf("%w: not a page blob", errPermanent))
	}
	if prev.URL != "" {
		u, err := url.Parse(prev.URL)
		if err != nil {
			return fail(fmt.Errorf("previous snapshot URL: %w", err))
		}
		if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			return fail(fmt.Errorf("previous snapshot URL %s is not an http(s) blob URL", s.c.red.redact(prev.URL)))
		}
	}
	if s.size == 0 {
		return nil, nil, nil
	}
	// The configured retries, not pageRangeTries: there is no cheap fallback.
	got, err := s.c.listRanges(ctx, op, s.size, s.window, min(s.workers, 8), 0, s.c.diffList(prev))
	if err != nil {
		return nil, nil, err
	}
	return got[kindPage], got[kindClear], nil
}

// diffList is Get Page Ranges of the blob against the previous snapshot prev.
func (c *conn) diffList(prev Previous) pageLister {
	return func(ctx context.Context, w extent.Range, marker *string) (pageList, error) {
		o := &pageblob.GetPageRangesDiffOptions{
			Range:  blob.HTTPRange{Offset: w.Off, Count: w.Len},
			Marker: marker,
		}
		if prev.Snapshot != "" {
			o.PrevSnapshot = &prev.Snapshot
		} else {
			o.PrevSnapshotURL = &prev.URL
		}
		resp, err := c.client.NewGetPageRangesDiffPager(o).NextPage(ctx)
		if err != nil {
			return pageList{}, err
		}
		var l pageList
		for _, r := range resp.PageRange {
			if r != nil {
				l.ranges[kindPage] = append(l.ranges[kindPage], xmlRange{r.Start, r.End})
			}
		}
		for _, r := range resp.ClearRange {
			if r != nil {
				l.ranges[kindClear] = append(l.ranges[kindClear], xmlRange{r.Start, r.End})
			}
		}
		l.next = resp.NextMarker
		return l, nil
	}
}
