package ext

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
)

// rewriteCase is one planned rewrite: ok says whether Rewrite must accept it.
type rewriteCase struct {
	path string
	data []byte
	ok   bool
	why  string
}

// rewriteCases builds the cases for a filesystem: same size, shrink and
// grow within the blocks owned, and what must be refused.
func rewriteCases(t *testing.T, fs *FS, tr *tree, inline bool) []rewriteCase {
	t.Helper()
	bs := int(fs.bs)
	size := func(p string) int { return len(tr.byPth[p].data) }
	owned := func(p string) int { // bytes of the mapped blocks from offset 0
		ino, err := fs.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		exts, err := fs.Extents(ino)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range exts {
			if e.FileOff != int64(n) {
				break
			}
			n += int(e.Len)
		}
		return n
	}
	cs := []rewriteCase{
		{"/big", pseudoRandom(7, size("/big")), true, "same size"},
		{"/small/f70000", pseudoRandom(8, 70000-70000%bs+1), true, "shrink within the last block"},
		{"/frag", []byte("x"), false, "holes"},
		{"/sparse", pseudoRandom(9, size("/sparse")), false, "holes within the new size"},
		{"/small/f70000", pseudoRandom(10, 100), false, "blocks left beyond the end"},
		{"/deep", []byte("dir"), false, "a directory"},
		{"/links/short", []byte("x"), false, "a symlink"},
	}
	if inline {
		cs = append(cs, rewriteCase{"/small/f100", pseudoRandom(11, 100), false, "inline data"})
	} else {
		cs = append(cs,
			rewriteCase{"/small/f4097", pseudoRandom(12, owned("/small/f4097")), true, "grow to the blocks owned"},
			rewriteCase{"/small/f1000", pseudoRandom(13, owned("/small/f1000")+1), false, "one byte more than owned"},
			rewriteCase{"/small/f12288", nil, bs > 12288, "empty a file of several blocks"},
		)
	}
	return cs
}

func TestOracleRewrite(t *testing.T) {
	needE2fs(t)
	forEachVariant(t, func(t *testing.T, v variant) {
		img, tr := image(t, v)
		cp := copyImage(t, img)
		fs := openImage(t, cp)
		want := map[string][]byte{}
		var all []Write
		for _, c := range rewriteCases(t, fs, tr, v.wantInline) {
			ws, err := fs.Rewrite(c.path, c.data, nil)
			if !c.ok {
				if !errors.Is(err, ErrCannotEdit) {
					t.Errorf("%s (%s): Rewrite = %v, want ErrCannotEdit", c.path, c.why, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s (%s): %v", c.path, c.why, err)
				continue
			}
			checkWrites(t, fs, c.path, ws)
			want[c.path] = c.data
			all = append(all, ws...)
		}
		// One more with a new modification time (and nanoseconds where
		// the inode has room for them).
		mt := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
		ws, err := fs.Rewrite("/small/f1000", pseudoRandom(14, 999), &RewriteOptions{ModTime: mt})
		if err != nil {
			t.Fatal(err)
		}
		want["/small/f1000"] = pseudoRandom(14, 999)
		all = append(all, ws...)

		applyWrites(t, cp, all)
		if err := fsckClean(cp); err != nil {
			t.Fatalf("e2fsck -fn after the rewrites: %v", err)
		}
		after := openImage(t, cp)
		for p, data := range want {
			if got := debugfsOut(t, cp, "cat "+p); !bytes.Equal(got, data) {
				t.Errorf("debugfs cat %s: %d bytes, want %d (content differs: %v)", p, len(got), len(data), len(got) == len(data))
			}
			if got, err := after.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				t.Errorf("ReadFile(%s) after the rewrite: %d bytes, %v", p, len(got), err)
			}
		}
		// The rest of the tree is untouched.
		for _, n := range tr.nodes {
			if _, ok := want[n.path]; ok || n.kind != '-' || n.link != "" || strings.HasPrefix(n.path, "/htree/") {
				continue
			}
			if got, err := after.ReadFile(n.path); err != nil || !bytes.Equal(got, n.data) {
				t.Errorf("%s changed: %v", n.path, err)
			}
		}
		stat := string(debugfsOut(t, cp, "stat /small/f1000"))
		for _, field := range []string{"mtime", "ctime"} {
			m := regexp.MustCompile(field + `: 0x([0-9a-f]+)(?::([0-9a-f]+))?`).FindStringSubmatch(stat)
			if m == nil || m[1] != fmt.Sprintf("%08x", uint32(mt.Unix())) {
				t.Errorf("debugfs %s %v, want seconds %08x", field, m, uint32(mt.Unix()))
			}
		}
		if ino, _ := after.Lookup("/small/f1000"); ino.fits(0x8c) && !ino.Mtime.Equal(mt) || !ino.fits(0x8c) && !ino.Mtime.Equal(mt.Truncate(time.Second)) {
			t.Errorf("mtime %v, want %v", ino.Mtime, mt)
		}
	})
}

// checkWrites requires ws to touch only the data blocks of the file at p
// and its inode.
func checkWrites(t *testing.T, fs *FS, p string, ws []Write) {
	t.Helper()
	ino, err := fs.Lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	exts, _ := fs.Extents(ino)
	for _, w := range ws {
		if w.Offset == ino.Offset && len(w.Data) == fs.inodeSize {
			continue
		}
		inside := false
		for _, e := range exts {
			if !e.Unwritten && w.Offset >= e.DiskOff && w.Offset+int64(len(w.Data)) <= e.DiskOff+e.Len {
				inside = true
			}
		}
		if !inside || w.Offset%fs.bs != 0 || int64(len(w.Data))%fs.bs != 0 {
			t.Errorf("%s: write of %d bytes at %d outside its data blocks", p, len(w.Data), w.Offset)
		}
	}
}

// TestRewriteUnwritten preallocates blocks (debugfs fallocate makes
// unwritten extents) and checks they read as zeros, are reported as
// Unwritten, and stop a rewrite that would need them.
func TestRewriteUnwritten(t *testing.T) {
	needE2fs(t)
	img, tr := image(t, variantByName(t, "ext4-4k"))
	cp := copyImage(t, img)
	// /small/f4096 has block 0; preallocate blocks 4..9 beyond its end
	// and 1..2 inside a grown size.
	debugfsW(t, cp, "fallocate /small/f4096 4 9", "fallocate /small/f4095 1 2", "sif /small/f4095 size 12000")
	if err := fsckClean(cp); err != nil {
		t.Fatalf("e2fsck -fn: %v", err)
	}
	fs := openImage(t, cp)
	ino, _ := fs.Lookup("/small/f4096")
	exts, err := fs.Extents(ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(exts) != 2 || exts[0].Unwritten || !exts[1].Unwritten || exts[1].FileOff != 4*fs.bs || exts[1].Len != 6*fs.bs {
		t.Fatalf("extents %+v, want a written block and 6 unwritten from file block 4", exts)
	}
	data, err := fs.ReadFile("/small/f4095")
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte(nil), tr.byPth["/small/f4095"].data...), make([]byte, 12000-4095)...)
	if !bytes.Equal(data, want) {
		t.Error("the unwritten blocks of /small/f4095 do not read as zeros")
	}
	if got := debugfsOut(t, cp, "cat /small/f4095"); !bytes.Equal(got, want) {
		t.Error("debugfs cat disagrees with the expected content")
	}
	// Within block 0: fine, the unwritten extent past the end stays.
	ws, err := fs.Rewrite("/small/f4096", pseudoRandom(20, 4000), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Rewrite("/small/f4095", pseudoRandom(21, 5000), nil); !errors.Is(err, ErrCannotEdit) || !strings.Contains(err.Error(), "unwritten") {
		t.Errorf("rewrite into an unwritten extent: %v, want ErrCannotEdit", err)
	}
	applyWrites(t, cp, ws)
	if err := fsckClean(cp); err != nil {
		t.Fatalf("e2fsck -fn after the rewrite: %v", err)
	}
	if got := debugfsOut(t, cp, "cat /small/f4096"); !bytes.Equal(got, pseudoRandom(20, 4000)) {
		t.Error("debugfs cat after the rewrite differs")
	}
}

// TestRewriteIndexedTreeEnd: for a file whose extent tree has an index
// level, e2fsck takes the last index to cover the blocks up to i_size only,
// so a rewrite that ends exactly where the last initialised block starts
// ("end of extent exceeds allowed value", although i_size is not too small
// for its blocks) is refused; MinRewriteSize, one byte more, is accepted and
// e2fsck -fn finds the result clean. A file mapped by the inode alone may end
// at that block's start.
func TestRewriteIndexedTreeEnd(t *testing.T) {
	needE2fs(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		testenv.WriteFile(t, tree, fmt.Sprintf("f%03d", i), bytes.Repeat([]byte{byte(i)}, 3000))
	}
	testenv.WriteFile(t, tree, "flat", pseudoRandom(30, 10000))
	img := filepath.Join(dir, "ext4.img")
	testenv.Run(t, "mkfs.ext4", "-q", "-b", "1024", "-d", tree, img, "16M")
	// Every other file goes, and a new one fills the holes: dozens of
	// extents, more than the inode holds.
	var cmds []string
	for i := 0; i < 400; i += 2 {
		cmds = append(cmds, fmt.Sprintf("rm /f%03d", i))
	}
	data := pseudoRandom(31, 200000)
	cmds = append(cmds, "write "+testenv.WriteFile(t, dir, "host", data)+" /frag")
	testenv.WriteFile(t, dir, "cmds", []byte(strings.Join(cmds, "\n")+"\n"))
	testenv.Run(t, "debugfs", "-w", "-f", filepath.Join(dir, "cmds"), img)
	if err := fsckClean(img); err != nil {
		t.Fatalf("e2fsck -fn on the fixture: %v", err)
	}

	fs := openImage(t, img)
	for _, c := range []struct {
		path    string
		indexed bool
	}{{"/frag", true}, {"/flat", false}} {
		ino, err := fs.Lookup(c.path)
		if err != nil {
			t.Fatal(err)
		}
		exts, idx, err := fs.mapping(ino)
		if err != nil {
			t.Fatal(err)
		}
		if (len(idx) > 0) != c.indexed {
			t.Fatalf("%s: %d index blocks, want an index level: %v", c.path, len(idx), c.indexed)
		}
		last := exts[len(exts)-1]
		start := last.FileOff + last.Len - fs.bs // the last block's offset
		want := start
		if c.indexed {
			want++
		}
		if min, err := fs.MinRewriteSize(ino); err != nil || min != want {
			t.Fatalf("%s: MinRewriteSize = %d, %v; want %d", c.path, min, err, want)
		}
		if c.indexed {
			if _, err := fs.RewriteInode(ino, pseudoRandom(32, int(start)), nil); !errors.Is(err, ErrCannotEdit) {
				t.Fatalf("%s: a rewrite ending where the last block starts: %v, want ErrCannotEdit", c.path, err)
			}
		}
		cp := copyImage(t, img)
		newData := pseudoRandom(33, int(want))
		ws, err := fs.RewriteInode(ino, newData, nil)
		if err != nil {
			t.Fatalf("%s: %d bytes: %v", c.path, want, err)
		}
		applyWrites(t, cp, ws)
		if out, err := testenv.RunErr("e2fsck", "-fn", cp); err != nil {
			t.Fatalf("%s: e2fsck -fn after a rewrite to %d bytes: %v\n%s", c.path, want, err, out)
		}
		if got := debugfsOut(t, cp, "cat "+c.path); !bytes.Equal(got, newData) {
			t.Errorf("%s: debugfs cat: %d bytes, want %d", c.path, len(got), len(newData))
		}
	}
}
