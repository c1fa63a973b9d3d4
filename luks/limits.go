package luks

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// ErrKDFLimit is matched by every *CostError: a keyslot's key derivation would take more memory or
// time than the caller allows.
var ErrKDFLimit = errors.New("luks: key derivation cost over the limit")

// DefaultKDFMaxTime is the default bound on the estimated time of one keyslot: its KDF and the
// digest check after it. cryptsetup picks costs that take 1-2 s on the machine that formats.
const DefaultKDFMaxTime = 60 * time.Second

// MaxKDFMemoryKiB is cryptsetup's own maximum Argon2 memory cost (4 GiB); no limit goes above it.
const MaxKDFMemoryKiB = maxArgon2Memory

// KDFLimits bound what opening one keyslot may cost. The zero value means the defaults.
type KDFLimits struct {
	// MaxMemoryKiB bounds Argon2's memory cost. 0: DefaultKDFMaxMemoryKiB() (at most 4 GiB and half of
	// the memory available to this process).
	MaxMemoryKiB int64
	// MaxTime bounds the estimated time of one keyslot (KDF plus digest), estimated from a short
	// measurement of this machine's PBKDF2 and Argon2 speed. 0: DefaultKDFMaxTime.
	MaxTime time.Duration

	// asRoom is what the address-space limit leaves (-1: no limit), measured once before the first
	// keyslot: the next slot reuses the address space of the one before.
	asRoom int64
}

func (l KDFLimits) resolve() KDFLimits {
	if l.MaxMemoryKiB <= 0 {
		l.MaxMemoryKiB = DefaultKDFMaxMemoryKiB()
	}
	if l.MaxTime <= 0 {
		l.MaxTime = DefaultKDFMaxTime
	}
	l.asRoom = -1
	if room, ok := addressSpaceRoom(); ok {
		l.asRoom = room
	}
	return l
}

// DefaultKDFMaxMemoryKiB is the default Argon2 memory limit: cryptsetup's maximum (4 GiB), but no more
// than half of the memory this process can still get (MemAvailable, the cgroup's memory.max) and 3/4 of
// the address space its limit (RLIMIT_AS) leaves, so that a header cannot make the process die of an
// allocation that does not fit. UnlockLimits applies the address-space bound to any limit.
func DefaultKDFMaxMemoryKiB() int64 {
	lim := int64(MaxKDFMemoryKiB)
	if avail, ok := availableMemory(); ok {
		lim = min(lim, avail/2/1024)
	}
	if room, ok := addressSpaceRoom(); ok {
		lim = min(lim, room/1024*3/4) // as UnlockLimits checks whatever the limit
	}
	return max(lim, 8)
}

// CostError is a keyslot whose derivation is refused by KDFLimits.
type CostError struct {
	Slot  int    // Keyslot.ID
	KDF   string // Keyslot.KDF
	Cost  string // "memory 4194304 KiB (4.0 GiB)", "estimated 17m0s (pbkdf2-sha256, 2147483648 iterations)"
	Limit string // "2.0 GiB", "1m0s"
	// Memory is true for a memory cost, false for a time cost.
	Memory bool
}

// Error names the keyslot, its key derivation function, its cost and the limit it is over.
func (e *CostError) Error() string {
	return fmt.Sprintf("luks: keyslot %d: %s %s is over the limit of %s", e.Slot, e.KDF, e.Cost, e.Limit)
}

// Is makes errors.Is(err, ErrKDFLimit) true.
func (e *CostError) Is(target error) bool { return target == ErrKDFLimit }

func gib(kib int64) string { return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20)) }

// checkCost refuses ks when its derivation, with the digest check that follows, exceeds lim.
func (h *Header) checkCost(ks *Keyslot, lim KDFLimits) error {
	var est time.Duration
	what := ""
	switch ks.KDF {
	case "pbkdf2":
		hf, err := hashByName(ks.Hash)
		if err != nil {
			return nil // refused as unsupported later
		}
		est = pbkdf2Estimate(ks.Hash, hf, int64(ks.Iterations), ks.EncryptionKeySize)
		what = fmt.Sprintf("pbkdf2-%s, %d iterations", ks.Hash, ks.Iterations)
	case "argon2i", "argon2id":
		if ks.CPUs < 1 || ks.CPUs > maxArgon2CPUs || ks.Time < 1 || ks.Time > maxArgon2Time ||
			ks.MemoryKiB < 8*ks.CPUs || ks.MemoryKiB > maxArgon2Memory {
			return nil // out of any range: refused as corrupt by deriveKey, before it allocates
		}
		if room := lim.asRoom; room >= 0 && int64(ks.MemoryKiB) > room/1024*3/4 {
			// Even a raised limit cannot make an allocation the address space refuses.
			return &CostError{Slot: ks.ID, KDF: ks.KDF, Memory: true,
				Cost:  fmt.Sprintf("memory %d KiB (%s)", ks.MemoryKiB, gib(int64(ks.MemoryKiB))),
				Limit: fmt.Sprintf("%s, what the address-space limit (ulimit -v) leaves", gib(room/1024*3/4))}
		}
		if int64(ks.MemoryKiB) > lim.MaxMemoryKiB {
			return &CostError{Slot: ks.ID, KDF: ks.KDF, Memory: true,
				Cost:  fmt.Sprintf("memory %d KiB (%s)", ks.MemoryKiB, gib(int64(ks.MemoryKiB))),
				Limit: fmt.Sprintf("%d KiB (%s)", lim.MaxMemoryKiB, gib(lim.MaxMemoryKiB))}
		}
		est = argon2Estimate(int64(ks.Time), int64(ks.MemoryKiB), ks.CPUs)
		what = fmt.Sprintf("time %d, memory %d KiB, %d lanes", ks.Time, ks.MemoryKiB, ks.CPUs)
	default:
		return nil
	}
	// The digest check: LUKS1's mk-digest, LUKS2's pbkdf2 digest.
	var dHash string
	var dIter int64
	var dLen int
	if h.Version == 1 && h.v1 != nil {
		dHash, dIter, dLen = h.v1hash(), int64(h.v1.MKDigestIter), luks1DigestSize
	} else if ks.digest != nil && ks.digest.Type == "pbkdf2" {
		dHash, dIter, dLen = ks.digest.Hash, int64(ks.digest.Iterations), len(ks.digest.Digest)
	}
	if hf, err := hashByName(dHash); err == nil && dIter > 0 {
		d := pbkdf2Estimate(dHash, hf, dIter, dLen)
		est += d
		if d > lim.MaxTime/2 {
			what += fmt.Sprintf("; digest pbkdf2-%s, %d iterations", dHash, dIter)
		}
	}
	if est > lim.MaxTime {
		return &CostError{Slot: ks.ID, KDF: ks.KDF,
			Cost:  fmt.Sprintf("estimated time %s (%s)", est.Round(time.Second), what),
			Limit: lim.MaxTime.String()}
	}
	return nil
}

var (
	rateMu     sync.Mutex
	pbkdf2Rate = map[string]float64{} // iterations per second, by hash name
	argon2Rate float64                // KiB per second per lane
)

// pbkdf2Estimate is how long iter iterations of PBKDF2 with hf take here for a keyLen-byte output.
func pbkdf2Estimate(name string, hf func() hash.Hash, iter int64, keyLen int) time.Duration {
	rateMu.Lock()
	rate, ok := pbkdf2Rate[name]
	if !ok {
		const n = 1 << 13
		best := time.Duration(1 << 62)
		for range 3 {
			t := time.Now()
			k, _ := pbkdf2Key(context.Background(), hf, []byte("calibrate"), []byte("salt"), n, 1)
			clear(k)
			best = min(best, max(time.Since(t), time.Microsecond))
		}
		rate = n / best.Seconds()
		pbkdf2Rate[name] = rate
	}
	rateMu.Unlock()
	size := hf().Size()
	blocks := int64((max(keyLen, 1) + size - 1) / size)
	return seconds(float64(iter) * float64(blocks) / rate)
}

// argon2Estimate is how long Argon2 with these costs takes here.
func argon2Estimate(t, memKiB int64, lanes int) time.Duration {
	rateMu.Lock()
	if argon2Rate == 0 {
		const mem = 4 << 10
		best := time.Duration(1 << 62)
		for range 2 {
			s := time.Now()
			k := argon2.IDKey([]byte("calibrate"), []byte("saltsalt"), 1, mem, 1, 32)
			clear(k)
			best = min(best, max(time.Since(s), time.Microsecond))
		}
		argon2Rate = mem / best.Seconds()
	}
	rate := argon2Rate
	rateMu.Unlock()
	par := max(min(lanes, runtime.NumCPU()), 1)
	return seconds(float64(t) * float64(memKiB) / (rate * float64(par)))
}

func seconds(s float64) time.Duration {
	if s > float64(1<<62)/float64(time.Second) {
		return time.Duration(1 << 62)
	}
	return time.Duration(s * float64(time.Second))
}

// freeLarge returns a large KDF buffer to the system before the next keyslot allocates its own.
func freeLarge(memKiB int) {
	if memKiB >= 64<<10 {
		debug.FreeOSMemory()
	}
}
