package blobio

import (
	"errors"
	"fmt"
	"strings"
)

// Errors a caller must tell apart; test with errors.Is. A failed request is an *Error.
var (
	// ErrUnaligned is returned for a write whose offset or length is not a
	// multiple of PageSize: Put Page cannot express it.
	ErrUnaligned = errors.New("blobio: write not aligned to 512-byte pages")
	// ErrJournalMismatch is returned when a resume journal belongs to another
	// blob, size or content.
	ErrJournalMismatch = errors.New("blobio: journal does not match this upload")
)

// Error is the error returned by a failed request. Its text names the
// operation, the byte range and the blob with its SAS signature redacted, and
// never contains the signature.
type Error struct {
	Op         string // "read", "write", "clear", "create", "get properties", "get page ranges"
	URL        string // the blob URL, redacted
	Off, Len   int64  // the byte range of the operation; Len is 0 when it has none
	StatusCode int    // the HTTP status; 0 when no response arrived
	Code       string // the storage error code (x-ms-error-code), e.g. "ServerBusy"
	Tries      int    // requests made
	// Err is the cause. It is context.Canceled or context.DeadlineExceeded when
	// the caller's context ended; otherwise an error whose text has been
	// redacted. The SDK's own error is not kept, because its text and fields
	// carry the request URL. A panic while listing page ranges is kept as such
	// (with its stack, for errors.As); Error() redacts its text.
	Err error
}

// Error describes the failed request, with any SAS signature redacted.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "blobio: %s", e.Op)
	if e.Len > 0 {
		fmt.Fprintf(&b, " of bytes [%d, %d)", e.Off, e.Off+e.Len)
	}
	if e.URL != "" {
		fmt.Fprintf(&b, " of %s", e.URL)
	}
	if e.Tries > 1 {
		fmt.Fprintf(&b, " (%d tries)", e.Tries)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	// Defence in depth: the parts were redacted already.
	return Redact(b.String())
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus returns the HTTP status of the failed request in err's chain, or 0.
func HTTPStatus(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}
