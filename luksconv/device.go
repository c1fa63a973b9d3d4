package luksconv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/luksconv/luksconv/vhd"
)

// deviceHold is how much of each end of the disk a DeviceOutput holds back until Commit: the
// protective MBR, both GPT headers and both entry arrays fit in it, for 512- and 4096-byte sectors.
const deviceHold = 64 << 10

// DeviceOutput writes the output disk straight onto a block device (a temporary name and a rename are
// not possible there). So that a device never looks like a complete disk before Commit, the first and
// last 64 KiB of the disk are zeroed when it is opened, their real content is held in memory, and
// they are written only after everything else is on the device. It is safe for concurrent use.
type DeviceOutput struct {
	f          *os.File
	path       string
	size       int64 // the disk, without the VHD footer
	format     Format
	mu         sync.Mutex
	head, tail []byte
	tailOff    int64
	ended      atomic.Bool // Commit or Abort ran
	spare      int64       // device bytes past the disk (and its VHD footer), left as they are
}

// OpenDevice opens the block device at path as the output of p. It is opened exclusively (refused
// while mounted or in use). Before anything is written it refuses an input of p or a device on the
// same disk as one (ErrOutputIsInput), a device too small for the disk and its VHD footer
// (ErrOutputTooSmall), and any device without Overwrite (ErrOutputExists: its contents are lost).
func OpenDevice(p *Plan, path string, opts OutputOptions) (*DeviceOutput, error) {
	size := p.OutputSize
	if size <= 0 || size%512 != 0 {
		return nil, fmt.Errorf("%w: output size %d is not a positive multiple of 512", ErrInvalidOption, size)
	}
	if err := p.checkOutput(path); err != nil {
		return nil, err
	}
	// O_EXCL on a block device is an exclusive open: it fails while the device is mounted or in use.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return nil, fmt.Errorf("output device: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !isBlockDevice(fi) {
		err = fmt.Errorf("%w: %s is not a block device", ErrOutputType, path)
	}
	if err == nil {
		// The check again on the opened device: the path may have been replaced meanwhile.
		err = p.checkOutput(path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	devSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("output device %s: reading its size: %w", path, err)
	}
	need := size
	if p.Format == FormatVHD {
		need += 512
	}
	if devSize < need {
		f.Close()
		return nil, fmt.Errorf("%w: %s holds %d bytes, too small for the %d-byte converted disk; nothing was written",
			ErrOutputTooSmall, path, devSize, need)
	}
	if !opts.Overwrite {
		f.Close()
		return nil, fmt.Errorf("%w: %s is a block device, whose contents would be overwritten", ErrOutputExists, path)
	}
	hold := min(int64(deviceHold), size/2)
	d := &DeviceOutput{f: f, path: path, size: size, format: p.Format,
		head: make([]byte, hold), tail: make([]byte, hold), tailOff: size - hold, spare: devSize - need}
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

// Spare is how many bytes the device holds past the converted disk (and its VHD footer). They are
// not written: the converted disk's backup GPT, if it has one, lies at the disk's end and not at the
// device's, which `sgdisk -e` fixes on the device.
func (d *DeviceOutput) Spare() int64 { return d.spare }

// Held is how many bytes of each end of the disk are held back until Commit.
func (d *DeviceOutput) Held() int { return len(d.head) }

// WriteAt writes within the disk; the bytes of both held-back ends go to memory.
func (d *DeviceOutput) WriteAt(p []byte, off int64) (int, error) {
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
func (d *DeviceOutput) ZeroFilled() bool { return false }

// Journal is nil: a device is written afresh.
func (d *DeviceOutput) Journal() Journal { return nil }

// Commit makes the bulk durable, then writes the tail (backup GPT), the VHD footer and last the head
// (protective MBR and primary GPT), each made durable before the next.
func (d *DeviceOutput) Commit(ctx context.Context) error {
	if !d.ended.CompareAndSwap(false, true) {
		return errors.New("luksconv: output already committed or aborted")
	}
	err := ctx.Err()
	if err == nil {
		err = d.f.Sync()
	}
	if err == nil {
		_, err = d.f.WriteAt(d.tail, d.tailOff)
	}
	if err == nil && d.format == FormatVHD {
		var b []byte
		if b, err = vhd.FixedFooterBytes(d.size); err == nil {
			_, err = d.f.WriteAt(b, d.size)
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
	clear(d.head)
	clear(d.tail)
	return errors.Join(err, d.f.Close())
}

// Abort leaves the device with both ends zeroed, as OpenDevice made them.
func (d *DeviceOutput) Abort() error {
	if !d.ended.CompareAndSwap(false, true) {
		return nil
	}
	clear(d.head)
	clear(d.tail)
	return d.f.Close()
}
