// Package blobio is the Azure data plane of luksconv: it reads a page blob
// (a snapshot or disk exported with grant-access) as an io.ReaderAt and
// writes a page blob (a managed disk opened for direct upload, or any page
// blob) through Put Page, with a resume journal.
//
// Both ends talk to a SAS URL through the Azure SDK for Go (azblob's pageblob
// client) with the SDK's own retries turned off: this package retries itself,
// because a ranged GET that breaks mid-body must resume at the first missing
// byte, not start again, and because managed-disk export and import URLs
// accept no access conditions (no If-Match), so the SDK's RetryReader cannot
// be used on them. Back-off is exponential with jitter; a Retry-After from
// the service is honoured.
//
// A Source serves ReadAt with one ranged GET per call and reports the
// allocated pages from Get Page Ranges, fetched in windows, so a caller can
// skip the pages that were never written. ChangedSince lists the pages that
// changed and those cleared since an older snapshot (Get Page Ranges with
// prevsnapshot, or with x-ms-previous-snapshot-url for managed-disk
// incremental snapshots), through the same bounded page-list reader.
//
// A Sink accepts 512-aligned writes, splits them into Put Page calls of at
// most 4 MiB, skips all-zero pages when the destination is known to be empty,
// and writes a fixed VHD footer on Commit: Azure's direct upload expects the
// blob to be the disk followed by a 512-byte VHD footer (DiskSizeBytes+512).
//
// SAS signatures are secrets. Every error and log line from this package
// passes through Redact, and errors do not wrap the SDK's errors (whose text
// carries the request URL): they keep the HTTP status, the storage error
// code and the cause's text with the signature removed.
package blobio
