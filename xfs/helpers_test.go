package xfs

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// xfsDB runs read-only xfs_db commands against img.
func xfsDB(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return testenv.Run(t, "xfs_db", append(args, img)...)
}

// openImage opens an image file with Open.
func openImage(t testing.TB, img string) *FS {
	t.Helper()
	fsys, err := Open(testenv.Open(t, img))
	if err != nil {
		t.Fatalf("Open(%s): %v", img, err)
	}
	return fsys
}

// fixture decompresses testdata/<name>.xz (built by testdata/mkfixtures.sh,
// which needs a mounted filesystem) into a temporary file.
func fixture(t testing.TB, name string) string {
	t.Helper()
	testenv.Need(t, "xz")
	src, err := filepath.Abs(filepath.Join("testdata", name+".xz"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src); err != nil {
		t.Fatalf("fixture %s: %v (rebuild with testdata/mkfixtures.sh)", name, err)
	}
	out := filepath.Join(t.TempDir(), name)
	testenv.Run(t, "sh", "-c", fmt.Sprintf("xz -dc %q > %q", src, out))
	return out
}

// node is one file of the test tree that mkfs.xfs -p builds.
type node struct {
	path   string // absolute path inside the filesystem
	kind   byte   // 'd', '-', 'l', 'p', 'c'
	data   []byte // regular file content
	target string // symlink target
	// v4only marks nodes left out of v5 images: mkfs.xfs 6.1 writes
	// remote symlinks without the v5 block header (xfs_repair rejects them).
	v4only bool
}

// testTree describes the tree: directories in every format, files of many
// sizes, short and long symlinks, long names.
type testTree struct {
	nodes []node
	byPth map[string]*node
}

// pseudoRandom is file content that depends only on seed.
func pseudoRandom(seed uint64, n int) []byte {
	return testenv.RandBytes(rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d)), n)
}

var (
	treeOnce sync.Once
	tree     *testTree
)

func theTree() *testTree {
	treeOnce.Do(func() {
		tr := &testTree{byPth: map[string]*node{}}
		add := func(n node) { tr.nodes = append(tr.nodes, n) }
		dir := func(p string) { add(node{path: p, kind: 'd'}) }
		file := func(p string, data []byte) { add(node{path: p, kind: '-', data: data}) }
		link := func(p, target string) { add(node{path: p, kind: 'l', target: target}) }

		dir("/files")
		for i, size := range []int{0, 1, 4095, 4096, 12345, 1<<20 + 1} {
			file(fmt.Sprintf("/files/f%d", size), pseudoRandom(uint64(i+1), size))
		}
		dir("/few") // short-form
		for _, n := range []string{"a", "b", "c"} {
			file("/few/"+n, []byte("content of "+n+"\n"))
		}
		dir("/blockdir") // single directory block
		for i := range 40 {
			file(fmt.Sprintf("/blockdir/entry-with-a-longish-name-%03d", i), []byte(fmt.Sprintf("block %d\n", i)))
		}
		dir("/leafdir") // several data blocks + one leaf block
		for i := range 300 {
			file(fmt.Sprintf("/leafdir/leaf-entry-%04d", i), nil)
		}
		dir("/nodedir") // data blocks, da-btree node, leaves, free index
		for i := range 3000 {
			file(fmt.Sprintf("/nodedir/node-entry-number-%05d", i), nil)
		}
		file("/nodedir/needle", []byte("found in a node directory\n"))
		dir("/longnames")
		for i, n := range []int{255, 254, 200, 100} {
			file("/longnames/"+strings.Repeat(string(rune('a'+i)), n), []byte(fmt.Sprint(n)))
		}
		dir("/deep")
		dir("/deep/a")
		dir("/deep/a/b")
		dir("/deep/a/b/c")
		dir("/deep/a/b/c/d")
		file("/deep/a/b/c/d/file.txt", []byte("deep\n"))
		file("/ünïcödé", []byte("utf-8 name\n"))
		dir("/links")
		link("/links/short", "../files/f1")
		link("/links/abs", "/files/f4096")
		// A long (remote, extent-format) target that still resolves.
		add(node{path: "/links/long", kind: 'l', target: "../" + strings.Repeat("./", 300) + "files/f4095", v4only: true})
		link("/links/dirlink", "../deep/a/b")
		link("/links/absdir", "/deep/a")
		link("/links/loop1", "loop2")
		link("/links/loop2", "loop1")
		link("/links/dangling", "nonexistent")
		link("/links/chain", "short")
		add(node{path: "/links/fifo", kind: 'p'})
		add(node{path: "/links/null", kind: 'c'})
		for i := range tr.nodes {
			tr.byPth[tr.nodes[i].path] = &tr.nodes[i]
		}
		tree = tr
	})
	return tree
}

// children lists the direct children of dir in the tree, sorted.
func (tr *testTree) children(dir string, v5 bool) []*node {
	var out []*node
	for i := range tr.nodes {
		n := &tr.nodes[i]
		if filepath.Dir(n.path) == dir && n.path != dir && !(v5 && n.v4only) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// protofile writes the tree's source files under dir and returns a
// mkfs.xfs protofile for it.
func (tr *testTree) protofile(t testing.TB, dir string, v5 bool) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("xfs-test\n0 0\nd--755 0 0\n")
	nsrc := 0
	var emit func(d string, depth int)
	emit = func(d string, depth int) {
		for _, n := range tr.children(d, v5) {
			name := filepath.Base(n.path)
			ind := strings.Repeat(" ", depth)
			switch n.kind {
			case 'd':
				fmt.Fprintf(&b, "%s%s d--755 0 0\n", ind, name)
				emit(n.path, depth+1)
				fmt.Fprintf(&b, "%s$\n", ind)
			case '-':
				nsrc++
				src := filepath.Join(dir, fmt.Sprintf("src%d", nsrc))
				if err := os.WriteFile(src, n.data, 0o644); err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%s%s ---644 1000 100 %s\n", ind, name, src)
			case 'l':
				fmt.Fprintf(&b, "%s%s l--777 0 0 %s\n", ind, name, n.target)
			case 'p':
				fmt.Fprintf(&b, "%s%s p--644 0 0\n", ind, name)
			case 'c':
				fmt.Fprintf(&b, "%s%s c--666 0 0 1 3\n", ind, name)
			}
		}
	}
	emit("/", 1)
	b.WriteString("$\n")
	p := filepath.Join(dir, "proto")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	protoMu   sync.Mutex
	protoPath = map[bool]string{}
	imgCache  = map[string]*cachedImage{}
	sharedDir string // protofiles, their sources and cached images
)

type cachedImage struct {
	once sync.Once
	path string
	err  error
}

// isV5 tells from mkfs options whether the image will be v5.
func isV5(opts []string) bool {
	for _, o := range opts {
		if strings.Contains(o, "crc=0") {
			return false
		}
	}
	return true
}

// mkfsImage returns a sparse image holding the test tree, made by mkfs.xfs
// -p with the given extra options. Images are built once per option set and
// shared: callers must not modify them (testenv.CopyFile first).
func mkfsImage(t testing.TB, size string, opts ...string) string {
	t.Helper()
	return mkfsImageTree(t, size, isV5(opts), opts...)
}

// mkfsImageTree is mkfsImage with an explicit choice of the v5 tree.
func mkfsImageTree(t testing.TB, size string, v5 bool, opts ...string) string {
	t.Helper()
	testenv.Need(t, "mkfs.xfs", "xfs_db")
	protoMu.Lock()
	if sharedDir == "" {
		d, err := os.MkdirTemp("", "xfs-test-")
		if err != nil {
			protoMu.Unlock()
			t.Fatal(err)
		}
		sharedDir = d
	}
	if protoPath[v5] == "" {
		d := filepath.Join(sharedDir, fmt.Sprint("proto-", v5))
		if err := os.Mkdir(d, 0o755); err != nil {
			protoMu.Unlock()
			t.Fatal(err)
		}
		protoPath[v5] = theTree().protofile(t, d, v5)
	}
	p := protoPath[v5]
	key := fmt.Sprint(size, v5, opts)
	c := imgCache[key]
	if c == nil {
		c = &cachedImage{path: filepath.Join(sharedDir, fmt.Sprintf("img%d.img", len(imgCache)))}
		imgCache[key] = c
	}
	protoMu.Unlock()
	c.once.Do(func() {
		if c.err = os.WriteFile(c.path, nil, 0o644); c.err != nil {
			return
		}
		args := append([]string{"-q", "-f", "-p", p, "-d", "file,name=" + c.path + ",size=" + size}, opts...)
		_, c.err = testenv.RunErr("mkfs.xfs", args...)
	})
	if c.err != nil {
		t.Fatal(c.err)
	}
	return c.path
}

// writeSparse writes data to path, leaving all-zero 4 KiB blocks as holes
// (test images are mostly empty).
func writeSparse(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const chunk = 4096
	var zero [chunk]byte
	for off := 0; off < len(data); off += chunk {
		b := data[off:min(off+chunk, len(data))]
		if bytes.Equal(b, zero[:len(b)]) {
			continue
		}
		if _, err := f.WriteAt(b, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	// mkfs.xfs refuses filesystems under 300 MB unless it believes it runs
	// inside fstests; small images keep the tests fast.
	for _, v := range []string{"TEST_DIR", "TEST_DEV", "QA_CHECK_FS"} {
		os.Setenv(v, "1")
	}
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// dbExtent is one line of xfs_db's bmap output.
type dbExtent struct {
	off, agno, agbno, count uint64
	flag                    int
}

var bmapLine = regexp.MustCompile(`^data offset (\d+) startblock \d+ \((\d+)/(\d+)\) count (\d+) flag (\d)`)

// dbBmap returns xfs_db's block map of the file at path.
func dbBmap(t testing.TB, img, path string) []dbExtent {
	t.Helper()
	return parseBmap(t, xfsDB(t, img, "path "+path, "bmap"))
}

func parseBmap(t testing.TB, out string) []dbExtent {
	var exts []dbExtent
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := bmapLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var e dbExtent
		e.off, _ = strconv.ParseUint(m[1], 10, 64)
		e.agno, _ = strconv.ParseUint(m[2], 10, 64)
		e.agbno, _ = strconv.ParseUint(m[3], 10, 64)
		e.count, _ = strconv.ParseUint(m[4], 10, 64)
		e.flag, _ = strconv.Atoi(m[5])
		exts = append(exts, e)
	}
	return exts
}

// toExtents converts xfs_db extents to byte extents.
func (fs *FS) toExtents(db []dbExtent) []Extent {
	var out []Extent
	for _, e := range db {
		out = append(out, Extent{
			FileOff:   int64(e.off) * fs.bs,
			DiskOff:   int64(e.agno*uint64(fs.SB.AGBlocks)+e.agbno) * fs.bs,
			Len:       int64(e.count) * fs.bs,
			Unwritten: e.flag != 0,
		})
	}
	return out
}

// dbLs returns name → inode from xfs_db's ls of dir ("." and ".." dropped).
func dbLs(t testing.TB, img, dir string) map[string]uint64 {
	t.Helper()
	out := xfsDB(t, img, "ls "+dir)
	m := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 7 || f[len(f)-1] != "(good)" {
			continue
		}
		name := strings.Join(f[5:len(f)-1], " ")
		if name == "." || name == ".." {
			continue
		}
		ino, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("xfs_db ls line %q: %v", sc.Text(), err)
		}
		m[name] = ino
	}
	return m
}

// dbFields parses "name = value" lines of xfs_db print output.
func dbFields(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, " = ")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// readRaw reads the file's bytes directly from the image at the offsets
// xfs_db's bmap gives — a reader independent of this package.
func readRaw(t testing.TB, img string, fs *FS, path string, size int64) []byte {
	t.Helper()
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, size)
	for _, e := range fs.toExtents(dbBmap(t, img, path)) {
		if e.Unwritten || e.FileOff >= size {
			continue
		}
		n := min(e.Len, size-e.FileOff)
		copy(out[e.FileOff:e.FileOff+n], raw[e.DiskOff:e.DiskOff+n])
	}
	return out
}

// applyWrites copies img and applies ws to the copy.
func applyWrites(t testing.TB, img string, ws []Write) string {
	t.Helper()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Offset < 0 || w.Offset+int64(len(w.Data)) > int64(len(data)) {
			t.Fatalf("write at %d+%d outside the %d-byte image", w.Offset, len(w.Data), len(data))
		}
		copy(data[w.Offset:], w.Data)
	}
	out := filepath.Join(t.TempDir(), "copy.img")
	writeSparse(t, out, data)
	return out
}

// repairClean runs xfs_repair -n and fails the test unless it exits 0.
func repairClean(t testing.TB, img string) {
	t.Helper()
	testenv.Need(t, "xfs_repair")
	testenv.Run(t, "xfs_repair", "-n", "-f", img)
}
