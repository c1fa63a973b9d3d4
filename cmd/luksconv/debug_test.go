package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
)

// secretSet is what must never appear in anything luksconv prints or writes: the passphrase, the
// volume key (raw and as hex, the way cryptsetup prints it) and SAS signatures.
type secretSet struct {
	passphrase []byte
	named      map[string][]byte
}

// fixtureSecrets collects the secrets of a fixture with a detached header; the volume key comes from
// cryptsetup itself (luksDump --dump-volume-key).
func fixtureSecrets(t *testing.T, f fixture.Fixture) *secretSet {
	t.Helper()
	key, err := os.ReadFile(f.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command("cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", f.KeyFiles[0], f.Header).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup --dump-volume-key: %v\n%s", err, dump)
	}
	m := regexp.MustCompile(`(?s)(?:MK dump|Volume key):\s*((?:[0-9a-f]{2}\s+)+)`).FindSubmatch(dump)
	if m == nil {
		t.Fatal("no volume key in cryptsetup's dump")
	}
	vkHex := strings.Join(strings.Fields(string(m[1])), "")
	vk, err := hex.DecodeString(vkHex)
	if err != nil || len(vk) != 64 {
		t.Fatalf("volume key %q: %v", vkHex, err)
	}
	s := &secretSet{passphrase: key, named: map[string][]byte{"passphrase": key, "passphrase prefix": key[:16], "volume key": vk,
		"volume key (hex)": []byte(vkHex), "volume key (hex, upper)": []byte(strings.ToUpper(vkHex)),
		"volume key (spaced hex)": []byte(strings.TrimSpace(string(m[1])))}}
	// The search itself works: cryptsetup's dump and the key file are found.
	if s.found(dump) == "" || s.found(append([]byte("x"), key...)) == "" {
		t.Fatal("the secret search finds nothing in cryptsetup's own dump or the key file")
	}
	return s
}

// addSAS adds the signature of a SAS URL, as sent (percent-encoded) and decoded.
func (s *secretSet) addSAS(t *testing.T, u string) {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	sig := p.Query().Get("sig")
	if len(sig) < 16 {
		t.Fatalf("no usable sig in %s", u[:strings.IndexByte(u, '?')])
	}
	s.named["SAS signature "+sig[:6]+"… (decoded)"] = []byte(sig)
	for _, kv := range strings.Split(p.RawQuery, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "sig" {
			s.named["SAS signature "+sig[:6]+"… (as sent)"] = []byte(v)
		}
	}
	s.named["SAS signature "+sig[:6]+"… (query-escaped)"] = []byte(url.QueryEscape(sig))
	if s.found([]byte(u)) == "" {
		t.Fatal("the secret search does not find the signature in its own URL")
	}
}

func (s *secretSet) found(b []byte) string {
	for name, sec := range s.named {
		if bytes.Contains(b, sec) {
			return name
		}
	}
	return ""
}

func (s *secretSet) check(t *testing.T, what string, b []byte) {
	t.Helper()
	if name := s.found(b); name != "" {
		t.Fatalf("%s contains the %s", what, name)
	}
}

// checkDir greps every file under dir.
func (s *secretSet) checkDir(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s.check(t, "file "+p, b)
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDebugFlag: --debug and LUKSCONV_DEBUG turn the debug lines on for every command, LUKSCONV_DEBUG=0
// and no setting leave standard error as it was, and --debug=false beats the environment.
func TestDebugFlag(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	cases := []struct {
		env   string
		args  []string
		debug bool
	}{
		{"", []string{"inspect", f.Image}, false},
		{"", []string{"--debug", "inspect", f.Image}, true},
		{"", []string{"inspect", "--debug", f.Image}, true},
		{"LUKSCONV_DEBUG=1", []string{"inspect", f.Image}, true},
		{"LUKSCONV_DEBUG=0", []string{"inspect", f.Image}, false},
		{"LUKSCONV_DEBUG=1", []string{"--debug=false", "inspect", f.Image}, false},
		{"", []string{"--debug", "azure", "inspect"}, true}, // a usage error, still logged
	}
	for _, c := range cases {
		cmd := exec.Command(binPath, c.args...)
		cmd.Env = append(os.Environ(), "LUKSCONV_DEBUG=")
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		var se bytes.Buffer
		cmd.Stderr = &se
		cmd.Run()
		if got := strings.Contains(se.String(), "level=DEBUG"); got != c.debug {
			t.Errorf("%s %v: debug lines %v, want %v:\n%s", c.env, c.args, got, c.debug, se.String())
		}
		if c.debug && c.args[len(c.args)-1] == f.Image && !strings.Contains(se.String(), `msg="LUKS header found" partition=4 version=2 header=detached`) {
			t.Errorf("%v: inspect's debug lines lack the LUKS header:\n%s", c.args, se.String())
		}
	}
}

// TestRedactWriter: the debug handler blanks signatures in every form, whatever the attribute type.
func TestRedactWriter(t *testing.T) {
	const sig = "AbCdEf0123456789%2B%2Fxyz%3D"
	u := "https://acct.blob.core.windows.net/c/b.vhd?sv=2022-11-02&se=2030-01-01&sp=r&sig=" + sig
	var buf bytes.Buffer
	setupDebug(true, &buf, []string{u})
	defer setupDebug(false, nil, nil)
	dec, _ := url.QueryUnescape(sig)
	dlog.Debug("x", "url", u, "err", &url.Error{Op: "Get", URL: u, Err: os.ErrDeadlineExceeded}, "bare", "echo "+dec+" "+sig)
	out := buf.String()
	if strings.Contains(out, sig) || strings.Contains(out, dec) || !strings.Contains(out, "sig=REDACTED") || !strings.Contains(out, "se=2030-01-01") {
		t.Fatalf("not redacted: %s", out)
	}
}

// TestConvertToDevice writes a disk onto a loop device of exactly its size, as a block device output
// must be given: refused without --force, and checked by --verify and against the expected disk. (The
// library's own tests cover an aborted device output and a loop device backed by the source.)
func TestConvertToDevice(t *testing.T) {
	testenv.NeedRoot(t)
	set := fixture.Load(t)
	f, _ := set.Get("data-luks2-4k")
	want, err := os.ReadFile(f.Expected)
	if err != nil {
		t.Fatal(err)
	}
	back := testenv.SparseFile(t, t.TempDir(), "dev.img", int64(len(want)))
	os.WriteFile(back, bytes.Repeat([]byte{0xa5}, len(want)), 0o600) // old data the conversion must overwrite
	dev, detach := testenv.AttachLoop(t, back)
	if _, se, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], f.Image, dev); code != exitOutput || !strings.Contains(se, "--force") {
		t.Fatalf("device without --force: exit %d: %s", code, se)
	}
	if _, se, code := run(t, nil, "convert", "-q", "--force", "--verify", "--key-file", f.KeyFiles[0], f.Image, dev); code != 0 {
		t.Fatalf("device: exit %d: %s", code, se)
	}
	detach()
	got, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the device does not hold the expected disk")
	}
}

// dirtyXFSDisk builds a LUKS2 data disk (attached header, no partition table) whose plaintext is an
// XFS filesystem with a dirty log: the xfs package's dirty.img (made by the kernel: writes, log
// forced, shut down), encrypted in place by cryptsetup reencrypt. It returns the disk, its key file
// and the plaintext filesystem.
func dirtyXFSDisk(t *testing.T) (disk, keyFile, plain string) {
	t.Helper()
	testenv.Need(t, "xz", "cryptsetup", "xfs_repair")
	testenv.NeedRoot(t) // cryptsetup reencrypt takes its lock in /run/cryptsetup
	dir := t.TempDir()
	plain = filepath.Join(dir, "fs.xfs")
	out, err := exec.Command("xz", "-dc", filepath.Join(fixture.Root(), "xfs", "testdata", "dirty.img.xz")).Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	os.WriteFile(plain, out, 0o600)
	if _, err := testenv.RunErr("xfs_repair", "-n", "-f", plain); err == nil {
		t.Fatal("xfs_repair -n finds the log of dirty.img clean")
	}
	raw := make([]byte, 127)
	rand.Read(raw)
	keyFile = testenv.WriteFile(t, dir, "bek", []byte(base64.StdEncoding.EncodeToString(raw)))
	disk = filepath.Join(dir, "dirty.raw")
	os.WriteFile(disk, out, 0o600)
	os.Truncate(disk, int64(len(out))+32<<20)
	testenv.Run(t, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--reduce-device-size", "32M", "--key-file", keyFile,
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--batch-mode", disk)
	// The moved data ends at the 16 MiB data offset plus the filesystem: cut the rest, which would
	// decrypt to garbage (as the data-luks2-4k fixture does).
	os.Truncate(disk, 16<<20+int64(len(out)))
	return disk, keyFile, plain
}
