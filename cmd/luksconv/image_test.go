package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestStaticBinary: the container image of deploy/Dockerfile holds the CLI alone on an empty base
// (no shell, no libc), so the binary it builds must be static: built the same way here, it has no ELF
// interpreter and no shared-library dependency. The Dockerfile's final stage is checked for what the
// fleet recipes rely on: scratch, CA certificates, /luksconv as the entry point, an unprivileged user.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI without cgo")
	}
	df, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var build, final []string // the build command and the final stage's instructions
	stage := 0
	for _, ln := range strings.Split(string(df), "\n") {
		ln = strings.TrimSpace(ln)
		switch {
		case ln == "" || strings.HasPrefix(ln, "#"):
		case strings.HasPrefix(ln, "FROM "):
			stage++
			final = []string{ln}
		case strings.HasPrefix(ln, "RUN ") && strings.Contains(ln, "go build"):
			build = strings.Fields(ln)
		default:
			final = append(final, ln)
		}
	}
	for _, want := range []string{"FROM scratch", "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt",
		"COPY --from=build /out/luksconv /luksconv", `ENTRYPOINT ["/luksconv"]`, "USER 65532:65532"} {
		if !slices.Contains(final, want) {
			t.Errorf("the Dockerfile's final stage lacks %q: %q", want, final)
		}
	}
	if stage != 2 || !slices.Contains(build, "CGO_ENABLED=0") || !slices.Contains(build, "./cmd/luksconv") {
		t.Fatalf("want a build stage running CGO_ENABLED=0 go build … ./cmd/luksconv, then the final stage; got %d stages, %q", stage, build)
	}

	bin := filepath.Join(t.TempDir(), "luksconv")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: not static", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		t.Errorf("the binary needs %v", libs)
	}
	// It runs with nothing but itself: no shell, no environment.
	run := exec.Command(bin, "--version")
	run.Env = []string{}
	if out, err := run.CombinedOutput(); err != nil {
		t.Errorf("%s --version with an empty environment: %v\n%s", bin, err, out)
	}
}
