// Package scriptcache builds test data with a shell script once per script version: under an exclusive
// file lock (so parallel test binaries wait for one build), into a cache directory, with the script's
// log kept beside it. The fixture and boot-disk builders share it.
package scriptcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// ExitMissingTool is the scripts' exit status for a missing tool, privilege or package: the one case
// in which tests skip rather than fail.
const ExitMissingTool = 3

// Spec describes one cached build.
type Spec struct {
	// Name prefixes log lines and failure messages ("fixture", "qemuboot").
	Name string
	// Unavailable prefixes the skip message ("FIXTURES UNAVAILABLE").
	Unavailable string
	// Script is run as `bash Script Dir`; it must build Dir atomically (into Dir.tmp, then rename).
	Script, Dir string
	// Env is added to the environment of the script.
	Env []string
	// Timeout bounds the run; on expiry the script gets SIGINT, so its trap can clean up.
	Timeout time.Duration
	// Ready reports whether Dir already holds a complete build of the current version (set by
	// BuildAndRead from its read function).
	Ready func(dir string) bool
}

// Build makes sure s.Dir holds a complete build. It returns a skip message (a tool is missing), a
// failure message (with the tail of the log), or two empty strings.
func Build(t testing.TB, s Spec) (skip, fail string) {
	if err := os.MkdirAll(filepath.Dir(s.Dir), 0o755); err != nil {
		return "", fmt.Sprintf("%s: %v", s.Name, err)
	}
	unlock, err := Lock(s.Dir+".lock", func() {
		t.Logf("%s: waiting for another process building %s", s.Name, s.Dir)
	})
	if err != nil {
		return "", fmt.Sprintf("%s: lock %s.lock: %v", s.Name, s.Dir, err)
	}
	defer unlock()
	if s.Ready(s.Dir) {
		return "", ""
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return s.Unavailable + ": bash not installed", ""
	}
	logPath := LogPath(s.Dir)
	logf, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Sprintf("%s: %v", s.Name, err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", s.Script, s.Dir)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// On timeout interrupt rather than kill, so the script's trap detaches its loop devices.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	t.Logf("%s: building %s (log: %s)", s.Name, s.Dir, logPath)
	runErr := cmd.Run()
	logf.Close()
	tail := LogTail(logPath, 40)
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) && exitErr.ExitCode() == ExitMissingTool {
		msg := "a required tool is missing"
		if m := missingRE.FindStringSubmatch(tail); m != nil {
			msg = m[1] // e.g. "root privileges (...)"
			if !strings.ContainsAny(msg, " \t") {
				msg += " not installed"
			}
		}
		return s.Unavailable + ": " + msg + " (install with scripts/install-deps.sh; log: " + logPath + ")", ""
	}
	if runErr != nil {
		return "", fmt.Sprintf("%s: %s %s failed after %s: %v\n--- last lines of %s ---\n%s",
			s.Name, s.Script, s.Dir, time.Since(start).Round(time.Millisecond), runErr, logPath, tail)
	}
	t.Logf("%s: built %s in %s", s.Name, s.Dir, time.Since(start).Round(time.Millisecond))
	return "", ""
}

var missingRE = regexp.MustCompile(`(?m)^missing tool: (.*)$`)

// LogPath is where Build keeps the script's output for dir.
func LogPath(dir string) string { return dir + ".log" }

// LogTail returns the last n lines of the file at path (or the error reading it).
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var hashDirRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// PruneStale removes builds of other script versions (directories named by 16 hex digits) from cacheDir,
// keeping keep, so editing a script does not pile up images. Builds in progress (lock held) are skipped.
func PruneStale(cacheDir, keep string) {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == keep || !hashDirRE.MatchString(name) {
			continue
		}
		p := filepath.Join(cacheDir, name)
		unlock, ok := TryLock(p + ".lock")
		if !ok {
			continue
		}
		os.RemoveAll(p)
		os.RemoveAll(p + ".tmp")
		os.Remove(p + ".log")
		os.Remove(p + ".lock")
		unlock()
	}
}

// Result is a build read back: its value, or why the tests skip or fail.
type Result[T any] struct {
	Value      T
	Skip, Fail string
}

// BuildAndRead runs Build, then read on the directory; an error from read (a missing or stale manifest)
// is a failure that carries the tail of the log. read also serves as s.Ready: a directory it accepts
// needs no build.
func BuildAndRead[T any](t testing.TB, s Spec, read func(dir string) (T, error)) Result[T] {
	s.Ready = func(dir string) bool { _, err := read(dir); return err == nil }
	var r Result[T]
	if r.Skip, r.Fail = Build(t, s); r.Skip != "" || r.Fail != "" {
		return r
	}
	v, err := read(s.Dir)
	if err != nil {
		r.Fail = fmt.Sprintf("%s: %v\n--- last lines of %s ---\n%s", s.Name, err, LogPath(s.Dir), LogTail(LogPath(s.Dir), 40))
		return r
	}
	r.Value = v
	return r
}

var (
	mu      sync.Mutex
	results = map[string]any{} // by directory, so one test binary builds each set at most once
)

// Load returns the build of s, making it first if needed, once per test binary and directory; it skips
// or fails t as BuildAndRead says. With prune, builds of other script versions are removed from the
// cache directory after a success.
func Load[T any](t testing.TB, s Spec, prune bool, read func(dir string) (T, error)) T {
	t.Helper()
	mu.Lock()
	r, ok := results[s.Dir].(Result[T])
	if !ok {
		r = BuildAndRead(t, s, read)
		results[s.Dir] = r
		if prune && r.Skip == "" && r.Fail == "" {
			PruneStale(filepath.Dir(s.Dir), filepath.Base(s.Dir))
		}
	}
	mu.Unlock()
	switch {
	case r.Skip != "":
		t.Skip(r.Skip)
	case r.Fail != "":
		t.Fatal(r.Fail)
	}
	return r.Value
}

// ReadManifest reads dir/manifest.json, which a fixture script wrote, into a T, and returns dir made
// absolute, against which the caller resolves the manifest's host paths.
func ReadManifest[T any](dir string) (*T, string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, "manifest.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	var m T
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return &m, dir, nil
}

// Version is the version of a set a script builds from files (the script first, then what it
// installs or reads): the hex SHA-256 of their contents one after another, which the scripts write
// as their manifest's "version" too.
func Version(files ...string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// RepoRoot returns the nearest directory above the working directory (or, failing that, this source
// file) holding go.mod, or "": where the fixture scripts are found.
func RepoRoot() string {
	find := func(dir string) string {
		for {
			if st, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !st.IsDir() {
				return dir
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return ""
			}
			dir = parent
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if r := find(wd); r != "" {
			return r
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		return find(filepath.Dir(file))
	}
	return ""
}
