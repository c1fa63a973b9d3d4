package initramfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/luksconv/luksconv/internal/testenv"
)

var allCompressions = []Compression{Gzip, XZ, Zstd, LZ4Legacy}

func parseBytes(t testing.TB, b []byte) *Image {
	t.Helper()
	im, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return im
}

// checkExtracted compares every entry of a parsed archive with the file GNU cpio extracts for it: mode,
// owner, exact mtime (files and nodes), rdev, symlink target, content and hard-link identity.
func checkExtracted(t *testing.T, im *Image, seg int, archive []byte) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("cpio -idm: %v %s", err, out)
	}
	inodeOf := map[linkKey]uint64{}
	for _, e := range im.Segments[seg].Entries {
		p := filepath.Join(dir, CleanPath(e.Name))
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		if st.Mode != e.Mode || st.Uid != e.UID || st.Gid != e.GID {
			t.Errorf("%s: cpio extracted mode %o uid %d gid %d, Parse says mode %o uid %d gid %d",
				e.Name, st.Mode, st.Uid, st.Gid, e.Mode, e.UID, e.GID)
		}
		switch e.Mode & ModeType {
		case ModeDir:
		case ModeSymlink:
			target, _ := os.Readlink(p)
			if target != string(e.Data) {
				t.Errorf("%s: symlink target %q, Parse says %q", e.Name, target, e.Data)
			}
		case ModeRegular:
			data, _ := os.ReadFile(p)
			want, err := im.ReadFile(e.Name)
			if err != nil || !bytes.Equal(data, want) {
				t.Errorf("%s: content differs from Parse (%d vs %d bytes, %v)", e.Name, len(data), len(want), err)
			}
			if e.NLink > 1 {
				k := linkKeyOf(e)
				if ino, ok := inodeOf[k]; ok && ino != st.Ino {
					t.Errorf("%s: not hard-linked to the other names of inode %d", e.Name, e.Ino)
				}
				inodeOf[k] = st.Ino
				if st.Nlink != uint64(e.NLink) {
					t.Errorf("%s: %d links extracted, header says %d", e.Name, st.Nlink, e.NLink)
				}
			}
			fallthrough
		default:
			if st.Mtim.Sec != int64(e.MTime) {
				t.Errorf("%s: mtime %d, Parse says %d", e.Name, st.Mtim.Sec, e.MTime)
			}
			if st.Rdev != unix.Mkdev(e.RDevMajor, e.RDevMinor) {
				t.Errorf("%s: rdev %d:%d, Parse says %d:%d", e.Name, unix.Major(st.Rdev), unix.Minor(st.Rdev), e.RDevMajor, e.RDevMinor)
			}
		}
	}
}

func TestParseMatchesGNUCpio(t *testing.T) {
	testenv.Need(t, "cpio")
	testenv.NeedRoot(t)
	tree := t.TempDir()
	makeTree(t, tree)
	for _, format := range []string{"newc", "crc"} {
		t.Run(format, func(t *testing.T) {
			archive := cpioCreate(t, tree, format)
			im := parseBytes(t, archive)
			if len(im.Segments) != 1 || im.Segments[0].Compression != None {
				t.Fatalf("got %d segments, want 1 uncompressed", len(im.Segments))
			}
			s := im.Segments[0]
			if s.Length+s.Padding != int64(len(archive)) || !s.Archives[0].Trailer {
				t.Errorf("segment length %d + padding %d (trailer %v), archive is %d bytes", s.Length, s.Padding, s.Archives[0].Trailer, len(archive))
			}
			if got, want := formatList(s.Entries, time.Now()), cpioList(t, archive); got != want {
				t.Errorf("listing differs from cpio -itv:\n--- Parse\n%s--- cpio\n%s", got, want)
			}
			wantMagic := map[string]string{"newc": magicNewc, "crc": magicCRC}[format]
			for _, e := range s.Entries {
				if e.Magic != wantMagic {
					t.Errorf("%s: magic %s, want %s", e.Name, e.Magic, wantMagic)
				}
				if format == "crc" && e.IsRegular() && e.Check != Checksum(e.Data) {
					t.Errorf("%s: check %#x, sum of data %#x", e.Name, e.Check, Checksum(e.Data))
				}
			}
			checkExtracted(t, im, 0, archive)
			// The Reader and Writer round-trip GNU cpio's archive up to the trailer, byte for byte.
			var buf bytes.Buffer
			w := NewWriter(&buf)
			rd := NewReader(bytes.NewReader(archive))
			for {
				e, err := rd.Next()
				if err != nil {
					break
				}
				if err := w.WriteEntry(e); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), archive[:s.Length]) {
				t.Errorf("Writer output (%d bytes) differs from GNU cpio's archive (%d bytes before padding)", buf.Len(), s.Length)
			}
		})
	}
}

// dracutStyle returns an image laid out as dracut writes it: GNU cpio's early cpio, then the main
// archive compressed by the CLI tool.
func dracutStyle(t *testing.T, c Compression, tree string) (img, early, main, comp []byte) {
	early = earlyCPIO(t)
	main = cpioCreate(t, tree, "newc")
	comp = compressCLI(t, c, main)
	return append(append([]byte{}, early...), comp...), early, main, comp
}

func TestParseDracutStyle(t *testing.T) {
	testenv.Need(t, "cpio", "lsinitrd", "gzip", "xz", "zstd", "lz4")
	testenv.NeedRoot(t)
	tree := t.TempDir()
	makeTree(t, tree)
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			img, early, main, comp := dracutStyle(t, c, tree)
			im := parseBytes(t, img)
			if len(im.Segments) != 2 {
				t.Fatalf("got %d segments, want 2", len(im.Segments))
			}
			s0, s1 := im.Segments[0], im.Segments[1]
			if s0.Compression != None || s0.Offset != 0 || s0.Length+s0.Padding != int64(len(early)) {
				t.Errorf("early segment %+v, early cpio is %d bytes", s0, len(early))
			}
			if s1.Compression != c || s1.Offset != int64(len(early)) || s1.Length != int64(len(comp)) || s1.Padding != 0 {
				t.Errorf("main segment: %s at %d, %d bytes + %d padding; want %s at %d, %d bytes", s1.Compression, s1.Offset, s1.Length, s1.Padding, c, len(early), len(comp))
			}
			if s1.ExpandedSize != int64(len(main)) {
				t.Errorf("main expands to %d bytes, GNU cpio wrote %d", s1.ExpandedSize, len(main))
			}
			if c == XZ && s1.XZCheck != "CRC32" {
				t.Errorf("xz check %q, want CRC32", s1.XZCheck)
			}
			now := time.Now()
			if got, want := formatList(s0.Entries, now), cpioList(t, early); got != want {
				t.Errorf("early listing:\n--- Parse\n%s--- cpio\n%s", got, want)
			}
			if got, want := formatList(s1.Entries, now), cpioList(t, main); got != want {
				t.Errorf("main listing:\n--- Parse\n%s--- cpio\n%s", got, want)
			}
			checkExtracted(t, im, 1, main)
			// lsinitrd (skipcpio + the decompressor it picks by magic) names the same files.
			path := testenv.WriteFile(t, t.TempDir(), "initramfs.img", img)
			got := lsinitrdNames(lsinitrd(t, path))
			var want []string
			for _, s := range im.Segments {
				for _, e := range s.Entries {
					want = append(want, CleanPath(e.Name))
				}
			}
			sort.Strings(got) // lsinitrd sorts its listing
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("lsinitrd names:\n%v\nParse names:\n%v", got, want)
			}
		})
	}
}

// lsinitrdNames picks the file names out of lsinitrd's cpio -tv style lines.
func lsinitrdNames(out string) []string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || len(f[0]) != 10 || !strings.ContainsRune("-dlcbps", rune(f[0][0])) {
			continue
		}
		i := 5
		if strings.HasSuffix(f[4], ",") {
			i = 6
		}
		name := strings.Join(f[i+3:], " ")
		if j := strings.Index(name, " -> "); j >= 0 && f[0][0] == 'l' {
			name = name[:j]
		}
		names = append(names, CleanPath(name))
	}
	return names
}

func sameEntries(t *testing.T, a, b *Image) {
	t.Helper()
	if len(a.Segments) != len(b.Segments) {
		t.Fatalf("%d segments vs %d", len(a.Segments), len(b.Segments))
	}
	for i := range a.Segments {
		ea, eb := a.Segments[i].Entries, b.Segments[i].Entries
		if len(ea) != len(eb) {
			t.Fatalf("segment %d: %d entries vs %d", i, len(ea), len(eb))
		}
		for j := range ea {
			if ea[j].Header != eb[j].Header || !bytes.Equal(ea[j].Data, eb[j].Data) {
				t.Errorf("segment %d entry %d: %+v vs %+v", i, j, ea[j].Header, eb[j].Header)
			}
		}
	}
}

func TestRewriteRoundTrip(t *testing.T) {
	testenv.Need(t, "cpio", "lsinitrd", "gzip", "xz", "zstd", "lz4")
	testenv.NeedRoot(t)
	tree := t.TempDir()
	makeTree(t, tree)
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			img, early, main, _ := dracutStyle(t, c, tree)
			im := parseBytes(t, img)
			// Nothing to change: the image comes back byte for byte.
			same, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(same, img) || rep.Segments[1].Rewritten {
				t.Errorf("empty Edit changed the image (%d -> %d bytes)", len(img), len(same))
			}
			out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Recompress: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Segments[0].Rewritten || !rep.Segments[1].Rewritten || rep.NewSize != int64(len(out)) {
				t.Errorf("report %+v", rep)
			}
			if !bytes.Equal(out[:len(early)], early) {
				t.Error("early cpio not copied byte for byte")
			}
			sameEntries(t, im, parseBytes(t, out))
			s := rep.Segments[1]
			seg := out[s.NewOffset : s.NewOffset+s.NewLength]
			raw := decompressCLI(t, c, seg)
			if got, want := cpioList(t, raw), cpioList(t, main); got != want {
				t.Errorf("cpio -itv of the rewritten main archive:\n%s\nwant:\n%s", got, want)
			}
			gotTree, stderr := extract(t, raw)
			wantTree, _ := extract(t, main)
			if gotTree != wantTree || stderr != "" {
				t.Errorf("extracted trees differ (stderr %q):\n--- rewritten\n%s\n--- original\n%s", stderr, gotTree, wantTree)
			}
			dir := t.TempDir()
			if got, want := lsinitrd(t, testenv.WriteFile(t, dir, "new.img", out)), lsinitrd(t, testenv.WriteFile(t, dir, "old.img", img)); got != want {
				t.Errorf("lsinitrd differs:\n--- rewritten\n%s\n--- original\n%s", got, want)
			}
			switch c {
			case XZ:
				robot := string(sh(t, "", nil, "xz --list --robot "+testenv.WriteFile(t, dir, "main.xz", seg)))
				if !strings.Contains(robot, "\tCRC32\t") || strings.Contains(robot, "CRC64") {
					t.Errorf("xz --list --robot does not say CRC32 only:\n%s", robot)
				}
				if !strings.Contains(robot, "\n") || !strings.HasPrefix(robot, "name\t") {
					t.Errorf("unexpected xz --list output:\n%s", robot)
				}
			case LZ4Legacy:
				if !bytes.HasPrefix(seg, []byte{0x02, 0x21, 0x4c, 0x18}) {
					t.Errorf("lz4 segment starts % x, want the legacy magic 02 21 4c 18", seg[:4])
				}
			case Zstd:
				sh(t, "", seg, "zstd -tq")
			}
			// Fast: zstd and lz4 come out of their fast encoders, different bytes that the tools
			// decode to the same archive; gzip and xz as without it.
			fast, frep, err := im.Rewrite(t.Context(), bytes.NewReader(img), Edit{Recompress: true, Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			fs := frep.Segments[1]
			fseg := fast[fs.NewOffset : fs.NewOffset+fs.NewLength]
			if differs := !bytes.Equal(fseg, seg); differs != (c == Zstd || c == LZ4Legacy) {
				t.Errorf("Fast: segment differs from the default encoding: %v", differs)
			}
			if !bytes.Equal(decompressCLI(t, c, fseg), raw) {
				t.Errorf("Fast: %s's tool decodes the segment to other bytes", c)
			}
			sameEntries(t, im, parseBytes(t, fast))
		})
	}
}

// TestRewriteEdits checks that editing the image equals editing the tree and archiving it again with
// GNU cpio, compared on what GNU cpio extracts.
func TestRewriteEdits(t *testing.T) {
	testenv.Need(t, "cpio", "gzip")
	testenv.NeedRoot(t)
	tree := t.TempDir()
	makeTree(t, tree)
	busybox, _ := os.ReadFile(filepath.Join(tree, "usr/bin/busybox"))
	cases := []struct {
		name   string
		edit   Edit
		mutate func(t *testing.T, dir string)
	}{
		{"remove data-carrying hard link", Edit{Remove: []string{"/usr/bin/sh"}}, func(t *testing.T, dir string) {
			rm(t, dir, "usr/bin/sh")
		}},
		{"remove two hard links", Edit{Remove: []string{"usr/bin/sh", "./usr/bin/busybox"}}, func(t *testing.T, dir string) {
			rm(t, dir, "usr/bin/sh")
			rm(t, dir, "usr/bin/busybox")
		}},
		{"replace through a hard link", Edit{Replace: map[string][]byte{"usr/bin/ls": []byte("new busybox\n")}}, func(t *testing.T, dir string) {
			overwrite(t, dir, "usr/bin/ls", []byte("new busybox\n"))
		}},
		{"replace and prefix", Edit{
			Replace:      map[string][]byte{"etc/five": []byte("six666"), "etc/abs-link": []byte("/etc/three")},
			RemovePrefix: []string{"usr/lib/dracut"},
		}, func(t *testing.T, dir string) {
			overwrite(t, dir, "etc/five", []byte("six666"))
			relink(t, dir, "etc/abs-link", "/etc/three")
			if err := os.RemoveAll(filepath.Join(dir, "usr/lib/dracut")); err != nil {
				t.Fatal(err)
			}
		}},
		{"remove devices and fifo", Edit{Remove: []string{"dev/console", "dev/sda", "dev/initctl"}}, func(t *testing.T, dir string) {
			rm(t, dir, "dev/console")
			rm(t, dir, "dev/sda")
			rm(t, dir, "dev/initctl")
		}},
	}
	for _, format := range []string{"newc", "crc"} {
		for _, tc := range cases {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				archive := cpioCreate(t, tree, format)
				img := compressCLI(t, Gzip, archive)
				im := parseBytes(t, img)
				out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), tc.edit)
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.NotFound) > 0 {
					t.Errorf("NotFound %v", rep.NotFound)
				}
				edited := t.TempDir()
				sh(t, "", nil, fmt.Sprintf("cp -a %s/. %s", tree, edited))
				tc.mutate(t, edited)
				got, stderr := extract(t, decompressCLI(t, Gzip, out))
				want, _ := extract(t, cpioCreate(t, edited, format))
				if got != want || stderr != "" {
					t.Errorf("extracted tree (cpio stderr %q):\n%s\nwant:\n%s", stderr, got, want)
				}
			})
		}
	}
	t.Run("report", func(t *testing.T) {
		archive := cpioCreate(t, tree, "newc")
		im := parseBytes(t, archive)
		out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(archive), Edit{
			Remove:       []string{"usr/bin/sh", "no/such/file"},
			RemovePrefix: []string{"usr/lib/dracut/hooks"},
			Replace:      map[string][]byte{"etc/one": []byte("one")},
		})
		if err != nil {
			t.Fatal(err)
		}
		wantRemoved := []string{"usr/bin/sh", "usr/lib/dracut/hooks", "usr/lib/dracut/hooks/cmdline", "usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh"}
		if !reflect.DeepEqual(rep.Removed, wantRemoved) || !reflect.DeepEqual(rep.Replaced, []string{"etc/one"}) ||
			!reflect.DeepEqual(rep.NotFound, []string{"no/such/file"}) {
			t.Errorf("report removed %v replaced %v notfound %v", rep.Removed, rep.Replaced, rep.NotFound)
		}
		if s := rep.Segments[0]; !s.Rewritten || s.Removed != 4 || s.Replaced != 1 || s.NewLength+im.Segments[0].Padding != int64(len(out)) {
			t.Errorf("segment report %+v", s)
		}
		got, err := parseBytes(t, out).ReadFile("usr/bin/busybox")
		if err != nil || !bytes.Equal(got, busybox) {
			t.Errorf("busybox lost its data after removing the carrying link")
		}
		if _, _, err := im.Rewrite(t.Context(), bytes.NewReader(archive), Edit{Remove: []string{"etc/lvm"}}); err == nil ||
			!strings.Contains(err.Error(), "orphan") {
			t.Errorf("removing a non-empty directory: err = %v, want an orphan error", err)
		}
	})
}

func rm(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// overwrite changes a file's content in place (all its hard links) and restores its mtime, as Rewrite
// keeps the header's.
func overwrite(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, name)
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func relink(t *testing.T, dir, name, target string) {
	t.Helper()
	p := filepath.Join(dir, name)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	rm(t, dir, name)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	tv := []unix.Timeval{{Sec: st.Mtim.Sec}, {Sec: st.Mtim.Sec}}
	if err := unix.Lutimes(p, tv); err != nil {
		t.Fatal(err)
	}
}
