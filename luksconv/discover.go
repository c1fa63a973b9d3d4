package luksconv

import (
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
)

// ADEHeaderPath is where ADE keeps the OS disk's detached LUKS header, relative to /boot.
const ADEHeaderPath = "/luks/osluksheader"

// ADEInfo is what Inspect found of Azure Disk Encryption on /boot.
type ADEInfo struct {
	// BootPartition holds /boot (the filesystem with luks/osluksheader).
	BootPartition int `json:"boot_partition"`
	// HeaderPath is the header file's path relative to /boot (ADEHeaderPath).
	HeaderPath string `json:"header_path"`
	// HeaderSize is the header file's size in bytes.
	HeaderSize int64 `json:"header_size"`
	// PartUUID is the encrypted partition named by rd.luks.ade.partuuid, and ArgSource the file it was
	// read from ("" when no boot configuration names it, as with RHEL 7's 91ade).
	PartUUID string `json:"partuuid,omitempty"`
	// ArgSource is that file's path in the guest ("/boot/grub2/grubenv").
	ArgSource string `json:"arg_source,omitempty"`
}

// bootConfigFiles are the /boot files whose kernel command lines may carry rd.luks.ade.partuuid.
var bootConfigFiles = []string{"/grub2/grubenv", "/grub2/grub.cfg", "/grub/grub.cfg"}

// partuuidArg matches a GPT partition GUID, or the PARTUUID Linux gives an MBR partition (disk
// signature and partition number, "1a2b3c4d-02").
var partuuidArg = regexp.MustCompile(`(?:^|[\s"'=])rd\.luks\.ade\.partuuid=([0-9A-Fa-f-]{36}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{2}\b)`)

// openBoot opens partition p as a possible /boot, nil when it holds no XFS or ext filesystem (RHEL's
// /boot is XFS; Ubuntu's ADE split puts an ext2 /boot beside the encrypted root).
func openBoot(src *Source, p PartitionInfo) (fsys, error) {
	if p.Content != ContentXFS && p.Content != ContentExt4 {
		return nil, nil
	}
	return openFsys(io.NewSectionReader(src, p.Offset, p.Size), p.Size, p.Content)
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
		ino, err := fs.LookupFollow(ADEHeaderPath)
		if err != nil || !ino.IsRegular() {
			continue
		}
		r, err := fs.FileReader(ino)
		if err != nil {
			warns = append(warns, warning(WarnADEHeader, "%v", layerErr(fmt.Sprintf("partition %d", p.Number), p.Offset, nil, fmt.Errorf("%s: %w", ADEHeaderPath, err))))
			continue
		}
		size := ino.Size
		info := &ADEInfo{BootPartition: p.Number, HeaderPath: ADEHeaderPath, HeaderSize: size}
		info.PartUUID, info.ArgSource = findPartUUIDArg(fs)
		hdr := &Header{R: r, Size: size, Path: fmt.Sprintf("partition %d:/boot%s", p.Number, ADEHeaderPath)}
		return info, hdr, warns
	}
	return nil, nil, warns
}

// findPartUUIDArg reads rd.luks.ade.partuuid from the boot configuration on /boot.
func findPartUUIDArg(fs fsys) (uuid, source string) {
	files := append([]string(nil), bootConfigFiles...)
	if ents, err := fs.ReadDir("/loader/entries"); err == nil {
		for _, d := range ents {
			if strings.HasSuffix(d.Name, ".conf") {
				files = append(files, path.Join("/loader/entries", d.Name))
			}
		}
	}
	for _, f := range files {
		// Not followed: a grubenv linked into the ESP is read there, not through /boot.
		ino, err := fs.Lookup(f)
		if err != nil || !ino.IsRegular() {
			continue
		}
		b, err := readFile(fs, f)
		if err != nil {
			continue
		}
		if m := partuuidArg.FindSubmatch(b); m != nil {
			return strings.ToLower(string(m[1])), "/boot" + f
		}
	}
	return "", ""
}
