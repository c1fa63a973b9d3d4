// Package deltafixture builds the states of an encrypted ext4 volume (Build), or of an encrypted LVM
// PV whose LV holding ext4 is extended (BuildLVM), between two conversion passes, for the tests of a
// second (delta) pass: the plaintext changed with the real tools (mkfs.ext4 -d, debugfs -w, resize2fs,
// vgcfgrestore), each state encrypted by cryptsetup under one volume key, so that sectors that did not
// change have the same ciphertext in every state, as on a disk ADE encrypted once.
package deltafixture

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/testenv"
)

// State is one state of the volume: its ciphertext (data at offset 0), detached LUKS2 header and
// plaintext image.
type State struct{ Disk, Header, Plain string }

// Encrypt encrypts a copy of the plaintext image plain under the volume key file vk (passphrase file
// pass) into dir/name.raw with the detached header dir/name.hdr, as ADE's OS volumes: data at offset 0.
func Encrypt(t testing.TB, dir, name, plain, vk, pass string) State {
	t.Helper()
	st := State{Disk: filepath.Join(dir, name+".raw"), Header: filepath.Join(dir, name+".hdr"), Plain: plain}
	testenv.Run(t, "cp", "--sparse=always", plain, st.Disk)
	testenv.Run(t, "truncate", "-s", "16M", st.Header)
	testenv.Run(t, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--header", st.Header, "--key-file", pass,
		"--volume-key-file", vk, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "-q", st.Disk)
	return st
}

// ChangedPages lists the 512-byte pages that differ between two files of the same size: the least a
// page blob's diff between two snapshots reports.
func ChangedPages(t testing.TB, a, b string) []extent.Range {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(y) {
		t.Fatalf("deltafixture: %s and %s differ in size", a, b)
	}
	var out []extent.Range
	for off := 0; off+512 <= len(x); off += 512 {
		if !bytes.Equal(x[off:off+512], y[off:off+512]) {
			out = append(out, extent.Range{Off: int64(off), Len: 512})
		}
	}
	return extent.Merge(out)
}

// Set is a volume in two states and what made them.
type Set struct {
	Dir      string
	VK, Pass string // the volume key and passphrase files
	S1, S2   State
	// Files are the files of each state and their content ("etc/conf" for /etc/conf).
	Files1, Files2 map[string][]byte
}

// Build makes a 64 MiB ext4 volume (4 KiB blocks) in two states: state 1 written by mkfs.ext4 -d
// (keep 3 MiB, gone 4 MiB, grows 1 MiB, etc/conf), state 2 from it by debugfs -w: gone deleted (its
// blocks become free space), new written (2 MiB), grows replaced by 2 MiB, etc/conf rewritten longer.
// It skips the test when cryptsetup, mkfs.ext4 or debugfs is missing.
func Build(t testing.TB) *Set {
	t.Helper()
	testenv.Need(t, "cryptsetup", "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(16, 1))
	s := &Set{Dir: dir,
		VK:   testenv.WriteFile(t, dir, "vk", testenv.RandBytes(rng, 64)),
		Pass: testenv.WriteFile(t, dir, "pass", []byte("delta-test-passphrase"))}
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Files1 = map[string][]byte{"keep": testenv.RandBytes(rng, 3<<20), "gone": testenv.RandBytes(rng, 4<<20),
		"grows": testenv.RandBytes(rng, 1<<20), "etc/conf": []byte("state 1\n")}
	for name, b := range s.Files1 {
		if err := os.WriteFile(filepath.Join(tree, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plain1 := filepath.Join(dir, "plain1.img")
	testenv.Run(t, "mkfs.ext4", "-q", "-b", "4096", "-d", tree, plain1, "64M")
	s.S1 = Encrypt(t, dir, "s1", plain1, s.VK, s.Pass)

	plain2 := filepath.Join(dir, "plain2.img")
	testenv.Run(t, "cp", "--sparse=always", plain1, plain2)
	s.Files2 = map[string][]byte{"keep": s.Files1["keep"], "new": testenv.RandBytes(rng, 2<<20), "grows": testenv.RandBytes(rng, 2<<20),
		"etc/conf": []byte("state 2, longer\n")}
	host := map[string]string{}
	for _, name := range []string{"new", "grows", "etc/conf"} {
		host[name] = testenv.WriteFile(t, dir, strings.ReplaceAll(name, "/", "_")+".2", s.Files2[name])
	}
	for _, req := range []string{"rm /gone", "rm /grows", "write " + host["grows"] + " /grows", "write " + host["new"] + " /new",
		"rm /etc/conf", "write " + host["etc/conf"] + " /etc/conf"} {
		if out, err := exec.Command("debugfs", "-w", "-R", req, plain2).CombinedOutput(); err != nil || bytes.Contains(out, []byte("File not found")) {
			t.Fatalf("deltafixture: debugfs -w -R %q: %v\n%s", req, err, out)
		}
	}
	s.S2 = Encrypt(t, dir, "s2", plain2, s.VK, s.Pass)
	return s
}
