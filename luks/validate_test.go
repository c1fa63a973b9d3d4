package luks_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luks"
)

// reseal writes json into both copies of a LUKS2 header image and recomputes
// their sha256 checksums, so that JSON validation (not the checksum) decides.
// It is a test tool only: the package itself never writes headers.
func reseal(t testing.TB, img []byte, json string) []byte {
	t.Helper()
	out := bytes.Clone(img)
	hdrSize := int64(binary.BigEndian.Uint64(out[8:16]))
	for _, off := range []int64{0, hdrSize} {
		if off+hdrSize > int64(len(out)) {
			break
		}
		if !bytes.Equal(out[off+1:off+4], []byte("UKS")) && !bytes.Equal(out[off+1:off+4], []byte("KUL")) {
			continue
		}
		area := out[off+4096 : off+hdrSize]
		if len(json) >= len(area) {
			t.Fatalf("JSON of %d bytes does not fit", len(json))
		}
		clear(area)
		copy(area, json)
		sealCopy(out[off : off+hdrSize])
	}
	return out
}

// sealCopy recomputes the sha256 checksum of one header copy in place.
func sealCopy(c []byte) {
	clear(c[448 : 448+64])
	sum := sha256.Sum256(c)
	copy(c[448:], sum[:])
}

// cryptsetupAccepts runs luksDump on the image (the oracle).
func cryptsetupAccepts(t *testing.T, img []byte) bool {
	_, err := testenv.RunErr("cryptsetup", "luksDump", testenv.WriteFile(t, t.TempDir(), "h", img))
	return err == nil
}

// baseLUKS2 is a detached LUKS2 header with two pbkdf2 keyslots (pass1,
// pass2) and its JSON, made once per test run.
func baseLUKS2(t *testing.T) ([]byte, string) {
	t.Helper()
	needCryptsetup(t)
	baseOnce.Do(func() {
		dir, err := os.MkdirTemp(scratchDir, "base")
		if err != nil {
			baseErr = err
			return
		}
		k1, k2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
		hdr, data := filepath.Join(dir, "hdr"), filepath.Join(dir, "data")
		os.WriteFile(k1, []byte(pass1), 0o600)
		os.WriteFile(k2, []byte(pass2), 0o600)
		if baseErr = os.WriteFile(data, make([]byte, 1<<20), 0o600); baseErr != nil {
			return
		}
		if _, baseErr = testenv.RunErr("cryptsetup", append(append([]string{"luksFormat", "-q", "--type", "luks2", "--sector-size", "512", "--key-file", k1, "--header", hdr}, cheapPBKDF2...), data)...); baseErr != nil {
			return
		}
		if _, baseErr = testenv.RunErr("cryptsetup", append(append([]string{"luksAddKey", "-q", "--key-file", k1}, cheapPBKDF2...), hdr, k2)...); baseErr != nil {
			return
		}
		baseImg, baseErr = os.ReadFile(hdr)
	})
	if baseErr != nil {
		t.Fatal(baseErr)
	}
	h, err := luks.ReadHeader(bytes.NewReader(baseImg), int64(len(baseImg)))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(baseImg), string(h.JSON)
}

var (
	baseOnce sync.Once
	baseImg  []byte
	baseErr  error
)

// TestJSONValidation mutates the JSON of a real header. For every mutation
// the expected verdict is cryptsetup's, checked by running luksDump on the
// same bytes, except where noted: there this package is deliberately
// stricter.
func TestJSONValidation(t *testing.T) {
	img, js := baseLUKS2(t)
	t.Parallel()
	type verdict int
	const (
		accept verdict = iota
		corrupt
	)
	seg := `"segments":{"0":{"type":"crypt","offset":"0","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}}`
	if !strings.Contains(js, seg) {
		t.Fatalf("unexpected cryptsetup JSON: %s", js)
	}
	repl := func(old, new string) string {
		if !strings.Contains(js, old) {
			t.Fatalf("%q not in the JSON", old)
		}
		return strings.Replace(js, old, new, 1)
	}
	ks1 := `"1":{"type":"luks2"`
	// A second digest sharing keyslot 1, or segment 0, with digest 0.
	d0 := js[strings.Index(js, `"digests":{"0":`)+len(`"digests":{"0":`) : strings.Index(js, `},"config"`)]
	twoDigests := func(d1 string) string { return repl(`"digests":{"0":`+d0, `"digests":{"0":`+d0+`,"1":`+d1) }
	sharedKeyslot := twoDigests(strings.Replace(strings.Replace(d0, `"keyslots":["0","1"]`, `"keyslots":["1"]`, 1), `"segments":["0"]`, `"segments":[]`, 1))
	sharedSegment := twoDigests(strings.Replace(d0, `"keyslots":["0","1"]`, `"keyslots":[]`, 1))
	for _, tc := range []struct {
		name     string
		json     string
		want     verdict
		stricter bool // cryptsetup accepts it; we refuse on purpose
	}{
		{"unchanged", js, accept, false},
		{"json_size", repl(`"json_size":"12288"`, `"json_size":"8192"`), corrupt, false},
		{"offset-number", repl(`"offset":"32768"`, `"offset":32768`), corrupt, false},
		{"offset-overflow", repl(`"offset":"32768"`, `"offset":"184467440737095516160"`), corrupt, false},
		{"offset-negative", repl(`"offset":"32768"`, `"offset":"-1"`), corrupt, false},
		{"area-in-metadata", repl(`"offset":"32768"`, `"offset":"4096"`), corrupt, false},
		{"area-beyond-keyslots", repl(`"offset":"32768"`, `"offset":"16773120"`), corrupt, false},
		{"areas-overlap", repl(`"offset":"290816"`, `"offset":"36864"`), corrupt, false},
		{"stripes", repl(`"stripes":4000`, `"stripes":4001`), corrupt, true}, // cryptsetup only supports 4000
		{"sector-size", repl(`"sector_size":512`, `"sector_size":768`), corrupt, false},
		{"segment-offset-in-keyslots", repl(`"offset":"0","size":"dynamic"`, `"offset":"1048576","size":"dynamic"`), corrupt, false},
		{"digest-missing-keyslot", repl(`"keyslots":["0","1"]`, `"keyslots":["0","5"]`), corrupt, false},
		{"digest-missing-segment", repl(`"segments":["0"]`, `"segments":["3"]`), corrupt, false},
		{"missing-config", repl(`"config":{`, `"xconfig":{`), corrupt, false},
		{"not-json", "{\"keyslots\":", corrupt, false},
		{"keyslot-id-range", repl(ks1, `"32":{"type":"luks2"`), corrupt, false},
		{"duplicate-member", repl(`"tokens":{}`, `"tokens":{},"tokens":{}`), corrupt, true},
		{"keyslot-id-leading-zero", repl(ks1, `"01":{"type":"luks2"`), corrupt, false},
		{"deep-nesting", repl(`"tokens":{}`, `"tokens":{"0":{"type":"x","keyslots":[],"n":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}}`), corrupt, false},
		{"keyslot-in-two-digests", sharedKeyslot, corrupt, false},
		{"segment-in-two-digests", sharedSegment, accept, false},
		{"unknown-token-ok", repl(`"tokens":{}`, `"tokens":{"0":{"type":"systemd-tpm2","keyslots":["1"],"tpm2-pcrs":[7]}}`), accept, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := reseal(t, img, tc.json)
			h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
			cs := cryptsetupAccepts(t, data)
			switch tc.want {
			case accept:
				if err != nil || !cs {
					t.Fatalf("ReadHeader = %v; cryptsetup accepts: %v", err, cs)
				}
				if len(h.Warnings) != 0 {
					t.Errorf("warnings %q", h.Warnings)
				}
			case corrupt:
				var fe *luks.FormatError
				if !errors.As(err, &fe) {
					t.Fatalf("ReadHeader = %v, want a FormatError", err)
				}
				if cs != tc.stricter {
					t.Errorf("cryptsetup accepts: %v; stricter flag %v", cs, tc.stricter)
				}
				t.Log(err)
			}
		})
	}
}

// TestSupportedRefusals changes the data segment and requirements of a real
// header. Each header still parses; Supported says why it cannot convert.
func TestSupportedRefusals(t *testing.T) {
	img, js := baseLUKS2(t)
	t.Parallel()
	seg := `"0":{"type":"crypt","offset":"0","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}`
	for _, tc := range []struct {
		name, old, new string
		want           error
	}{
		{"integrity", seg, strings.TrimSuffix(seg, "}") + `,"integrity":{"type":"hmac(sha256)","journal_encryption":"none","journal_integrity":"none"}}`, luks.ErrUnsupported},
		{"hw-opal", seg, `"0":{"type":"hw-opal","offset":"0","size":"dynamic"}`, luks.ErrUnsupported},
		{"linear", seg, `"0":{"type":"linear","offset":"0","size":"dynamic"}`, luks.ErrReencryptInProgress},
		{"backup-flag", seg, strings.TrimSuffix(seg, "}") + `,"flags":["backup-final"]}`, luks.ErrReencryptInProgress},
		{"two-segments", seg, seg + `,"1":{"type":"linear","offset":"0","size":"dynamic"}`, luks.ErrReencryptInProgress},
		{"opal-requirement", `"config":{`, `"config":{"requirements":{"mandatory":["opal"]},`, luks.ErrUnsupported},
		{"offline-reencrypt", `"config":{`, `"config":{"requirements":{"mandatory":["offline-reencrypt"]},`, luks.ErrReencryptInProgress},
		{"capi-cipher", `"encryption":"aes-xts-plain64","sector_size"`, `"encryption":"capi:xts(aes)-plain64","sector_size"`, luks.ErrUnsupported},
		{"digest-hash", `"hash":"sha256","iterations":1000,"salt"`, `"hash":"whirlpool","iterations":1000,"salt"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(js, tc.old) {
				t.Fatalf("%q not in %s", tc.old, js)
			}
			data := reseal(t, img, strings.Replace(js, tc.old, tc.new, 1))
			h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			err = h.Supported()
			if tc.want == nil {
				// Only the first pbkdf2 "hash" is a keyslot's: the slot is
				// skipped, the other still opens.
				if err != nil {
					t.Fatal(err)
				}
				if k := mustUnlock(t, h, pass2, -1); k.Slot != 1 {
					t.Errorf("slot %d", k.Slot)
				}
				_, err := h.Unlock([]byte(pass1), 0)
				wantErr(t, err, luks.ErrUnsupported)
				return
			}
			wantErr(t, err, tc.want)
			_, err2 := h.Unlock([]byte(pass1), -1)
			wantErr(t, err2, tc.want)
			t.Log(err)
		})
	}
}

// TestAbsurdArgon2 raises an argon2 keyslot's memory cost to 8 GiB: Unlock
// must refuse it with a FormatError, without allocating.
func TestAbsurdArgon2(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	hdr, _, _ := makeLUKS2Header(t, dir, "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1")
	img, _ := os.ReadFile(hdr)
	h0, err := luks.ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	js := string(h0.JSON)
	for _, tc := range []struct{ old, new string }{
		{`"memory":32768`, `"memory":8388608`},
		{`"cpus":1`, `"cpus":0`},
		{`"time":4`, `"time":99999999999`},
	} {
		if !strings.Contains(js, tc.old) {
			t.Fatalf("%q not in %s", tc.old, js)
		}
		data := reseal(t, img, strings.Replace(js, tc.old, tc.new, 1))
		h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.Unlock([]byte(pass1), -1)
		var fe *luks.FormatError
		if !errors.As(err, &fe) {
			t.Errorf("%s: Unlock = %v, want a FormatError", tc.new, err)
		}
	}
}

func TestFormatErrorText(t *testing.T) {
	err := error(&luks.FormatError{Structure: "LUKS2 primary header", Offset: 0, Reason: "checksum mismatch"})
	if got := err.Error(); got != "luks: LUKS2 primary header at offset 0: checksum mismatch" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", err), luks.ErrCorrupt) {
		t.Error("FormatError is not ErrCorrupt")
	}
}

func TestVolumeKeyRedacted(t *testing.T) {
	img, _ := baseLUKS2(t)
	h, err := luks.ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	k := mustUnlock(t, h, pass1, -1)
	secret := fmt.Sprintf("%x", k.Bytes())
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprint(*k), fmt.Sprintf("%v %+v %#v %s %x %q", k, k, k, k, k, k),
		fmt.Sprintf("%#v %x", *k, *k), fmt.Sprintf("%v", []any{k, *k}),
	} {
		if strings.Contains(s, secret) || strings.Contains(s, secret[:16]) || !strings.Contains(s, "[REDACTED]") {
			t.Errorf("formatted key leaks or is not redacted: %q", s)
		}
	}
	b, err := k.MarshalText()
	if err != nil || string(b) != "[REDACTED]" {
		t.Errorf("MarshalText = %q, %v", b, err)
	}
	k.Destroy()
	if k.Bytes() != nil {
		t.Error("Bytes after Destroy")
	}
	if _, err := h.NewCipher(k); err == nil {
		t.Error("NewCipher with a destroyed key")
	}
}

func TestPayloadBounds(t *testing.T) {
	img, _ := baseLUKS2(t)
	h, err := luks.ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	// Detached: the payload is the whole data device, in whole sectors.
	if off, n, err := h.Payload(1<<20 + 100); off != 0 || n != 1<<20 || err != nil {
		t.Errorf("Payload = %d, %d, %v", off, n, err)
	}
	if h.IV(0) != 0 || h.IV(4096) != 8 {
		t.Errorf("IV(4096) = %d, want 8 (512-byte units)", h.IV(4096))
	}
	h.DataOffset, h.DataSize = 4096, 8192
	if _, _, err := h.Payload(8192); err == nil {
		t.Error("payload beyond the device accepted")
	}
	if _, _, err := h.Payload(100); err == nil {
		t.Error("offset beyond the device accepted")
	}
	if off, n, err := h.Payload(1 << 20); off != 4096 || n != 8192 || err != nil {
		t.Errorf("fixed-size Payload = %d, %d, %v", off, n, err)
	}
}

// TestUnlockContext: a header that asks for hours of key derivation (argon2 time 1000, or 2^31
// PBKDF2 iterations) gives up when the context ends, with the context's error.
func TestUnlockContext(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	argon, _, _ := makeLUKS2Header(t, dir, "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1")
	img, _ := os.ReadFile(argon)
	pb, js := baseLUKS2(t)
	h0, err := luks.ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		img           []byte
		js, old, new_ string
	}{
		{"argon2 time 1000", img, string(h0.JSON), `"time":4`, `"time":1000`},
		{"pbkdf2 2^31 iterations", pb, js, `"iterations":1000,`, `"iterations":2147483647,`},
	} {
		if !strings.Contains(tc.js, tc.old) {
			t.Fatalf("%s: %q not in %s", tc.name, tc.old, tc.js)
		}
		data := reseal(t, tc.img, strings.Replace(tc.js, tc.old, tc.new_, -1))
		h, err := luks.ReadHeader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		// Limits far above the cost: cancellation, not the budget, must end the derivation.
		_, err = h.UnlockLimits(ctx, []byte(pass1), -1, luks.KDFLimits{MaxMemoryKiB: luks.MaxKDFMemoryKiB, MaxTime: 1 << 62})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: UnlockContext = %v, want context.DeadlineExceeded", tc.name, err)
		}
		// A sanity bound only: the derivation itself would take minutes.
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: UnlockContext returned after %v", tc.name, d)
		}
	}
}
