package lvm_test

// Helpers that build PVs with the real lvm2 tools on loop devices and read
// the tools' own view of them, so Open is checked against code nobody here
// wrote. Device-mapper is not needed: nothing is activated.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// requireLVMTools skips (loudly) unless the lvm2 tools and root are there.
func requireLVMTools(t testing.TB) {
	t.Helper()
	testenv.Need(t, "pvcreate", "vgcreate", "vgcfgrestore", "vgcfgbackup", "pvck", "pvs", "lvs", "losetup")
	testenv.NeedRoot(t) // loop devices, pvcreate
}

// lvmEnv is a private lvm configuration directory, optionally bound to one
// loop device: lvm commands see that device and nothing else, keep no
// backups, hints or devices file, and never talk to udev.
type lvmEnv struct {
	t      testing.TB
	sysDir string
	img    string // backing file of the loop device
	dev    string // /dev/loopN, or "" for file-only use
}

func newEnv(t testing.TB, dev string) *lvmEnv {
	t.Helper()
	return &lvmEnv{t: t, sysDir: testenv.LVMSystemDir(t, dev), dev: dev}
}

// newLoopPV creates a sparse file of size bytes, attaches it to a loop
// device (detached at test end) and runs pvcreate with args on it.
func newLoopPV(t testing.TB, size int64, pvcreateArgs ...string) *lvmEnv {
	t.Helper()
	requireLVMTools(t)
	img := testenv.SparseFile(t, t.TempDir(), "pv.img", size)
	dev, _ := testenv.AttachLoop(t, img)
	e := newEnv(t, dev)
	e.img = img
	e.must(append([]string{"pvcreate", "-y"}, append(pvcreateArgs, dev)...)...)
	return e
}

// run runs an lvm command in the private configuration.
func (e *lvmEnv) run(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "LVM_SYSTEM_DIR="+e.sysDir, "LVM_SUPPRESS_FD_WARNINGS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func (e *lvmEnv) must(args ...string) string {
	e.t.Helper()
	out, err := e.run(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// pvckHeaders runs `pvck --dump headers` on target and returns its
// "name value" lines as a map (e.g. "mda_header_1.raw_locn[0].offset" ->
// "512") plus the full output.
func (e *lvmEnv) pvckHeaders(target string) (map[string]string, string) {
	e.t.Helper()
	// pvck exits non-zero when it finds problems; the output is still wanted.
	cmd := exec.Command("pvck", "--dump", "headers", target)
	cmd.Env = append(os.Environ(), "LVM_SYSTEM_DIR="+e.sysDir, "LVM_SUPPRESS_FD_WARNINGS=1")
	out, _ := cmd.CombinedOutput()
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && !strings.Contains(f[0], " ") {
			if _, dup := m[f[0]]; !dup {
				m[f[0]] = f[1]
			}
		}
	}
	return m, string(out)
}

// restoreWithLVs inserts lvText (a logical_volumes section) into the VG's
// current backup text and restores it with vgcfgrestore.
func (e *lvmEnv) restoreWithLVs(vg, lvText string) {
	e.t.Helper()
	testenv.VGRestore(e.t, e.sysDir, vg, testenv.AddToVG(e.t, testenv.VGBackup(e.t, e.sysDir, vg), lvText))
}

// fields runs an lvm reporting command with machine-friendly options and
// returns its rows split on ';'.
func (e *lvmEnv) fields(args ...string) [][]string {
	e.t.Helper()
	args = append(args, "--noheadings", "--separator", ";", "--units", "b", "--nosuffix")
	out := e.must(args...)
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		rows = append(rows, strings.Split(line, ";"))
	}
	return rows
}

func atoi(t testing.TB, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return v
}

// lvSegment builds a linear segment section for restore texts.
func lvSegment(name string, start, count int64, pv string, pe int64) string {
	return fmt.Sprintf(`
			%s {
				start_extent = %d
				extent_count = %d
				type = "striped"
				stripe_count = 1
				stripes = ["%s", %d]
			}`, name, start, count, pv, pe)
}

// lvSection builds an LV section from segment sections.
func lvSection(name, id string, segs ...string) string {
	return fmt.Sprintf(`
		%s {
			id = "%s"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = %d
%s
		}`, name, id, len(segs), strings.Join(segs, "\n"))
}
