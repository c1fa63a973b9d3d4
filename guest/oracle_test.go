package guest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// Oracles: grub-editenv (grub-common) for grubenv, bash for the shell-syntax files (/etc/default/grub,
// dracut.conf, module-setup.sh), lvmconfig (lvm2) for lvm.conf and dracut (dracut-core) for the
// disabled module. Each test skips loudly when its tool is missing.

// lookTool returns the first of names that is installed, and skips the test, loudly, when none is.
func lookTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil { // testenv put /usr/sbin and /sbin on PATH
			return p
		}
	}
	testenv.Need(t, names[0])
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestGrubenvOracle builds grubenv blocks with grub-editenv, fixes them, and checks that the result
// is byte-identical to what grub-editenv writes when told to set the fixed kernelopts, that it is
// still 1024 bytes, and that `grub-editenv FILE list` lists the expected variables.
func TestGrubenvOracle(t *testing.T) {
	editenv := lookTool(t, "grub-editenv", "grub2-editenv")
	dir := t.TempDir()
	saved := "saved_entry=" + mid8 + "-" + kver8
	tests := []struct {
		name string
		vars []string // name=value, set in this order
		want []string // expected list after the fix
	}{
		{"rhel8 fixture order", []string{saved, "kernelopts=" + kopts8, "boot_success=0"},
			[]string{saved, "kernelopts=" + base8, "boot_success=0"}},
		{"kernelopts first", []string{"kernelopts=" + kopts8 + " root=/dev/mapper/osencrypt", saved},
			[]string{"kernelopts=" + base8, saved}},
		{"kernelopts last, legacy grubby editenv form", []string{saved, "boot_success=1", "kernelopts=" + base8 + " rd.luks.ade.partuuid=" + p4 + " rd.debug"},
			[]string{saved, "boot_success=1", "kernelopts=" + base8}},
		{"escaped backslash and newline", []string{"note=line1\nline2\\x", `kernelopts=ro a\b rd.luks.ade.bootuuid=` + boot8 + ` rd.debug`, "after=1"},
			[]string{"note=line1\nline2\\x", `kernelopts=ro a\b`, "after=1"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(dir, "grubenv"+string(rune('a'+i)))
			testenv.Run(t, editenv, f, "create")
			testenv.Run(t, editenv, append([]string{f, "set"}, tt.vars...)...)
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(in) != GrubenvSize {
				t.Fatalf("grub-editenv wrote %d bytes", len(in))
			}
			out, ch, err := FixGrubenv(in)
			if err != nil || out == nil || len(ch) != 1 {
				t.Fatalf("FixGrubenv: %v, %d changes", err, len(ch))
			}
			if len(out) != len(in) {
				t.Fatalf("size %d, want %d", len(out), len(in))
			}
			// Reference: grub-editenv editing the same block in place.
			ref := f + ".ref"
			if err := os.WriteFile(ref, in, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, v := range tt.want {
				if strings.HasPrefix(v, "kernelopts=") {
					testenv.Run(t, editenv, ref, "set", v)
				}
			}
			refb, _ := os.ReadFile(ref)
			if !bytes.Equal(out, refb) {
				t.Errorf("FixGrubenv differs from grub-editenv set:\n got %q\nwant %q", out, refb)
			}
			fixed := f + ".fixed"
			if err := os.WriteFile(fixed, out, 0o644); err != nil {
				t.Fatal(err)
			}
			list := testenv.Run(t, editenv, fixed, "list")
			if want := strings.Join(tt.want, "\n") + "\n"; list != want {
				t.Errorf("grub-editenv list:\n%s\nwant\n%s", list, want)
			}
		})
	}
	// The fixture script's own grubenv() construction (printf + tr padding) parses the same way.
	f := filepath.Join(dir, "fixture-grubenv")
	in := grubenvBlock(1024, saved, "kernelopts="+kopts8, "boot_success=0")
	out, _, err := FixGrubenv(in)
	if err != nil || len(out) != 1024 {
		t.Fatalf("FixGrubenv: %v (%d bytes)", err, len(out))
	}
	if err := os.WriteFile(f, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := testenv.Run(t, editenv, f, "list"), saved+"\nkernelopts="+base8+"\nboot_success=0\n"; got != want {
		t.Errorf("grub-editenv list:\n%s\nwant\n%s", got, want)
	}
}

// sourceVars sources a shell file in bash and prints the named variables, one per line.
func sourceVars(t *testing.T, bash string, content []byte, vars ...string) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(f, content, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, bash, "-n", f)
	script := `. "$1" 2>/dev/null; shift; for v; do printf '%s\n' "${!v}"; done`
	out := testenv.Run(t, bash, append([]string{"-c", script, "bash", f}, vars...)...)
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// TestDefaultGrubBash sources /etc/default/grub before and after the fix, as grub2-mkconfig does, and
// checks that the resulting GRUB_CMDLINE_LINUX is the original one minus ADE's arguments.
func TestDefaultGrubBash(t *testing.T) {
	bash := lookTool(t, "bash")
	inputs := []string{
		defaultGrub8 + "GRUB_CMDLINE_LINUX+=\" " + ade8 + " \"\n",
		defaultGrub7 + adeAppend(ade7) + adeAppend(ade7),
		defaultGrub8 + adeAppend(ade8) + adeAppend("root=/dev/mapper/osencrypt"),
		strings.Replace(defaultGrub8, `scsi_mod.use_blk_mq=y"`, `scsi_mod.use_blk_mq=y `+ade8+` `+ade8+`"`, 1) + adeAppend(ade8),
		defaultGrub7 + "\nGRUB_CMDLINE_LINUX+=\" rd.debug\"\n",
		defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" quiet " + ade7 + " \"\n",
		strings.TrimSuffix(defaultGrub8, "\n") + adeAppend(ade8),
		"GRUB_CMDLINE_LINUX_DEFAULT='quiet " + ade7 + "' # x\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX_DEFAULT x\"\n",
	}
	for i, in := range inputs {
		out, _, err := FixDefaultGrub([]byte(in), len(in)+1)
		if err != nil || out == nil {
			t.Fatalf("input %d: %v", i, err)
		}
		before := sourceVars(t, bash, []byte(in), "GRUB_CMDLINE_LINUX", "GRUB_TIMEOUT")
		after := sourceVars(t, bash, out, "GRUB_CMDLINE_LINUX", "GRUB_TIMEOUT")
		want, _ := Policy{DropDebug: true}.FixCmdline(before[0])
		if got := strings.Join(strings.Fields(after[0]), " "); got != want || after[1] != before[1] {
			t.Errorf("input %d: sourced GRUB_CMDLINE_LINUX = %q, want %q", i, got, want)
		}
		if !bytes.HasSuffix(out, []byte("\n")) {
			t.Errorf("input %d: no final newline", i)
		}
	}
}

// TestDracutConfBash sources the fixed dracut configuration as dracut does and checks that ADE's
// drivers and modules are no longer requested while the user's settings stay.
func TestDracutConfBash(t *testing.T) {
	bash := lookTool(t, "bash")
	for _, tt := range []struct{ path, in string }{
		{"/etc/dracut.conf.d/ade.conf", "\nadd_drivers+=\" dm_crypt \"\n\nadd_dracutmodules+=\" crypt lvm \"\n"},
		{"/etc/dracut.conf.d/ade.conf", "\nadd_fstab+=\" /lib/dracut/modules.d/91adeOnline/ade_fstab_line \"\n\nadd_drivers+=\" dm_crypt \"\n\nadd_dracutmodules+=\" crypt\"\n"},
		{"/etc/dracut.conf", "hostonly=\"yes\"\nadd_drivers+=\" fuse vfat nls_cp437 nls_iso8859-1\"\nadd_dracutmodules+=\" crypt\"\n"},
	} {
		for _, max := range []int{4096, 0} {
			out, _ := FixDracutConf(tt.path, []byte(tt.in), max)
			before := sourceVars(t, bash, []byte(tt.in), "add_drivers", "add_dracutmodules", "add_fstab", "hostonly")
			after := sourceVars(t, bash, out, "add_drivers", "add_dracutmodules", "add_fstab", "hostonly")
			if strings.TrimSpace(before[0]+before[1]) == "" {
				t.Fatalf("%s: the original requests nothing: %q", tt.path, before)
			}
			if strings.TrimSpace(after[0]+after[1]+after[2]) != "" || after[3] != before[3] {
				t.Errorf("%s (max %d): after the fix dracut sees %q", tt.path, max, after)
			}
		}
	}
}

// TestLVMConfOracle asks lvmconfig which devices/filter it reads from lvm.conf before and after.
func TestLVMConfOracle(t *testing.T) {
	lvmconfig := lookTool(t, "lvmconfig")
	env := []string{"LVM_SUPPRESS_FD_WARNINGS=1"}
	query := func(content []byte, key string) (string, bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(lvmconfig, key)
		cmd.Env = append(os.Environ(), append(env, "LVM_SYSTEM_DIR="+dir)...)
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err == nil
	}
	filter := `devices { filter = ["a|osencrypt|", "r|` + p4 + `|"] }`
	userFilter := "devices {\n\tfilter = [ \"a|/dev/sd.*|\", \"r|.*|\" ]\n}\n"
	for _, tt := range []struct {
		in, wantFilter string // "" = no filter configured
		key            string // the setting holding ADE's pattern; "" = devices/filter
	}{
		{in: lvmConf8 + "\n" + filter + "\n"},
		{in: userFilter + "\n" + filter + "\n", wantFilter: `filter=["a|/dev/sd.*|","r|.*|"]`},
		// The wider forms FixLVMConf also removes; the file must still parse and keep the rest.
		{in: "devices {\n\tdir = \"/dev\"\n\tfilter = [ \"a|osencrypt|\", # the mapper\n\t\t\"r|" + p4 + "|\" ]\n}\n"},
		{in: "devices { filter = [\"a|osencrypt|\", \"r|.*|\"]\n\tdir = \"/dev\"\n}\n"},
		{in: "devices {\n\tdir = \"/dev\"\n\tglobal_filter = [ \"a|/dev/mapper/osencrypt|\", \"r|.*|\" ] }\n", key: "devices/global_filter"},
	} {
		key := tt.key
		if key == "" {
			key = "devices/filter"
		}
		got, ok := query([]byte(tt.in), key)
		if !ok || !strings.Contains(got, "osencrypt|") {
			t.Fatalf("lvmconfig does not see ADE's filter in the original %q: %q", tt.in, got)
		}
		out, _ := FixLVMConf([]byte(tt.in))
		if out == nil {
			t.Fatalf("%q not changed", tt.in)
		}
		for _, k := range []string{"devices/filter", "devices/global_filter"} {
			got, ok = query(out, k)
			if want := tt.wantFilter; k == "devices/filter" && want != "" {
				if got != want {
					t.Errorf("after the fix lvmconfig %s = %q (found %v), want %q", k, got, ok, want)
				}
			} else if ok {
				t.Errorf("after the fix of %q lvmconfig still sees %s = %q", tt.in, k, got)
			}
		}
		if got, ok := query(out, "devices/dir"); !ok && tt.wantFilter == "" || ok && got != `dir="/dev"` {
			t.Errorf("devices/dir lost: %q", got)
		}
		if !strings.Contains(tt.in, "dir =") {
			continue
		}
		// lvmconfig refuses a file that does not parse; devices/dir was there before, so it must be after.
		if got, ok := query(out, "devices/dir"); !ok || got != `dir="/dev"` {
			t.Errorf("after the fix of %q: devices/dir = %q (found %v)\n%s", tt.in, got, ok, out)
		}
	}
}

// TestDisabledModuleDracut runs the real dracut over a module directory holding an ADE-like
// 91adeOnline (no check(): always included) and then its disabled module-setup.sh.
func TestDisabledModuleDracut(t *testing.T) {
	bash := lookTool(t, "bash")
	for _, s := range disabledModuleScripts {
		f := filepath.Join(t.TempDir(), "module-setup.sh")
		if err := os.WriteFile(f, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, bash, "-n", f)
		if got := testenv.Run(t, bash, "-c", `. "$1"; check; echo $?`, "bash", f); got != "255\n" {
			t.Errorf("check() returned %q", got)
		}
	}
	dracut := lookTool(t, "dracut")
	const sysBase = "/usr/lib/dracut"
	if !fileExists(filepath.Join(sysBase, "dracut-functions.sh")) {
		t.Skipf("SKIPPING ORACLE TEST: %s/dracut-functions.sh missing (apt-get install dracut-core)", sysBase)
	}
	// A private dracutbasedir: dracut's own scripts, and a modules.d with just the ADE module.
	base := filepath.Join(t.TempDir(), "dracut")
	ents, err := os.ReadDir(sysBase)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(base, "modules.d", "91adeOnline"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "modules.d" && !e.IsDir() {
			if err := os.Symlink(filepath.Join(sysBase, e.Name()), filepath.Join(base, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	mod := filepath.Join(base, "modules.d", "91adeOnline")
	adeLike := "#!/bin/bash\ndepends() { return 0; }\ninstall() { inst_hook cmdline 30 \"$moddir/parse-crypt-ade.sh\"; }\n"
	if err := os.WriteFile(filepath.Join(mod, "parse-crypt-ade.sh"), []byte("#!/bin/sh\n:\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The fixed ade.conf sits in the conf dir: commented out, it must not ask for anything.
	confdir := t.TempDir()
	adeConf, _ := FixDracutConf("/etc/dracut.conf.d/ade.conf", []byte("\nadd_drivers+=\" dm_crypt \"\n\nadd_dracutmodules+=\" crypt lvm \"\n"), 4096)
	if err := os.WriteFile(filepath.Join(confdir, "ade.conf"), adeConf, 0o644); err != nil {
		t.Fatal(err)
	}
	included := func(setup string) bool {
		t.Helper()
		if err := os.WriteFile(filepath.Join(mod, "module-setup.sh"), []byte(setup), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		// env(1) hands dracut its private dracutbasedir.
		out := testenv.Run(t, "env", "dracutbasedir="+base, dracut, "--no-kernel", "--no-compress", "--no-early-microcode",
			"--no-hostonly", "--conf", "/dev/null", "--confdir", confdir, "--tmpdir", tmp, "-f", filepath.Join(tmp, "initrd.img"))
		return strings.Contains(out, "Including module: adeOnline")
	}
	if !included(adeLike) {
		t.Fatal("dracut left out the ADE-like module: the oracle cannot tell")
	}
	got, _, err := DisableDracutModule([]byte(adeLike), 4096)
	if err != nil {
		t.Fatal(err)
	}
	// Every script DisableDracutModule may choose keeps the module out.
	for _, setup := range append([]string{string(got)}, disabledModuleScripts...) {
		if included(setup) {
			t.Errorf("dracut still includes the module with\n%s", setup)
		}
	}
}

// TestLVMConfDevicesFileOracle asks lvmconfig for devices/use_devicesfile after Policy.FixLVMConf
// with DisableLVMDevicesFile: 0 whether lvm.conf had no setting, an enabling one in the file's
// devices section, only a comment, or ADE's filter appended as its own section; other settings stay.
func TestLVMConfDevicesFileOracle(t *testing.T) {
	lvmconfig := lookTool(t, "lvmconfig")
	query := func(content []byte, key string) (string, bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "lvm.conf"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(lvmconfig, key)
		cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1", "LVM_SYSTEM_DIR="+dir)
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err == nil
	}
	filter := `devices { filter = ["a|osencrypt|", "r|` + p4 + `|"] }`
	pol := Policy{DisableLVMDevicesFile: true}
	for _, in := range []string{
		"devices {\n\tdir = \"/dev\"\n}\n",
		"devices {\n\tdir = \"/dev\"\n\tuse_devicesfile = 1\n}\n",
		"devices {\n\tdir = \"/dev\"\n\t# use_devicesfile = 1\n}\n" + filter + "\n",
		"devices {\n\tdir = \"/dev\"\n}",
		lvmConf8 + "\n" + filter + "\n",
	} {
		out, changes := pol.FixLVMConf([]byte(in))
		if out == nil || len(changes) == 0 {
			t.Fatalf("%q not changed", in)
		}
		if got, ok := query(out, "devices/use_devicesfile"); !ok || got != "use_devicesfile=0" {
			t.Errorf("after the fix of %q lvmconfig devices/use_devicesfile = %q (found %v)\n%s", in, got, ok, out)
		}
		if got, ok := query(out, "devices/filter"); ok {
			t.Errorf("after the fix of %q lvmconfig still sees a filter %q", in, got)
		}
		if strings.Contains(in, "dir =") {
			if got, ok := query(out, "devices/dir"); !ok || got != `dir="/dev"` {
				t.Errorf("after the fix of %q: devices/dir = %q (found %v)\n%s", in, got, ok, out)
			}
		}
		// A second pass changes nothing.
		if again, _ := pol.FixLVMConf(out); again != nil {
			t.Errorf("a second pass over %q changes it again:\n%s", in, again)
		}
	}
	// Without the policy nothing but ADE's filter is touched.
	if out, _ := (Policy{}).FixLVMConf([]byte("devices {\n\tuse_devicesfile = 1\n}\n")); out != nil {
		t.Errorf("changed without DisableLVMDevicesFile:\n%s", out)
	}
}
