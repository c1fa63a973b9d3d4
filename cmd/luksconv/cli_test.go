package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "luksconv-cli")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "luksconv")
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building luksconv: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// run executes the CLI and returns stdout, stderr and the exit code.
func run(t *testing.T, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String(), code
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func copyFile(t *testing.T, src, dst string, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if n < 0 {
		_, err = io.Copy(out, in)
	} else {
		_, err = io.CopyN(out, in, n)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestInspectAgreesWithLuksDump compares `inspect --json` with cryptsetup's own view of each header.
func TestInspectAgreesWithLuksDump(t *testing.T) {
	set := fixture.Load(t)
	for _, f := range set.Fixtures {
		t.Run(f.Name, func(t *testing.T) {
			args := []string{"inspect", "--json", f.Image}
			if f.Header != "" {
				args = append(args, "--header", f.Header, "--partition", strconv.Itoa(f.Partition))
			}
			out, errOut, code := run(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var rep luksconv.Report
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			var li *luksconv.LUKSInfo
			for _, p := range rep.Partitions {
				if p.Number == f.Partition {
					li = p.LUKS
				}
			}
			if li == nil {
				t.Fatalf("inspect found no LUKS volume on partition %d:\n%s", f.Partition, out)
			}
			dumpTarget := f.Header
			if dumpTarget == "" {
				dumpTarget = extractPartition(t, f.Image, rep, f.Partition)
			}
			dump, err := exec.Command("cryptsetup", "luksDump", dumpTarget).CombinedOutput()
			if err != nil {
				t.Fatalf("cryptsetup luksDump: %v\n%s", err, dump)
			}
			d := parseDump(string(dump))
			if d.version != li.Version {
				t.Errorf("version: inspect %d, luksDump %d", li.Version, d.version)
			}
			if d.cipher != li.Cipher {
				t.Errorf("cipher: inspect %q, luksDump %q", li.Cipher, d.cipher)
			}
			if d.keyBits != li.KeySizeBits {
				t.Errorf("key size: inspect %d, luksDump %d", li.KeySizeBits, d.keyBits)
			}
			if d.offset != li.DataOffset {
				t.Errorf("data offset: inspect %d, luksDump %d", li.DataOffset, d.offset)
			}
			if d.version == 2 && d.sector != li.SectorSize {
				t.Errorf("sector size: inspect %d, luksDump %d", li.SectorSize, d.sector)
			}
			var ids []int
			for _, k := range li.Keyslots {
				ids = append(ids, k.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(d.keyslots) {
				t.Errorf("keyslots: inspect %v, luksDump %v", ids, d.keyslots)
			}
		})
	}
}

// extractPartition copies a partition out so cryptsetup can read its attached header.
func extractPartition(t *testing.T, image string, rep luksconv.Report, n int) string {
	t.Helper()
	for _, p := range rep.Partitions {
		if p.Number != n {
			continue
		}
		in, err := os.Open(image)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		dst := filepath.Join(t.TempDir(), "part")
		out, _ := os.Create(dst)
		defer out.Close()
		// The header and keyslots fit in the first 32 MiB.
		if _, err := io.Copy(out, io.NewSectionReader(in, p.Offset, min(p.Size, 32<<20))); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	t.Fatalf("no partition %d", n)
	return ""
}

type dumpInfo struct {
	version, keyBits, sector int
	offset                   int64
	cipher                   string
	keyslots                 []int
}

// parseDump reads the fields inspect reports from `cryptsetup luksDump` (LUKS1 and LUKS2 layouts).
func parseDump(s string) dumpInfo {
	var d dumpInfo
	find := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(s)
		if m == nil {
			return ""
		}
		return m[1]
	}
	d.version, _ = strconv.Atoi(find(`(?m)^Version:\s+(\d+)`))
	if d.version == 1 {
		d.cipher = find(`(?m)^Cipher name:\s+(\S+)`) + "-" + find(`(?m)^Cipher mode:\s+(\S+)`)
		d.keyBits, _ = strconv.Atoi(find(`(?m)^MK bits:\s+(\d+)`))
		sectors, _ := strconv.ParseInt(find(`(?m)^Payload offset:\s+(\d+)`), 10, 64)
		d.offset = sectors * 512
		for _, m := range regexp.MustCompile(`(?m)^Key Slot (\d): ENABLED`).FindAllStringSubmatch(s, -1) {
			n, _ := strconv.Atoi(m[1])
			d.keyslots = append(d.keyslots, n)
		}
		d.sector = 512
		return d
	}
	seg := s[strings.Index(s, "Data segments:"):]
	seg = seg[:strings.Index(seg, "Keyslots:")]
	m := regexp.MustCompile(`(?m)^\s+offset:\s+(\d+) \[bytes\]`).FindStringSubmatch(seg)
	if m != nil {
		d.offset, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := regexp.MustCompile(`(?m)^\s+cipher:\s+(\S+)`).FindStringSubmatch(seg); m != nil {
		d.cipher = m[1]
	}
	if m := regexp.MustCompile(`(?m)^\s+sector:\s+(\d+)`).FindStringSubmatch(seg); m != nil {
		d.sector, _ = strconv.Atoi(m[1])
	}
	ks := s[strings.Index(s, "Keyslots:"):]
	if i := strings.Index(ks, "Tokens:"); i >= 0 {
		ks = ks[:i]
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+(\d+): (?:luks2|reencrypt)`).FindAllStringSubmatch(ks, -1) {
		n, _ := strconv.Atoi(m[1])
		d.keyslots = append(d.keyslots, n)
	}
	// The volume key size is the digest's; luksDump prints it per keyslot as "Key: N bits".
	if m := regexp.MustCompile(`(?m)^\s+Key:\s+(\d+) bits`).FindStringSubmatch(ks); m != nil {
		d.keyBits, _ = strconv.Atoi(m[1])
	}
	return d
}

// TestBadInput runs the bad-input cases through the CLI: each gives one clear message, its documented exit
// code, leaves the source byte-identical and leaves no output behind.
func TestBadInput(t *testing.T) {
	set := fixture.Load(t)
	f, ok := set.Get("rhel8-lvm")
	if !ok {
		t.Fatal("no rhel8-lvm fixture")
	}
	dir := t.TempDir()
	key, _ := os.ReadFile(f.KeyFiles[0])
	fi, _ := os.Stat(f.Image)

	truncated := filepath.Join(dir, "truncated.raw")
	copyFile(t, f.Image, truncated, fi.Size()/2)

	nlKey := filepath.Join(dir, "nl.key")
	os.WriteFile(nlKey, append(append([]byte{}, key...), '\n'), 0o600)
	wrongKey := filepath.Join(dir, "wrong.key")
	os.WriteFile(wrongKey, bytes.Repeat([]byte("A"), 172), 0o600)

	oneCopy := filepath.Join(dir, "hdr-one-copy")
	bothCopies := filepath.Join(dir, "hdr-both-copies")
	copyFile(t, f.Header, oneCopy, -1)
	copyFile(t, f.Header, bothCopies, -1)
	hdrSize := luks2HeaderSize(t, f.Header)
	testenv.FlipByte(t, oneCopy, 4096+10)            // primary JSON area
	testenv.FlipByte(t, bothCopies, 4096+10)         // primary JSON area
	testenv.FlipByte(t, bothCopies, hdrSize+4096+10) // secondary JSON area

	badPrimaryGPT := filepath.Join(dir, "gpt-primary.raw")
	copyFile(t, f.Image, badPrimaryGPT, -1)
	testenv.FlipByte(t, badPrimaryGPT, 512+20) // primary header CRC field
	badBothGPT := filepath.Join(dir, "gpt-both.raw")
	copyFile(t, badPrimaryGPT, badBothGPT, -1)
	testenv.FlipByte(t, badBothGPT, fi.Size()-512+20) // backup header CRC field

	cases := []badInputCase{
		{"wrong key", f.Image, []string{"--key-file", wrongKey, "--header", f.Header}, exitWrongKey, "no keyslot", false, "", nil},
		{"trailing newline", f.Image, []string{"--key-file", nlKey, "--header", f.Header}, exitWrongKey, "newline", false, "", nil},
		{"truncated image", truncated, []string{"--key-file", f.KeyFiles[0], "--header", f.Header}, exitCorrupt, "", false, "", nil},
		{"LUKS2 checksum, one copy", f.Image, []string{"--key-file", f.KeyFiles[0], "--header", oneCopy}, 0, "", true, "", nil},
		{"LUKS2 checksum, both copies", f.Image, []string{"--key-file", f.KeyFiles[0], "--header", bothCopies}, exitCorrupt, "checksum", false, "", nil},
		{"damaged primary GPT", badPrimaryGPT, []string{"--key-file", f.KeyFiles[0], "--header", f.Header}, 0, "", true, "", nil},
		{"damaged GPT, both copies", badBothGPT, []string{"--key-file", f.KeyFiles[0], "--header", f.Header}, exitCorrupt, "gpt", false, "", nil},
		{"no key", f.Image, []string{"--header", f.Header}, exitUsage, "passphrase", false, "", nil},
		{"no such partition", f.Image, []string{"--key-file", f.KeyFiles[0], "--header", f.Header, "--partition", "9"}, exitUsage, "partition 9", false, "", nil},
		{"bad format", f.Image, []string{"--key-file", f.KeyFiles[0], "--header", f.Header, "--format", "qcow2"}, exitUsage, "format", false, "", nil},
	}
	if r, ok := set.Get("reencrypt-interrupted"); ok {
		cases = append(cases, badInputCase{"re-encryption in progress", r.Image, []string{"--key-file", r.KeyFiles[0], "--header", r.Header, "--partition", strconv.Itoa(r.Partition)}, exitReencrypting, "re-encryption", false, "", nil})
	}

	// Output on a too-small device: refused before anything is written (also with --force).
	smallDev, _ := testenv.AttachLoop(t, testenv.SparseFile(t, dir, "small-dev.img", 8<<20))
	d4k, _ := set.Get("data-luks2-4k") // a 50 MiB disk
	cases = append(cases, badInputCase{"output on a too-small device", d4k.Image, []string{"--force", "--key-file", d4k.KeyFiles[0]},
		exitOutput, "too small", false, smallDev, nil})

	// An unsupported cipher: cryptsetup's LUKS1 images in Twofish and Serpent (whole keyfile1 is the passphrase).
	kf1 := testenv.CryptsetupImage(t, "luks1-images.tar/luks1-images/keyfile1")
	for _, c := range []string{"twofish", "serpent"} {
		img := testenv.CryptsetupImage(t, "luks1-images.tar/luks1-images/luks1_"+c+"-xts-plain64-sha256.img")
		cases = append(cases, badInputCase{"unsupported cipher " + c, img, []string{"--key-file", kf1},
			exitUnsupported, "unsupported cipher \"" + c + "-xts-plain64\"", false, "", nil})
	}

	// A dirty XFS log: not an error. The filesystem is decrypted in full (its free space cannot be
	// trusted) and not edited, with one warning; the log is kept for the kernel to replay at mount.
	dirty, dirtyKey, dirtyPlain := dirtyXFSDisk(t)
	cases = append(cases, badInputCase{"dirty XFS log", dirty, []string{"--key-file", dirtyKey}, 0, "decrypted in full: partition 0 (decrypted): xfs: cannot edit in place: xfs: log is dirty", true, "",
		func(t *testing.T, out, errOut string) {
			want, _ := os.ReadFile(dirtyPlain)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) || !bytes.Equal(got[len(want):], make([]byte, len(got)-len(want))) {
				t.Error("the output is not the dirty filesystem followed by zeros")
			}
			if n := strings.Count(errOut, "log is dirty"); n != 1 {
				t.Errorf("the dirty log is reported %d times:\n%s", n, errOut)
			}
			if _, err := testenv.RunErr("xfs_repair", "-n", "-f", out); err == nil {
				t.Error("the output's log is clean: it was replayed or discarded, not kept")
			}
		}})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := sum(t, c.image)
			out := filepath.Join(t.TempDir(), "out.raw")
			var outBefore [32]byte
			if c.out != "" {
				out = c.out
				outBefore = sum(t, out)
			}
			args := append([]string{"convert", "-q"}, c.args...)
			args = append(args, c.image, out)
			_, errOut, code := run(t, nil, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, c.code, errOut)
			}
			if !strings.Contains(strings.ToLower(errOut), strings.ToLower(c.want)) {
				t.Errorf("stderr does not mention %q:\n%s", c.want, errOut)
			}
			if sum(t, c.image) != before {
				t.Fatal("the source image changed")
			}
			if c.check != nil {
				c.check(t, out, errOut)
			}
			if c.out != "" {
				if sum(t, out) != outBefore {
					t.Fatalf("the refused output %s was written to", out)
				}
			} else {
				entries, _ := os.ReadDir(filepath.Dir(out))
				if c.ok {
					if len(entries) != 1 {
						t.Fatalf("want exactly the output, found %d entries", len(entries))
					}
					return
				}
				if len(entries) != 0 {
					t.Fatalf("a failed run left %s behind", entries[0].Name())
				}
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines > 2 {
				t.Errorf("want one clear line (plus an optional hint), got %d:\n%s", lines, errOut)
			}
		})
	}
}

// badInputCase is one row of TestBadInput.
type badInputCase struct {
	name  string
	image string
	args  []string
	code  int
	want  string // in stderr
	ok    bool   // conversion must succeed
	out   string // the output, when not a new file (a device); it must be left unchanged
	check func(t *testing.T, out, errOut string)
}

func TestOutputRefusals(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	copyFile(t, f.Image, img, -1)
	before := sum(t, img)
	link := filepath.Join(dir, "link.raw")
	os.Link(img, link)
	for _, out := range []string{img, link, filepath.Join(dir, ".", "disk.raw")} {
		_, errOut, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], "--header", f.Header, img, out)
		if code != exitOutput {
			t.Fatalf("output %s: exit %d, want %d: %s", out, code, exitOutput, errOut)
		}
	}
	// With --force too: the detached header and the key file are inputs, and the key file may be the
	// only copy of the BEK.
	hdr, key := filepath.Join(dir, "osluksheader"), filepath.Join(dir, "bek")
	copyFile(t, f.Header, hdr, -1)
	copyFile(t, f.KeyFiles[0], key, -1)
	hdrSum, keySum := sum(t, hdr), sum(t, key)
	for _, out := range []string{img, hdr, key} {
		_, errOut, code := run(t, nil, "convert", "-q", "--force", "--key-file", key, "--header", hdr, img, out)
		if code != exitOutput || !strings.Contains(errOut, "never writes to its inputs") {
			t.Fatalf("--force, output %s: exit %d, want %d: %s", out, code, exitOutput, errOut)
		}
	}
	if sum(t, hdr) != hdrSum || sum(t, key) != keySum {
		t.Fatal("the header or the key file changed")
	}
	exists := filepath.Join(dir, "exists.raw")
	os.WriteFile(exists, []byte("keep me"), 0o600)
	_, errOut, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], "--header", f.Header, img, exists)
	if code != exitOutput || !strings.Contains(errOut, "--force") {
		t.Fatalf("existing output: exit %d: %s", code, errOut)
	}
	if b, _ := os.ReadFile(exists); string(b) != "keep me" {
		t.Fatal("existing output was modified")
	}
	if sum(t, img) != before {
		t.Fatal("the source image changed")
	}
}

func TestKeyFromStdinAndEnv(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	key, _ := os.ReadFile(f.KeyFiles[0])
	dir := t.TempDir()
	_, errOut, code := run(t, key, "convert", "-q", "--keep-guest", "--key-file", "-", "--header", f.Header, f.Image, filepath.Join(dir, "a.raw"))
	if code != 0 {
		t.Fatalf("stdin: exit %d: %s", code, errOut)
	}
	cmd := exec.Command(binPath, "convert", "-q", "--keep-guest", "--key-env", "LUKSCONV_TEST_KEY", "--header", f.Header, f.Image, filepath.Join(dir, "b.raw"))
	cmd.Env = append(os.Environ(), "LUKSCONV_TEST_KEY="+string(key))
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("env: %v: %s", err, se.String())
	}
	if sum(t, filepath.Join(dir, "a.raw")) != sum(t, f.Expected) || sum(t, filepath.Join(dir, "b.raw")) != sum(t, f.Expected) {
		t.Fatal("outputs differ from the expected disk")
	}
}

// TestKeyOnly converts an ADE OS disk with nothing but the key file: the header is found on /boot.
func TestKeyOnly(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	out := filepath.Join(t.TempDir(), "o.raw")
	so, se, code := run(t, nil, "inspect", f.Image)
	if code != 0 || !strings.Contains(so, "rd.luks.ade.partuuid="+f.PartUUID) || !strings.Contains(so, "/luks/osluksheader") {
		t.Fatalf("inspect: exit %d:\n%s%s", code, so, se)
	}
	if _, se, code := run(t, nil, "convert", "-q", "--keep-guest", "--key-file", f.KeyFiles[0], f.Image, out); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, se)
	}
	if sum(t, out) != sum(t, f.Expected) {
		t.Fatal("output differs from the expected disk")
	}
}

// TestNoSecretInOutput runs plan, convert (raw, VHD, key from file, standard input and environment),
// verify and a failing run, then looks for the passphrase and the volume key (raw, and hex as cryptsetup
// prints it) in everything printed and in every byte of every file written. The output disks hold the
// plaintext volume, so this also proves the LUKS header on /boot was wiped.
func TestNoSecretInOutput(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	key, _ := os.ReadFile(f.KeyFiles[0])
	sec := fixtureSecrets(t, f)
	check := func(what string, b []byte) {
		t.Helper()
		sec.check(t, what, b)
	}

	dir := t.TempDir()
	cmds := []struct {
		args  []string
		stdin []byte
		env   string
	}{
		{args: []string{"plan", "--json", "--key-file", f.KeyFiles[0], f.Image}},
		{args: []string{"convert", "--json", "--key-file", f.KeyFiles[0], f.Image, filepath.Join(dir, "o.raw")}},
		{args: []string{"convert", "--verify", "--key-file", "-", "--format", "vhd", f.Image, filepath.Join(dir, "o.vhd")}, stdin: key},
		{args: []string{"convert", "--full-copy", "--keep-guest", "--key-env", "LUKSCONV_TEST_KEY", f.Image, filepath.Join(dir, "plain.raw")}, env: string(key)},
		{args: []string{"verify", "--json", "--key-file", f.KeyFiles[0], f.Image, filepath.Join(dir, "o.raw")}},
		{args: []string{"inspect", "--json", filepath.Join(dir, "o.raw")}},
	}
	// Every command runs with debug logging: --debug, or LUKSCONV_DEBUG=1 for the odd ones.
	var debugOut bytes.Buffer
	for i, c := range cmds {
		args := c.args
		env := os.Environ()
		if i%2 == 0 {
			args = append([]string{"--debug"}, args...)
		} else {
			env = append(env, "LUKSCONV_DEBUG=1")
		}
		cmd := exec.Command(binPath, args...)
		cmd.Env = env
		if c.stdin != nil {
			cmd.Stdin = bytes.NewReader(c.stdin)
		}
		if c.env != "" {
			cmd.Env = append(cmd.Env, "LUKSCONV_TEST_KEY="+c.env)
		}
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s%s", args, err, so.Bytes(), se.Bytes())
		}
		check(fmt.Sprintf("the standard output of %v", args), so.Bytes())
		check(fmt.Sprintf("the standard error of %v", args), se.Bytes())
		if !strings.Contains(se.String(), "level=DEBUG msg=start") {
			t.Fatalf("%v (debug by %s) wrote no debug lines:\n%s", args, map[bool]string{true: "--debug", false: "LUKSCONV_DEBUG"}[i%2 == 0], se.String())
		}
		debugOut.Write(se.Bytes())
	}
	// The debug lines say what was done: they are not trivially empty.
	for _, want := range []string{`msg="source opened"`, `msg="LUKS header found"`, "cipher=aes-xts-plain64", "key_bits=512",
		`msg="keyslot opened" keyslot=0`, "msg=plan ", `msg="guest edit" path=/etc/crypttab`, `msg="execute progress"`,
		"final=true", `msg="output opened" kind=file`, `msg="passphrase source" from="standard input"`,
		`msg="passphrase source" from="environment variable" name=LUKSCONV_TEST_KEY`} {
		if !strings.Contains(debugOut.String(), want) {
			t.Errorf("the debug output lacks %q", want)
		}
	}
	// A failing run prints nothing secret either, with debug lines too.
	so, se, code := run(t, nil, "--debug", "convert", "--key-file", f.KeyFiles[0], "--keyslot", "5", f.Image, filepath.Join(dir, "bad.raw"))
	if code == 0 {
		t.Fatal("convert with a missing keyslot succeeded")
	}
	if !strings.Contains(se, `trying="keyslot 5 only"`) {
		t.Errorf("the failing run's debug lines lack the keyslot tried:\n%s", se)
	}
	check("a failing run's output", []byte(so+se))
	// So does a passphrase that is wrong by a trailing newline: its hint names the cause, not the key.
	so, se, code = run(t, append(append([]byte{}, key...), '\n'), "--debug", "convert", "--key-file", "-", "--header", f.Header, f.Image, filepath.Join(dir, "bad.raw"))
	if code != exitWrongKey || !strings.Contains(se, "newline") {
		t.Fatalf("convert with a trailing newline on stdin: exit %d: %s", code, se)
	}
	check("a wrong-key run's output", []byte(so+se))
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("want o.raw, o.vhd and plain.raw in the output directory, found %d entries", len(entries))
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// plain.raw is the plain decryption (--keep-guest): its /boot still holds the LUKS header,
		// whose keyslots hold the volume key only encrypted; the key itself must not appear anywhere.
		check("output file "+e.Name(), b)
	}
}

// luks2HeaderSize reads hdr_size (big-endian u64 at offset 8) from a LUKS2 header file.
func luks2HeaderSize(t *testing.T, path string) int64 {
	t.Helper()
	b := make([]byte, 16)
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range b[8:16] {
		n = n<<8 | int64(c)
	}
	return n
}

// TestGuestEditsCLI: inspect lists the /boot-side edits of an encrypted disk and says it is not ready;
// plan shows every edit and a ready verdict; --keep-guest plans none; convert's output then inspects
// as ready with nothing left to edit.
func TestGuestEditsCLI(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	so, se, code := run(t, nil, "inspect", f.Image)
	if code != 0 {
		t.Fatalf("inspect: exit %d: %s", code, se)
	}
	for _, want := range []string{"Guest edits convert would make", "/boot/grub2/grubenv", "/boot/luks/osluksheader",
		"Readiness (LEAPP-style, the guest as it is now): NOT ready", "SKIP / (root filesystem)"} {
		if !strings.Contains(so, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, so)
		}
	}
	if strings.Contains(so, "/etc/crypttab [") {
		t.Errorf("inspect without a key lists root edits:\n%s", so)
	}

	so, se, code = run(t, nil, "plan", "--key-file", f.KeyFiles[0], f.Image)
	if code != 0 {
		t.Fatalf("plan: exit %d: %s", code, se)
	}
	for _, want := range []string{"Guest edits: ", "/etc/crypttab [/ (rootvg/rootlv)]", "- osencrypt /dev/disk/by-partuuid/",
		"/var/lib/azure_disk_encryption_config/azure_crypt_params.ini [/var (rootvg/varlv)]",
		"Readiness (LEAPP-style, the guest as the output will hold it): ready", "PASS /boot/grub2/grubenv",
		"/boot/efi/EFI/redhat/grubenv [/boot/efi (partition 1)]", "PASS /boot/efi/EFI/redhat/grubenv"} {
		if !strings.Contains(so, want) {
			t.Errorf("plan output lacks %q:\n%s", want, so)
		}
	}
	so, _, code = run(t, nil, "plan", "--keep-guest", "--key-file", f.KeyFiles[0], f.Image)
	if code != 0 || strings.Contains(so, "Guest edits") || strings.Contains(so, "Readiness") {
		t.Errorf("plan --keep-guest: exit %d:\n%s", code, so)
	}
	so, _, _ = run(t, nil, "plan", "--json", "--key-file", f.KeyFiles[0], f.Image)
	var p luksconv.Plan
	if err := json.Unmarshal([]byte(so), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Edits) == 0 || p.Readiness == nil || !p.Readiness.Ready {
		t.Fatalf("plan --json: %d edits, readiness %+v", len(p.Edits), p.Readiness)
	}
	for _, e := range p.Edits {
		if e.Path == "/boot/grub2/grubenv" && (len(e.Before) != 1 || len(e.After) != 1 || strings.Contains(e.After[0], "rd.luks.ade")) {
			t.Errorf("grubenv edit: %+v", e)
		}
	}

	out := filepath.Join(t.TempDir(), "o.raw")
	if _, se, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], f.Image, out); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, se)
	}
	if sum(t, out) == sum(t, f.Expected) {
		t.Fatal("convert made no guest edit")
	}
	so, se, code = run(t, nil, "inspect", "--json", out)
	if code != 0 {
		t.Fatalf("inspect of the output: exit %d: %s", code, se)
	}
	var rep luksconv.Report
	if err := json.Unmarshal([]byte(so), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Edits) != 0 || rep.Readiness == nil || !rep.Readiness.Ready {
		t.Errorf("inspect of the output: %d edits left, readiness %+v", len(rep.Edits), rep.Readiness)
	}
	// Converting the output again finds nothing to do.
	if _, se, code := run(t, nil, "convert", "-q", "--key-file", f.KeyFiles[0], out, out+".2"); code != exitNothingToDo {
		t.Errorf("second convert: exit %d: %s", code, se)
	}
}

// TestKeyslotFlag: --keyslot naming a keyslot the header does not have is a usage error (exit 2, the
// same answer on every run), not the retryable exit 1; nothing is written. The keyslot that exists works.
func TestKeyslotFlag(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.raw")
	_, se, code := run(t, nil, "convert", "-q", "--keyslot", "5", "--key-file", f.KeyFiles[0], f.Image, out)
	if code != exitUsage || !strings.Contains(se, "keyslot 5") || !strings.Contains(se, "inspect") {
		t.Fatalf("--keyslot 5: exit %d, want %d, naming the keyslot and luksconv inspect:\n%s", code, exitUsage, se)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused run left %s behind", entries[0].Name())
	}
	if _, se, code := run(t, nil, "convert", "-q", "--keyslot", "0", "--key-file", f.KeyFiles[0], f.Image, out); code != 0 {
		t.Fatalf("--keyslot 0: exit %d: %s", code, se)
	}
}

// TestNegativePartition: --partition -3 is a bad flag (exit 2), not "find the partition": it was
// silently ignored and the disk converted.
func TestNegativePartition(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	_, se, code := run(t, nil, "convert", "-q", "--partition", "-3", "--key-file", f.KeyFiles[0], f.Image, filepath.Join(dir, "out.raw"))
	if code != exitUsage || !strings.Contains(se, "partition -3") {
		t.Fatalf("--partition -3: exit %d, want %d:\n%s", code, exitUsage, se)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused run left %s behind", entries[0].Name())
	}
}

// TestOutputDir: an output whose directory is missing, or is a file, is refused with exit 7 before the
// key is tried (a wrong key file still gets exit 7, not 3), by convert and vm convert, and nothing is
// left behind; retrying could not help, so it is not exit 1.
func TestOutputDir(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	wrongKey := testenv.WriteFile(t, dir, "wrong.key", []byte("not the passphrase"))
	file := testenv.WriteFile(t, dir, "file", nil)
	for _, args := range [][]string{
		{"convert", "-q", "--key-file", wrongKey, f.Image, filepath.Join(dir, "missing", "out.raw")},
		{"convert", "-q", "--key-file", wrongKey, f.Image, filepath.Join(file, "out.raw")},
		{"vm", "convert", "-q", "--os", f.Image, "--key-file", wrongKey, filepath.Join(dir, "missing")},
	} {
		if _, se, code := run(t, nil, args...); code != exitOutput || !strings.Contains(se, "output directory") {
			t.Errorf("%q: exit %d, want %d naming the output directory:\n%s", args, code, exitOutput, se)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("refused runs left files behind: %d entries", len(entries))
	}
}

// TestWorkersFlag: a --workers out of range is a usage error (exit 2) given before the key is tried (a
// wrong key file still gets exit 2, not 3), by every command that has the flag.
func TestWorkersFlag(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	dir := t.TempDir()
	wrongKey := testenv.WriteFile(t, dir, "wrong.key", []byte("not the passphrase"))
	for _, args := range [][]string{
		{"convert", "-q", "--workers", "-1", "--key-file", wrongKey, f.Image, filepath.Join(dir, "out.raw")},
		{"convert", "-q", "--workers", "65", "--key-file", wrongKey, f.Image, filepath.Join(dir, "out.raw")},
		{"verify", "--workers", "-2", "--key-file", wrongKey, f.Image, f.Image},
		{"vm", "convert", "-q", "--workers", "-1", "--os", f.Image, "--key-file", wrongKey, dir},
		{"vm", "verify", "--workers", "-1", "--os", f.Image, "--key-file", wrongKey, dir},
	} {
		if _, se, code := run(t, nil, args...); code != exitUsage || !strings.Contains(se, "--workers") {
			t.Errorf("%q: exit %d, want %d naming --workers:\n%s", args, code, exitUsage, se)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("refused runs left files behind: %d entries", len(entries))
	}
}
