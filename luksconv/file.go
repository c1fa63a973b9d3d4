package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/luksconv/luksconv/vhd"
)

// FileOutput writes the output disk to a new local file, sparse where Execute skips zeros. It writes
// under a temporary name beside the target and renames it on Commit, so an interrupted run never
// leaves a file that looks complete. It is safe for concurrent use.
type FileOutput struct {
	path, tmp string
	f         *os.File
	size      int64 // the disk, without a VHD footer
	format    Format
	overwrite bool         // Commit may replace a file at path
	wb        *writeBehind // nil outside Linux
	ended     atomic.Bool  // Commit or Abort ran
}

// CreateFile creates the file output of p at path (mode 0600: it holds the plaintext). An existing
// file is replaced on Commit only with Overwrite (ErrOutputExists otherwise); an input of p never is
// (ErrOutputIsInput); a path that exists and is neither a regular file nor a symbolic link to one is
// ErrOutputType; a directory that cannot take the file is ErrOutputDir.
func CreateFile(p *Plan, path string, opts OutputOptions) (*FileOutput, error) {
	size := p.OutputSize
	if size <= 0 || size%512 != 0 {
		return nil, fmt.Errorf("%w: output size %d is not a positive multiple of 512", ErrInvalidOption, size)
	}
	if err := p.checkOutput(path); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s (%s)", ErrOutputType, path, fi.Mode().Type())
	}
	if _, err := os.Lstat(path); err == nil && !opts.Overwrite {
		return nil, fmt.Errorf("%w: %s", ErrOutputExists, path)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".partial-*")
	if err != nil {
		// What a retry cannot change is the directory's; anything else (too many open files, no
		// space) stays a plain error.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EROFS) {
			err = fmt.Errorf("%w: %v", ErrOutputDir, err)
		}
		return nil, err
	}
	// The size is set now, so that writes land in a hole: XFS reserves space past the end of a file that
	// grows by appends, and a skipped zero chunk there would then be allocated (README, Performance).
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("%s: sizing the output: %w", path, err)
	}
	return &FileOutput{path: path, tmp: f.Name(), f: f, size: size, format: p.Format, overwrite: opts.Overwrite, wb: startWriteBehind(f)}, nil
}

// linkRename renames oldpath to newpath unless newpath exists (fs.ErrExist): a hard link, then the
// unlink of oldpath. Where the filesystem has no hard links, newpath is looked up first and the
// rename may still replace a file made in between.
func linkRename(oldpath, newpath string) error {
	err := os.Link(oldpath, newpath)
	if err == nil {
		os.Remove(oldpath) // newpath holds the file now; a name left over is only a name
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, err := os.Lstat(newpath); err == nil {
		return &fs.PathError{Op: "rename", Path: newpath, Err: fs.ErrExist}
	}
	return os.Rename(oldpath, newpath)
}

// WriteAt writes within the disk.
func (o *FileOutput) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > o.size {
		return 0, fmt.Errorf("write of %d bytes at %d is outside the %d-byte disk", len(b), off, o.size)
	}
	n, err := o.f.WriteAt(b, off)
	o.wb.wrote(off + int64(n))
	return n, err
}

// ZeroFilled is true: the file starts empty, and what is not written reads as zeros.
func (o *FileOutput) ZeroFilled() bool { return true }

// Journal is nil: a local file is written afresh.
func (o *FileOutput) Journal() Journal { return nil }

// TempPath is the name the output has until Commit.
func (o *FileOutput) TempPath() string { return o.tmp }

// Path is the name the output has after Commit.
func (o *FileOutput) Path() string { return o.path }

// Commit appends the VHD footer, fsyncs the file, renames it to its final name and fsyncs the
// directory. Without OutputOptions.Overwrite a file made at that name since CreateFile stays, and
// Commit fails with ErrOutputExists. On error the partial file is removed.
func (o *FileOutput) Commit(ctx context.Context) error {
	if !o.ended.CompareAndSwap(false, true) {
		return errors.New("luksconv: output already committed or aborted")
	}
	fail := func(err error) error {
		o.f.Close()
		os.Remove(o.tmp)
		return fmt.Errorf("%s: %w", o.path, err)
	}
	if err := o.wb.stop(); err != nil {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if o.format == FormatVHD {
		b, err := vhd.FixedFooterBytes(o.size)
		if err != nil {
			return fail(err)
		}
		if _, err := o.f.WriteAt(b, o.size); err != nil {
			return fail(fmt.Errorf("writing the VHD footer: %w", err))
		}
	}
	if err := o.f.Sync(); err != nil {
		return fail(err)
	}
	if err := o.f.Close(); err != nil {
		os.Remove(o.tmp)
		return fmt.Errorf("%s: %w", o.path, err)
	}
	rename := renameNoReplace
	if o.overwrite {
		rename = os.Rename
	}
	if err := rename(o.tmp, o.path); err != nil {
		os.Remove(o.tmp)
		if errors.Is(err, fs.ErrExist) {
			// Made by someone else while this output was written: it stays.
			err = fmt.Errorf("%w (created while the conversion ran)", ErrOutputExists)
		}
		return fmt.Errorf("%s: %w", o.path, err)
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(filepath.Dir(o.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort removes the partial output.
func (o *FileOutput) Abort() error {
	if !o.ended.CompareAndSwap(false, true) {
		return nil
	}
	o.wb.stop()
	o.f.Close()
	return os.Remove(o.tmp)
}
