package luksconv_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOfflineEngineDeps: the offline engine links no Azure SDK package (and no HTTP client); page
// blobs are the blobdisk package's business. An importer converting exported VHDs on a helper VM
// does not pay for the SDK.
func TestOfflineEngineDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}}", "github.com/luksconv/luksconv/luksconv").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps printed %d packages: %v", len(deps), deps)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/Azure/") || d == "net/http" || d == "github.com/luksconv/luksconv/blobio" {
			t.Errorf("the offline engine depends on %s", d)
		}
	}
}
