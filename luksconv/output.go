package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Output is where Execute writes the converted disk. CreateOutput makes one for a local file or a
// block device; the blobdisk package makes one for a managed disk's upload URL; a program may
// implement its own.
//
// The contract, which every Output of this module keeps:
//   - WriteAt is called concurrently for disjoint ranges, inside the disk (Plan.OutputSize bytes);
//     ZeroFilled and Journal may be called at any time. Commit and Abort are called once, after the
//     last WriteAt.
//   - Until Commit returns nil, the output never looks like a complete disk: a file keeps a temporary
//     name, a block device has both ends (its partition tables) zeroed, an upload stays unfinished.
//   - Exactly one of Commit and Abort ends the output; after either, the output is closed.
//   - Commit finishes the container (a VHD footer), makes the data durable and puts the disk in
//     place. Abort discards what can be discarded and keeps what a later run resumes from.
type Output interface {
	io.WriterAt
	// ZeroFilled reports that every byte not written reads as zero (a new sparse file, a fresh upload
	// disk), so that all-zero chunks need not be written.
	ZeroFilled() bool
	// Journal returns the record of what an earlier, interrupted run already wrote into this output,
	// or nil when the output starts afresh. Wrappers that embed an Output forward it, so that wrapping
	// never silently turns resuming off.
	Journal() Journal
	// Commit finishes the output; ctx bounds the work (a file's fsync cannot be interrupted).
	Commit(ctx context.Context) error
	// Abort gives the output up.
	Abort() error
}

// Journal records which ranges of an output are complete, across runs of the same plan (a page blob
// upload's resume journal): Execute skips what is Done and marks all-zero chunks it need not write.
// Execute calls it from several goroutines at once; implementations must be safe for that.
type Journal interface {
	// Done reports whether [off, off+n) was completely written by an earlier run.
	Done(off, n int64) bool
	// MarkDone records [off, off+n) as complete without a write (it reads as zeros already).
	MarkDone(off, n int64) error
}

// OutputOptions tune CreateOutput, CreateFile and OpenDevice.
type OutputOptions struct {
	// Overwrite lets an existing file be replaced (on Commit), and a block device's contents be
	// written over. Nothing ever overwrites an input of the plan (ErrOutputIsInput).
	Overwrite bool
}

// CreateOutput opens path as the output of p: a block device (OpenDevice) is written in place, any
// other path becomes a new file (CreateFile). Before anything is written it refuses a path that is an
// input of p — the source, the detached header file, the key file — under any name (ErrOutputIsInput).
func CreateOutput(p *Plan, path string, opts OutputOptions) (Output, error) {
	if fi, err := os.Stat(path); err == nil && isBlockDevice(fi) {
		return OpenDevice(p, path, opts)
	}
	return CreateFile(p, path, opts)
}

// input is a file a plan reads.
type input struct {
	what string // "the source image", "the key file", ...
	fi   os.FileInfo
}

// checkOutput refuses an output path that is one of p's inputs, however it is reached (see
// ErrOutputIsInput). A path that does not exist yet names no input.
func (p *Plan) checkOutput(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // nothing there, so no input: creating the file decides (ErrOutputDir)
	}
	if err != nil {
		return fmt.Errorf("output %s: %w", path, err)
	}
	out := identities(fi)
	for _, in := range p.inputs {
		if os.SameFile(fi, in.fi) {
			return fmt.Errorf("%w: %s is %s; luksconv never writes to its inputs", ErrOutputIsInput, path, in.what)
		}
		for _, id := range identities(in.fi) {
			for _, o := range out {
				if id.same(o) {
					why := join(id.why, o.why)
					if why == "" {
						why = "the same storage"
					}
					return fmt.Errorf("%w: %s shares its storage with %s (%s); luksconv never writes to its inputs", ErrOutputIsInput, path, in.what, why)
				}
			}
		}
	}
	return nil
}

// join joins two descriptions with a comma, either may be empty.
func join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ", " + b
}
