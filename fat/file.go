package fat

import (
	"encoding/binary"
	"fmt"
	iofs "io/fs"
	"math"
	"slices"
)

// fileChain returns the clusters of a regular file, which must be exactly
// as many as its size needs: fsck.fat reports a longer or shorter chain.
func (fs *FS) fileChain(f *File) ([]uint32, error) {
	need := (int64(f.Size) + fs.ClusterSize - 1) / fs.ClusterSize
	if need > int64(fs.Clusters) {
		return nil, corrupt("directory entry", f.EntryOffset, "%q is %d bytes, more than the %d clusters of %d bytes the filesystem has",
			f.Name, f.Size, fs.Clusters, fs.ClusterSize)
	}
	cs, err := fs.chain(f.FirstCluster, need, f.EntryOffset, fmt.Sprintf("its size of %d bytes needs", f.Size))
	if err != nil {
		return nil, err
	}
	if int64(len(cs)) != need {
		return nil, corrupt("directory entry", f.EntryOffset, "%q is %d bytes (%d clusters of %d bytes) but its chain has %d clusters",
			f.Name, f.Size, need, fs.ClusterSize, len(cs))
	}
	return cs, nil
}

// ReadFile returns the content of the regular file f and its clusters in
// order, which must cover exactly its size. Files larger than max bytes are
// refused (an *fs.PathError wrapping ErrTooLarge) before anything is
// allocated; a directory gives one wrapping ErrIsDir.
func (fs *FS) ReadFile(f *File, max int64) ([]byte, []uint32, error) {
	if f.IsDir() {
		return nil, nil, &iofs.PathError{Op: "read", Path: f.Name, Err: ErrIsDir}
	}
	if int64(f.Size) > max {
		return nil, nil, &iofs.PathError{Op: "read", Path: f.Name, Err: fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrTooLarge, f.Size, max)}
	}
	cs, err := fs.fileChain(f)
	if err != nil {
		return nil, nil, err
	}
	b := make([]byte, f.Size)
	for i := 0; i < len(cs); {
		// One read per run of consecutive clusters.
		j := i + 1
		for j < len(cs) && cs[j] == cs[j-1]+1 {
			j++
		}
		lo := int64(i) * fs.ClusterSize
		hi := min(int64(j)*fs.ClusterSize, int64(f.Size))
		if err := fs.readAt(b[lo:hi], fs.clusterOffset(cs[i]), fmt.Sprintf("cluster %d of %q", cs[i], f.Name)); err != nil {
			return nil, nil, err
		}
		i = j
	}
	return b, cs, nil
}

// Write is one byte patch at Offset within the filesystem.
type Write struct {
	Offset int64  // byte offset within the filesystem
	Data   []byte // the bytes to write there
}

// Rewrite returns the writes that replace the content of the regular file f
// with data, inside the clusters it has (clusters, as ReadFile returned
// them): whole clusters, the slack past the new end zeroed so no old bytes
// stay behind it, and the size field of f's directory entry when the size
// changes. Nothing is allocated or freed, so data must need exactly
// len(clusters) clusters (PadToClusters pads text files that shrink).
// Timestamps are kept.
//
// Before planning, the directory entry at f.EntryOffset and the file's
// chain are read again and must still be f's. Refusals wrap ErrCannotEdit;
// on-disk inconsistencies are *FormatError values.
func (fs *FS) Rewrite(f *File, clusters []uint32, data []byte) ([]Write, error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %q: %s", ErrCannotEdit, f.Name, fmt.Sprintf(format, args...))
	}
	if f.IsDir() {
		return nil, refuse("a directory")
	}
	if int64(len(data)) > math.MaxUint32 {
		return nil, refuse("%d bytes is more than a FAT file holds", len(data))
	}
	if need := (int64(len(data)) + fs.ClusterSize - 1) / fs.ClusterSize; need != int64(len(clusters)) {
		return nil, refuse("%d bytes need %d clusters of %d bytes, the file has %d (nothing is allocated or freed)",
			len(data), need, fs.ClusterSize, len(clusters))
	}
	d := make([]byte, dirEntrySize)
	if err := fs.readAt(d, f.EntryOffset, "directory entry"); err != nil {
		return nil, err
	}
	e := parseDirEntry(d)
	first := uint32(e.FstClusLo)
	if fs.Bits == 32 {
		first |= uint32(e.FstClusHi) << 16
	}
	if e.Name[0] == 0 || e.Name[0] == 0xe5 || e.Attr&attrLFNMask == attrLFN || e.Attr != f.Attr ||
		first != f.FirstCluster || e.FileSize != f.Size {
		return nil, refuse("the directory entry at offset %d no longer describes it", f.EntryOffset)
	}
	cs, err := fs.fileChain(f)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(cs, clusters) {
		return nil, refuse("the clusters given are not its chain %v", cs)
	}

	var ws []Write
	for i, c := range cs {
		buf := make([]byte, fs.ClusterSize)
		copy(buf, data[min(int64(i)*fs.ClusterSize, int64(len(data))):])
		off := fs.clusterOffset(c)
		if n := len(ws); n > 0 && ws[n-1].Offset+int64(len(ws[n-1].Data)) == off {
			ws[n-1].Data = append(ws[n-1].Data, buf...)
			continue
		}
		ws = append(ws, Write{Offset: off, Data: buf})
	}
	if uint32(len(data)) != f.Size {
		sz := make([]byte, 4)
		binary.LittleEndian.PutUint32(sz, uint32(len(data)))
		ws = append(ws, Write{Offset: f.EntryOffset + 28, Data: sz})
	}
	return ws, nil
}

// PadToClusters pads the text data with a trailing comment line ("#...",
// after a newline if data lacks one) so that it needs exactly n clusters of
// clusterSize bytes: the smallest such length, one byte into the last
// cluster. data is returned as it is when n is 0 or it already needs n
// clusters or more.
func PadToClusters(data []byte, n int, clusterSize int64) []byte {
	minLen := (int64(n)-1)*clusterSize + 1
	if n <= 0 || clusterSize <= 0 || int64(len(data)) >= minLen {
		return data
	}
	out := append([]byte(nil), data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	pad := minLen - int64(len(out))
	if pad <= 0 {
		return out
	}
	const note = "# luksconv: padding so the file keeps its FAT clusters "
	line := make([]byte, pad)
	for i := range line {
		line[i] = '#'
	}
	if pad > int64(len(note))+1 {
		copy(line, note)
	}
	line[pad-1] = '\n'
	return append(out, line...)
}
