package guest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
)

// Values from testdata/mkfixtures.sh (the rhel8-lvm and rhel7-raw fixtures), so the strings below are
// the ones the fixture disks carry; TestFixtureScriptStrings checks the script still writes them.
const (
	p4      = "5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e14"
	boot8   = "0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b01"
	ade8    = "rd.luks.ade.partuuid=" + p4 + " rd.luks.ade.bootuuid=" + boot8 + " rd.debug"
	base8   = "root=/dev/mapper/rootvg-rootlv ro crashkernel=auto rd.lvm.lv=rootvg/rootlv console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 scsi_mod.use_blk_mq=y"
	kopts8  = base8 + " " + ade8
	mid8    = "4c1a2b3d5e6f708192a3b4c5d6e7f801"
	kver8   = "4.18.0-477.10.1.el8_8.x86_64"
	p2      = "5e1f2a3b-0007-4c5d-8e9f-0a1b2c3d4e12"
	boot7   = "7a2c1e90-7d31-4f4a-8b66-4e2f3a5d6c01"
	root7   = "7a2c1e90-7d31-4f4a-8b66-4e2f3a5d6c02"
	ade7    = "rd.luks.ade.partuuid=" + p2 + " rd.luks.ade.bootuuid=" + boot7 + " rd.debug"
	kver7   = "3.10.0-1160.el7.x86_64"
	cmdln7  = "console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0"
	luksU   = "3f1c9a52-6b0e-4d7a-9a61-0c2e5d8f4b10"
	rootU9  = "c8d1e2f3-0009-4a5b-8c6d-7e8f9a0b1c2d"
	bekLine = `LABEL=BEK\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0`
)

// grubenvBlock builds a grubenv the way grub-editenv (and mkfixtures.sh's grubenv()) does: the
// signature, name=value lines, '#' padding to size.
func grubenvBlock(size int, lines ...string) []byte {
	b := []byte(grubenvSignature + strings.Join(lines, "\n"))
	if len(lines) > 0 {
		b = append(b, '\n')
	}
	for len(b) < size {
		b = append(b, '#')
	}
	return b
}

func TestFixCmdline(t *testing.T) {
	tests := []struct {
		name, in, want string
		removed        []string
		policy         Policy
	}{
		{name: "rhel8 fixture kernelopts", in: kopts8, want: base8,
			removed: []string{"rd.luks.ade.partuuid=" + p4, "rd.luks.ade.bootuuid=" + boot8, "rd.debug"}},
		{name: "rhel7 doubled args", in: "root=UUID=" + root7 + " ro " + cmdln7 + " " + ade7 + " " + ade7,
			want: "root=UUID=" + root7 + " ro " + cmdln7,
			removed: []string{"rd.luks.ade.partuuid=" + p2, "rd.luks.ade.bootuuid=" + boot7, "rd.debug",
				"rd.luks.ade.partuuid=" + p2, "rd.luks.ade.bootuuid=" + boot7, "rd.debug"}},
		{name: "raw root=/dev/mapper/osencrypt appended by a second add_kernelopts",
			in:   "root=UUID=" + rootU9 + " ro console=ttyS0 " + ade8 + " root=/dev/mapper/osencrypt",
			want: "root=UUID=" + rootU9 + " ro console=ttyS0",
			removed: []string{"rd.luks.ade.partuuid=" + p4, "rd.luks.ade.bootuuid=" + boot8, "rd.debug",
				"root=/dev/mapper/osencrypt"}},
		{name: "rhel7 path C", in: "root=/dev/sda2 ro rd.debug rd.luks.uuid=osencrypt",
			want: "root=/dev/sda2 ro", removed: []string{"rd.debug", "rd.luks.uuid=osencrypt"}},
		{name: "early rhel8 systemd detached-header args",
			in: "root=/dev/mapper/rootvg-rootlv ro rd.luks.name=" + luksU + "=osencrypt rd.luks.options=" + luksU +
				"=header=/luks/osluksheader rd.luks.key=" + luksU + "=/LinuxPassPhraseFileName:LABEL=BEK rd.luks.data=" + luksU +
				"=PARTUUID=" + p4 + " rd.luks.hdr=" + luksU + "=UUID=" + boot8 + " rd.debug",
			want: "root=/dev/mapper/rootvg-rootlv ro",
			removed: []string{"rd.luks.name=" + luksU + "=osencrypt", "rd.luks.options=" + luksU + "=header=/luks/osluksheader",
				"rd.luks.key=<redacted>", "rd.luks.data=" + luksU + "=PARTUUID=" + p4, "rd.luks.hdr=" + luksU + "=UUID=" + boot8, "rd.debug"}},
		{name: "other luks args kept", in: "rd.luks.uuid=luks-" + luksU + " rd.luks.name=" + luksU + "=luks-x rd.luks.ade.partuuid=" + p4,
			want: "rd.luks.uuid=luks-" + luksU + " rd.luks.name=" + luksU + "=luks-x", removed: []string{"rd.luks.ade.partuuid=" + p4}},
		{name: "rd.debug alone is the user's", in: "root=/dev/sda2 ro rd.debug", want: "root=/dev/sda2 ro rd.debug"},
		{name: "rd.debug alone with DropDebug", in: "root=/dev/sda2  ro rd.debug", want: "root=/dev/sda2 ro",
			removed: []string{"rd.debug"}, policy: Policy{DropDebug: true}},
		{name: "spacing normalised", in: "  a   rd.luks.ade.partuuid=X \t b  ", want: "a b", removed: []string{"rd.luks.ade.partuuid=X"}},
		{name: "untouched keeps spacing", in: "  a   b ", want: "  a   b "},
		{name: "only ade", in: " " + ade8 + " ", want: "",
			removed: []string{"rd.luks.ade.partuuid=" + p4, "rd.luks.ade.bootuuid=" + boot8, "rd.debug"}},
		{name: "empty", in: "", want: ""},
		{name: "bls variables untouched", in: "$kernelopts $tuned_params", want: "$kernelopts $tuned_params"},
		{name: "similar names kept", in: "rd.luks.adex=1 root=/dev/mapper/osencrypt2 rd.luks.uuid=osencrypt-locked", want: "rd.luks.adex=1 root=/dev/mapper/osencrypt2 rd.luks.uuid=osencrypt-locked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, removed := tt.policy.FixCmdline(tt.in)
			if got != tt.want || !reflect.DeepEqual(removed, tt.removed) {
				t.Fatalf("FixCmdline(%q) =\n %q, %q\nwant\n %q, %q", tt.in, got, removed, tt.want, tt.removed)
			}
			if again, r := tt.policy.FixCmdline(got); again != got || r != nil {
				t.Errorf("not idempotent: %q -> %q (%q)", got, again, r)
			}
		})
	}
}

func TestFixGrubenv(t *testing.T) {
	saved := "saved_entry=" + mid8 + "-" + kver8
	t.Run("rhel8 fixture", func(t *testing.T) {
		in := grubenvBlock(1024, saved, "kernelopts="+kopts8, "boot_success=0")
		want := grubenvBlock(1024, saved, "kernelopts="+base8, "boot_success=0")
		got, ch, err := FixGrubenv(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("FixGrubenv = %q, %v\nwant %q", got, err, want)
		}
		if len(ch) != 1 || ch[0].Before[0] != "kernelopts="+kopts8 || ch[0].After[0] != "kernelopts="+base8 || ch[0].Path != "" {
			t.Errorf("changes = %+v", ch)
		}
		if again, ch, err := FixGrubenv(got); again != nil || ch != nil || err != nil {
			t.Errorf("second pass = %q, %v, %v", again, ch, err)
		}
	})
	t.Run("kernelopts last, other size", func(t *testing.T) {
		in := grubenvBlock(4096, saved, "kernelopts="+kopts8)
		got, _, err := FixGrubenv(in)
		if err != nil || !bytes.Equal(got, grubenvBlock(4096, saved, "kernelopts="+base8)) {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("escaped value", func(t *testing.T) {
		in := grubenvBlock(1024, `kernelopts=ro acpi_osi=\\x rd.luks.ade.bootuuid=`+boot8+` rd.debug`, `next=a\\b`)
		got, ch, err := FixGrubenv(in)
		if err != nil || !bytes.Equal(got, grubenvBlock(1024, `kernelopts=ro acpi_osi=\\x`, `next=a\\b`)) {
			t.Fatalf("got %q, %v", got, err)
		}
		if ch[0].After[0] != `kernelopts=ro acpi_osi=\x` {
			t.Errorf("change shows the unescaped value: %q", ch[0].After)
		}
	})
	for name, in := range map[string][]byte{
		"no kernelopts (rhel7)": grubenvBlock(1024, "saved_entry=Red Hat Enterprise Linux Server ("+kver7+") 7.9 (Maipo)"),
		"clean kernelopts":      grubenvBlock(1024, saved, "kernelopts="+base8),
		"commented kernelopts":  grubenvBlock(1024, "#kernelopts="+kopts8),
		"empty block":           grubenvBlock(1024),
	} {
		t.Run(name, func(t *testing.T) {
			if got, ch, err := FixGrubenv(in); got != nil || ch != nil || err != nil {
				t.Errorf("got %q, %v, %v; want no change", got, ch, err)
			}
		})
	}
	for name, in := range map[string][]byte{
		"no signature":     []byte("kernelopts=" + kopts8 + "\n"),
		"empty":            nil,
		"signature broken": []byte("# GRUB Environment Blok\nkernelopts=" + kopts8 + "\n"),
		"crlf signature":   []byte("# GRUB Environment Block\r\nkernelopts=" + kopts8 + "\n"),
	} {
		t.Run(name, func(t *testing.T) {
			got, _, err := FixGrubenv(in)
			if !errors.Is(err, ErrNotGrubenv) || got != nil {
				t.Errorf("got %q, %v; want ErrNotGrubenv", got, err)
			}
		})
	}
	t.Run("unterminated value", func(t *testing.T) {
		in := []byte(grubenvSignature + "kernelopts=" + kopts8)
		if got, _, err := FixGrubenv(in); err == nil || got != nil || !strings.Contains(err.Error(), "offset 25") {
			t.Errorf("got %q, %v; want an error naming offset 25", got, err)
		}
	})
}

func TestFixBLSEntry(t *testing.T) {
	const path = "/boot/loader/entries/" + mid8 + "-" + kver8 + ".conf"
	rhel8 := "title Red Hat Enterprise Linux (" + kver8 + ") 8.8 (Ootpa)\nversion " + kver8 + "\nlinux /vmlinuz-" + kver8 +
		"\ninitrd /initramfs-" + kver8 + ".img $tuned_initrd\noptions $kernelopts $tuned_params\nid rhel-20230502120000-" + kver8 +
		"\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel\n"
	if got, ch := FixBLSEntry(path, []byte(rhel8)); got != nil || ch != nil {
		t.Errorf("rhel8 $kernelopts entry changed: %q", got)
	}
	const kver9 = "5.14.0-362.8.1.el9_3.x86_64"
	head := "title Red Hat Enterprise Linux (" + kver9 + ") 9.3 (Plow)\nversion " + kver9 + "\nlinux /vmlinuz-" + kver9 + "\ninitrd /initramfs-" + kver9 + ".img $tuned_initrd\n"
	tail := "grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel"
	base9 := "root=UUID=" + rootU9 + " ro console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
	tests := []struct{ name, in, want string }{
		{"rhel9 raw literal", head + "options " + base9 + " " + ade8 + " root=/dev/mapper/osencrypt $tuned_params\n" + tail,
			head + "options " + base9 + " $tuned_params\n" + tail},
		{"rhel9 lvm tab separator", head + "options\t" + base8 + " " + ade8 + "\n" + tail, head + "options\t" + base8 + "\n" + tail},
		{"second options line only ade", head + "options " + base9 + "\noptions " + ade8 + "\n" + tail, head + "options " + base9 + "\n" + tail},
		{"rhel8 entry with literal ade args appended by grubby", head + "options $kernelopts " + ade8 + "\n" + tail, head + "options $kernelopts\n" + tail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ch := FixBLSEntry(path, []byte(tt.in))
			if string(got) != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
			if len(ch) != 1 || ch[0].Path != path {
				t.Errorf("changes = %+v", ch)
			}
			if again, _ := FixBLSEntry(path, got); again != nil {
				t.Errorf("not idempotent")
			}
		})
	}
}

func TestFixGrubCfg(t *testing.T) {
	entry := func(args string) string {
		return "# fixture stand-in for a RHEL 7 grub2-mkconfig output\n" +
			"menuentry 'Red Hat Enterprise Linux Server (" + kver7 + ") 7.9 (Maipo)' --class red --class gnu-linux --class gnu --class os {\n" +
			"\tload_video\n\tinsmod xfs\n\tsearch --no-floppy --fs-uuid --set=root " + boot7 + "\n" +
			"\tlinux16 /vmlinuz-" + kver7 + " root=UUID=" + root7 + " ro " + args + "\n" +
			"\tinitrd16 /initramfs-" + kver7 + ".img\n}\n"
	}
	efi := func(args string) string {
		return "menuentry 'RHEL' {\n        linuxefi /vmlinuz-" + kver7 + " " + args + "\n        initrdefi /initramfs.img\n}\n" +
			"menuentry 'RHEL rescue' {\n        linux ($root)/vmlinuz-0-rescue root=UUID=" + root7 + " ro " + args + "\n}\n"
	}
	rhel8 := func(args string) string {
		return "### BEGIN /etc/grub.d/10_linux ###\ninsmod part_gpt\nif [ -z \"${kernelopts}\" ]; then\n  set kernelopts=\"" + args +
			"\"\nfi\nset default_kernelopts='" + args + "' # comment\ninsmod blscfg\nblscfg\n"
	}
	tests := []struct {
		name, in, want string
		changes        int
	}{
		{"rhel7 fixture linux16", entry(cmdln7 + " " + ade7 + " " + ade7), entry(cmdln7), 1},
		{"linuxefi and linux", efi(cmdln7 + " " + ade7), efi(cmdln7), 2},
		{"rhel8 set kernelopts", rhel8(kopts8 + " "), rhel8(base8), 2},
		{"raw osencrypt only arg", "\tlinux /vmlinuz root=/dev/mapper/osencrypt\n", "\tlinux /vmlinuz\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ch := FixGrubCfg("/boot/grub2/grub.cfg", []byte(tt.in))
			if string(got) != tt.want || len(ch) != tt.changes {
				t.Fatalf("got (%d changes)\n%s\nwant\n%s", len(ch), got, tt.want)
			}
			if again, _ := FixGrubCfg("/boot/grub2/grub.cfg", got); again != nil {
				t.Errorf("not idempotent")
			}
		})
	}
	for _, clean := range []string{
		"# fixture stand-in for /boot/grub2/grub.cfg\nset default=\"${saved_entry}\"\nload_env\nblscfg\n",
		entry(cmdln7 + " rd.debug"),
		"set kernelopts=\"root=/dev/sda2 rd.luks.ade.partuuid=x\n", // unclosed quote: left alone
	} {
		if got, ch := FixGrubCfg("/boot/efi/EFI/redhat/grub.cfg", []byte(clean)); got != nil || ch != nil {
			t.Errorf("clean grub.cfg changed: %q", got)
		}
	}
	// RHEL 7 path B left rd.debug alone; the caller that detected 91ade asks for it.
	got, _ := Policy{DropDebug: true}.FixGrubCfg("/boot/grub2/grub.cfg", []byte(entry(cmdln7+" rd.debug")))
	if string(got) != entry(cmdln7) {
		t.Errorf("DropDebug: got\n%s", got)
	}
}

// defaultGrub8 is the fixture's RHEL 8 /etc/default/grub before ADE.
const defaultGrub8 = `GRUB_TIMEOUT=10
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="crashkernel=auto rd.lvm.lv=rootvg/rootlv console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 scsi_mod.use_blk_mq=y"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
`

const defaultGrub7 = `GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0"
GRUB_DISABLE_RECOVERY="true"
`

// adeAppend is what AbstractPatching.add_args_to_default_grub appends.
func adeAppend(args string) string { return "\nGRUB_CMDLINE_LINUX+=\" " + args + " \"\n" }

func TestFixDefaultGrub(t *testing.T) {
	grubby := strings.Replace(defaultGrub8, `scsi_mod.use_blk_mq=y"`, `scsi_mod.use_blk_mq=y `+ade8+` `+ade8+`"`, 1)
	tests := []struct {
		name, in, want string
		changes        int
	}{
		{"rhel8 fixture", defaultGrub8 + "GRUB_CMDLINE_LINUX+=\" " + ade8 + " \"\n", defaultGrub8, 1},
		{"rhel7 fixture doubled", defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" " + ade7 + " \"\nGRUB_CMDLINE_LINUX+=\" " + ade7 + " \"\n", defaultGrub7, 2},
		{"exact ade appends restore the original", defaultGrub8 + adeAppend(ade8) + adeAppend("root=/dev/mapper/osencrypt"), defaultGrub8, 2},
		{"rhel7 doubled exact appends", defaultGrub7 + adeAppend(ade7) + adeAppend(ade7), defaultGrub7, 2},
		{"grubby era duplicates in GRUB_CMDLINE_LINUX", grubby + adeAppend(ade8), defaultGrub8, 2},
		{"legacy rd.debug-only append", defaultGrub7 + "\nGRUB_CMDLINE_LINUX+=\" rd.debug\"\n", defaultGrub7, 1},
		{"path C rd.luks.uuid line", defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" rd.debug rd.luks.uuid=osencrypt\"\n", defaultGrub7, 1},
		{"append keeps a user arg and its leading space", defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" quiet " + ade7 + " \"\n",
			defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" quiet \"\n", 1},
		{"no final newline after ADE (LEAPP)", strings.TrimSuffix(defaultGrub8, "\n") + adeAppend(ade8), defaultGrub8, 1},
		{"missing final newline only", strings.TrimSuffix(defaultGrub7, "\n"), defaultGrub7, 1},
		{"single quotes and _DEFAULT", "GRUB_CMDLINE_LINUX_DEFAULT='quiet " + ade7 + "' # x\n", "GRUB_CMDLINE_LINUX_DEFAULT='quiet' # x\n", 1},
		{"user rd.debug in += kept", defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" quiet rd.debug\"\n", defaultGrub7 + "GRUB_CMDLINE_LINUX+=\" quiet rd.debug\"\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ch, err := FixDefaultGrub([]byte(tt.in), len(tt.in)+1)
			if err != nil {
				t.Fatal(err)
			}
			if tt.changes == 0 {
				if got != nil || ch != nil {
					t.Fatalf("changed: %q", got)
				}
				return
			}
			if string(got) != tt.want || len(ch) != tt.changes {
				t.Fatalf("got (%d changes %+v)\n%s\nwant\n%s", len(ch), ch, got, tt.want)
			}
			for _, c := range ch {
				if c.Path != PathDefaultGrub || c.Why == "" {
					t.Errorf("change %+v", c)
				}
			}
			if again, _, _ := FixDefaultGrub(got, len(got)); again != nil {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
	t.Run("no room for the newline", func(t *testing.T) {
		in := []byte(strings.TrimSuffix(defaultGrub7, "\n"))
		for _, max := range []int{len(in), 0, -1} {
			if got, _, err := FixDefaultGrub(in, max); err == nil || got != nil {
				t.Errorf("max %d: got %q, %v; want an error", max, got, err)
			}
		}
	})
}

func TestFixKernelCmdline(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"one line", base8 + " " + ade8 + "\n", base8 + "\n"},
		{"no newline", base8 + " " + ade8, base8},
		{"rd.debug on another line", "root=/dev/sda2 rd.debug\nro rd.luks.ade.partuuid=" + p4 + "\n", "root=/dev/sda2\nro\n"},
	}
	for _, tt := range tests {
		got, ch := FixKernelCmdline([]byte(tt.in))
		if string(got) != tt.want || len(ch) == 0 || ch[0].Path != PathKernelCmdline {
			t.Errorf("%s: got %q (%+v), want %q", tt.name, got, ch, tt.want)
		}
		if again, _ := FixKernelCmdline(got); again != nil {
			t.Errorf("%s: not idempotent", tt.name)
		}
	}
	if got, _ := FixKernelCmdline([]byte("root=/dev/sda2 ro rd.debug\n")); got != nil {
		t.Errorf("clean cmdline changed")
	}
}

func TestFixCrypttab(t *testing.T) {
	os8 := "osencrypt /dev/disk/by-partuuid/" + p4 + " /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"
	os7 := "osencrypt /dev/disk/by-partuuid/" + p2 + " /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,nofail,header=/boot/luks/osluksheader"
	legacy := "osencrypt UUID=osencrypt-locked none discard,header=/osluksheader"
	data := adeComment + "\n9c2a1b7e-5d4f-4e3a-8b2c-1d0e9f8a7b6c /dev/disk/azure/scsi1/lun0-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0 luks,nofail\n"
	res := "resourceencrypt /dev/disk/azure/resource-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,nofail\n"
	user := "luks-" + luksU + " UUID=" + luksU + " none discard\n"
	tests := []struct {
		name, in, want string
		p              Policy
		changes        int
	}{
		{"rhel8 fixture: only line, no newline", os8, "", Policy{}, 1},
		{"rhel7 fixture", os7 + "\n", "", Policy{}, 1},
		{"rhel7 91ade legacy", "# comment\n" + legacy + "\n", "# comment\n", Policy{}, 1},
		{"after other lines, no newline", user + data + os8, user + data, Policy{}, 1},
		{"default keeps data and resource", data + res + os8, data + res, Policy{}, 1},
		{"named mappers", data + res + os8, data, Policy{CrypttabMappers: []string{"resourceencrypt"}}, 2},
		{"all BEK volumes", user + data + res + os8, user, Policy{CrypttabBEK: true}, 3},
		{"indented", "  osencrypt\t/dev/sda2 none luks\n" + user, user, Policy{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ch := tt.p.FixCrypttab([]byte(tt.in))
			if string(got) != tt.want || got == nil || len(ch) != tt.changes {
				t.Fatalf("got %q (%d changes %+v), want %q", got, len(ch), ch, tt.want)
			}
			if ch[0].Path != PathCrypttab || ch[0].After != nil {
				t.Errorf("change %+v", ch[0])
			}
			if again, _ := tt.p.FixCrypttab(got); again != nil {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
	for _, clean := range []string{"", user, "#osencrypt /dev/sda2 none luks\n", "osencrypt2 /dev/sda2 none\n"} {
		if got, ch := FixCrypttab([]byte(clean)); got != nil || ch != nil {
			t.Errorf("clean crypttab %q changed: %q", clean, got)
		}
	}
}

const fstab8 = `
#
# /etc/fstab
# Created by anaconda on Tue May  2 12:00:00 2023
#
/dev/mapper/rootvg-rootlv /                       xfs     defaults        0 0
UUID=` + boot8 + ` /boot                   xfs     defaults        0 0
UUID=4A1B-2C3D          /boot/efi               vfat    defaults,uid=0,gid=0,umask=077,shortname=winnt 0 2
/dev/mapper/rootvg-homelv /home                   xfs     defaults        0 0
/dev/mapper/rootvg-varlv  /var                    xfs     defaults        0 0
`

func TestFixFstab(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"rhel8 fixture", fstab8 + bekLine + "\n", fstab8},
		{"no newline", fstab8 + bekLine, fstab8},
		{"/bek form and marker", fstab8 + adeComment + "\n" + `LABEL=BEK\040VOLUME /bek auto defaults,nofail 0 0` + "\n", fstab8},
		{"in the middle", bekLine + "\n" + fstab8, fstab8},
	}
	for _, tt := range tests {
		got, ch := FixFstab([]byte(tt.in))
		if string(got) != tt.want || len(ch) != 1 || ch[0].Path != PathFstab {
			t.Errorf("%s: got %q (%+v)", tt.name, got, ch)
		}
		if again, _ := FixFstab(got); again != nil {
			t.Errorf("%s: not idempotent", tt.name)
		}
	}
	if got, _ := FixFstab([]byte(fstab8 + `#LABEL=BEK\040VOLUME /bek auto defaults 0 0` + "\n")); got != nil {
		t.Errorf("commented BEK line changed")
	}
}

const lvmConf8 = "# fixture lvm.conf (abridged)\nconfig {\n\tchecks = 1\n}\ndevices {\n\tdir = \"/dev\"\n\tscan = [ \"/dev\" ]\n}\n"

func TestFixLVMConf(t *testing.T) {
	filter := `devices { filter = ["a|osencrypt|", "r|` + p4 + `|"] }`
	userFilter := "devices {\n\tfilter = [ \"a|.*|\" ]\n\tglobal_filter = [ \"r|/dev/sdz|\" ]\n}\n"
	tests := []struct {
		name, in, want string
		changes        int
	}{
		{"fixture", lvmConf8 + filter + "\n", lvmConf8, 1},
		{"exact ade append restores the original", lvmConf8 + "\n" + filter + "\n", lvmConf8, 1},
		{"original without final newline", strings.TrimSuffix(lvmConf8, "\n") + "\n" + filter + "\n", lvmConf8, 1},
		{"user filters kept", userFilter + "\n" + filter + "\n", userFilter, 1},
		{"spacing variant, no newline", lvmConf8 + `  devices{filter=["a|osencrypt|","r|` + strings.ToUpper(p4) + `|"]}`, lvmConf8, 1},
		{"appended twice", lvmConf8 + "\n" + filter + "\n\n" + filter + "\n", lvmConf8, 2},
		// Wider than ADE's exact line: any filter accepting osencrypt is dead or harmful once osencrypt is gone.
		{"reject-all variant", `devices { filter = ["a|osencrypt|", "r|.*|"] }` + "\n", "", 1},
		{"extra patterns", `devices { filter = ["a|osencrypt|", "r|` + p4 + `|", "a|sdb|"] }` + "\n", "", 1},
		{"global_filter and trailing comment", "devices {\n    global_filter = [ \"a|/dev/mapper/osencrypt|\", \"r|.*|\" ] # ADE\n    scan = [ \"/dev\" ]\n}\n",
			"devices {\n    scan = [ \"/dev\" ]\n}\n", 1},
		{"moved into the devices section", "devices {\n    filter = [ \"a|osencrypt|\", \"r|8a3f|\" ]\n    scan = 1\n}\n", "devices {\n    scan = 1\n}\n", 1},
		{"opening brace kept", "devices { filter = [\"a|osencrypt|\"]\n  scan = 1\n}\n", "devices {\n  scan = 1\n}\n", 1},
		{"closing brace kept", "devices {\n  scan = 1\n  filter = [\"a|osencrypt|\"] }\n", "devices {\n  scan = 1\n  }\n", 1},
		{"list over lines", "devices {\n\tdir = \"/dev\"\n\tfilter = [ \"a|osencrypt|\", # the mapper\n\t\t\"r|" + p4 + "|\" ]\n}\n",
			"devices {\n\tdir = \"/dev\"\n}\n", 1},
		{"list over lines with braces", "devices { filter = [\n \"a|osencrypt|\",\n \"r|x|\" ] }\n", "", 1},
		{"single string value", "devices { filter = \"a|osencrypt|\" scan = 1 }\n", "devices { scan = 1 }\n", 1},
		{"both settings on one line", "\ndevices { filter = [\"a|osencrypt|\"] global_filter = [\"a|osencrypt|\", \"r|.*|\"] }\n", "", 2},
	}
	for _, tt := range tests {
		got, ch := FixLVMConf([]byte(tt.in))
		if string(got) != tt.want || got == nil || len(ch) != tt.changes {
			t.Errorf("%s: got %q (%+v), want %q", tt.name, got, ch, tt.want)
			continue
		}
		for _, c := range ch {
			if c.Path != PathLVMConf || c.Why == "" || len(c.Before) == 0 {
				t.Errorf("%s: change %+v", tt.name, c)
			}
		}
		if again, _ := FixLVMConf(got); again != nil {
			t.Errorf("%s: not idempotent", tt.name)
		}
	}
	for _, clean := range []string{
		"", lvmConf8, userFilter,
		`devices { filter = ["r|osencrypt|", "a|.*|"] }` + "\n", // osencrypt only rejected
		`# devices { filter = ["a|osencrypt|", "r|` + p4 + `|"] }` + "\n",
		"devices {\n  filter = [\"a|sda|\", \"r|.*|\"]\n  # filter osencrypt\n}\n",
		"devices {\n  my_filter = [\"a|osencrypt|\"]\n  types = [ \"osencrypt\", 16 ]\n}\n",
		"devices { filter = [\"a|osencrypt|\", \n",       // never closed
		"devices { filter = [\"a|osencrypt|\", 16 ] }\n", // not a list of strings
		"x = \"filter = [\\\"a|osencrypt|\\\"]\"\n",      // inside a string
	} {
		if got, _ := FixLVMConf([]byte(clean)); got != nil {
			t.Errorf("lvm.conf %q changed: %q", clean, got)
		}
	}
}

func TestFixDracutConf(t *testing.T) {
	const adeConf = "/etc/dracut.conf.d/ade.conf"
	real8 := "\nadd_drivers+=\" dm_crypt \"\n\nadd_dracutmodules+=\" crypt lvm \"\n"
	fixture8 := "add_drivers+=\" dm_crypt \"\nadd_dracutmodules+=\" crypt lvm \"\n"
	old := "\nadd_fstab+=\" /lib/dracut/modules.d/91adeOnline/ade_fstab_line \"\n\nadd_drivers+=\" dm_crypt \"\n\nadd_dracutmodules+=\" crypt\"\n"
	tests := []struct {
		name, path, in, want string
		max, changes         int
	}{
		{"ade.conf real appends", adeConf, real8, "\n#add_drivers+=\" dm_crypt \"\n\n#add_dracutmodules+=\" crypt lvm \"\n", 4096, 2},
		{"ade.conf fixture", adeConf, fixture8, "#add_drivers+=\" dm_crypt \"\n#add_dracutmodules+=\" crypt lvm \"\n", 4096, 2},
		{"ade.conf old build", adeConf, old, strings.ReplaceAll(old, "\nadd_", "\n#add_"), 4096, 3},
		{"ade.conf no room: deleted", adeConf, real8, "\n\n", len(real8) + 1, 2},
		{"ade.conf anything", adeConf, "hostonly=\"no\"\n", "#hostonly=\"no\"\n", 0 + 100, 1},
		{"dracut.conf path B", "/etc/dracut.conf", "# PUT YOUR CONFIG IN separate files\nhostonly=\"yes\"\nadd_drivers+=\" fuse vfat nls_cp437 nls_iso8859-1\"\nadd_dracutmodules+=\" crypt\"\n",
			"# PUT YOUR CONFIG IN separate files\nhostonly=\"yes\"\n#add_drivers+=\" fuse vfat nls_cp437 nls_iso8859-1\"\n#add_dracutmodules+=\" crypt\"\n", 4096, 2},
		{"dracut.conf no room", "/etc/dracut.conf", "x=1\nadd_dracutmodules+=\" crypt\"", "x=1\n", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ch := FixDracutConf(tt.path, []byte(tt.in), tt.max)
			if string(got) != tt.want || len(ch) != tt.changes {
				t.Fatalf("got %q (%+v), want %q", got, ch, tt.want)
			}
			if len(got) > max(len(tt.in), tt.max) {
				t.Errorf("output %d bytes > max %d", len(got), tt.max)
			}
			if ch[0].Path != tt.path {
				t.Errorf("path %q", ch[0].Path)
			}
			if again, _ := FixDracutConf(tt.path, got, tt.max); again != nil {
				t.Errorf("not idempotent: %q", again)
			}
		})
	}
	for _, clean := range []string{"add_dracutmodules+=\" crypt nfs \"\n", "add_drivers+=\" dm_crypt raid1 \"\n", "#add_dracutmodules+=\" crypt\"\n", "add_dracutmodules+=\" lvm \"\n"} {
		if got, _ := FixDracutConf("/etc/dracut.conf", []byte(clean), 4096); got != nil {
			t.Errorf("user line %q changed", clean)
		}
	}
}

// adeModuleSetup is a stand-in with the structure ade-internals §4.1 describes for 91adeOnline's
// module-setup.sh (no check()).
const adeModuleSetup = `#!/bin/bash
# called by dracut
depends() {
    echo crypt systemd
    return 0
}

installkernel() {
    hostonly="" instmods drbg dm_crypt =crypto =drivers/crypto =arch/x86/crypto
}

install() {
    inst_hook cmdline 30 "$moddir/parse-crypt-ade.sh"
    inst_script "$moddir"/crypt-run-generator-ade.sh /sbin/crypt-run-generator-ade
    dracut_need_initqueue
}
`

func TestDisableDracutModule(t *testing.T) {
	got, ch, err := DisableDracutModule([]byte(adeModuleSetup), 4096)
	if err != nil || string(got) != disabledModuleScripts[0] || len(ch) != 1 || ch[0].Path != "" {
		t.Fatalf("got %q, %+v, %v", got, ch, err)
	}
	if again, ch, err := DisableDracutModule(got, 4096); again != nil || ch != nil || err != nil {
		t.Errorf("not idempotent")
	}
	// The fixture's 77-byte stand-in with no slack gets a shorter script.
	stand := "#!/bin/sh\n# fixture stand-in for the ADE dracut module file module-setup.sh (not the real script)\n"
	got, _, err = DisableDracutModule([]byte(stand), 0)
	if err != nil || len(got) > len(stand) || !strings.Contains(string(got), "check() { return 255; }") {
		t.Fatalf("small file: %q, %v", got, err)
	}
	if _, _, err := DisableDracutModule([]byte("#!/bin/sh\n"), 12); err == nil {
		t.Errorf("no room: want an error")
	}
	for _, s := range disabledModuleScripts {
		if again, _, _ := DisableDracutModule([]byte(s), 0); again != nil {
			t.Errorf("%q not recognised as disabled", s)
		}
	}
}

func TestScan(t *testing.T) {
	type want struct {
		line int
		what string
	}
	tests := []struct {
		name, path, in string
		want           []want
	}{
		{"fixture crypttab", "/etc/crypttab", "osencrypt /dev/disk/by-partuuid/" + p4 + " /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader",
			[]want{{1, "osencrypt"}}},
		{"data crypttab", "/etc/crypttab", adeComment + "\nd1 /dev/sdc1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0 luks,nofail\n", []want{{2, "keyed by the ADE BEK"}}},
		{"fixture lvm.conf", "/etc/lvm/lvm.conf", lvmConf8 + `devices { filter = ["a|osencrypt|", "r|` + p4 + `|"] }` + "\n", []want{{9, "LVM filter"}}},
		{"lvm.conf filter over lines", "/etc/lvm/lvm.conf", "devices {\n\tfilter = [\n\t\t\"a|osencrypt|\",\n\t\t\"r|x|\" ]\n}\n",
			[]want{{2, "LVM filter"}, {3, "osencrypt"}}},
		{"lvm.conf reject only", "/etc/lvm/lvm.conf", "devices { global_filter = [ \"r|osencrypt|\" ] }\n", []want{{1, "reference to ADE's dm-crypt mapper"}}},
		{"default grub", "/etc/default/grub", strings.TrimSuffix(defaultGrub8, "\n") + adeAppend(ade8), []want{{9, "rd.luks.ade"}}},
		{"default grub no newline", "/mnt/root/etc/default/grub", strings.TrimSuffix(defaultGrub7, "\n"), []want{{0, "final newline"}}},
		{"grubenv", "/boot/grub2/grubenv", string(grubenvBlock(1024, "kernelopts="+kopts8)), []want{{2, "rd.luks.ade"}}},
		{"grubenv 1025", "/boot/grub2/grubenv", string(grubenvBlock(1024)) + "\n", []want{{0, "1025 bytes"}}},
		{"grubenv by content", "/x", string(grubenvBlock(1000)), []want{{0, "1000 bytes"}}},
		{"grubenv garbage", "/boot/efi/EFI/redhat/grubenv", "hello\n", []want{{0, "signature"}, {0, "6 bytes"}}},
		{"fstab", "/etc/fstab", fstab8 + bekLine + "\n", []want{{11, "BEK"}}},
		{"ade.conf", "/etc/dracut.conf.d/ade.conf", "\nadd_drivers+=\" dm_crypt \"\n#x\n", []want{{2, "ade.conf"}}},
		{"dracut.conf", "/etc/dracut.conf", "add_dracutmodules+=\" crypt\"\n", []want{{1, "dracut setting"}}},
		{"module", "/usr/lib/dracut/modules.d/91adeOnline/module-setup.sh", adeModuleSetup, []want{{0, "91adeOnline"}}},
		{"bls rhel9 raw", "/boot/loader/entries/x.conf", "options root=UUID=x " + ade8 + " root=/dev/mapper/osencrypt\n", []want{{1, "rd.luks.ade"}, {1, "osencrypt"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Scan(tt.path, []byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v", got)
			}
			for i, w := range tt.want {
				if got[i].Line != w.line || !strings.Contains(got[i].What, w.what) || got[i].Path != tt.path {
					t.Errorf("finding %d = %+v, want line %d %q", i, got[i], w.line, w.what)
				}
			}
		})
	}
	// Everything fixed scans clean.
	clean := map[string]string{
		"/etc/crypttab":               "",
		"/etc/default/grub":           defaultGrub8,
		"/etc/lvm/lvm.conf":           lvmConf8,
		"/boot/grub2/grubenv":         string(grubenvBlock(1024, "saved_entry="+mid8+"-"+kver8, "kernelopts="+base8)),
		"/etc/fstab":                  fstab8,
		"/etc/dracut.conf.d/ade.conf": "\n#add_drivers+=\" dm_crypt \"\n",
		"/usr/lib/dracut/modules.d/91adeOnline/module-setup.sh":    disabledModuleScripts[0],
		"/usr/lib/dracut/modules.d/91adeOnline/parse-crypt-ade.sh": "#!/bin/sh\ngetarg rd.luks.ade.partuuid\n",
		"/boot/loader/entries/" + mid8 + "-" + kver8 + ".conf":     "options $kernelopts $tuned_params\n",
	}
	for p, s := range clean {
		if f := Scan(p, []byte(s)); f != nil {
			t.Errorf("%s: %+v", p, f)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"rd.luks.key=/k:LABEL=BEK ro":                                          "rd.luks.key=<redacted> ro",
		"luks,keyfile-offset=0,password=hunter2":                               "luks,keyfile-offset=0,password=<redacted>",
		`GRUB_CMDLINE_LINUX="a Passphrase=x"`:                                  `GRUB_CMDLINE_LINUX="a Passphrase=<redacted>"`,
		"vconsole.keymap=us secret=s token=t":                                  "vconsole.keymap=us secret=<redacted> token=<redacted>",
		"osencrypt /dev/sda2 /mnt/azure_bek_disk/LinuxPassPhraseFileName luks": "osencrypt /dev/sda2 /mnt/azure_bek_disk/LinuxPassPhraseFileName luks",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
	_, ch := FixKernelCmdline([]byte("ro rd.luks.key=/secret rd.luks.ade.partuuid=x\n"))
	if got := strings.Join(ch[0].Before, ""); strings.Contains(got, "/secret") {
		t.Errorf("change leaks a key= value: %q", got)
	}
}

// TestFixtureScriptStrings checks that the fixture script still writes the ADE strings the tables
// above quote, so the two cannot drift apart silently.
func TestFixtureScriptStrings(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixture.Root(), "testdata", "mkfixtures.sh"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	for _, s := range []string{
		`P4=` + p4, `BOOT_UUID=` + boot8, `MID=` + mid8, `KVER=` + kver8,
		`P2=` + p2, `BOOT_UUID=` + boot7, `ROOT_UUID=` + root7, `KVER=` + kver7,
		`ADEARGS="rd.luks.ade.partuuid=$P4 rd.luks.ade.bootuuid=$BOOT_UUID rd.debug"`,
		`ADEARGS="rd.luks.ade.partuuid=$P2 rd.luks.ade.bootuuid=$BOOT_UUID rd.debug"`,
		`KOPTS="` + base8 + ` $ADEARGS"`,
		`GRUB_CMDLINE_LINUX+=" $ADEARGS "`,
		`GRUB_CMDLINE_LINUX="` + cmdln7 + `"`,
		`devices { filter = ["a|osencrypt|", "r|$P4|"] }`,
		`printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader' \`,
		`printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,nofail,header=/boot/luks/osluksheader\n' \`,
		`printf 'add_drivers+=" dm_crypt "\nadd_dracutmodules+=" crypt lvm "\n'`,
		`LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0`,
		`options \$kernelopts \$tuned_params`,
		`linux16 /vmlinuz-${KVER} root=UUID=$ROOT_UUID ro ` + cmdln7 + ` $ADEARGS $ADEARGS`,
		`grubenv "$b/grub2/grubenv" "saved_entry=$MID-$KVER" "kernelopts=$KOPTS" "boot_success=0"`,
	} {
		if !strings.Contains(script, s) {
			t.Errorf("mkfixtures.sh no longer contains %q", s)
		}
	}
	if !strings.Contains(defaultGrub8, `GRUB_CMDLINE_LINUX="crashkernel=auto rd.lvm.lv=rootvg/rootlv`) ||
		!strings.Contains(script, strings.TrimSuffix(strings.SplitN(defaultGrub8, "\n", 7)[5], "\n")) {
		t.Errorf("defaultGrub8 differs from the fixture's /etc/default/grub")
	}
}
