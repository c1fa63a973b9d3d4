package testenv

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/fixture"
)

// unpacked is one corpus archive decompressed into the cache, once per process.
type unpacked struct {
	once sync.Once
	dir  string
	err  error
}

var (
	unpackedBySrc sync.Map // source path -> *unpacked
	pruneOnce     sync.Once
)

// CryptsetupImage returns the path of a decompressed file of cryptsetup's test corpus,
// SharedDir/testdata/cryptsetup. name is the file name without ".xz" ("compatimage2.img"), or for a
// file inside a tarball "ARCHIVE.tar/PATH" ("luks1-images.tar/luks1-images/keyfile1").
//
// The file is decompressed once, into <repo>/testdata/.cache/cryptsetup under the SHA-256 of the
// compressed file, and shared by every test and test binary: callers must not modify it (CopyFile
// first). Concurrent callers, in this process or others, are safe: each archive is unpacked in a
// private directory that is renamed into place whole. The test skips, loudly, when the corpus file or
// the xz tool is missing.
func CryptsetupImage(t testing.TB, name string) string {
	t.Helper()
	archive, inner, isTar := strings.Cut(name, ".tar/")
	file := name + ".xz"
	if isTar {
		file = archive + ".tar.xz"
	}
	Need(t, "xz")
	src := filepath.Join(SharedDir(t), "testdata", "cryptsetup", file)
	if _, err := os.Stat(src); err != nil {
		t.Skipf("CORPUS FILE UNAVAILABLE: %v (../shared/testdata/cryptsetup is cryptsetup's test corpus)", err)
	}
	v, _ := unpackedBySrc.LoadOrStore(src, new(unpacked))
	u := v.(*unpacked)
	u.once.Do(func() {
		root := fixture.Root()
		if root == "" {
			u.err = errors.New("no go.mod above the working directory")
			return
		}
		u.dir, u.err = unpack(filepath.Join(root, "testdata", ".cache", "cryptsetup"), src, isTar)
	})
	if u.err != nil {
		t.Fatalf("testenv: decompressing %s: %v", src, u.err)
	}
	p := filepath.Join(u.dir, filepath.Base(name))
	if isTar {
		p = filepath.Join(u.dir, filepath.FromSlash(inner))
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: %s: %v", file, err)
	}
	return p
}

// unpack decompresses src into a directory of cache named after src's content and returns that
// directory.
func unpack(cache, src string, isTar bool) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	pruneOnce.Do(func() { pruneTemp(cache) })
	dir := filepath.Join(cache, filepath.Base(src)+"-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil // complete: directories appear only by rename
	}
	tmp, err := os.MkdirTemp(cache, ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone after the rename; cleans up a failed unpack
	write := func(xz io.Reader) error {
		return writeSparse(filepath.Join(tmp, strings.TrimSuffix(filepath.Base(src), ".xz")), xz)
	}
	if isTar {
		write = func(xz io.Reader) error { return untarSparse(tmp, xz) }
	}
	if err := withXZ(src, write); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // another process renamed its copy first
		}
		return "", err
	}
	return dir, nil
}

// withXZ runs `xz -dc src` and hands its output to consume.
func withXZ(src string, consume func(io.Reader) error) error {
	cmd := exec.Command("xz", "-dc", src)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	consumeErr := consume(stdout)
	io.Copy(io.Discard, stdout) // let xz finish even if consume stopped early
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("xz -dc %s: %v: %s", src, err, stderr.String())
	}
	return consumeErr
}

// untarSparse extracts the directories and regular files of a tar stream under dir, each file
// written by writeSparse. The corpus tarballs hold nothing else.
func untarSparse(dir string, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("tar member %q leaves the directory", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = writeSparse(p, tr)
			}
		default:
			err = fmt.Errorf("tar member %q: unexpected type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// writeSparse writes r to a new file at path, leaving all-zero 4 KiB blocks as holes: the corpus
// images are mostly zeros and the cache keeps them.
func writeSparse(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const block = 4096
	buf := make([]byte, 64*block)
	var zero [block]byte
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		for i := 0; i < n; i += block {
			b := buf[i:min(i+block, n)]
			if !bytes.Equal(b, zero[:len(b)]) {
				if _, werr := f.WriteAt(b, off+int64(i)); werr != nil {
					return werr
				}
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := f.Truncate(off); err != nil {
		return err
	}
	return f.Close()
}

// pruneTemp removes unpack directories left behind by test binaries killed mid-way.
func pruneTemp(cache string) {
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.RemoveAll(filepath.Join(cache, e.Name()))
		}
	}
}
