package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/testenv"
)

// hostileLUKS2 formats a 16 MiB unpartitioned LUKS2 device (a data disk, partition 0) with cheap
// argon2id costs and returns the image and its key file.
func hostileLUKS2(t *testing.T, dir string) (string, string) {
	t.Helper()
	img := filepath.Join(dir, "luks2.img")
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("hostile-test-passphrase"), 0o600)
	testenv.SparseFile(t, dir, "luks2.img", 16<<20)
	testenv.Run(t, "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--key-file", key, "--pbkdf", "argon2id",
		"--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1", img)
	return img, key
}

// editLUKS2JSON writes a copy of the LUKS2 image at src with edit applied to both JSON areas, the
// checksums recomputed (so that the header is read, and the edit, not a checksum, decides).
func editLUKS2JSON(t *testing.T, src, dst string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	hdrSize := int64(binary.BigEndian.Uint64(b[8:16]))
	for _, off := range []int64{0, hdrSize} {
		c := b[off : off+hdrSize]
		area := c[4096:]
		js := string(bytes.TrimRight(area, "\x00"))
		n := edit(js)
		if n == js {
			t.Fatalf("edit changed nothing in %s", js)
		}
		clear(area)
		copy(area, n)
		clear(c[448 : 448+64])
		s := sha256.Sum256(c)
		copy(c[448:], s[:])
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// hostileVHD is a 64 MiB dynamic VHD (qemu-img) with two 2 MiB blocks written, whose BAT then maps
// block 1 to block 0's file bytes.
func hostileVHD(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "shared-bat.vhd")
	testenv.Run(t, "qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=dynamic", p, "64M")
	testenv.Run(t, "qemu-io", "-f", "vpc", "-c", "write -P 0x5a 0 4M", p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bat := int64(binary.BigEndian.Uint64(b[512+16:]))
	if binary.BigEndian.Uint32(b[bat:]) == 0xFFFFFFFF || binary.BigEndian.Uint32(b[bat+4:]) == 0xFFFFFFFF {
		t.Fatal("qemu-io did not allocate blocks 0 and 1")
	}
	copy(b[bat+4:bat+8], b[bat:bat+4])
	os.WriteFile(p, b, 0o600)
	return p
}

// timed wraps a command line in GNU time, whose -o file then holds the peak RSS of the command
// alone: a child forked from the test process would report the test's own RSS, which the kernel
// carries across exec.
func timed(t *testing.T, argv ...string) (*exec.Cmd, func() int64) {
	f := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command("/usr/bin/time", append([]string{"-o", f, "-f", "%M"}, argv...)...)
	return cmd, func() int64 {
		b, _ := os.ReadFile(f)
		lines := strings.Fields(string(b))
		var kib int64
		if len(lines) > 0 {
			fmt.Sscan(lines[len(lines)-1], &kib)
		}
		return kib >> 10
	}
}

// TestHostile runs the CLI on hostile inputs built here (by cryptsetup, qemu-img and bytes written by
// the test): each ends with its documented exit code in bounded time, leaves the source's bytes as
// they were, and never ends in a Go fatal error, also under an address-space limit (prlimit --as).
func TestHostile(t *testing.T) {
	testenv.Need(t, "cryptsetup", "qemu-img", "qemu-io", "prlimit", "/usr/bin/time")
	dir := t.TempDir()
	img, key := hostileLUKS2(t, dir)
	variant := func(name string, edit func(string) string) string {
		p := filepath.Join(dir, name)
		editLUKS2JSON(t, img, p, edit)
		return p
	}
	mem4G := variant("argon2-4g.img", func(s string) string { return strings.Replace(s, `"memory":32768`, `"memory":4194304`, 1) })
	timeMax := variant("argon2-time.img", func(s string) string { return strings.Replace(s, `"time":4`, `"time":16777216`, 1) })
	past := variant("past-end.img", func(s string) string { return strings.Replace(s, `"size":"dynamic"`, `"size":"1073741824"`, 1) })
	twoSegs := variant("two-segments.img", func(s string) string {
		i := strings.Index(s, `"segments":{"0":`)
		j := strings.Index(s[i:], `},"digests"`)
		seg0 := s[i+len(`"segments":{"0":`) : i+j]
		return s[:i] + `"segments":{"0":` + seg0 + `,"1":` + strings.Replace(seg0, `"offset":"16777216"`, `"offset":"16777216"`, 1) + s[i+j:]
	})
	vhdShared := hostileVHD(t, dir)
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)

	const asLimit = 3 << 30 // bytes of address space: under 4 GiB, as in the issue
	for _, tc := range []struct {
		name    string
		limit   bool // under prlimit --as
		args    []string
		code    int
		stderr  string
		src     string
		maxTime time.Duration
	}{
		{"argon2 memory 4 GiB, 3 GiB address space", true, []string{"plan", "--key-file", key, mem4G}, exitLimit, "keyslot 0: argon2id memory 4194304 KiB", mem4G, 10 * time.Second},
		{"argon2 memory 4 GiB, --kdf-max-memory 4GiB, 3 GiB address space", true, []string{"plan", "--kdf-max-memory", "4GiB", "--key-file", key, mem4G}, exitLimit, "address-space limit", mem4G, 10 * time.Second},
		{"argon2 memory 4 GiB over --kdf-max-memory", false, []string{"plan", "--kdf-max-memory", "1GiB", "--key-file", key, mem4G}, exitLimit, "--kdf-max-memory", mem4G, 10 * time.Second},
		{"argon2 time max", true, []string{"plan", "--key-file", key, timeMax}, exitLimit, "estimated time", timeMax, 10 * time.Second},
		{"argon2 time max, --kdf-max-time 1s", false, []string{"plan", "--kdf-max-time", "1s", "--key-file", key, timeMax}, exitLimit, "over the limit of 1s", timeMax, 10 * time.Second},
		{"LUKS segment past the device end", false, []string{"plan", "--key-file", key, past}, exitCorrupt, "does not fit", past, 10 * time.Second},
		{"two crypt segments, no re-encryption", false, []string{"plan", "--key-file", key, twoSegs}, exitCorrupt, "no re-encryption in progress", twoSegs, 10 * time.Second},
		{"dynamic VHD, two blocks in one", true, []string{"inspect", vhdShared}, exitCorrupt, "share file bytes", vhdShared, 10 * time.Second},
		{"key file is a FIFO", false, []string{"plan", "--key-file", fifo, img}, exitUsage, "", img, 10 * time.Second},
		{"key file is a directory", false, []string{"plan", "--key-file", dir, img}, exitUsage, "", img, 10 * time.Second},
		{"image is a FIFO", false, []string{"inspect", fifo}, exitUsage, "", "", 10 * time.Second},
		{"--workers 100000", true, []string{"convert", "--workers", "100000", "--key-file", key, img, filepath.Join(dir, "out.raw")}, exitUsage, "", img, 10 * time.Second},
		{"a good image opens under the limit", true, []string{"plan", "--key-file", key, img}, 0, "", img, 20 * time.Second},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			var before [32]byte
			if tc.src != "" {
				before = sum(t, tc.src)
			}
			argv := append([]string{binPath}, tc.args...)
			if tc.limit {
				argv = append([]string{"prlimit", fmt.Sprintf("--as=%d", asLimit)}, argv...)
			}
			cmd, peakRSS := timed(t, argv...)
			var so, se bytes.Buffer
			cmd.Stdout, cmd.Stderr = &so, &se
			start := time.Now()
			cmd.Start()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(tc.maxTime):
				cmd.Process.Kill()
				<-done
				t.Fatalf("still running after %v", tc.maxTime)
			}
			d := time.Since(start)
			code := cmd.ProcessState.ExitCode()
			if strings.Contains(se.String(), "fatal error") || strings.Contains(se.String(), "goroutine ") {
				t.Fatalf("Go fatal error:\n%.2000s", se.String())
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tc.code, se.String())
			}
			if !strings.Contains(se.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, se.String())
			}
			if tc.src != "" && sum(t, tc.src) != before {
				t.Errorf("%s changed", tc.src)
			}
			rss := peakRSS()
			if rss > 512 && tc.name != "a good image opens under the limit" {
				t.Errorf("peak RSS %d MiB, want at most 512", rss)
			}
			t.Logf("exit %d in %v, peak RSS %d MiB: %s", code, d.Round(time.Millisecond), rss, strings.TrimSpace(se.String()))
		})
	}
}

// TestHostileBlobServer runs inspect against blob servers on 127.0.0.1 that answer what no Azure
// server does: each ends with an error in bounded time and memory, and the SAS signature, whatever
// the spelling of its name, is in no output (errors, --debug, --json).
func TestHostileBlobServer(t *testing.T) {
	testenv.Need(t, "prlimit", "/usr/bin/time")
	const secret = "SeCrEtSiGnAtUrE0123456789"
	var mode atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := mode.Load().(string)
		q := r.URL.Query()
		switch {
		case m == "silent":
			<-r.Context().Done()
			return
		case m == "huge-error" && r.Method != http.MethodHead:
			w.WriteHeader(http.StatusForbidden)
			chunk := bytes.Repeat([]byte("AuthenticationFailed "+r.URL.String()+" "), 1000)
			for i := 0; i < 200000 && r.Context().Err() == nil; i++ { // up to ~10 GB unless the client stops
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		case m == "4EiB" && r.Method == http.MethodHead:
			w.Header().Set("Content-Length", fmt.Sprint(int64(4)<<60))
			w.Header().Set("x-ms-blob-type", "PageBlob")
			w.WriteHeader(http.StatusOK)
			return
		case r.Method == http.MethodHead:
			w.Header().Set("Content-Length", fmt.Sprint(64<<20))
			w.Header().Set("x-ms-blob-type", "PageBlob")
			w.WriteHeader(http.StatusOK)
			return
		case q.Get("comp") == "pagelist":
			// Duplicated ranges, and a marker that always advances.
			w.Header().Set("Content-Type", "application/xml")
			var b strings.Builder
			b.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
			for range 2000 {
				b.WriteString(`<PageRange><Start>0</Start><End>511</End></PageRange>`)
			}
			fmt.Fprintf(&b, `<NextMarker>m%d</NextMarker></PageList>`, time.Now().UnixNano())
			w.Write([]byte(b.String()))
			return
		}
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, "<Error><Code>AuthenticationFailed</Code><Message>bad %s</Message></Error>", r.URL.String())
	}))
	defer srv.Close()
	for _, tc := range []struct{ mode, name string }{
		{"silent", "%73ig"}, {"huge-error", "%53%49%47"}, {"4EiB", "SIG"}, {"pagelist", "s%69g"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			mode.Store(tc.mode)
			u := srv.URL + "/c/disk.vhd?sv=2022-11-02&sp=r&" + tc.name + "=" + secret + "&se=2030-01-01"
			for _, extra := range [][]string{{"--debug"}, {"--json"}, {"--no-such-flag"}} {
				// --json after the command; --debug and an unknown flag before it (there cobra quotes the URL
				// in an "unknown command" error).
				args := []string{fmt.Sprintf("--as=%d", 3<<30), binPath, "--timeout", "2s"}
				if extra[0] == "--json" {
					args = append(args, "inspect", "--json", u)
				} else {
					args = append(args, extra[0], "inspect", u)
				}
				cmd, peakRSS := timed(t, append([]string{"prlimit"}, args...)...)
				var so, se bytes.Buffer
				cmd.Stdout, cmd.Stderr = &so, &se
				start := time.Now()
				cmd.Start()
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					cmd.Process.Kill()
					<-done
					t.Fatalf("%v: still running after 30 s", extra)
				}
				code := cmd.ProcessState.ExitCode()
				out := so.String() + se.String()
				rss := peakRSS()
				if strings.Contains(out, secret) {
					t.Errorf("%v: the signature is printed:\n%.3000s", extra, out)
				}
				if strings.Contains(out, "fatal error") {
					t.Errorf("%v: Go fatal error:\n%.2000s", extra, out)
				}
				if tc.mode == "pagelist" && extra[0] == "--debug" && !strings.Contains(se.String(), "protocol error") {
					t.Errorf("the duplicated page list is not refused as a protocol error:\n%s", se.String())
				}
				if code == 0 {
					t.Errorf("%v: exit 0", extra)
				}
				if rss > 512 {
					t.Errorf("%v: peak RSS %d MiB", extra, rss)
				}
				if extra[0] == "--json" && so.Len() > 0 && !json.Valid(so.Bytes()) {
					t.Errorf("--json output is not JSON: %s", so.String())
				}
				last := strings.TrimSpace(se.String())
				if i := strings.LastIndexByte(last, '\n'); i >= 0 {
					last = last[i+1:]
				}
				t.Logf("%s %v: exit %d in %v, peak RSS %d MiB: %.300s", tc.mode, extra, code, time.Since(start).Round(time.Millisecond), rss, last)
			}
		})
	}
}

// TestSIGINTWithinTwoSeconds interrupts `plan` while it waits: during a slow key derivation (an
// Argon2id keyslot of 600 passes, seconds of work but under the time limit), and while it reads a key
// from a standard input that never ends. Each run ends with exit 130 within 2 s of one SIGINT, with no
// Go fatal error.
func TestSIGINTWithinTwoSeconds(t *testing.T) {
	testenv.Need(t, "cryptsetup")
	dir := t.TempDir()
	img, key := hostileLUKS2(t, dir)
	slow := filepath.Join(dir, "slow.img")
	editLUKS2JSON(t, img, slow, func(s string) string { return strings.Replace(s, `"time":4`, `"time":600`, 1) })
	for _, tc := range []struct {
		name  string
		args  []string
		stdin bool // a pipe nobody writes to or closes
	}{
		// --kdf-max-time: the estimate of a loaded machine must not refuse the slot before it starts.
		{"slow key derivation", []string{"plan", "--kdf-max-time", "1h", "--key-file", key, slow}, false},
		{"key on a standard input that never ends", []string{"plan", "--key-file", "-", img}, true},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			cmd := exec.Command(binPath, tc.args...)
			var se bytes.Buffer
			cmd.Stderr = &se
			if tc.stdin {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				defer r.Close()
				cmd.Stdin = r
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			time.Sleep(700 * time.Millisecond)
			select {
			case <-done:
				t.Fatalf("plan ended before the signal (exit %d): nothing to interrupt\n%s", cmd.ProcessState.ExitCode(), se.String())
			default:
			}
			sent := time.Now()
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("still running 2 s after SIGINT\n%s", se.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || strings.Contains(se.String(), "fatal error") {
				t.Fatalf("exit %d, want %d\n%s", code, exitInterrupted, se.String())
			}
			t.Logf("exit 130 %v after SIGINT", time.Since(sent).Round(time.Millisecond))
		})
	}
}
