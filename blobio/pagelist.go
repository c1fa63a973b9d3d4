package blobio

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/recovered"
)

// Get Page Ranges answers with a PageList: <PageRange> elements (pages that
// hold data) and, when the request names a previous snapshot, <ClearRange>
// elements (pages cleared since), each a <Start> and an inclusive <End>, and
// a <NextMarker> when the list continues. One reader serves both forms: the
// plain list of a blob (Allocated, the Sink's emptiness check) and the diff
// between two snapshots (ChangedSince). Nothing in a response is trusted:
// every range must be whole pages inside the blob, each kind in ascending
// order without overlap across the whole window, a changed range may not
// overlap a cleared one, and the continuation is bounded.

// pageList is one Get Page Ranges response: its PageRange and ClearRange
// elements and its continuation marker.
type pageList struct {
	ranges [2][]xmlRange // [kindPage]: PageRange, [kindClear]: ClearRange
	next   *string
}

// The two kinds of range a page list holds.
const (
	kindPage  = 0 // PageRange: pages holding data (in a diff: changed since the previous snapshot)
	kindClear = 1 // ClearRange: pages cleared since the previous snapshot (diffs only)
)

var kindName = [2]string{"page range", "clear range"}

// xmlRange is a <PageRange> or <ClearRange>: Start and inclusive End, either
// of which a hostile response may leave out.
type xmlRange struct{ start, end *int64 }

// pageLister makes one Get Page Ranges request for window w, continuing at
// marker (nil for the first request).
type pageLister func(ctx context.Context, w extent.Range, marker *string) (pageList, error)

// plainList is Get Page Ranges of the blob itself.
func (c *conn) plainList(ctx context.Context, w extent.Range, marker *string) (pageList, error) {
	pager := c.client.NewGetPageRangesPager(&pageblob.GetPageRangesOptions{
		Range:  blob.HTTPRange{Offset: w.Off, Count: w.Len},
		Marker: marker,
	})
	resp, err := pager.NextPage(ctx)
	if err != nil {
		return pageList{}, err
	}
	var l pageList
	for _, r := range resp.PageRange {
		if r != nil {
			l.ranges[kindPage] = append(l.ranges[kindPage], xmlRange{r.Start, r.End})
		}
	}
	// A plain list has no ClearRange; one sent anyway means nothing.
	l.next = resp.NextMarker
	return l, nil
}

// pageRanges lists the written pages of [0, size) in windows, up to
// parallel windows at a time.
func (c *conn) pageRanges(ctx context.Context, size, window int64, parallel int) ([]extent.Range, error) {
	got, err := c.listRanges(ctx, "get page ranges", size, window, parallel, pageRangeTries, c.plainList)
	return got[kindPage], err
}

// listRanges lists [0, size) with fetch in windows of window bytes, up to
// parallel windows at a time, each request tried up to tries times (0: the
// configured MaxTries). It returns both kinds of range, each sorted and merged.
func (c *conn) listRanges(ctx context.Context, op string, size, window int64, parallel, tries int, fetch pageLister) ([2][]extent.Range, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nWindows := (size + window - 1) / window
	windows := make(chan extent.Range)
	go func() {
		defer close(windows)
		for off := int64(0); off < size; off += window {
			select {
			case windows <- extent.Range{Off: off, Len: min(window, size-off)}:
			case <-lctx.Done():
				return
			}
		}
	}()
	var (
		mu       sync.Mutex
		all      [2][]extent.Range
		listedN  int64
		firstErr error
		wg       sync.WaitGroup
	)
	for range max(parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range windows {
				// A panic (a bug in reading a response) fails the listing: on this goroutine it would
				// end the caller's process. The *Error redacts its text.
				var got [2][]extent.Range
				err := recovered.Call(func() (err error) {
					got, err = c.listWindow(lctx, op, w, size, tries, fetch)
					return err
				})
				var pe *recovered.Error
				if errors.As(err, &pe) {
					err = &Error{Op: op, URL: c.url, Off: w.Off, Len: w.Len, Err: pe}
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				if err == nil {
					all[kindPage] = append(all[kindPage], got[kindPage]...)
					all[kindClear] = append(all[kindClear], got[kindClear]...)
					listedN++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	switch {
	case firstErr != nil:
		return [2][]extent.Range{}, firstErr
	case ctx.Err() != nil:
		return [2][]extent.Range{}, c.red.newError(op, c.url, 0, size, 0, ctx.Err())
	case listedN != nWindows:
		// An unlisted window would read as "never written": never return a partial map.
		return [2][]extent.Range{}, c.red.newError(op, c.url, 0, size, 0, fmt.Errorf("listed %d of %d windows", listedN, nWindows))
	}
	return [2][]extent.Range{extent.Merge(all[kindPage]), extent.Merge(all[kindClear])}, nil
}

// listWindow lists one window, following continuation markers.
func (c *conn) listWindow(ctx context.Context, op string, w extent.Range, size int64, tries int, fetch pageLister) ([2][]extent.Range, error) {
	var out [2][]extent.Range
	fail := func(err error) ([2][]extent.Range, error) {
		return [2][]extent.Range{}, c.red.newError(op, c.url, w.Off, w.Len, 1, err)
	}
	var marker *string
	next := [2]int64{w.Off, w.Off} // ranges of each kind come in order: none may start before next
	empty := 0
	for pages := 0; ; pages++ {
		if pages >= maxPageListPages {
			return fail(fmt.Errorf("more than %d continuation pages", maxPageListPages))
		}
		var resp pageList
		err := c.do(ctx, op, w.Off, w.Len, tries, func(ctx context.Context) (err error) {
			resp, err = fetch(ctx, w, marker)
			return err
		})
		if err != nil {
			return [2][]extent.Range{}, err
		}
		// A response counts as empty unless it lists a range inside the
		// window: ranges outside it are no progress either.
		progress := false
		for kind, rs := range resp.ranges {
			for _, pr := range rs {
				if pr.start == nil || pr.end == nil {
					continue
				}
				a, b := *pr.start, *pr.end+1 // End is inclusive
				if a < 0 || b <= a || b > size || a%PageSize != 0 || b%PageSize != 0 {
					return fail(fmt.Errorf("%w: invalid %s %d-%d in a %d-byte blob", ErrProtocol, kindName[kind], *pr.start, *pr.end, size))
				}
				a, b = max(a, w.Off), min(b, w.End())
				if a >= b {
					continue
				}
				if a < next[kind] {
					return fail(fmt.Errorf("%w: %s %d-%d overlaps or precedes the one before (ending at %d)", ErrProtocol, kindName[kind], *pr.start, *pr.end, next[kind]))
				}
				if n := len(out[kind]); n > 0 && out[kind][n-1].End() == a {
					out[kind][n-1].Len += b - a // adjacent: merged, so the list stays as small as the map
				} else {
					out[kind] = append(out[kind], extent.Range{Off: a, Len: b - a})
				}
				next[kind] = b
				progress = true
			}
		}
		if !progress {
			if empty++; empty > maxEmptyPages {
				return fail(fmt.Errorf("%w: %d continuation pages in a row list no range", ErrProtocol, empty))
			}
		} else {
			empty = 0
		}
		if resp.next == nil || *resp.next == "" {
			break
		}
		if marker != nil && *marker == *resp.next {
			return fail(fmt.Errorf("%w: continuation marker did not advance", ErrProtocol))
		}
		marker = resp.next
	}
	// A page is changed or cleared, never both.
	if a, b, ok := firstOverlap(out[kindPage], out[kindClear]); ok {
		return fail(fmt.Errorf("%w: page range %d-%d overlaps clear range %d-%d", ErrProtocol, a.Off, a.End()-1, b.Off, b.End()-1))
	}
	return out, nil
}

// firstOverlap returns the first pair of ranges, one from each sorted,
// non-overlapping list, that share a byte.
func firstOverlap(x, y []extent.Range) (extent.Range, extent.Range, bool) {
	for i, j := 0, 0; i < len(x) && j < len(y); {
		switch {
		case x[i].End() <= y[j].Off:
			i++
		case y[j].End() <= x[i].Off:
			j++
		default:
			return x[i], y[j], true
		}
	}
	return extent.Range{}, extent.Range{}, false
}
