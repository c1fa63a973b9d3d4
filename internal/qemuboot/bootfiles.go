package qemuboot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxBootFile bounds a file read from /boot (kernels and initramfs images are tens of MiB).
const maxBootFile = 1 << 30

// BootFiles is what grub would boot from a disk: the default BLS entry of the XFS /boot partition with
// its variables expanded from grub2/grubenv (RHEL 8 keeps the kernel arguments in grubenv's kernelopts;
// RHEL 9 writes them into the entry).
type BootFiles struct {
	Partition   int               // GPT number of the /boot partition
	Entry       string            // the BLS entry used, path inside /boot
	KernelPath  string            // the entry's linux path inside /boot
	InitrdPaths []string          // the entry's initrd paths inside /boot
	Cmdline     string            // the entry's options, expanded
	Env         map[string]string // grub2/grubenv (empty without one)
	Kernel      string            // the kernel, extracted to the host
	Initrd      string            // the initrd files concatenated, extracted to the host
}

// ErrNoTool reports that a host tool ReadBootFiles needs (sgdisk, xfs_db) is not installed.
type ErrNoTool struct{ Tool, Package string }

// Error names the missing tool and the Debian package that has it.
func (e *ErrNoTool) Error() string {
	return fmt.Sprintf("qemuboot: %s not installed (Debian package %s)", e.Tool, e.Package)
}

func lookTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExec(p) {
			return p, nil
		}
	}
	return "", &ErrNoTool{name, pkg}
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// ReadBootFiles finds the XFS /boot partition of the raw disk image disk (the one holding
// loader/entries), picks the BLS entry grub would (grubenv's saved_entry, else the highest version),
// and extracts its kernel and initramfs into dir with xfs_db, without mounting anything.
func ReadBootFiles(disk, dir string) (*BootFiles, error) {
	parts, err := gptPartitions(disk)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(disk)
	if err != nil {
		return nil, fmt.Errorf("qemuboot: %w", err)
	}
	defer f.Close()
	var tried []string
	for _, p := range parts {
		magic := make([]byte, 4)
		if _, err := f.ReadAt(magic, p.start); err != nil || string(magic) != "XFSB" {
			continue
		}
		img := filepath.Join(dir, fmt.Sprintf("part%d.xfs", p.number))
		if err := copySparse(img, io.NewSectionReader(f, p.start, p.size)); err != nil {
			return nil, err
		}
		bf, err := readBootXFS(img, dir)
		os.Remove(img)
		if err != nil {
			tried = append(tried, fmt.Sprintf("partition %d: %v", p.number, err))
			continue
		}
		bf.Partition = p.number
		return bf, nil
	}
	if len(tried) == 0 {
		return nil, fmt.Errorf("qemuboot: %s: no XFS partition", disk)
	}
	return nil, fmt.Errorf("qemuboot: %s: no bootable /boot: %s", disk, strings.Join(tried, "; "))
}

func readBootXFS(img, dir string) (*BootFiles, error) {
	x, err := openXFS(img)
	if err != nil {
		return nil, err
	}
	bf := &BootFiles{Env: map[string]string{}}
	if env, err := x.readFile("/grub2/grubenv"); err == nil {
		bf.Env = ParseGrubenv(env)
	}
	names, err := x.list("/loader/entries")
	if err != nil {
		return nil, err
	}
	var confs []string
	for _, n := range names {
		if strings.HasSuffix(n, ".conf") {
			confs = append(confs, n)
		}
	}
	if len(confs) == 0 {
		return nil, errors.New("no BLS entry in /loader/entries")
	}
	pick := ""
	if s := bf.Env["saved_entry"]; s != "" {
		for _, c := range confs {
			if c == s+".conf" {
				pick = c
			}
		}
	}
	if pick == "" {
		// grub's blscfg sorts entries newest first; a plain reverse sort is close enough here
		sort.Sort(sort.Reverse(sort.StringSlice(confs)))
		pick = confs[0]
	}
	bf.Entry = "/loader/entries/" + pick
	entry, err := x.readFile(bf.Entry)
	if err != nil {
		return nil, err
	}
	e := ParseBLS(entry, bf.Env)
	if e.Linux == "" {
		return nil, fmt.Errorf("%s: no linux line", bf.Entry)
	}
	bf.KernelPath, bf.InitrdPaths, bf.Cmdline = e.Linux, e.Initrd, e.Options
	kernel, err := x.readBoot(e.Linux)
	if err != nil {
		return nil, err
	}
	bf.Kernel = filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(bf.Kernel, kernel, 0o644); err != nil {
		return nil, err
	}
	var initrd []byte
	for _, p := range e.Initrd {
		b, err := x.readBoot(p)
		if err != nil {
			return nil, err
		}
		initrd = append(initrd, b...)
	}
	if len(e.Initrd) > 0 {
		bf.Initrd = filepath.Join(dir, "initrd.img")
		if err := os.WriteFile(bf.Initrd, initrd, 0o644); err != nil {
			return nil, err
		}
	}
	return bf, nil
}

// readBoot reads a file named by a BLS entry. Entries on a separate /boot name files relative to it;
// a "/boot/" prefix (an entry written for a /boot inside the root filesystem) is tolerated.
func (x *xfsImage) readBoot(p string) ([]byte, error) {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	b, err := x.readFile(p)
	if rest, ok := strings.CutPrefix(p, "/boot/"); err != nil && ok {
		if b2, err2 := x.readFile("/" + rest); err2 == nil {
			return b2, nil
		}
	}
	return b, err
}

// ParseGrubenv parses a GRUB environment block (grub-editenv's format: "# GRUB Environment Block",
// then name=value lines, padded with '#').
func ParseGrubenv(b []byte) map[string]string {
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		// grub-editenv escapes backslash and newline with a backslash
		v = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(v)
		env[k] = v
	}
	return env
}

// BLSEntry is a Boot Loader Specification entry with grub's variables expanded.
type BLSEntry struct {
	Title   string
	Version string
	Linux   string
	Initrd  []string
	Options string
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// ParseBLS parses a BLS entry and expands $name and ${name} in its linux, initrd and options values
// from env (unset variables expand to nothing, as in grub).
func ParseBLS(b []byte, env map[string]string) BLSEntry {
	expand := func(s string) string {
		s = varRE.ReplaceAllStringFunc(s, func(m string) string {
			sub := varRE.FindStringSubmatch(m)
			return env[sub[1]+sub[2]]
		})
		return strings.Join(strings.Fields(s), " ")
	}
	var e BLSEntry
	var opts []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		switch key {
		case "title":
			e.Title = val
		case "version":
			e.Version = val
		case "linux":
			e.Linux = expand(val)
		case "initrd":
			e.Initrd = append(e.Initrd, strings.Fields(expand(val))...)
		case "options":
			if o := expand(val); o != "" {
				opts = append(opts, o)
			}
		}
	}
	e.Options = strings.Join(opts, " ")
	return e
}

// ---------------------------------------------------------------------------------------- GPT

type gptPart struct {
	number      int
	start, size int64 // bytes
}

var sgdiskLineRE = regexp.MustCompile(`^\s*(\d+)\s+(\d+)\s+(\d+)\s`)

// gptPartitions lists the partitions of a disk image as sgdisk reads them (512-byte sectors).
func gptPartitions(disk string) ([]gptPart, error) {
	sgdisk, err := lookTool("sgdisk", "gdisk")
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(sgdisk, "-p", disk).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("qemuboot: sgdisk -p %s: %v: %s", disk, err, bytes.TrimSpace(out))
	}
	var parts []gptPart
	table := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Number") {
			table = true
			continue
		}
		m := sgdiskLineRE.FindStringSubmatch(line)
		if !table || m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		first, err1 := strconv.ParseInt(m[2], 10, 64)
		last, err2 := strconv.ParseInt(m[3], 10, 64)
		if err1 != nil || err2 != nil || last < first || last > 1<<50 {
			return nil, fmt.Errorf("qemuboot: sgdisk -p %s: bad line %q", disk, line)
		}
		parts = append(parts, gptPart{number: n, start: first * 512, size: (last - first + 1) * 512})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("qemuboot: %s: sgdisk found no partitions", disk)
	}
	return parts, nil
}

// copySparse copies r to a new file dst, leaving all-zero 64 KiB blocks as holes.
func copySparse(dst string, r *io.SectionReader) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, 64<<10)
	var off int64
	for off < r.Size() {
		n, err := r.ReadAt(buf, off)
		if n == 0 && err != nil {
			out.Close()
			return fmt.Errorf("qemuboot: read at %d: %w", off, err)
		}
		for i := 0; i < n; i += len(zero) {
			blk := buf[i:min(i+len(zero), n)]
			if bytes.Equal(blk, zero[:len(blk)]) {
				continue
			}
			if _, err := out.WriteAt(blk, off+int64(i)); err != nil {
				out.Close()
				return err
			}
		}
		off += int64(n)
	}
	if err := out.Truncate(r.Size()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ---------------------------------------------------------------------------------------- XFS

// xfsImage reads files of an XFS image through xfs_db (read-only): the inode's size and extent map
// come from xfs_db, the bytes straight from the image.
type xfsImage struct {
	img       string
	xfsDB     string
	blockSize int64
	agBlocks  int64
}

func openXFS(img string) (*xfsImage, error) {
	db, err := lookTool("xfs_db", "xfsprogs")
	if err != nil {
		return nil, err
	}
	x := &xfsImage{img: img, xfsDB: db}
	out, err := x.run("sb 0", "p blocksize agblocks")
	if err != nil {
		return nil, err
	}
	v := fields(out)
	x.blockSize, _ = strconv.ParseInt(v["blocksize"], 10, 64)
	x.agBlocks, _ = strconv.ParseInt(v["agblocks"], 10, 64)
	if x.blockSize < 512 || x.blockSize > 65536 || x.agBlocks <= 0 {
		return nil, fmt.Errorf("qemuboot: xfs_db %s: bad superblock (blocksize %q, agblocks %q)", img,
			v["blocksize"], v["agblocks"])
	}
	return x, nil
}

func (x *xfsImage) run(cmds ...string) (string, error) {
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, x.img)
	out, err := exec.Command(x.xfsDB, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("qemuboot: xfs_db %s: %v: %s", strings.Join(cmds, "; "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// fields parses xfs_db "name = value" lines.
func fields(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\n\"'\\;") || path.Clean(p) != p {
		return fmt.Errorf("qemuboot: unsupported path %q", p)
	}
	return nil
}

var bmapRE = regexp.MustCompile(`^data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) flag (\d+)`)

// readFile returns the content of the regular file p.
func (x *xfsImage) readFile(p string) ([]byte, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	out, err := x.run("path "+p, "p core.mode core.size", "bmap -d")
	if err != nil {
		return nil, err
	}
	v := fields(out)
	mode, err1 := strconv.ParseUint(v["core.mode"], 8, 32)
	size, err2 := strconv.ParseInt(v["core.size"], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("qemuboot: xfs_db %s: no inode core in %q", p, out)
	}
	if mode&0o170000 != 0o100000 {
		return nil, fmt.Errorf("qemuboot: %s: not a regular file (mode %o)", p, mode)
	}
	if size < 0 || size > maxBootFile {
		return nil, fmt.Errorf("qemuboot: %s: size %d out of range", p, size)
	}
	f, err := os.Open(x.img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	for _, line := range strings.Split(out, "\n") {
		m := bmapRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var n [5]int64
		for i := range n {
			n[i], _ = strconv.ParseInt(m[i+1], 10, 64)
		}
		fileOff, ag, agbno, count, flag := n[0]*x.blockSize, n[1], n[2], n[3]*x.blockSize, n[4]
		if fileOff >= size || flag != 0 { // beyond EOF (preallocation) or unwritten: reads as zeros
			continue
		}
		l := min(count, size-fileOff)
		disk := (ag*x.agBlocks + agbno) * x.blockSize
		if _, err := f.ReadAt(data[fileOff:fileOff+l], disk); err != nil {
			return nil, fmt.Errorf("qemuboot: %s: extent at image offset %d: %w", p, disk, err)
		}
	}
	return data, nil
}

var lsRE = regexp.MustCompile(`^\s*\d+\s+\d+\s+(\S+)\s+0x[0-9a-f]+\s+(\d+)\s(.*)$`)

// list returns the names in directory p (without "." and "..").
func (x *xfsImage) list(p string) ([]string, error) {
	if err := checkPath(p); err != nil {
		return nil, err
	}
	out, err := x.run("path "+p, "ls")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		m := lsRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if n <= 0 || n > len(m[3]) {
			continue
		}
		name := m[3][:n]
		if name != "." && name != ".." {
			names = append(names, name)
		}
	}
	return names, nil
}
