package guest

import (
	"reflect"
	"strings"
	"testing"
)

// The deprecated aliases ADE's parse-crypt-ade.sh reads (`getarg rd.luks.ade.partuuid -d
// rd_LUKS_PARTUUID`, ade-internals §10.5) are ADE's arguments everywhere rd.luks.ade.* is.
const (
	aliasArgs = "rd_LUKS_PARTUUID=" + p4 + " rd_LUKS_BOOTUUID=" + boot8 + " rd.debug"
	mixedArgs = "rd.luks.ade.partuuid=" + p4 + " rd_LUKS_BOOTUUID=" + boot8 + " rd.debug"
)

func TestAliasFixCmdline(t *testing.T) {
	tests := []struct {
		name, in, want string
		removed        []string
	}{
		{"aliases only", base8 + " " + aliasArgs, base8,
			[]string{"rd_LUKS_PARTUUID=" + p4, "rd_LUKS_BOOTUUID=" + boot8, "rd.debug"}},
		{"mixed with rd.luks.ade", base8 + " " + mixedArgs, base8,
			[]string{"rd.luks.ade.partuuid=" + p4, "rd_LUKS_BOOTUUID=" + boot8, "rd.debug"}},
		{"partuuid alias alone takes rd.debug", "ro rd.debug rd_LUKS_PARTUUID=" + p4, "ro",
			[]string{"rd.debug", "rd_LUKS_PARTUUID=" + p4}},
		{"bare alias", "ro rd_LUKS_BOOTUUID", "ro", []string{"rd_LUKS_BOOTUUID"}},
		{"similar names kept", "rd_LUKS_PARTUUIDX=1 rd_LUKS_UUID=luks-" + luksU + " rd_luks_partuuid=x rd_NO_ADE",
			"rd_LUKS_PARTUUIDX=1 rd_LUKS_UUID=luks-" + luksU + " rd_luks_partuuid=x rd_NO_ADE", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, removed := FixCmdline(tt.in)
			if got != tt.want || !reflect.DeepEqual(removed, tt.removed) {
				t.Fatalf("FixCmdline(%q) = %q, %q; want %q, %q", tt.in, got, removed, tt.want, tt.removed)
			}
		})
	}
	// An alias is never added back.
	if got, _ := (Policy{AddArgs: []string{"rd_LUKS_PARTUUID=" + p4, "rd.ade=0"}}).FixCmdline("ro"); got != "ro rd.ade=0" {
		t.Errorf("AddArgs with an alias: %q", got)
	}
}

func TestAliasFixGrubenv(t *testing.T) {
	in := grubenvBlock(GrubenvSize, "saved_entry=x", "kernelopts="+base8+" "+aliasArgs, "boot_success=0")
	want := grubenvBlock(GrubenvSize, "saved_entry=x", "kernelopts="+base8, "boot_success=0")
	got, ch, err := FixGrubenv(in)
	if err != nil || string(got) != string(want) || len(ch) != 1 {
		t.Fatalf("got %q, %+v, %v", got, ch, err)
	}
	if again, _, _ := FixGrubenv(got); again != nil {
		t.Error("not idempotent")
	}
}

func TestAliasFixBLSEntry(t *testing.T) {
	const path = "/boot/loader/entries/x.conf"
	head := "title RHEL\nversion 5.14.0\nlinux /vmlinuz-5.14.0\n"
	for _, args := range []string{aliasArgs, mixedArgs} {
		in := head + "options root=UUID=" + rootU9 + " ro " + args + " $tuned_params\n"
		want := head + "options root=UUID=" + rootU9 + " ro $tuned_params\n"
		got, ch := FixBLSEntry(path, []byte(in))
		if string(got) != want || len(ch) != 1 {
			t.Errorf("got %q (%+v), want %q", got, ch, want)
		}
	}
	// An options line of aliases only goes.
	got, _ := FixBLSEntry(path, []byte(head+"options ro\noptions "+aliasArgs+"\n"))
	if string(got) != head+"options ro\n" {
		t.Errorf("aliases-only options line: %q", got)
	}
}

func TestAliasFixGrubCfg(t *testing.T) {
	in := "menuentry 'RHEL 7' {\n\tlinux16 /vmlinuz-" + kver7 + " root=UUID=" + root7 + " ro " + cmdln7 + " " + aliasArgs + "\n}\n" +
		"set kernelopts=\"" + base8 + " " + mixedArgs + "\"\n"
	want := "menuentry 'RHEL 7' {\n\tlinux16 /vmlinuz-" + kver7 + " root=UUID=" + root7 + " ro " + cmdln7 + "\n}\n" +
		"set kernelopts=\"" + base8 + "\"\n"
	got, ch := FixGrubCfg("/boot/grub2/grub.cfg", []byte(in))
	if string(got) != want || len(ch) != 2 {
		t.Fatalf("got\n%s\n(%+v), want\n%s", got, ch, want)
	}
}

func TestAliasFixDefaultGrub(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"appended aliases line", defaultGrub8 + adeAppend(aliasArgs), defaultGrub8},
		{"aliases in GRUB_CMDLINE_LINUX", strings.Replace(defaultGrub7, `net.ifnames=0"`, `net.ifnames=0 `+mixedArgs+`"`, 1), defaultGrub7},
		{"rd.debug-only append with an alias", defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" rd.debug rd_LUKS_PARTUUID=" + p2 + "\"\n", defaultGrub7},
	} {
		got, ch, err := FixDefaultGrub([]byte(tt.in), len(tt.in))
		if err != nil || string(got) != tt.want || len(ch) != 1 {
			t.Errorf("%s: got %q (%+v, %v), want %q", tt.name, got, ch, err, tt.want)
		}
	}
}

func TestAliasFixKernelCmdline(t *testing.T) {
	in := "root=/dev/sda2 rd.debug\nro " + aliasArgs + "\n"
	got, ch := FixKernelCmdline([]byte(in))
	if string(got) != "root=/dev/sda2\nro\n" || len(ch) != 2 || ch[0].Path != PathKernelCmdline {
		t.Fatalf("got %q (%+v)", got, ch)
	}
}

func TestFixDracutCmdline(t *testing.T) {
	const path = "etc/cmdline.d/01-default.conf"
	tests := []struct {
		name, in, want string
		p              Policy
	}{
		{"one line", "rd.lvm.lv=rootvg/rootlv " + ade8 + "\n", "rd.lvm.lv=rootvg/rootlv\n", Policy{}},
		{"aliases, rd.debug on another line, no newline", "rd.debug\nrd_LUKS_PARTUUID=" + p4, "\n", Policy{}},
		{"osencrypt root", " root=/dev/mapper/osencrypt rd.luks.uuid=osencrypt\n", "\n", Policy{}},
		{"AddArgs are not added", "ro rd.luks.ade.partuuid=x\n", "ro\n", Policy{AddArgs: []string{"rd.ade=0"}}},
		{"DropDebug", "rd.debug rd.shell\n", "rd.shell\n", Policy{DropDebug: true}},
	}
	for _, tt := range tests {
		got, ch := tt.p.FixDracutCmdline(path, []byte(tt.in))
		if string(got) != tt.want || got == nil || len(ch) == 0 || ch[0].Path != path || len(got) >= len(tt.in) {
			t.Errorf("%s: got %q (%+v), want %q", tt.name, got, ch, tt.want)
		}
		if again, _ := tt.p.FixDracutCmdline(path, got); again != nil {
			t.Errorf("%s: not idempotent", tt.name)
		}
	}
	for _, clean := range []string{"", "rd.lvm.lv=rootvg/rootlv rd.debug\n", "rd.luks.uuid=luks-" + luksU + "\n"} {
		if got, ch := (Policy{AddArgs: []string{"rd.ade=0"}}).FixDracutCmdline(path, []byte(clean)); got != nil || ch != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
}

func TestAliasScan(t *testing.T) {
	for _, tt := range []struct {
		path, in string
		line     int
	}{
		{"/boot/grub2/grubenv", string(grubenvBlock(GrubenvSize, "kernelopts="+base8+" "+aliasArgs)), 2},
		{"/etc/default/grub", defaultGrub8 + "GRUB_CMDLINE_LINUX+=\"rd_LUKS_BOOTUUID=" + boot8 + "\"\n", 9},
		{"/boot/grub2/grub.cfg", "\tlinux16 /vmlinuz ro rd_LUKS_PARTUUID=" + p2 + "\n", 1},
		{"/boot/loader/entries/x.conf", "options ro rd_LUKS_PARTUUID\n", 1},
		{"/etc/kernel/cmdline", "set kernelopts='ro rd_LUKS_BOOTUUID=x'\n", 1},
	} {
		fs := Scan(tt.path, []byte(tt.in))
		if len(fs) != 1 || fs[0].Line != tt.line || !strings.Contains(fs[0].What, "rd_LUKS_") || !strings.Contains(fs[0].What, "deprecated alias") {
			t.Errorf("%s: %+v", tt.path, fs)
		}
	}
	// dracut's own 90crypt names the alias in its scripts; that is not a kernel argument.
	if fs := Scan("/etc/x", []byte("PARTUUID=$(getargs rd.luks.partuuid -d rd_LUKS_PARTUUID)\n")); fs != nil {
		t.Errorf("script line: %+v", fs)
	}
}
