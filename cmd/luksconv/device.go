package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

// isBlockDevice reports whether path names an existing block device.
func isBlockDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// deviceHold is how much of each end of the disk a deviceSink holds back until Commit: the protective
// MBR, both GPT headers and both entry arrays fit in it, for 512- and 4096-byte sectors.
const deviceHold = 64 << 10

// deviceSink writes the output disk straight onto a block device (a temporary name and a rename are
// not possible there). So that a device never looks like a complete disk before Commit, the first and
// last deviceHold bytes of the disk are zeroed when it is opened and their real content is held in
// memory and written only after everything else is on the device.
type deviceSink struct {
	f          *os.File
	path       string
	size       int64 // the disk, without the VHD footer
	format     luksconv.Format
	mu         sync.Mutex
	head, tail []byte
	tailOff    int64
}

// openDevice opens a block device as the output of a size-byte disk. A device too small for the disk
// (and its VHD footer) is refused before anything is written; so is any device without force, since
// its contents are overwritten.
func openDevice(path string, size int64, format luksconv.Format, force bool) (*deviceSink, error) {
	if size <= 0 || size%512 != 0 {
		return nil, fmt.Errorf("output size %d is not a positive multiple of 512: %w", size, luksconv.ErrUsage)
	}
	// O_EXCL on a block device is an exclusive open: it fails while the device is mounted or in use.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: output device: %v", errOutput, err)
	}
	devSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("output device %s: reading its size: %w", path, err)
	}
	need := size
	if format == luksconv.FormatVHD {
		need += 512
	}
	if devSize < need {
		f.Close()
		return nil, fmt.Errorf("%w: output device %s holds %d bytes, too small for the %d-byte converted disk; nothing was written",
			errOutput, path, devSize, need)
	}
	if !force {
		f.Close()
		return nil, fmt.Errorf("%s is a block device: %w (use --force to overwrite its contents)", path, luksconv.ErrOutputExists)
	}
	hold := min(int64(deviceHold), size/2)
	d := &deviceSink{f: f, path: path, size: size, format: format,
		head: make([]byte, hold), tail: make([]byte, hold), tailOff: size - hold}
	// Blank both ends now: an interrupted run leaves no partition table behind.
	if _, err := f.WriteAt(d.head, 0); err == nil {
		_, err = f.WriteAt(d.tail, d.tailOff)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("output device %s: %w", path, err)
	}
	return d, nil
}

// WriteAt writes within the disk; the bytes of both held-back ends go to memory.
func (d *deviceSink) WriteAt(p []byte, off int64) (int, error) {
	n := int64(len(p))
	if off < 0 || off+n > d.size {
		return 0, fmt.Errorf("write of %d bytes at %d is outside the %d-byte disk", len(p), off, d.size)
	}
	hold := int64(len(d.head))
	lo, hi := off, off+n // what goes to the device: [max(off, hold), min(off+n, tailOff))
	d.mu.Lock()
	if off < hold {
		copy(d.head[off:], p[:min(n, hold-off)])
		lo = hold
	}
	if off+n > d.tailOff {
		start := max(off, d.tailOff)
		copy(d.tail[start-d.tailOff:], p[start-off:])
		hi = d.tailOff
	}
	d.mu.Unlock()
	if lo < hi {
		if _, err := d.f.WriteAt(p[lo-off:hi-off], lo); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// ZeroFilled is false: a device holds old data, so zeros must be written too.
func (d *deviceSink) ZeroFilled() bool { return false }

// commit makes the bulk durable, then writes the tail (backup GPT), the VHD footer and last the head.
func (d *deviceSink) commit() error {
	err := d.f.Sync()
	if err == nil {
		_, err = d.f.WriteAt(d.tail, d.tailOff)
	}
	if err == nil && d.format == luksconv.FormatVHD {
		var ft *vhd.Footer
		if ft, err = vhd.NewFixedFooter(d.size); err == nil {
			var b []byte
			if b, err = ft.MarshalBinary(); err == nil {
				_, err = d.f.WriteAt(b, d.size)
			}
		}
	}
	if err == nil {
		err = d.f.Sync()
	}
	if err == nil {
		_, err = d.f.WriteAt(d.head, 0)
	}
	if err == nil {
		err = d.f.Sync()
	}
	return errors.Join(err, d.f.Close())
}

// abort leaves the device with both ends zeroed, as openDevice made them.
func (d *deviceSink) abort() { d.f.Close() }

// openDeviceOutput opens the first n bytes of a block device written by convert, for verify.
func openDeviceOutput(path string, n int64) (*luksconv.Source, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	src, err := luksconv.NewSource(io.NewSectionReader(f, 0, n), n)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	debugSource(path, src)
	return src, func() { src.Close(); f.Close() }, nil
}
