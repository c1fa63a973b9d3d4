package guest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// offADE are the arguments luksconv adds while a kept initramfs still holds ADE's hook and filter.
var offADE = Policy{AddArgs: []string{"rd.ade=0", "rd.lvm.conf=0"}, AddWhy: "initramfs still holds ADE's hook"}

const offArgs = "rd.ade=0 rd.lvm.conf=0"

func TestAddArgsCmdline(t *testing.T) {
	tests := []struct {
		name, in, want string
		removed        int
		pol            Policy
	}{
		{name: "ade args replaced", in: kopts8, want: base8 + " " + offArgs, removed: 3, pol: offADE},
		{name: "clean line gets them", in: base8, want: base8 + " " + offArgs, pol: offADE},
		{name: "already there", in: base8 + " " + offArgs, want: base8 + " " + offArgs, pol: offADE},
		{name: "one already there", in: "rd.lvm.conf=0 " + base8, want: "rd.lvm.conf=0 " + base8 + " rd.ade=0", pol: offADE},
		{name: "empty line", in: "", want: offArgs, pol: offADE},
		{name: "trailing blanks kept after", in: "ro  ", want: "ro " + offArgs + "  ", pol: offADE},
		{name: "duplicates and unusable entries ignored", in: "ro", want: "ro rd.ade=0",
			pol: Policy{AddArgs: []string{"rd.ade=0", "", "a b", `x="y"`, "$v", `a\b`, "rd.ade=0", "rd.debug", "rd.luks.ade.partuuid=" + p4}}},
		{name: "rd.ade=1 is not rd.ade=0", in: "ro rd.ade=1", want: "ro rd.ade=1 rd.ade=0", pol: Policy{AddArgs: []string{"rd.ade=0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, removed := tt.pol.FixCmdline(tt.in)
			if got != tt.want || len(removed) != tt.removed {
				t.Fatalf("got %q (removed %q), want %q (%d removed)", got, removed, tt.want, tt.removed)
			}
			if again, r := tt.pol.FixCmdline(got); again != got || r != nil {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
}

// TestAddArgsGrubenvOracle: adding to kernelopts grows the value into the block's '#' padding exactly
// as `grub-editenv set` does, and fails exactly when grub-editenv reports "environment block too small".
func TestAddArgsGrubenvOracle(t *testing.T) {
	editenv := lookTool(t, "grub-editenv", "grub2-editenv")
	dir := t.TempDir()
	saved := "saved_entry=" + mid8 + "-" + kver8
	// mk writes a grub-editenv block holding vars and a filler variable sized so that the block has
	// pad bytes of '#' padding left (pad < 0: no filler).
	mk := func(name string, pad int, vars ...string) string {
		f := filepath.Join(dir, name)
		testenv.Run(t, editenv, f, "create")
		testenv.Run(t, editenv, append([]string{f, "set"}, vars...)...)
		if pad >= 0 {
			b, _ := os.ReadFile(f)
			free := grubenvPadding(b)
			testenv.Run(t, editenv, f, "set", "filler="+strings.Repeat("x", free-pad-len("filler=\n")))
			if b, _ := os.ReadFile(f); grubenvPadding(b) != pad {
				t.Fatalf("%s: padding %d, want %d", name, grubenvPadding(b), pad)
			}
		}
		return f
	}
	growth := len(" " + offArgs) // kernelopts without ADE's arguments grows by this much
	for _, tt := range []struct {
		name     string
		pad      int
		vars     []string
		kopts    string // kernelopts as grub-editenv should set it
		wantFail bool
	}{
		{"rhel8 fixture: ADE args replaced", -1, []string{saved, "kernelopts=" + kopts8, "boot_success=0"}, base8 + " " + offArgs, false},
		{"clean kernelopts, roomy", -1, []string{"kernelopts=" + base8, saved}, base8 + " " + offArgs, false},
		{"clean kernelopts, exact fit", growth, []string{saved, "kernelopts=" + base8}, base8 + " " + offArgs, false},
		{"clean kernelopts, one byte short", growth - 1, []string{"kernelopts=" + base8, saved}, base8 + " " + offArgs, true},
		{"escaped value", -1, []string{`kernelopts=ro a\b rd.luks.ade.bootuuid=` + boot8 + ` rd.debug`, "after=1"}, `ro a\b ` + offArgs, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mk(strings.ReplaceAll(tt.name, " ", "_"), tt.pad, tt.vars...)
			in, _ := os.ReadFile(f)
			out, ch, err := offADE.FixGrubenv(in)
			ref := f + ".ref"
			if err := os.WriteFile(ref, in, 0o644); err != nil {
				t.Fatal(err)
			}
			_, refErr := testenv.RunErr(editenv, ref, "set", "kernelopts="+tt.kopts)
			if tt.wantFail {
				if err == nil || out != nil {
					t.Fatalf("FixGrubenv = %d bytes, %v; want an error", len(out), err)
				}
				if refErr == nil {
					t.Errorf("grub-editenv set fits where FixGrubenv refuses")
				}
				return
			}
			if refErr != nil {
				t.Fatalf("grub-editenv set: %v", refErr)
			}
			if err != nil || len(ch) != 1 {
				t.Fatalf("FixGrubenv: %v, %+v", err, ch)
			}
			refb, _ := os.ReadFile(ref)
			if len(out) != GrubenvSize || !bytes.Equal(out, refb) {
				t.Errorf("FixGrubenv (%d bytes) differs from grub-editenv set:\n got %q\nwant %q", len(out), out, refb)
			}
			if !strings.Contains(ch[0].Why, "add kernel arguments "+offArgs+" (initramfs still holds ADE's hook)") ||
				ch[0].After[0] != "kernelopts="+tt.kopts {
				t.Errorf("change %+v", ch[0])
			}
			fixed := f + ".fixed"
			if err := os.WriteFile(fixed, out, 0o644); err != nil {
				t.Fatal(err)
			}
			if list := testenv.Run(t, editenv, fixed, "list"); !strings.Contains(list, "\nkernelopts="+tt.kopts+"\n") &&
				!strings.HasPrefix(list, "kernelopts="+tt.kopts+"\n") {
				t.Errorf("grub-editenv list:\n%s", list)
			}
			if again, _, err := offADE.FixGrubenv(out); again != nil || err != nil {
				t.Errorf("second pass: %q, %v", again, err)
			}
		})
	}
	// A block without kernelopts (RHEL 9) gets none.
	f := mk("nokopts", -1, saved, "boot_success=0")
	in, _ := os.ReadFile(f)
	if out, ch, err := offADE.FixGrubenv(in); out != nil || ch != nil || err != nil {
		t.Errorf("block without kernelopts: %q, %+v, %v", out, ch, err)
	}
}

func TestAddArgsBLSEntry(t *testing.T) {
	const path = "/boot/loader/entries/x.conf"
	const kver9 = "5.14.0-362.8.1.el9_3.x86_64"
	head := "title RHEL 9\nversion " + kver9 + "\nlinux /vmlinuz-" + kver9 + "\ninitrd /initramfs-" + kver9 + ".img $tuned_initrd\n"
	tail := "grub_users $grub_users\ngrub_class kernel"
	base9 := "root=UUID=" + rootU9 + " ro console=ttyS0"
	tests := []struct {
		name, in, want string
		changes        int
	}{
		{"rhel9 ade args replaced", head + "options " + base9 + " " + ade8 + " $tuned_params\n" + tail,
			head + "options " + base9 + " $tuned_params " + offArgs + "\n" + tail, 1},
		{"clean rhel9 entry", head + "options " + base9 + "\n" + tail, head + "options " + base9 + " " + offArgs + "\n" + tail, 1},
		{"two options lines: last one gets them", head + "options " + base9 + "\noptions quiet " + ade8 + "\n" + tail,
			head + "options " + base9 + "\noptions quiet " + offArgs + "\n" + tail, 1},
		{"only-ADE last line becomes the added args", head + "options " + base9 + "\noptions " + ade8 + "\n" + tail,
			head + "options " + base9 + "\noptions " + offArgs + "\n" + tail, 1},
		{"one present on an earlier line", head + "options " + base9 + " rd.ade=0\noptions quiet\n" + tail,
			head + "options " + base9 + " rd.ade=0\noptions quiet rd.lvm.conf=0\n" + tail, 1},
		{"rhel8 $kernelopts entry left to grubenv", head + "options $kernelopts $tuned_params\n" + tail, "", 0},
		{"rhel8 ${kernelopts} with literal ade args", head + "options ${kernelopts} " + ade8 + "\n" + tail,
			head + "options ${kernelopts}\n" + tail, 1},
		{"no options line", head + tail, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ch := offADE.FixBLSEntry(path, []byte(tt.in))
			if tt.changes == 0 {
				if got != nil || ch != nil {
					t.Fatalf("changed:\n%s", got)
				}
				return
			}
			if string(got) != tt.want || len(ch) != tt.changes {
				t.Fatalf("got (%+v)\n%s\nwant\n%s", ch, got, tt.want)
			}
			if again, _ := offADE.FixBLSEntry(path, got); again != nil {
				t.Errorf("not idempotent:\n%s", again)
			}
		})
	}
}

func TestAddArgsGrubCfg(t *testing.T) {
	in := "menuentry 'RHEL 7' {\n\tlinux16 /vmlinuz-" + kver7 + " root=UUID=" + root7 + " ro " + cmdln7 + " " + ade7 + "\n}\n" +
		"menuentry 'rescue' {\n\tlinux16 /vmlinuz-0-rescue root=UUID=" + root7 + " ro\n}\n" +
		"menuentry 'bls' {\n\tlinux /vmlinuz $kernelopts\n}\n" +
		"if [ -z \"${kernelopts}\" ]; then\n  set kernelopts=root=/dev/sda2\nfi\nset default_kernelopts='ro " + ade8 + "' # c\n"
	want := "menuentry 'RHEL 7' {\n\tlinux16 /vmlinuz-" + kver7 + " root=UUID=" + root7 + " ro " + cmdln7 + " " + offArgs + "\n}\n" +
		"menuentry 'rescue' {\n\tlinux16 /vmlinuz-0-rescue root=UUID=" + root7 + " ro " + offArgs + "\n}\n" +
		"menuentry 'bls' {\n\tlinux /vmlinuz $kernelopts\n}\n" +
		"if [ -z \"${kernelopts}\" ]; then\n  set kernelopts=\"root=/dev/sda2 " + offArgs + "\"\nfi\nset default_kernelopts='ro " + offArgs + "' # c\n"
	got, ch := offADE.FixGrubCfg("/boot/grub2/grub.cfg", []byte(in))
	if string(got) != want || len(ch) != 4 {
		t.Fatalf("got (%d changes)\n%s\nwant\n%s", len(ch), got, want)
	}
	if !strings.HasPrefix(ch[0].Why, "remove ADE kernel arguments ") || !strings.Contains(ch[0].Why, "; add kernel arguments "+offArgs) ||
		ch[1].Why != "add kernel arguments "+offArgs+" (initramfs still holds ADE's hook)" {
		t.Errorf("whys: %q / %q", ch[0].Why, ch[1].Why)
	}
	if again, _ := offADE.FixGrubCfg("/boot/grub2/grub.cfg", got); again != nil {
		t.Errorf("not idempotent:\n%s", again)
	}
	// Without AddArgs nothing is added.
	if got, _ := FixGrubCfg("/boot/grub2/grub.cfg", []byte(want)); got != nil {
		t.Errorf("default policy changed a clean grub.cfg")
	}
}

func TestAddArgsDefaultGrub(t *testing.T) {
	bash := lookTool(t, "bash")
	tests := []struct{ name, in string }{
		{"rhel8 with ADE append", defaultGrub8 + adeAppend(ade8)},
		{"clean rhel7", defaultGrub7},
		{"unquoted value", "GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX=quiet\n"},
		{"last assignment wins", "GRUB_CMDLINE_LINUX=\"a\"\nGRUB_CMDLINE_LINUX=\"b " + ade7 + " \"\nGRUB_CMDLINE_LINUX+=\" c\"\n"},
		{"one present in _DEFAULT", "GRUB_CMDLINE_LINUX_DEFAULT=\"rd.ade=0\"\nGRUB_CMDLINE_LINUX='quiet'\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ch, err := offADE.FixDefaultGrub([]byte(tt.in), len(tt.in)+64)
			if err != nil || out == nil || len(ch) == 0 {
				t.Fatalf("FixDefaultGrub: %q, %+v, %v", out, ch, err)
			}
			before := sourceVars(t, bash, []byte(tt.in), "GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
			after := sourceVars(t, bash, out, "GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT")
			// grub2-mkconfig passes GRUB_CMDLINE_LINUX then GRUB_CMDLINE_LINUX_DEFAULT.
			got := strings.Fields(after[0] + " " + after[1])
			want := strings.Fields(Policy{DropDebug: true}.fixArgsOnly(before[0] + " " + before[1]))
			for _, a := range offADE.AddArgs {
				n := 0
				for _, g := range got {
					if g == a {
						n++
					}
				}
				if n != 1 {
					t.Errorf("sourced command line %q holds %s %d times", got, a, n)
				}
				if !strings.Contains(" "+strings.Join(want, " ")+" ", " "+a+" ") {
					want = append(want, a)
				}
			}
			if strings.Join(sortedCopy(got), " ") != strings.Join(sortedCopy(want), " ") {
				t.Errorf("sourced %q, want the arguments of %q", got, want)
			}
			if again, _, _ := offADE.FixDefaultGrub(out, len(out)); again != nil {
				t.Errorf("not idempotent:\n%s", again)
			}
		})
	}
	if out, _, err := offADE.FixDefaultGrub([]byte(defaultGrub7), len(defaultGrub7)+5); err == nil || out != nil {
		t.Errorf("no room: %q, %v; want an error", out, err)
	}
	if out, ch, _ := offADE.FixDefaultGrub([]byte("GRUB_TIMEOUT=1\n"), 100); out != nil || ch != nil {
		t.Errorf("file without GRUB_CMDLINE_LINUX changed: %q", out)
	}
}

// fixArgsOnly is FixCmdline without AddArgs, for the expected values.
func (p Policy) fixArgsOnly(s string) string { f, _, _ := p.fixArgs(s, false, false); return f }

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func TestAddArgsKernelCmdline(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"one line", base8 + " " + ade8 + "\n", base8 + " " + offArgs + "\n"},
		{"no newline", base8, base8 + " " + offArgs},
		{"last non-blank line", "root=/dev/sda2 rd.ade=0\nro\n\n", "root=/dev/sda2 rd.ade=0\nro rd.lvm.conf=0\n\n"},
	}
	for _, tt := range tests {
		got, ch := offADE.FixKernelCmdline([]byte(tt.in))
		if string(got) != tt.want || len(ch) != 1 {
			t.Errorf("%s: got %q (%+v), want %q", tt.name, got, ch, tt.want)
		}
		if again, _ := offADE.FixKernelCmdline(got); again != nil {
			t.Errorf("%s: not idempotent", tt.name)
		}
	}
	if got, _ := offADE.FixKernelCmdline([]byte("\n")); got != nil {
		t.Errorf("blank file changed: %q", got)
	}
}

// The added arguments are not ADE residue.
func TestAddArgsNotResidue(t *testing.T) {
	for file, b := range map[string]string{
		"/boot/grub2/grubenv":         string(grubenvBlock(GrubenvSize, "kernelopts="+base8+" "+offArgs)),
		"/boot/loader/entries/x.conf": "options " + base8 + " " + offArgs + "\n",
		"/boot/grub2/grub.cfg":        "\tlinux16 /vmlinuz ro " + offArgs + "\n",
	} {
		if fs := Scan(file, []byte(b)); fs != nil {
			t.Errorf("%s: %+v", file, fs)
		}
	}
}
