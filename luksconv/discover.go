package luksconv

import (
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/xfs"
)

// ADEHeaderPath is where ADE keeps the OS disk's detached LUKS header, relative to /boot.
const ADEHeaderPath = "/luks/osluksheader"

// ADEInfo is what Inspect found of Azure Disk Encryption on /boot.
type ADEInfo struct {
	// BootPartition holds /boot (the filesystem with luks/osluksheader).
	BootPartition int    `json:"boot_partition"`
	HeaderPath    string `json:"header_path"`
	HeaderSize    int64  `json:"header_size"`
	// PartUUID is the encrypted partition named by rd.luks.ade.partuuid, and ArgSource the file it was
	// read from ("" when no boot configuration names it, as with RHEL 7's 91ade).
	PartUUID  string `json:"partuuid,omitempty"`
	ArgSource string `json:"arg_source,omitempty"`
}

// bootConfigFiles are the /boot files whose kernel command lines may carry rd.luks.ade.partuuid.
var bootConfigFiles = []string{"/grub2/grubenv", "/grub2/grub.cfg", "/grub/grub.cfg"}

// partuuidArg matches a GPT partition GUID, or the PARTUUID Linux gives an MBR partition (disk
// signature and partition number, "1a2b3c4d-02").
var partuuidArg = regexp.MustCompile(`(?:^|[\s"'=])rd\.luks\.ade\.partuuid=([0-9A-Fa-f-]{36}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{2}\b)`)

// bootFiles is what discovery reads of a filesystem that may be /boot: XFS (RHEL) or ext2/3/4
// (Ubuntu's ADE split puts an ext2 /boot beside the encrypted root).
type bootFiles interface {
	// open returns a reader of the regular file at path (symbolic links followed) and its size;
	// ok is false when there is no such regular file.
	open(path string) (r *io.SectionReader, size int64, ok bool, err error)
	readFile(path string) ([]byte, error)
	readDirNames(path string) ([]string, error)
}

type xfsBoot struct{ fs *xfs.FS }

func (b xfsBoot) open(p string) (*io.SectionReader, int64, bool, error) {
	ino, err := b.fs.LookupFollow(p)
	if err != nil || !ino.IsRegular() {
		return nil, 0, false, nil
	}
	r, err := b.fs.FileReader(ino)
	return r, ino.Size, err == nil, err
}
func (b xfsBoot) readFile(p string) ([]byte, error) {
	if ino, err := b.fs.Lookup(p); err != nil || !ino.IsRegular() || ino.Size > 1<<20 {
		return nil, fmt.Errorf("%s: not a configuration file", p) // absent, a symlink into the ESP, or large
	}
	return b.fs.ReadFile(p)
}
func (b xfsBoot) readDirNames(p string) ([]string, error) {
	ents, err := b.fs.ReadDir(p)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	return names, err
}

type extBoot struct{ fs *ext.FS }

func (b extBoot) open(p string) (*io.SectionReader, int64, bool, error) {
	ino, err := b.fs.LookupFollow(p)
	if err != nil || !ino.IsRegular() {
		return nil, 0, false, nil
	}
	r, err := b.fs.FileReader(ino)
	return r, ino.Size, err == nil, err
}
func (b extBoot) readFile(p string) ([]byte, error) {
	if ino, err := b.fs.Lookup(p); err != nil || !ino.IsRegular() || ino.Size > 1<<20 {
		return nil, fmt.Errorf("%s: not a configuration file", p)
	}
	return b.fs.ReadFile(p)
}
func (b extBoot) readDirNames(p string) ([]string, error) {
	ents, err := b.fs.ReadDir(p)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name)
	}
	return names, err
}

// openBoot opens partition p as a possible /boot, nil when it holds no XFS or ext filesystem.
func openBoot(src *Source, p PartitionInfo) (bootFiles, error) {
	r := io.NewSectionReader(src, p.Offset, p.Size)
	switch p.Content {
	case ContentXFS:
		fs, err := xfs.Open(r, p.Size)
		if err != nil {
			return nil, err
		}
		return xfsBoot{fs}, nil
	case ContentExt4:
		fs, err := ext.Open(r, p.Size)
		if err != nil {
			return nil, err
		}
		return extBoot{fs}, nil
	}
	return nil, nil
}

// discoverADE looks on every XFS or ext partition for ADE's detached header and the kernel argument
// naming the encrypted partition. It returns the header (readable through the filesystem) or nil when
// there is none.
func discoverADE(src *Source, parts []PartitionInfo) (*ADEInfo, *Header, []Warning) {
	var warns []Warning
	for _, p := range parts {
		fs, err := openBoot(src, p)
		if err != nil {
			warns = append(warns, warning(WarnUnreadable, "%v", layerErr(fmt.Sprintf("partition %d", p.Number), p.Offset, nil, err)))
			continue
		}
		if fs == nil {
			continue
		}
		r, size, ok, err := fs.open(ADEHeaderPath)
		if err != nil {
			warns = append(warns, warning(WarnADEHeader, "%v", layerErr(fmt.Sprintf("partition %d", p.Number), p.Offset, nil, fmt.Errorf("%s: %w", ADEHeaderPath, err))))
			continue
		}
		if !ok {
			continue
		}
		info := &ADEInfo{BootPartition: p.Number, HeaderPath: ADEHeaderPath, HeaderSize: size}
		info.PartUUID, info.ArgSource = findPartUUIDArg(fs)
		hdr := &Header{R: r, Size: size, Path: fmt.Sprintf("partition %d:/boot%s", p.Number, ADEHeaderPath)}
		return info, hdr, warns
	}
	return nil, nil, warns
}

// findPartUUIDArg reads rd.luks.ade.partuuid from the boot configuration on /boot.
func findPartUUIDArg(fs bootFiles) (uuid, source string) {
	files := append([]string(nil), bootConfigFiles...)
	if names, err := fs.readDirNames("/loader/entries"); err == nil {
		for _, n := range names {
			if strings.HasSuffix(n, ".conf") {
				files = append(files, path.Join("/loader/entries", n))
			}
		}
	}
	for _, f := range files {
		b, err := fs.readFile(f)
		if err != nil {
			continue
		}
		if m := partuuidArg.FindSubmatch(b); m != nil {
			return strings.ToLower(string(m[1])), "/boot" + f
		}
	}
	return "", ""
}
