package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/vhd"
)

// signalRun is one run of the CLI binary that is signalled a while after a debug line appeared.
type signalRun struct {
	code           int
	stdout, stderr string
	sawMark        bool          // the mark line appeared (so the signal was sent after it)
	startToMark    time.Duration // from the "msg=start" line to the mark line
	startToExit    time.Duration
}

// runSignalled runs the binary with args (which include --debug), waits for the "msg=start" line (printed
// once main's signal handler is installed) and then for the first line holding mark, sleeps delay and
// sends sig. With sig 0 nothing is sent: the run measures the times of the lines.
func runSignalled(t *testing.T, sig syscall.Signal, mark string, delay time.Duration, args ...string) signalRun {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var so bytes.Buffer
	cmd.Stdout = &so
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	var mu sync.Mutex
	var se bytes.Buffer
	var r signalRun
	started, marked := make(chan time.Time, 1), make(chan time.Time, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(nil, 1<<20)
		s, m := false, false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			se.WriteString(line + "\n")
			mu.Unlock()
			if !s && strings.Contains(line, "msg=start") {
				s = true
				started <- time.Now()
			}
			if s && !m && strings.Contains(line, mark) {
				m = true
				marked <- time.Now()
			}
		}
		io.Copy(io.Discard, pr)
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	var t0 time.Time
	var err error
	select {
	case t0 = <-started:
	case err = <-exited:
		<-copied
		t.Fatalf("%v: exited (%v) before its start line:\n%s", args, err, se.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("no start line within 30 s")
	}
	done := false
	select {
	case tm := <-marked:
		r.sawMark, r.startToMark = true, tm.Sub(t0)
		if sig != 0 {
			time.Sleep(delay)
			cmd.Process.Signal(sig)
		}
	case err = <-exited:
		done = true
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("no %q line within 2 minutes", mark)
	}
	if !done {
		err = <-exited
	}
	r.startToExit = time.Since(t0)
	<-copied
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	r.stdout, r.stderr = so.String(), se.String()
	return r
}

// lineTime is the time= field of the first debug line in stderr that holds needle: the process's own
// clock, free of the delay with which the test reads the pipe.
func lineTime(t *testing.T, stderr, needle string) time.Time {
	t.Helper()
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.Contains(l, needle) || !strings.HasPrefix(l, "time=") {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		tm, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatalf("debug line %q: %v", l, err)
		}
		return tm
	}
	t.Fatalf("no debug line with %q:\n%s", needle, stderr)
	return time.Time{}
}

// journalWritten sums the lengths of the write records in a resume journal ("W <offset> <length> <crc>").
func journalWritten(b []byte) (n int64, records int) {
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "W" {
			if v, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				n += v
				records++
			}
		}
	}
	return n, records
}

// blobSum downloads a page blob of size bytes (disk and VHD footer) and returns the SHA-256 of the disk
// part and the footer (checked to be a fixed VHD footer; it holds a timestamp, so it differs between runs).
func blobSum(t *testing.T, az *azurite.Server, name string, size int64) ([32]byte, []byte) {
	t.Helper()
	b := download(t, az.BlobSAS(t, "disks", name, azurite.ReadSAS, time.Hour), size+512)
	if _, err := vhd.ParseFooter(b[size:]); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return sha256.Sum256(b[:size]), b[size:]
}

// TestInterruptSASUpload interrupts `convert IMAGE SAS-URL` with SIGINT and SIGTERM at random points of the
// upload (and once while planning): each interrupted run exits 130, leaves a flushed journal once the
// output was opened, leaves the source byte-identical and prints no secret; running the same command
// again reports the bytes it resumed and leaves a blob whose disk equals an uninterrupted upload.
func TestInterruptSASUpload(t *testing.T) {
	set := fixture.Load(t)
	fx, _ := set.Get("rhel8-lvm")
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	before := sum(t, fx.Image)
	sec := fixtureSecrets(t, fx)
	dir := t.TempDir()

	convert := func(blob, journal string, extra ...string) []string {
		u := az.BlobSAS(t, "disks", blob, azurite.WriteSAS, time.Hour)
		sec.addSAS(t, u)
		return append([]string{"--debug", "convert", "--workers", "1", "--key-file", fx.KeyFiles[0], "--journal", journal}, append(extra, fx.Image, u)...)
	}

	// The uninterrupted reference: its times bound the random delays.
	ref := runSignalled(t, 0, `msg="output opened"`, 0, convert("ref.vhd", filepath.Join(dir, "ref.journal"), "--json")...)
	if ref.code != 0 || !ref.sawMark {
		t.Fatalf("reference run: exit %d:\n%s", ref.code, ref.stderr)
	}
	var rep struct {
		Plan struct {
			OutputSize int64 `json:"output_size"`
		} `json:"plan"`
		Result struct {
			BytesWritten int64 `json:"bytes_written"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(ref.stdout), &rep); err != nil || rep.Plan.OutputSize == 0 {
		t.Fatalf("reference report: %v\n%s", err, ref.stdout)
	}
	size := rep.Plan.OutputSize
	want, _ := blobSum(t, az, "ref.vhd", size)
	opened := lineTime(t, ref.stderr, `msg="output opened"`)
	plan, upload := opened.Sub(lineTime(t, ref.stderr, "msg=start")), lineTime(t, ref.stderr, `msg="execute done"`).Sub(opened)
	t.Logf("reference run: %v planning, %v uploading %d bytes (%v from start to exit as the test saw it)",
		plan, upload, rep.Result.BytesWritten, ref.startToExit)

	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)

	// The first run is hit while planning (counted from the start line); the others during the upload
	// (counted from the "output opened" line), until three uploads were interrupted, one of them after a
	// write was journaled. The window starts at 80% of the reference's upload time and halves whenever a
	// run finished before its signal, so a machine faster or slower than during the reference still gets hit.
	interrupted, uploadsHit, resumedRuns := 0, 0, 0
	window := upload * 8 / 10
	for i := 0; i < 9 && (uploadsHit < 3 || resumedRuns == 0); i++ {
		sig := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[i%2]
		blob := fmt.Sprintf("out%d.vhd", i)
		journal := filepath.Join(dir, fmt.Sprintf("out%d.journal", i))
		mark, delay := `msg="output opened"`, time.Duration(rng.Int63n(int64(window)+1))
		if i == 0 {
			mark, delay = "msg=start", time.Duration(rng.Int63n(int64(plan)+1))
		}
		args := convert(blob, journal)
		r := runSignalled(t, sig, mark, delay, args...)
		what := fmt.Sprintf("run %d (%v %v after %s)", i, sig, delay.Round(time.Millisecond), mark)
		sec.check(t, "the standard output of "+what, []byte(r.stdout))
		sec.check(t, "the standard error of "+what, []byte(r.stderr))
		if sum(t, fx.Image) != before {
			t.Fatalf("%s: the source image changed", what)
		}
		switch r.code {
		case 0: // the signal came after the work was done
			t.Logf("%s: finished before the signal", what)
			if i > 0 {
				window /= 2
			}
			if got, _ := blobSum(t, az, blob, size); got != want {
				t.Fatalf("%s: a completed run differs from the reference", what)
			}
			continue
		case exitInterrupted:
		default:
			t.Fatalf("%s: exit %d, want 0 or %d:\n%s", what, r.code, exitInterrupted, r.stderr)
		}
		interrupted++
		if i > 0 {
			uploadsHit++
		}
		if !strings.Contains(r.stderr, "exit_code=130") {
			t.Errorf("%s: no failed debug line with exit_code=130:\n%s", what, r.stderr)
		}
		sinkOpened := strings.Contains(r.stderr, `msg="output opened"`)
		jb, err := os.ReadFile(journal)
		switch {
		case sinkOpened && err != nil:
			t.Fatalf("%s: the output was opened, yet there is no journal: %v", what, err)
		case sinkOpened && len(jb) == 0:
			t.Fatalf("%s: the journal is empty", what)
		case !sinkOpened && err == nil:
			t.Fatalf("%s: interrupted before the output was opened, yet a journal exists", what)
		}
		sec.check(t, "the journal of "+what, jb)
		jbytes, records := journalWritten(jb)

		// The same command again resumes and completes.
		so, se, code := run(t, nil, append(slices.Clone(args), "--json")...)
		sec.check(t, "the output of the rerun after "+what, []byte(so+se))
		if code != 0 {
			t.Fatalf("rerun after %s: exit %d:\n%s", what, code, se)
		}
		resumed, written := reportBytes(t, so)
		t.Logf("%s: journal %d bytes, %d write records (%d bytes); the rerun resumed %d bytes and wrote %d",
			what, len(jb), records, jbytes, resumed, written)
		if records > 0 && resumed == 0 {
			t.Fatalf("rerun after %s: the journal records %d bytes written, yet nothing was resumed", what, jbytes)
		}
		if resumed > jbytes {
			t.Fatalf("rerun after %s: resumed %d bytes, more than the journal's %d", what, resumed, jbytes)
		}
		if resumed > 0 {
			resumedRuns++
		}
		if !strings.Contains(se, fmt.Sprintf("resumed=%d", resumed)) {
			t.Errorf("rerun after %s: the debug output does not report resumed=%d", what, resumed)
		}
		if _, err := os.Stat(journal); !os.IsNotExist(err) {
			t.Errorf("rerun after %s: the journal stays after a complete run: %v", what, err)
		}
		got, _ := blobSum(t, az, blob, size)
		if got != want {
			t.Fatalf("after %s and a rerun, the disk differs from the uninterrupted upload", what)
		}
	}
	if uploadsHit < 3 {
		t.Fatalf("only %d uploads were interrupted (%d runs in all); the delays no longer hit the conversion", uploadsHit, interrupted)
	}
	if resumedRuns == 0 {
		t.Fatal("no rerun resumed anything; the interruptions never came after a journal flush")
	}
	if sum(t, fx.Image) != before {
		t.Fatal("the source image changed")
	}
	sec.checkDir(t, dir)
}
