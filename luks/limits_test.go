package luks_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luks"
)

// TestKDFLimits: hostile keyslot costs (real headers from cryptsetup, their JSON then edited) are
// refused at once with a *CostError naming the keyslot and its cost, before any derivation or
// allocation; a limit raised above the cost opens the slot.
func TestKDFLimits(t *testing.T) {
	needCryptsetup(t)
	t.Parallel()
	dir := t.TempDir()
	argon, k1, k2 := makeLUKS2Header(t, dir, "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1")
	testenv.Run(t, "cryptsetup", "luksAddKey", "-q", "--key-file", k1, "--pbkdf", "argon2id", "--pbkdf-memory", "32768",
		"--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1", argon, k2)
	img, _ := os.ReadFile(argon)
	h0, err := luks.ReadHeader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	ajs := string(h0.JSON)
	pb, pjs := baseLUKS2(t)
	l1hdr := filepath.Join(dir, "l1")
	testenv.SparseFile(t, dir, "l1", 4<<20)
	testenv.Run(t, "cryptsetup", "luksFormat", "-q", "--type", "luks1", "--key-file", k1, "--pbkdf-force-iterations", "1000", l1hdr)
	l1, _ := os.ReadFile(l1hdr)
	l1 = l1[:2<<20]
	l1max := bytes.Clone(l1)
	copy(l1max[164:168], []byte{0xff, 0xff, 0xff, 0xff}) // mk-digest iterations 2^32-1 (no checksum in LUKS1)

	for _, tc := range []struct {
		name   string
		data   []byte
		memory bool
		slot   string
	}{
		{"argon2 memory 4 GiB", reseal(t, img, strings.Replace(ajs, `"memory":32768`, `"memory":4194304`, 1)), true, "keyslot 0"},
		{"two argon2 slots at 2 GiB", reseal(t, img, strings.ReplaceAll(ajs, `"memory":32768`, `"memory":2097152`)), true, "keyslot"},
		{"argon2 time 1000, 4 GiB", reseal(t, img, strings.ReplaceAll(strings.ReplaceAll(ajs, `"memory":32768`, `"memory":4194304`), `"time":4`, `"time":1000`)), true, "keyslot"},
		{"argon2 time max", reseal(t, img, strings.ReplaceAll(ajs, `"time":4`, `"time":16777216`)), false, "keyslot"},
		{"pbkdf2 2^31 iterations", reseal(t, pb, strings.ReplaceAll(pjs, `"iterations":1000,`, `"iterations":2147483647,`)), false, "keyslot"},
		{"digest 2^32-1 iterations", reseal(t, pb, digestIter(t, pjs, "4294967295")), false, "keyslot"},
		{"LUKS1 mk-digest 2^32-1 iterations", l1max, false, "keyslot 0"},
	} {
		h, err := luks.ReadHeader(bytes.NewReader(tc.data), int64(len(tc.data)))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// The memory cases under a 1 GiB limit (the tests' machine may have any amount of memory).
		lim := luks.KDFLimits{}
		if tc.memory {
			lim.MaxMemoryKiB = 1 << 20
		}
		start := time.Now()
		_, err = h.UnlockLimits(t.Context(), []byte(pass1), -1, lim)
		d := time.Since(start)
		var ce *luks.CostError
		if !errors.As(err, &ce) || !errors.Is(err, luks.ErrKDFLimit) || ce.Memory != tc.memory {
			t.Errorf("%s: Unlock = %v, want a CostError (memory %v)", tc.name, err, tc.memory)
			continue
		}
		if !strings.Contains(err.Error(), tc.slot) || !strings.Contains(err.Error(), "over the limit") {
			t.Errorf("%s: error %q does not name the keyslot and the limit", tc.name, err)
		}
		if d > 2*time.Second {
			t.Errorf("%s: refused after %v, want at once", tc.name, d)
		}
		t.Logf("%s: %v (%v)", tc.name, err, d.Round(time.Millisecond))
	}

	// The default memory limit is never above cryptsetup's 4 GiB, and a lower limit refuses 32 MiB;
	// raised, the same slot opens.
	if d := luks.DefaultKDFMaxMemoryKiB(); d > luks.MaxKDFMemoryKiB || d < 8 {
		t.Errorf("DefaultKDFMaxMemoryKiB = %d", d)
	}
	h, _ := luks.ReadHeader(bytes.NewReader(img), int64(len(img)))
	if _, err := h.UnlockLimits(t.Context(), []byte(pass1), -1, luks.KDFLimits{MaxMemoryKiB: 16 << 10}); !errors.Is(err, luks.ErrKDFLimit) {
		t.Errorf("32 MiB slot under a 16 MiB limit: %v", err)
	}
	k, err := h.UnlockLimits(t.Context(), []byte(pass2), -1, luks.KDFLimits{MaxMemoryKiB: 32 << 10})
	if err != nil || k.Slot != 1 {
		t.Fatalf("32 MiB slot under a 32 MiB limit: %v", err)
	}
	k.Destroy()
	// A slot over the limit beside one the passphrase does not open: the cost error, not a wrong
	// passphrase (the refused slot may be the right one).
	mixed := reseal(t, img, strings.Replace(ajs, `"memory":32768`, `"memory":2097152`, 1))
	h, _ = luks.ReadHeader(bytes.NewReader(mixed), int64(len(mixed)))
	if _, err := h.UnlockLimits(t.Context(), []byte("wrong"), -1, luks.KDFLimits{MaxMemoryKiB: 1 << 20}); !errors.Is(err, luks.ErrKDFLimit) || errors.Is(err, luks.ErrWrongPassphrase) {
		t.Errorf("one slot over the limit, one wrong: %v", err)
	}
}

// digestIter sets the iterations of the LUKS2 digest (the last "iterations" in the JSON).
func digestIter(t *testing.T, js, n string) string {
	i := strings.LastIndex(js, `"iterations":`)
	if i < 0 || !strings.Contains(js[i:], `"digest"`) {
		t.Fatalf("no digest iterations in %s", js)
	}
	j := i + len(`"iterations":`)
	k := j + strings.IndexAny(js[j:], ",}")
	return js[:j] + n + js[k:]
}
