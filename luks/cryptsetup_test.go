package luks_test

// Headers and ciphertext made here by the real cryptsetup, which is also the
// oracle: luksDump (text and --dump-json-metadata) for the parsed fields,
// luksDump --dump-volume-key for the unlocked key, and the original
// plaintext for data encrypted by "cryptsetup reencrypt --encrypt".

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luks"
)

const (
	pass1 = "first passphrase"
	pass2 = "second-pass"
)

var cheapPBKDF2 = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

// keyFiles writes the two test passphrases to files in dir.
func keyFiles(t *testing.T, dir string) (k1, k2 string) {
	return testenv.WriteFile(t, dir, "k1", []byte(pass1)), testenv.WriteFile(t, dir, "k2", []byte(pass2))
}

// randomFile writes size random bytes to dir/name.
func randomFile(t *testing.T, dir, name string, size int) (path string, data []byte) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	return testenv.WriteFile(t, dir, name, b), b
}

// dumpText parses "Key: value" lines of the text luksDump output.
func dumpText(t *testing.T, hdr string) map[string]string {
	t.Helper()
	out := testenv.Run(t, "cryptsetup", "luksDump", hdr)
	m := map[string]string{}
	slot := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.HasPrefix(k, "Key Slot ") {
			slot = strings.TrimPrefix(k, "Key Slot ") + "."
			m[k] = v
			continue
		}
		if !strings.HasPrefix(line, "\t") {
			slot = ""
		}
		if _, dup := m[slot+k]; !dup {
			m[slot+k] = v
		}
	}
	return m
}

// dumpJSON returns cryptsetup's view of the LUKS2 JSON metadata.
func dumpJSON(t *testing.T, hdr string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(testenv.Run(t, "cryptsetup", "luksDump", "--dump-json-metadata", hdr)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func obj(v any, path ...string) any {
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func num(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return -999
}

// compareWithLuksDump checks the parsed header against cryptsetup luksDump.
func compareWithLuksDump(t *testing.T, h *luks.Header, hdr string) {
	t.Helper()
	txt := dumpText(t, hdr)
	if txt["UUID"] != h.UUID {
		t.Errorf("UUID %q, cryptsetup %q", h.UUID, txt["UUID"])
	}
	if h.Version == 1 {
		if got := txt["Cipher name"] + "-" + txt["Cipher mode"]; got != h.Cipher {
			t.Errorf("cipher %q, cryptsetup %q", h.Cipher, got)
		}
		if num(txt["MK bits"]) != int64(h.KeySize*8) || num(txt["Payload offset"])*512 != h.DataOffset {
			t.Errorf("key %d bytes, offset %d; cryptsetup %s bits, %s sectors", h.KeySize, h.DataOffset, txt["MK bits"], txt["Payload offset"])
		}
		for _, ks := range h.Keyslots {
			p := strconv.Itoa(ks.ID) + "."
			state := txt["Key Slot "+strconv.Itoa(ks.ID)]
			if ks.Active != (state == "ENABLED") {
				t.Errorf("keyslot %d active %v, cryptsetup %s", ks.ID, ks.Active, state)
			}
			if ks.Active && (num(txt[p+"Iterations"]) != int64(ks.Iterations) || num(txt[p+"Key material offset"])*512 != ks.AreaOffset ||
				num(txt[p+"AF stripes"]) != int64(ks.Stripes) || ks.Hash != txt["Hash spec"]) {
				t.Errorf("keyslot %d %+v differs from cryptsetup %v", ks.ID, ks, txt)
			}
		}
		return
	}
	if num(txt["Epoch"]) != int64(h.SeqID) || num(strings.Fields(txt["Metadata area"])[0]) != h.MetadataSize {
		t.Errorf("seqid %d, metadata %d; cryptsetup epoch %s, metadata %s", h.SeqID, h.MetadataSize, txt["Epoch"], txt["Metadata area"])
	}
	if l := txt["Label"]; (l == "(no label)" && h.Label != "") || (l != "(no label)" && l != h.Label) {
		t.Errorf("label %q, cryptsetup %q", h.Label, l)
	}
	j := dumpJSON(t, hdr)
	seg := obj(j, "segments", strconv.Itoa(h.DataSegment))
	if obj(seg, "encryption") != h.Cipher || num(obj(seg, "offset")) != h.DataOffset ||
		num(obj(seg, "sector_size")) != int64(h.SectorSize) || num(obj(seg, "iv_tweak")) != int64(h.IVTweak) {
		t.Errorf("segment %v differs from %+v", seg, h)
	}
	if sz := obj(seg, "size"); (sz == "dynamic") != (h.DataSize == -1) || (sz != "dynamic" && num(sz) != h.DataSize) {
		t.Errorf("segment size %v, parsed %d", sz, h.DataSize)
	}
	if num(obj(j, "config", "keyslots_size"))+2*h.MetadataSize != h.HeaderSize {
		t.Errorf("HeaderSize %d, cryptsetup keyslots_size %v", h.HeaderSize, obj(j, "config", "keyslots_size"))
	}
	keyslots, _ := obj(j, "keyslots").(map[string]any)
	if len(keyslots) != len(h.Keyslots) {
		t.Errorf("%d keyslots, cryptsetup %d", len(h.Keyslots), len(keyslots))
	}
	for _, ks := range h.Keyslots {
		js := keyslots[strconv.Itoa(ks.ID)]
		if js == nil {
			t.Errorf("keyslot %d unknown to cryptsetup", ks.ID)
			continue
		}
		prio := int64(1)
		if p := obj(js, "priority"); p != nil {
			prio = num(p)
		}
		if obj(js, "type") != ks.Type || num(obj(js, "key_size")) != int64(ks.KeySize) || prio != int64(ks.Priority) {
			t.Errorf("keyslot %d: %+v vs %v", ks.ID, ks, js)
		}
		if ks.Type != "luks2" {
			continue
		}
		kdf := obj(js, "kdf")
		ok := obj(kdf, "type") == ks.KDF &&
			num(obj(js, "area", "offset")) == ks.AreaOffset && num(obj(js, "area", "size")) == ks.AreaSize &&
			obj(js, "area", "encryption") == ks.Encryption && num(obj(js, "area", "key_size")) == int64(ks.EncryptionKeySize) &&
			num(obj(js, "af", "stripes")) == int64(ks.Stripes) && obj(js, "af", "hash") == ks.AFHash
		if ks.KDF == "pbkdf2" {
			ok = ok && obj(kdf, "hash") == ks.Hash && num(obj(kdf, "iterations")) == int64(ks.Iterations)
		} else {
			ok = ok && num(obj(kdf, "time")) == int64(ks.Time) && num(obj(kdf, "memory")) == int64(ks.MemoryKiB) && num(obj(kdf, "cpus")) == int64(ks.CPUs)
		}
		if !ok {
			t.Errorf("keyslot %d: %+v vs %v", ks.ID, ks, js)
		}
	}
}

// TestFormatMatrix formats small files with cryptsetup in many variants,
// adds a second passphrase, and checks parsing and unlocking against
// cryptsetup's own luksDump and volume key.
func TestFormatMatrix(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	argon := func(kind, cpus string) []string {
		return []string{"--pbkdf", kind, "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", cpus}
	}
	for _, tc := range []struct {
		name     string
		detached bool
		kdf      []string
		args     []string
	}{
		{"luks1-sha1-xts256", false, cheapPBKDF2, []string{"--type", "luks1", "--hash", "sha1", "--cipher", "aes-xts-plain64", "--key-size", "256"}},
		{"luks1-sha512-cbc-essiv", false, cheapPBKDF2, []string{"--type", "luks1", "--hash", "sha512", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"}},
		{"luks1-detached-cbc-plain64", true, cheapPBKDF2, []string{"--type", "luks1", "--hash", "sha256", "--cipher", "aes-cbc-plain64", "--key-size", "128"}},
		{"luks2-pbkdf2-xts512-label", false, cheapPBKDF2, []string{"--type", "luks2", "--hash", "sha256", "--cipher", "aes-xts-plain64", "--key-size", "512", "--label", "root-vol"}},
		{"luks2-argon2i-sha1-essiv", false, argon("argon2i", "1"), []string{"--type", "luks2", "--hash", "sha1", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256"}},
		{"luks2-argon2id-sha512-4k", false, argon("argon2id", "2"), []string{"--type", "luks2", "--hash", "sha512", "--cipher", "aes-xts-plain64", "--key-size", "256", "--sector-size", "4096"}},
		{"luks2-detached-cbc-plain64", true, cheapPBKDF2, []string{"--type", "luks2", "--cipher", "aes-cbc-plain64", "--key-size", "128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			k1, k2 := keyFiles(t, dir)
			data := testenv.SparseFile(t, dir, "data", 17<<20)
			hdr := data
			args := append(append([]string{"luksFormat", "-q", "--key-file", k1}, tc.kdf...), tc.args...)
			if tc.detached {
				hdr = filepath.Join(dir, "hdr")
				args = append(args, "--header", hdr)
			}
			testenv.Run(t, "cryptsetup", append(args, data)...)
			testenv.Run(t, "cryptsetup", append(append([]string{"luksAddKey", "-q", "--key-file", k1}, tc.kdf...), hdr, k2)...)

			h, _, _ := readHeader(t, hdr)
			if err := h.Supported(); err != nil {
				t.Fatal(err)
			}
			compareWithLuksDump(t, h, hdr)
			if tc.detached && h.DataOffset != 0 {
				t.Errorf("detached header: DataOffset %d, want 0", h.DataOffset)
			}
			want := cryptsetupVolumeKey(t, k1, hdr)
			a := mustUnlock(t, h, pass1, -1)
			b := mustUnlock(t, h, pass2, -1)
			if a.Slot != 0 || b.Slot != 1 || !bytes.Equal(a.Bytes(), want) || !bytes.Equal(b.Bytes(), want) {
				t.Errorf("slots %d, %d; keys match cryptsetup: %v, %v", a.Slot, b.Slot, bytes.Equal(a.Bytes(), want), bytes.Equal(b.Bytes(), want))
			}
			_, err := h.Unlock([]byte(pass2), 0)
			wantErr(t, err, luks.ErrWrongPassphrase)
			_, err = h.Unlock([]byte("not it"), -1)
			wantErr(t, err, luks.ErrWrongPassphrase)
		})
	}
}

// TestReencryptKnownPlaintext encrypts random plaintext in place with
// "cryptsetup reencrypt --encrypt" (the command ADE runs) and reads it back
// through Reader.
func TestReencryptKnownPlaintext(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	for _, tc := range []struct {
		name     string
		size     int
		keep     int  // plaintext bytes the encrypted volume preserves (size minus --reduce-device-size)
		detached bool // else --reduce-device-size (header inside the file)
		args     []string
	}{
		// ADE: a 32 MiB zero-filled header file, default cipher and key size.
		{"ade-detached", 4 << 20, 4 << 20, true, cheapPBKDF2},
		{"detached-4k-argon2id", 2 << 20, 2 << 20, true, []string{"--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--sector-size", "4096"}},
		{"attached-reduce-32M", 36 << 20, 4 << 20, false, append([]string{"--reduce-device-size", "32M"}, cheapPBKDF2...)},
		{"attached-essiv-4k", 6 << 20, 2 << 20, false, append([]string{"--reduce-device-size", "4M", "--luks2-keyslots-size", "1M", "--cipher", "aes-cbc-essiv:sha256", "--key-size", "256", "--hash", "sha1", "--sector-size", "4096"}, cheapPBKDF2...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			k1, _ := keyFiles(t, dir)
			data, plain := randomFile(t, dir, "data", tc.size)
			hdr := data
			args := append([]string{"reencrypt", "-q", "--encrypt", "--type", "luks2", "--key-file", k1}, tc.args...)
			if tc.detached {
				hdr = testenv.SparseFile(t, dir, "osluksheader", 32<<20)
				args = append(args, "--header", hdr)
			}
			testenv.Run(t, "cryptsetup", append(args, data)...)

			h, _, _ := readHeader(t, hdr)
			compareWithLuksDump(t, h, hdr)
			if tc.detached != (h.DataOffset == 0) {
				t.Errorf("DataOffset %d", h.DataOffset)
			}
			k := mustUnlock(t, h, pass1, -1)
			if want := cryptsetupVolumeKey(t, k1, hdr); !bytes.Equal(want, k.Bytes()) {
				t.Error("volume key differs from cryptsetup's")
			}
			f, size := testenv.Open(t, data)
			r, err := luks.NewReader(f, size, h, k)
			if err != nil {
				t.Fatal(err)
			}
			if off, n, _ := h.Payload(size); r.Size() != n || n != size-off || n > int64(len(plain)) {
				t.Fatalf("payload %d bytes at %d of %d", n, off, size)
			}
			got := make([]byte, r.Size())
			if n, err := r.ReadAt(got, 0); n != len(got) || err != nil {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			// With --reduce-device-size the payload (dynamic: up to the end of
			// the file) is larger than what was kept; the rest is garbage.
			if len(got) < tc.keep || !bytes.Equal(got[:tc.keep], plain[:tc.keep]) {
				t.Fatalf("decrypted payload differs from the plaintext (first difference at %d)", testenv.FirstDiff(got, plain))
			}
			checkRandomReads(t, r, got)
		})
	}
}

// checkRandomReads compares unaligned reads, reads across the end and
// concurrent reads with the known plaintext.
func checkRandomReads(t *testing.T, r *luks.Reader, plain []byte) {
	t.Helper()
	size := int64(len(plain))
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		off := rng.Int64N(size)
		n := rng.IntN(3*4096 + 7)
		if i%10 == 0 {
			off = size - int64(rng.IntN(5000)) // across the end
			off = max(off, 0)
		}
		buf := make([]byte, n)
		got, err := r.ReadAt(buf, off)
		want := min(int64(n), size-off)
		if int64(got) != want || (want < int64(n) && err != io.EOF) || (want == int64(n) && err != nil) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, want)
		}
		if !bytes.Equal(buf[:got], plain[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong data", n, off)
		}
	}
	if n, err := r.ReadAt(make([]byte, 1), size); n != 0 || err != io.EOF {
		t.Errorf("read at end = %d, %v", n, err)
	}
	if _, err := r.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("negative offset accepted")
	}
	// io.ReaderAt allows parallel calls.
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			buf := make([]byte, 8192+int(g))
			for i := int64(g) * 511; i+int64(len(buf)) <= size && i < 1<<20; i += 12345 {
				if _, err := r.ReadAt(buf, i); err != nil || !bytes.Equal(buf, plain[i:i+int64(len(buf))]) {
					errs <- errors.New("concurrent read mismatch")
					return
				}
			}
			errs <- nil
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// makeLUKS2Header formats a detached LUKS2 header with a cheap KDF.
func makeLUKS2Header(t *testing.T, dir string, extra ...string) (hdr, k1, k2 string) {
	t.Helper()
	k1, k2 = keyFiles(t, dir)
	data := testenv.SparseFile(t, dir, "data", 1<<20)
	hdr = filepath.Join(dir, "hdr")
	testenv.Run(t, "cryptsetup", append(append(append([]string{"luksFormat", "-q", "--type", "luks2", "--key-file", k1, "--header", hdr}, cheapPBKDF2...), extra...), data)...)
	return hdr, k1, k2
}

// TestChecksumCorruption damages one or both copies of a LUKS2 header.
func TestChecksumCorruption(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	hdr, _, _ := makeLUKS2Header(t, dir)
	orig, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	h0, err := luks.ReadHeader(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	second := h0.MetadataSize
	flip := func(b []byte, offs ...int64) []byte {
		c := bytes.Clone(b)
		for _, o := range offs {
			c[o] ^= 0x01
		}
		return c
	}
	// A byte inside the JSON text of the primary, of the secondary, of both.
	jsonByte := int64(4096 + 2)
	for _, tc := range []struct {
		name          string
		data          []byte
		ok, secondary bool
	}{
		{"primary", flip(orig, jsonByte), true, true},
		{"secondary", flip(orig, second+jsonByte), true, false},
		{"primary-binary", flip(orig, 200), true, true}, // inside the UUID
		{"both", flip(orig, jsonByte, second+jsonByte), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := luks.ReadHeader(bytes.NewReader(tc.data), int64(len(tc.data)))
			// cryptsetup is the oracle for "still opens" vs "corrupt".
			p := testenv.WriteFile(t, t.TempDir(), "h", tc.data)
			_, csErr := testenv.RunErr("cryptsetup", "luksDump", p)
			if !tc.ok {
				var fe *luks.FormatError
				if !errors.As(err, &fe) || !errors.Is(err, luks.ErrCorrupt) || csErr == nil {
					t.Fatalf("ReadHeader = %v (cryptsetup: %v), want a FormatError", err, csErr)
				}
				t.Log(err)
				return
			}
			if err != nil || csErr != nil {
				t.Fatalf("ReadHeader = %v, cryptsetup luksDump = %v", err, csErr)
			}
			if h.UsedSecondary != tc.secondary || len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "checksum mismatch") {
				t.Errorf("secondary %v, warnings %q", h.UsedSecondary, h.Warnings)
			}
			mustUnlock(t, h, pass1, -1)
		})
	}
}

// TestSeqID splices an older copy into a newer header: the copy with the
// higher seqid wins, as in cryptsetup.
func TestSeqID(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	hdr, _, _ := makeLUKS2Header(t, dir, "--label", "old")
	old, _ := os.ReadFile(hdr)
	testenv.Run(t, "cryptsetup", "config", "--label", "new", hdr)
	cur, _ := os.ReadFile(hdr)
	h0, err := luks.ReadHeader(bytes.NewReader(cur), int64(len(cur)))
	if err != nil {
		t.Fatal(err)
	}
	ms := h0.MetadataSize
	for _, tc := range []struct {
		name          string
		from, to      int64
		wantSecondary bool
	}{
		{"old-primary", 0, ms, true},
		{"old-secondary", ms, 2 * ms, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := bytes.Clone(cur)
			copy(data[tc.from:tc.to], old[tc.from:tc.to])
			p := testenv.WriteFile(t, t.TempDir(), "h", data)
			h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if h.Label != "new" || h.UsedSecondary != tc.wantSecondary || len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "older") {
				t.Errorf("label %q secondary %v warnings %q", h.Label, h.UsedSecondary, h.Warnings)
			}
			if l := dumpText(t, p)["Label"]; l != h.Label {
				t.Errorf("cryptsetup label %q, ours %q", l, h.Label)
			}
		})
	}
}

// TestPriority: priority "ignore" keeps a slot out of the automatic search
// but it can still be named; "prefer" is reported.
func TestPriority(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	hdr, k1, k2 := makeLUKS2Header(t, dir)
	testenv.Run(t, "cryptsetup", append(append([]string{"luksAddKey", "-q", "--key-file", k1}, cheapPBKDF2...), hdr, k2)...)
	testenv.Run(t, "cryptsetup", "config", "--priority", "ignore", "--key-slot", "0", hdr)
	testenv.Run(t, "cryptsetup", "config", "--priority", "prefer", "--key-slot", "1", hdr)
	h, _, _ := readHeader(t, hdr)
	compareWithLuksDump(t, h, hdr)
	if h.Keyslots[0].Priority != 0 || h.Keyslots[1].Priority != 2 {
		t.Errorf("priorities %d %d", h.Keyslots[0].Priority, h.Keyslots[1].Priority)
	}
	_, err := h.Unlock([]byte(pass1), -1)
	wantErr(t, err, luks.ErrWrongPassphrase)
	if k := mustUnlock(t, h, pass1, 0); k.Slot != 0 {
		t.Errorf("slot %d", k.Slot)
	}
	if k := mustUnlock(t, h, pass2, -1); k.Slot != 1 {
		t.Errorf("slot %d", k.Slot)
	}
}

// TestReencryptInitOnly: the first step of ADE's RHEL 8 flow leaves a header
// with a reencrypt keyslot, linear and backup segments and the
// online-reencrypt requirement. It parses but must be refused.
func TestReencryptInitOnly(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	k1, _ := keyFiles(t, dir)
	data, _ := randomFile(t, dir, "data", 1<<20)
	hdr := testenv.SparseFile(t, dir, "osluksheader", 32<<20)
	testenv.Run(t, "cryptsetup", append(append([]string{"reencrypt", "-q", "--encrypt", "--init-only", "--type", "luks2", "--key-file", k1, "--header", hdr}, cheapPBKDF2...), data)...)
	h, _, _ := readHeader(t, hdr)
	compareWithLuksDump(t, h, hdr)
	wantErr(t, h.Supported(), luks.ErrReencryptInProgress)
	_, err := h.Unlock([]byte(pass1), -1)
	wantErr(t, err, luks.ErrReencryptInProgress)
	found := false
	for _, ks := range h.Keyslots {
		found = found || ks.Type == "reencrypt"
	}
	if !found || h.SegmentCount != 3 || len(h.Requirements) != 1 || !strings.HasPrefix(h.Requirements[0], "online-reencrypt") {
		t.Errorf("keyslots %+v segments %d requirements %q", h.Keyslots, h.SegmentCount, h.Requirements)
	}
}
