package ext

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
)

// The test images are made by the real tools: mkfs.ext2/3/4 -d copies a
// tree built here into a new filesystem (no mount), e2fsck -fyD turns
// directories of more than one block into htrees, debugfs -w makes the
// special cases. The UUID, hash seed and E2FSPROGS_FAKE_TIME are fixed, so
// an image depends only on its options and the tree.

const (
	testUUID     = "3b2f1c4e-8d7a-4e5b-9c6d-0a1b2c3d4e5f"
	testHashSeed = "6c7d8e9f-0a1b-4c2d-8e3f-405162738495"
	fakeTime     = "1700000000"
)

// shared holds the images built once per test binary run.
var shared struct {
	once sync.Once
	dir  string
	err  error
	mu   sync.Mutex
	imgs map[string]*sync.Once
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func sharedDir(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "ext-test-")
		shared.imgs = map[string]*sync.Once{}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.dir
}

// pseudoRandom is file content that depends only on seed.
func pseudoRandom(seed uint64, n int) []byte {
	return testenv.RandBytes(rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d)), n)
}

// node is one file of a test tree.
type node struct {
	path   string // absolute path inside the filesystem
	kind   byte   // 'd', '-', 'l', 'p'
	data   []byte // regular file content (holes are zeros)
	holes  bool   // written sparsely: only the non-zero 4 KiB pieces
	target string // symlink target
	link   string // hard link: the path of the first name
}

// treeOpts tunes the tree to the filesystem it goes into.
type treeOpts struct {
	maxSymlink int  // longest symlink target (below the block size)
	triple     bool // a 70 MiB sparse file: triple indirection with 1 KiB blocks
	htree      int  // entries of /htree
	bigFile    int  // size of /big (double indirection needs > 4 MiB with 4 KiB blocks)
}

type tree struct {
	nodes []*node
	byPth map[string]*node
}

func (tr *tree) add(n *node) {
	tr.nodes = append(tr.nodes, n)
	tr.byPth[n.path] = n
}

var trees sync.Map // treeOpts -> *tree

// cachedTree is makeTree, once per options: the trees are read-only and
// their sparse files are large.
func cachedTree(o treeOpts) *tree {
	if tr, ok := trees.Load(o); ok {
		return tr.(*tree)
	}
	tr, _ := trees.LoadOrStore(o, makeTree(o))
	return tr.(*tree)
}

// makeTree describes the test tree: files of many sizes around the
// block and inline limits, a big file, sparse files, an htree directory,
// deep and empty directories, a 255-byte name, fast, slow and looping
// symlinks, a FIFO and a hard link.
func makeTree(o treeOpts) *tree {
	tr := &tree{byPth: map[string]*node{}}
	dir := func(p string) { tr.add(&node{path: p, kind: 'd'}) }
	file := func(p string, data []byte) { tr.add(&node{path: p, kind: '-', data: data}) }
	link := func(p, target string) { tr.add(&node{path: p, kind: 'l', target: target}) }
	dir("/small")
	for i, n := range []int{0, 1, 3, 59, 60, 61, 100, 150, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 12288, 65536, 70000} {
		file(fmt.Sprintf("/small/f%d", n), pseudoRandom(uint64(i+1), n))
	}
	file("/big", pseudoRandom(100, o.bigFile))
	sp := make([]byte, 3<<20)
	copy(sp, "start")
	copy(sp[2<<20+5:], "middle")
	copy(sp[len(sp)-3:], "end")
	tr.add(&node{path: "/sparse", kind: '-', data: sp, holes: true})
	// 1500 pieces of 1 KiB, 8 KiB apart: 1500 extents need a tree of
	// depth 2 (4 in the inode, 340 per 4 KiB leaf).
	fr := make([]byte, 1500*8192)
	for i := range 1500 {
		copy(fr[i*8192:], pseudoRandom(uint64(5000+i), 1024))
	}
	copy(fr[len(fr)-3:], "end") // mkfs -d loses a trailing hole from the size
	tr.add(&node{path: "/frag", kind: '-', data: fr, holes: true})
	if o.triple {
		tp := make([]byte, 70<<20+100)
		copy(tp, "head")
		copy(tp[5000:], "x")
		copy(tp[67<<20:], "in the triple indirect tree")
		copy(tp[len(tp)-4:], "tail")
		tr.add(&node{path: "/triple", kind: '-', data: tp, holes: true})
	}
	dir("/htree")
	for i := range o.htree {
		p := fmt.Sprintf("/htree/entry-%05d-with-a-longer-name", i)
		if i%500 == 7 {
			file(p, pseudoRandom(uint64(1000+i), 200+i))
		} else {
			file(p, nil)
		}
	}
	for _, p := range []string{"/deep", "/deep/a", "/deep/a/b", "/deep/a/b/c", "/deep/a/b/c/d"} {
		dir(p)
	}
	file("/deep/a/b/c/d/file.txt", []byte("deep file\n"))
	dir("/empty")
	dir("/names")
	file("/names/"+strings.Repeat("n", 255), []byte("long name\n"))
	file("/names/with space and ünïcödé", []byte("utf-8\n"))
	dir("/links")
	link("/links/short", "../small/f100")
	long := "../" + strings.Repeat("deep/../", 8) + "small/f1000"
	link("/links/long", long) // 60+ bytes: a slow (or inline) symlink
	link("/links/exactly59", strings.Repeat("x", 59))
	link("/links/exactly60", strings.Repeat("y", 60))
	link("/links/huge", strings.Repeat("h", o.maxSymlink))
	link("/links/dirlink", "../deep/a")
	link("/links/abs", "/deep/a/b")
	link("/links/loop1", "loop2")
	link("/links/loop2", "loop1")
	link("/links/self", "self")
	link("/links/dangling", "nowhere")
	tr.add(&node{path: "/fifo", kind: 'p'})
	tr.add(&node{path: "/hardlink", kind: '-', link: "/small/f100", data: tr.byPth["/small/f100"].data})
	return tr
}

var epoch = time.Unix(1600000000, 0)

// write materialises the tree under dir, with fixed times.
func (tr *tree) write(dir string) error {
	for _, n := range tr.nodes {
		p := filepath.Join(dir, n.path)
		var err error
		switch {
		case n.kind == 'd':
			err = os.Mkdir(p, 0o755)
		case n.kind == 'l':
			err = os.Symlink(n.target, p)
		case n.kind == 'p':
			err = syscall.Mkfifo(p, 0o644)
		case n.link != "":
			err = os.Link(filepath.Join(dir, n.link), p)
		case n.holes:
			err = writeSparse(p, n.data)
		default:
			err = os.WriteFile(p, n.data, 0o644)
		}
		if err != nil {
			return err
		}
	}
	// Directories last, deepest first, so their times stick.
	for i := len(tr.nodes) - 1; i >= 0; i-- {
		if n := tr.nodes[i]; n.kind != 'l' {
			if err := os.Chtimes(filepath.Join(dir, n.path), epoch, epoch); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeSparse writes only the non-zero 4 KiB pieces of data.
func writeSparse(p string, data []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 4096 {
		piece := data[off:min(off+4096, len(data))]
		if !allZero(piece) {
			if _, err := f.WriteAt(piece, int64(off)); err != nil {
				f.Close()
				return err
			}
		}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// variant is one way of making a filesystem.
type variant struct {
	name string
	mkfs string // mkfs.ext2, mkfs.ext3, mkfs.ext4
	size string
	opts []string
	tree treeOpts
	// want* are what Open must find.
	want64, wantCsum, wantGdtCsum, wantFlex, wantExtents, wantInline, wantJournal bool
	bs                                                                            int64
}

var defaultTree = treeOpts{maxSymlink: 900, htree: 3000, bigFile: 4<<20 + 512<<10}

var variants = []variant{
	{name: "ext2-1k", mkfs: "mkfs.ext2", size: "96M", opts: []string{"-b", "1024"}, bs: 1024,
		tree: treeOpts{maxSymlink: 900, triple: true, htree: 3000, bigFile: 4<<20 + 512<<10}},
	{name: "ext2-4k-rev0", mkfs: "mkfs.ext2", size: "48M", opts: []string{"-b", "4096", "-r", "0"}, bs: 4096, tree: defaultTree},
	{name: "ext2-4k-nofiletype", mkfs: "mkfs.ext2", size: "48M", opts: []string{"-b", "4096", "-O", "^filetype", "-I", "128"}, bs: 4096, tree: defaultTree},
	{name: "ext3-1k", mkfs: "mkfs.ext3", size: "64M", opts: []string{"-b", "1024"}, bs: 1024, wantJournal: true, tree: defaultTree},
	{name: "ext3-4k", mkfs: "mkfs.ext3", size: "48M", opts: []string{"-b", "4096", "-g", "4096"}, bs: 4096, wantJournal: true, tree: defaultTree},
	{name: "ext4-4k", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "4096", "-g", "2048"}, bs: 4096,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-1k", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "1024"}, bs: 1024,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-nocsum-32bit", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "4096", "-g", "2048", "-O", "^metadata_csum,^64bit,uninit_bg"}, bs: 4096,
		wantGdtCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-gdtcsum-64bit", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "1024", "-O", "^metadata_csum,uninit_bg"}, bs: 1024,
		want64: true, wantGdtCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-1k-nocsum-noflex", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "1024", "-O", "^metadata_csum,^flex_bg,^64bit"}, bs: 1024,
		wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-csum-32bit-128inode", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "4096", "-O", "^64bit", "-I", "128"}, bs: 4096,
		wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-inline", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "4096", "-g", "4096", "-O", "inline_data"}, bs: 4096,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantInline: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-newer-features", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "4096", "-g", "4096", "-O", "orphan_file,quota,project,large_dir,ea_inode"}, bs: 4096,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-metabg", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "1024", "-g", "1024", "-O", "meta_bg,^resize_inode"}, bs: 1024,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-sparse-super2", mkfs: "mkfs.ext4", size: "64M", opts: []string{"-b", "1024", "-g", "1024", "-O", "sparse_super2,metadata_csum_seed"}, bs: 1024,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-bigalloc", mkfs: "mkfs.ext4", size: "128M", opts: []string{"-b", "4096", "-O", "bigalloc", "-C", "16384", "-g", "2048"}, bs: 4096,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true,
		tree: defaultTree},
	{name: "ext4-bigalloc-1k", mkfs: "mkfs.ext4", size: "128M", opts: []string{"-b", "1024", "-O", "bigalloc", "-C", "16384", "-g", "1024"}, bs: 1024,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true, tree: defaultTree},
	{name: "ext4-64k", mkfs: "mkfs.ext4", size: "256M", opts: []string{"-b", "65536", "-N", "8192", "-g", "1024"}, bs: 65536,
		want64: true, wantCsum: true, wantFlex: true, wantExtents: true, wantJournal: true,
		tree: treeOpts{maxSymlink: 4000, htree: 6000, bigFile: 4<<20 + 512<<10}},
}

func variantByName(t testing.TB, name string) variant {
	for _, v := range variants {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no variant %q", name)
	return variant{}
}

// label is the variant's volume label (at most 16 bytes).
func label(v variant) string {
	l := "t-" + v.name
	return l[:min(len(l), 16)]
}

// needE2fs skips, loudly, without e2fsprogs.
func needE2fs(t testing.TB) {
	t.Helper()
	testenv.Need(t, "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs")
}

// image builds (once per run) the image of variant v with its tree and
// returns its path and the tree. Callers that modify an image use a copy.
func image(t testing.TB, v variant) (string, *tree) {
	t.Helper()
	needE2fs(t)
	dir := sharedDir(t)
	shared.mu.Lock()
	once, ok := shared.imgs[v.name]
	if !ok {
		once = new(sync.Once)
		shared.imgs[v.name] = once
	}
	shared.mu.Unlock()
	img := filepath.Join(dir, v.name+".img")
	tr := cachedTree(v.tree)
	var err error
	once.Do(func() { err = buildImage(v, tr, dir, img) })
	if err != nil {
		t.Fatal(err)
	}
	if _, serr := os.Stat(img); serr != nil {
		t.Fatalf("image %s was not built (an earlier build failed)", v.name)
	}
	return img, tr
}

func buildImage(v variant, tr *tree, dir, img string) error {
	src, err := os.MkdirTemp(dir, v.name+"-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := tr.write(src); err != nil {
		return err
	}
	args := []string{"E2FSPROGS_FAKE_TIME=" + fakeTime, v.mkfs, "-q", "-F", "-U", testUUID, "-L", label(v),
		"-E", "hash_seed=" + testHashSeed, "-d", src}
	args = append(append(args, v.opts...), img, v.size)
	if _, err := testenv.RunErr("env", args...); err != nil {
		return err
	}
	// Index every directory of more than one block (mkfs -d writes
	// linear ones); exit status 1 means "changes made".
	if _, err := testenv.RunErr("env", "E2FSCK_TIME="+fakeTime, "e2fsck", "-fyD", img); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			return err
		}
	}
	return fsckClean(img)
}

// fsckClean runs e2fsck -fn, which exits non-zero on any inconsistency.
func fsckClean(img string) error {
	_, err := testenv.RunErr("e2fsck", "-fn", img)
	return err
}

// mountedCopy loop-mounts, read-write, a private copy of the ext4-4k variant and returns the copy and
// its mount point; it is unmounted when the test ends if the test has not done so. Without root or
// loop mounts the test is skipped, loudly.
func mountedCopy(t *testing.T) (img, mnt string) {
	t.Helper()
	needE2fs(t)
	testenv.NeedRoot(t)
	testenv.Need(t, "mount", "umount")
	base, _ := image(t, variantByName(t, "ext4-4k"))
	img, mnt = copyImage(t, base), t.TempDir()
	mountExt(t, img, mnt)
	return img, mnt
}

// mountExt loop-mounts the ext4 image img on mnt, read-write, with the mount options opts besides
// loop, and unmounts it when the test ends if the test has not done so; without loop mounts the test
// is skipped, loudly.
func mountExt(t *testing.T, img, mnt string, opts ...string) {
	t.Helper()
	if out, err := testenv.RunErr("mount", "-t", "ext4", "-o", strings.Join(append([]string{"loop"}, opts...), ","), img, mnt); err != nil {
		t.Skipf("LOOP MOUNT UNAVAILABLE: %v\n%s", err, out)
	}
	t.Cleanup(func() { testenv.RunErr("umount", mnt) }) // fails harmlessly once unmounted
}

// copyImage returns a private copy of img.
func copyImage(t testing.TB, img string) string {
	t.Helper()
	return testenv.CopyFile(t, img)
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

// debugfsOut runs debugfs -R cmd on img and returns its stdout only (the
// banner goes to stderr).
func debugfsOut(t testing.TB, img, cmd string) []byte {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", cmd, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", cmd, err)
	}
	return out
}

// debugfsW runs debugfs -w with the commands, one -R each, and fails on
// error output that is not the banner.
func debugfsW(t testing.TB, img string, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		cmd := exec.Command("debugfs", "-w", "-R", c, img)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("debugfs -w -R %q: %v\n%s", c, err, stderr.String())
		}
		for _, ln := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if ln != "" && !strings.HasPrefix(ln, "debugfs ") {
				t.Fatalf("debugfs -w -R %q: %s", c, stderr.String())
			}
		}
	}
}

// blockMap is what debugfs stat lists for an inode: data blocks by file
// block, unwritten ones, and the mapping tree blocks (IND, DIND, TIND,
// ETBn).
type blockMap struct {
	data      map[uint64]uint64
	unwritten map[uint64]bool
	tree      map[uint64]bool
}

var (
	statRun  = regexp.MustCompile(`\((\d+)(?:-(\d+))?(\[u\])?\):(\d+)(?:-(\d+))?`)
	statTree = regexp.MustCompile(`\((?:IND|DIND|TIND|ETB\d+)\):(\d+)`)
)

// statBlocks parses the BLOCKS or EXTENTS section of debugfs stat.
func statBlocks(t testing.TB, img, path string) blockMap {
	t.Helper()
	out := string(debugfsOut(t, img, "stat "+quoteDebugfs(path)))
	m := blockMap{data: map[uint64]uint64{}, unwritten: map[uint64]bool{}, tree: map[uint64]bool{}}
	i := strings.Index(out, "EXTENTS:")
	if i < 0 {
		i = strings.Index(out, "BLOCKS:")
	}
	if i < 0 {
		return m
	}
	sec := out[i:]
	if j := strings.Index(sec, "TOTAL:"); j >= 0 {
		sec = sec[:j]
	}
	for _, mm := range statTree.FindAllStringSubmatch(sec, -1) {
		b, _ := strconv.ParseUint(mm[1], 10, 64)
		m.tree[b] = true
	}
	for _, mm := range statRun.FindAllStringSubmatch(sec, -1) {
		l0, _ := strconv.ParseUint(mm[1], 10, 64)
		l1 := l0
		if mm[2] != "" {
			l1, _ = strconv.ParseUint(mm[2], 10, 64)
		}
		p0, _ := strconv.ParseUint(mm[4], 10, 64)
		for l := l0; l <= l1; l++ {
			m.data[l] = p0 + (l - l0)
			if mm[3] != "" {
				m.unwritten[l] = true
			}
		}
	}
	return m
}

// quoteDebugfs quotes a path for debugfs's command parser.
func quoteDebugfs(p string) string {
	if strings.ContainsAny(p, " \"") {
		return `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	return p
}

// dumpe2fsFree returns the free blocks dumpe2fs lists, as merged runs.
// With bigalloc (ratio blocks per cluster) dumpe2fs prints the first block
// of the first and last free cluster of each run.
func dumpe2fsFree(t testing.TB, img string, ratio, blocks uint64) []blockRun {
	t.Helper()
	out, err := exec.Command("dumpe2fs", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs: %v", err)
	}
	var rs []blockRun
	for _, ln := range strings.Split(string(out), "\n") {
		// Group sections indent it; the header's "Free blocks:" is a count.
		rest, ok := strings.CutPrefix(ln, "  Free blocks: ")
		if !ok {
			continue
		}
		for _, f := range strings.Split(rest, ", ") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			a, b, isRange := strings.Cut(f, "-")
			lo, err1 := strconv.ParseUint(a, 10, 64)
			hi := lo
			var err2 error
			if isRange {
				hi, err2 = strconv.ParseUint(b, 10, 64)
			}
			if err1 != nil || err2 != nil {
				t.Fatalf("dumpe2fs free list %q", rest)
			}
			rs = append(rs, blockRun{lo, min(hi+ratio, blocks) - lo})
		}
	}
	return mergeRuns(rs)
}

// applyWrites writes ws into the image file at path.
func applyWrites(t testing.TB, path string, ws []Write) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range ws {
		if _, err := f.WriteAt(w.Data, w.Offset); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// sortedNames returns the sorted names of entries.
func sortedNames(ents []DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

// readImage reads a whole image file.
func readImage(t testing.TB, img string) []byte {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
