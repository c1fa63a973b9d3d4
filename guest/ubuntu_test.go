package guest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
)

// Values and files of the Ubuntu fixture set (testdata/ubuntu/mkubuntu.sh, disk u2204 and u1804), so the
// strings below are the ones those disks carry; TestUbuntuFixtureStrings checks the script still writes
// them.
const (
	uRoot    = "2c0d7e5a-2204-4a1b-9c3d-5e6f7a8b9c01" // the root filesystem's UUID (RootUUID)
	uBoot    = "2c0d7e5a-2204-4a1b-9c3d-5e6f7a8b9c02"
	uP1      = "7d1a0b2c-2204-4c5d-8e9f-0a1b2c3d4e01"
	uKver    = "6.1.0-57-cloud-amd64"
	uKopts   = "root=/dev/mapper/osencrypt ro console=tty1 console=ttyS0 earlyprintk=ttyS0"
	uRopts   = "root=UUID=" + uRoot + " ro recovery nomodeset dis_ucode_ldr root=/dev/mapper/osencrypt "
	uRootArg = "root=UUID=" + uRoot

	uCrypttab2004 = "# <target name>\t<source device>\t\t<key file>\t<options>\n" +
		"osencrypt /dev/disk/by-partuuid/" + uP1 + " /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"
	uCrypttab1804 = "# <target name>\t<source device>\t\t<key file>\t<options>\n" +
		"osencrypt /dev/sda1 none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh"
	uFstabBase = "LABEL=cloudimg-rootfs\t/\t ext4\tdiscard,errors=remount-ro\t0 1\nLABEL=UEFI\t/boot/efi\tvfat\tumask=0077\t0 1\n" +
		"\nUUID=" + uBoot + "\t/boot\text2\tdefaults\t0 0\n"
	uFstab         = uFstabBase + `LABEL=BEK\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0` + "\n"
	uCryptdisksPkg = "# Run cryptdisks initscripts at startup? Default is Yes.\nCRYPTDISKS_ENABLE=Yes\n\n" +
		"# Mountpoints to mount, before cryptsetup is invoked at initscripts. Takes\n# mountpoins which are configured in /etc/fstab as arguments. Separate\n" +
		"# mountpoints by space.\n# This is useful for keyfiles on removable media. Default is unset.\nCRYPTDISKS_MOUNT=\"\"\n\n" +
		"# Default check script. Takes effect, if the 'check' option is set in crypttab\n# without a value.\nCRYPTDISKS_CHECK=blkid\n"
	uCryptdisksADE  = "\nCRYPTDISKS_MOUNT=\"$CRYPTDISKS_MOUNT /mnt/azure_bek_disk\"\n"
	uDefaultGrubPkg = "# If you change this file, run 'update-grub' afterwards to update\n# /boot/grub/grub.cfg.\n" +
		"# For full documentation of the options in this file, see:\n#   info -f grub -n 'Simple configuration'\n\n" +
		"GRUB_DEFAULT=0\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_TIMEOUT=0\nGRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n" +
		"GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\n"
	uDefaultGrub = uDefaultGrubPkg + "GRUB_CMDLINE_LINUX=\"root=/dev/mapper/osencrypt \"\n"
	// The initrd's etc/fstab as crypt-ade-hook leaves it (mkinitramfs writes it empty).
	uInitrdFstab = "/dev/disk/by-uuid/" + uBoot + " /boot ext2 defaults 0 0\n" +
		`/dev/disk/by-label/BEK\x20VOLUME /mnt/azure_bek_disk auto defaults 0 0` + "\n"
	uOrder = "/scripts/init-premount/crypt-ade-boot \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n"
	// Ubuntu 18.04's own cryptroot hook writes conf/conf.d/cryptroot instead of cryptroot/crypttab.
	uCryptrootConf = "target=osencrypt,source=/dev/sda1,key=none,rootdev,keyscript=/lib/cryptsetup/scripts/azure_crypt_key.sh,header=/conf/conf.d/cryptheader/osluksheader\n"
)

// uGrubCfgLinux are the linux lines of the fixture's grub.cfg: the default entry, the advanced one, and
// the recovery entry (which also has grub-mkconfig's root=UUID=).
var uGrubCfgLinux = []string{
	"\tlinux\t/vmlinuz-" + uKver + " " + uKopts,
	"\t\tlinux\t/vmlinuz-" + uKver + " " + uKopts,
	"\t\tlinux\t/vmlinuz-" + uKver + " " + uRopts,
}

func TestRootUUIDCmdline(t *testing.T) {
	pol := Policy{RootUUID: uRoot}
	for _, tt := range []struct {
		name, in, want, unset string
		removed               []string
	}{
		{"ubuntu default entry", uKopts, uRootArg + " ro console=tty1 console=ttyS0 earlyprintk=ttyS0",
			"ro console=tty1 console=ttyS0 earlyprintk=ttyS0", []string{"root=/dev/mapper/osencrypt"}},
		{"ubuntu recovery entry: grub's root= kept, osencrypt removed", uRopts,
			uRootArg + " ro recovery nomodeset dis_ucode_ldr", uRootArg + " ro recovery nomodeset dis_ucode_ldr",
			[]string{"root=/dev/mapper/osencrypt"}},
		{"another root= first", "root=/dev/sda1 root=/dev/mapper/osencrypt ro", "root=/dev/sda1 ro", "root=/dev/sda1 ro",
			[]string{"root=/dev/mapper/osencrypt"}},
		{"RHEL RAW line with grub's root=", "root=UUID=" + rootU9 + " ro console=ttyS0 " + ade8 + " root=/dev/mapper/osencrypt",
			"root=UUID=" + rootU9 + " ro console=ttyS0", "root=UUID=" + rootU9 + " ro console=ttyS0",
			[]string{"rd.luks.ade.partuuid=" + p4, "rd.luks.ade.bootuuid=" + boot8, "rd.debug", "root=/dev/mapper/osencrypt"}},
		{"two copies: the first is replaced, the second removed", "root=/dev/mapper/osencrypt ro root=/dev/mapper/osencrypt",
			uRootArg + " ro", "ro", []string{"root=/dev/mapper/osencrypt", "root=/dev/mapper/osencrypt"}},
		{"with rd.debug", "rd.debug root=/dev/mapper/osencrypt ro", uRootArg + " ro", "ro",
			[]string{"rd.debug", "root=/dev/mapper/osencrypt"}},
		{"no ADE argument", "root=UUID=" + uRoot + " ro quiet", "root=UUID=" + uRoot + " ro quiet", "root=UUID=" + uRoot + " ro quiet", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, removed := pol.FixCmdline(tt.in)
			if got != tt.want || !slices.Equal(removed, tt.removed) {
				t.Errorf("FixCmdline(%q) = %q, %q; want %q, %q", tt.in, got, removed, tt.want, tt.removed)
			}
			if again, r := pol.FixCmdline(got); again != got || r != nil {
				t.Errorf("not idempotent: %q -> %q", got, again)
			}
			// Unset keeps today's behaviour: the argument is removed.
			if got, _ := FixCmdline(tt.in); got != tt.unset {
				t.Errorf("Policy{}.FixCmdline(%q) = %q, want %q", tt.in, got, tt.unset)
			}
		})
	}
	for _, bad := range []string{"a b", `x"`, "$(id)", "a\\b", "it's"} {
		p := Policy{RootUUID: bad}
		if got, _ := p.FixCmdline(uKopts); got != "ro console=tty1 console=ttyS0 earlyprintk=ttyS0" {
			t.Errorf("RootUUID %q not ignored: %q", bad, got)
		}
	}
}

func TestRootUUIDGrubCfg(t *testing.T) {
	cfg := "menuentry 'Ubuntu' {\n" + uGrubCfgLinux[0] + "\n\tinitrd\t/initrd.img-" + uKver + "\n}\n" +
		"submenu 'Advanced options for Ubuntu' {\n\tmenuentry 'x' {\n" + uGrubCfgLinux[1] + "\n\t}\n" +
		"\tmenuentry 'recovery' {\n" + uGrubCfgLinux[2] + "\n\t}\n}\n" +
		"menuentry 'rhel8' {\n\tlinux /vmlinuz $kernelopts root=/dev/mapper/osencrypt\n}\n"
	want := strings.NewReplacer(
		uGrubCfgLinux[0], "\tlinux\t/vmlinuz-"+uKver+" "+uRootArg+" ro console=tty1 console=ttyS0 earlyprintk=ttyS0",
		uGrubCfgLinux[1], "\t\tlinux\t/vmlinuz-"+uKver+" "+uRootArg+" ro console=tty1 console=ttyS0 earlyprintk=ttyS0",
		uGrubCfgLinux[2], "\t\tlinux\t/vmlinuz-"+uKver+" "+uRootArg+" ro recovery nomodeset dis_ucode_ldr",
		"$kernelopts root=/dev/mapper/osencrypt", "$kernelopts",
	).Replace(cfg)
	pol := Policy{RootUUID: uRoot}
	got, ch := pol.FixGrubCfg("/boot/grub/grub.cfg", []byte(cfg))
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if len(ch) != 4 || !strings.Contains(ch[0].Why, "replace ADE's root=/dev/mapper/osencrypt by "+uRootArg) ||
		strings.Contains(ch[2].Why, "replace") || !strings.Contains(ch[2].Why, "remove ADE kernel arguments root=/dev/mapper/osencrypt") {
		t.Errorf("changes: %+v", ch)
	}
	if again, _ := pol.FixGrubCfg("/boot/grub/grub.cfg", got); again != nil {
		t.Errorf("not idempotent")
	}
	if fs := Scan("/boot/grub/grub.cfg", got); fs != nil {
		t.Errorf("residue: %+v", fs)
	}
	// Unset: the argument is removed, as before.
	old, _ := FixGrubCfg("/boot/grub/grub.cfg", []byte(cfg))
	if strings.Contains(string(old), "osencrypt") || strings.Contains(string(old), uGrubCfgLinux[0]) ||
		!strings.Contains(string(old), "\tlinux\t/vmlinuz-"+uKver+" ro console=tty1") {
		t.Errorf("Policy{}: %s", old)
	}
}

func TestRootUUIDDefaultGrub(t *testing.T) {
	pol := Policy{RootUUID: uRoot}
	want := uDefaultGrubPkg + "GRUB_CMDLINE_LINUX=\"" + uRootArg + " \"\n"
	grow := len(want) - len(uDefaultGrub)
	if grow != 20 {
		t.Fatalf("the replacement grows the file by %d bytes", grow)
	}
	got, ch, err := pol.FixDefaultGrub([]byte(uDefaultGrub), len(want))
	if err != nil || string(got) != want || len(ch) != 1 || ch[0].Path != PathDefaultGrub ||
		!strings.Contains(ch[0].Why, "replace ADE's root=/dev/mapper/osencrypt") {
		t.Fatalf("got %q, %+v, %v", got, ch, err)
	}
	if again, _, err := pol.FixDefaultGrub(got, len(got)); again != nil || err != nil {
		t.Errorf("not idempotent: %q %v", again, err)
	}
	// One byte short of the room it needs: an error, nothing returned.
	if out, ch, err := pol.FixDefaultGrub([]byte(uDefaultGrub), len(want)-1); err == nil || out != nil || ch != nil {
		t.Errorf("no room: %q, %v", out, err)
	}
	// Unset: removed, as before (the file shrinks).
	if got, _, err := FixDefaultGrub([]byte(uDefaultGrub), 0); err != nil || string(got) != uDefaultGrubPkg+"GRUB_CMDLINE_LINUX=\"\"\n" {
		t.Errorf("Policy{}: %q, %v", got, err)
	}
	// Another root= in any assignment: the osencrypt one is only removed.
	in := uDefaultGrubPkg + "GRUB_CMDLINE_LINUX=\"root=/dev/mapper/osencrypt \"\nGRUB_CMDLINE_LINUX_DEFAULT=\"root=/dev/sda1\"\n"
	got, _, err = pol.FixDefaultGrub([]byte(in), 0)
	if err != nil || strings.Contains(string(got), "UUID") || strings.Contains(string(got), "osencrypt") {
		t.Errorf("other root=: %q, %v", got, err)
	}
	// Two copies over two assignments: one replacement.
	in = uDefaultGrubPkg + "GRUB_CMDLINE_LINUX=\"root=/dev/mapper/osencrypt \"\nGRUB_CMDLINE_LINUX+=\" root=/dev/mapper/osencrypt\"\n"
	got, _, err = pol.FixDefaultGrub([]byte(in), 1000)
	if err != nil || string(got) != want {
		t.Errorf("two copies: %q, %v", got, err)
	}
}

func TestRootUUIDOtherCommandLines(t *testing.T) {
	pol := Policy{RootUUID: uRoot}
	// grubenv: the value grows into the block's '#' padding; the block keeps its size.
	env := grubenvBlock(1024, "kernelopts="+uKopts)
	got, ch, err := pol.FixGrubenv(env)
	if err != nil || len(got) != 1024 || !strings.Contains(string(got), "kernelopts="+uRootArg+" ro console=tty1") || len(ch) != 1 {
		t.Fatalf("grubenv: %q, %+v, %v", got, ch, err)
	}
	if again, _, _ := pol.FixGrubenv(got); again != nil {
		t.Errorf("grubenv not idempotent")
	}
	if _, _, err := pol.FixGrubenv(grubenvBlock(len(grubenvSignature)+len("kernelopts="+uKopts)+1+19, "kernelopts="+uKopts)); err == nil {
		t.Errorf("grubenv with 19 bytes of padding: want an error")
	}
	// BLS entry: the options lines are one command line.
	bls := "title Ubuntu\noptions " + uKopts + "\noptions root=/dev/mapper/osencrypt quiet\n"
	out, _ := pol.FixBLSEntry("/boot/loader/entries/u.conf", []byte(bls))
	if string(out) != "title Ubuntu\noptions "+uRootArg+" ro console=tty1 console=ttyS0 earlyprintk=ttyS0\noptions quiet\n" {
		t.Errorf("BLS: %q", out)
	}
	out, _ = pol.FixBLSEntry("/boot/loader/entries/u.conf", []byte("options $kernelopts root=/dev/mapper/osencrypt\n"))
	if string(out) != "options $kernelopts\n" {
		t.Errorf("BLS with $kernelopts: %q", out)
	}
	out, _ = pol.FixBLSEntry("/boot/loader/entries/u.conf", []byte("options root=/dev/mapper/osencrypt\noptions root=UUID=x\n"))
	if string(out) != "options root=UUID=x\n" {
		t.Errorf("BLS with another root=: %q", out)
	}
	// /etc/kernel/cmdline and a dracut command line file: whole-file rule.
	out, _ = pol.FixKernelCmdline([]byte("root=/dev/mapper/osencrypt\nro root=/dev/mapper/osencrypt\n"))
	if string(out) != uRootArg+"\nro\n" {
		t.Errorf("kernel cmdline: %q", out)
	}
	out, _ = pol.FixKernelCmdline([]byte("root=/dev/mapper/osencrypt\nroot=/dev/sda1\n"))
	if string(out) != "\nroot=/dev/sda1\n" {
		t.Errorf("kernel cmdline with another root=: %q", out)
	}
	out, ch = pol.FixDracutCmdline("etc/cmdline.d/90ade.conf", []byte(" root=/dev/mapper/osencrypt "))
	if string(out) != uRootArg || len(ch) != 1 || ch[0].Path != "etc/cmdline.d/90ade.conf" {
		t.Errorf("dracut cmdline: %q %+v", out, ch)
	}
	if out, _ := FixDracutCmdline("etc/cmdline", []byte(" root=/dev/mapper/osencrypt ")); string(out) != "" {
		t.Errorf("Policy{} dracut cmdline: %q", out)
	}
}

func TestFixCryptdisks(t *testing.T) {
	const why = "/mnt/azure_bek_disk from CRYPTDISKS_MOUNT"
	for _, tt := range []struct{ name, in, want string }{
		{"fixture: ADE's appended line and its blank line go", uCryptdisksPkg + uCryptdisksADE, uCryptdisksPkg},
		{"braces", "CRYPTDISKS_MOUNT=\"\"\n\nCRYPTDISKS_MOUNT=\"${CRYPTDISKS_MOUNT} /mnt/azure_bek_disk\"", "CRYPTDISKS_MOUNT=\"\"\n"},
		{"other mount points stay", "CRYPTDISKS_MOUNT=\"/boot /mnt/azure_bek_disk /media/keys\"\n", "CRYPTDISKS_MOUNT=\"/boot /media/keys\"\n"},
		{"appended to a list", "CRYPTDISKS_MOUNT=\"/media/keys\"\nCRYPTDISKS_MOUNT=\"$CRYPTDISKS_MOUNT /mnt/azure_bek_disk/\"\n", "CRYPTDISKS_MOUNT=\"/media/keys\"\n"},
		{"only the BEK: emptied", "CRYPTDISKS_MOUNT=\"/mnt/azure_bek_disk\"\n", "CRYPTDISKS_MOUNT=\"\"\n"},
		{"unquoted", "export CRYPTDISKS_MOUNT=/mnt/azure_bek_disk # ADE\n", "export CRYPTDISKS_MOUNT=\"\" # ADE\n"},
		{"self-reference with a comment after it stays", "CRYPTDISKS_MOUNT=\"$CRYPTDISKS_MOUNT /mnt/azure_bek_disk\" # x\n", "CRYPTDISKS_MOUNT=\"$CRYPTDISKS_MOUNT\" # x\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ch := FixCryptdisks([]byte(tt.in))
			if string(got) != tt.want || got == nil || len(ch) != 1 || ch[0].Path != PathCryptdisks || !strings.Contains(ch[0].Why, why) {
				t.Fatalf("got %q, %+v; want %q", got, ch, tt.want)
			}
			if again, _ := FixCryptdisks(got); again != nil {
				t.Errorf("not idempotent: %q", again)
			}
			if fs := Scan(PathCryptdisks, got); fs != nil {
				t.Errorf("residue: %+v", fs)
			}
		})
	}
	for _, clean := range []string{"", uCryptdisksPkg, "#CRYPTDISKS_MOUNT=\"/mnt/azure_bek_disk\"\n", "CRYPTDISKS_MOUNT=\"/mnt/azure_bek_disk2\"\n",
		"CRYPTDISKS_MOUNT=\"/mnt/azure_bek_disk\n\"\n"} {
		if got, ch := FixCryptdisks([]byte(clean)); got != nil || ch != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
}

func TestUbuntuCrypttab(t *testing.T) {
	const comment = "# <target name>\t<source device>\t\t<key file>\t<options>\n"
	for _, in := range []string{uCrypttab2004, uCrypttab1804, uCrypttab1804 + "\n", "data UUID=1 none luks\n" + uCrypttab2004} {
		want := comment
		if strings.HasPrefix(in, "data") {
			want = "data UUID=1 none luks\n" + comment
		}
		got, ch := FixCrypttab([]byte(in))
		if string(got) != want || len(ch) != 1 || !strings.Contains(ch[0].Why, "osencrypt") {
			t.Errorf("%q: got %q, %+v", in, got, ch)
		}
		if again, _ := FixCrypttab(got); again != nil {
			t.Errorf("%q: not idempotent", in)
		}
	}
	// The initrd's cryptroot/crypttab (cryptsetup-initramfs's hook writes the osencrypt line there).
	got, _ := FixCrypttab([]byte("osencrypt UUID=" + luksU + " none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh\n"))
	if got == nil || len(got) != 0 {
		t.Errorf("cryptroot/crypttab: %q", got)
	}
}

func TestFixCryptrootConf(t *testing.T) {
	const path = "conf/conf.d/cryptroot"
	other := "target=home,source=UUID=1,key=/mnt/azure_bek_disk/LinuxPassPhraseFileName_0_1,discard\n"
	for _, tt := range []struct {
		in, want string
		pol      Policy
	}{
		{uCryptrootConf, "", Policy{}},
		{other + strings.TrimSuffix(uCryptrootConf, "\n"), other, Policy{}},
		{"# c\n" + uCryptrootConf + other, "# c\n", Policy{CrypttabBEK: true}},
		{uCryptrootConf + other, "", Policy{CrypttabMappers: []string{"home"}}},
	} {
		got, ch := tt.pol.FixCryptrootConf(path, []byte(tt.in))
		if got == nil || string(got) != tt.want || len(ch) == 0 || ch[0].Path != path {
			t.Errorf("%q: got %q, %+v; want %q", tt.in, got, ch, tt.want)
		}
		if again, _ := tt.pol.FixCryptrootConf(path, got); again != nil {
			t.Errorf("%q: not idempotent", tt.in)
		}
	}
	for _, clean := range []string{"", other, "#" + uCryptrootConf, "target=osencrypt2,source=/dev/sdb1\n"} {
		if got, _ := FixCryptrootConf(path, []byte(clean)); got != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
}

func TestUbuntuFstab(t *testing.T) {
	// The guest's /etc/fstab: the BEK line goes, ADE's /boot line stays (the partition remains).
	got, ch := FixFstab([]byte(uFstab))
	if string(got) != uFstabBase || len(ch) != 1 || !strings.Contains(ch[0].Why, "BEK") {
		t.Fatalf("fixture fstab: %q, %+v", got, ch)
	}
	for _, bek := range []string{
		`/dev/disk/by-label/BEK\x20VOLUME /mnt/azure_bek_disk auto defaults 0 0`,
		`LABEL=BEK\040VOLUME /bek auto defaults,nofail 0 0`,
		`/dev/disk/by-label/BEK\040VOLUME /media/x vfat ro 0 0`,
		"/dev/sdb1\t/mnt/azure_bek_disk\tvfat\tdefaults,nofail\t0\t0",
		`UUID=ABCD-1234 /mnt/azure_bek_disk/ auto defaults 0 0`,
	} {
		in := uFstabBase + bek + "\n"
		if got, ch := FixFstab([]byte(in)); string(got) != uFstabBase || len(ch) != 1 {
			t.Errorf("%q: got %q", bek, got)
		}
		if fs := Scan(PathFstab, []byte(bek)); len(fs) != 1 || !strings.Contains(fs[0].What, "fstab entry of the ADE BEK volume") {
			t.Errorf("Scan(%q) = %+v", bek, fs)
		}
	}
	for _, clean := range []string{uFstabBase, "/dev/sdc1 /mnt/azure_bek_disk2 auto defaults 0 0\n", "LABEL=BEK /bek auto defaults 0 0\n"} {
		if got, _ := FixFstab([]byte(clean)); got != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
	// The initrd's etc/fstab: both of crypt-ade-hook's lines go, leaving what mkinitramfs wrote.
	got, ch = FixInitramfsToolsFstab([]byte(uInitrdFstab))
	if got == nil || len(got) != 0 || len(ch) != 2 || ch[0].Path != PathFstab {
		t.Fatalf("initrd fstab: %q, %+v", got, ch)
	}
	if again, _ := FixInitramfsToolsFstab(got); again != nil {
		t.Errorf("not idempotent")
	}
	// p.FstabAdd is for the guest's fstab only.
	p := Policy{FstabAdd: []string{"UUID=1 /data ext4 defaults 0 0"}}
	if got, _ := p.FixInitramfsToolsFstab([]byte(uInitrdFstab)); string(got) != "" {
		t.Errorf("FstabAdd in the image: %q", got)
	}
	if got, _ := FixInitramfsToolsFstab([]byte("/dev/sda2 /usr ext4 defaults 0 0\n")); got != nil {
		t.Errorf("a /usr line changed: %q", got)
	}
}

func TestFixInitramfsToolsOrder(t *testing.T) {
	const path = "scripts/init-premount/ORDER"
	param := "[ -e /conf/param.conf ] && . /conf/param.conf\n"
	udev := "/scripts/init-premount/udev \"$@\"\n" + param
	for _, tt := range []struct{ in, want string }{
		{uOrder, ""},
		{strings.TrimSuffix(uOrder, "\n"), ""},
		{udev + uOrder, udev},
		{uOrder + udev, udev},
		{"/scripts/local-top/crypt-ade-x \"$@\"\n" + udev, udev},
	} {
		got, ch := FixInitramfsToolsOrder(path, []byte(tt.in))
		if got == nil || string(got) != tt.want || len(ch) != 1 || ch[0].Path != path || !strings.Contains(ch[0].Why, "crypt-ade") {
			t.Errorf("%q: got %q, %+v; want %q", tt.in, got, ch, tt.want)
		}
		if again, _ := FixInitramfsToolsOrder(path, got); again != nil {
			t.Errorf("%q: not idempotent", tt.in)
		}
	}
	for _, clean := range []string{"", udev, "/scripts/init-top/parse-crypt-ade.sh \"$@\"\n"} {
		if got, _ := FixInitramfsToolsOrder(path, []byte(clean)); got != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
}

func TestADEInitramfsToolsFile(t *testing.T) {
	for _, tt := range []struct {
		p    string
		dir  bool
		want string // part of what; "" means not ADE's
	}{
		{"scripts/init-premount/crypt-ade-boot", false, "crypt-ade-boot"},
		{"/scripts/local-top/crypt-ade-boot", false, "crypt-ade-boot"},
		{"boot/luks/osluksheader", false, "LUKS header"},
		{"./conf/conf.d/cryptheader/osluksheader", false, "LUKS header"},
		{"osluksheader", false, "LUKS header"},
		{"usr/sbin/azure_crypt_key.sh", false, "keyscript"},
		{"lib/cryptsetup/scripts/azure_crypt_key.sh", false, "keyscript"},
		{"mnt/azure_bek_disk", true, "BEK volume"},
		{"mnt/azure_bek_disk/LinuxPassPhraseFileName", false, "BEK volume"},
		{"boot/luks", true, "directory"},
		{"conf/conf.d/cryptheader", true, "directory"},
		{"boot/luks", false, ""},
		{"boot", true, ""},
		{"mnt", true, ""},
		{"scripts/init-premount", true, ""},
		{"scripts/local-top/cryptroot", false, ""},
		{"cryptroot/crypttab", false, ""},
		{"usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh", false, ""},
		{"etc/fstab", false, ""},
		{"mnt/azure_bek_disk2", true, ""},
	} {
		what, ok := ADEInitramfsToolsFile(tt.p, tt.dir)
		if ok != (tt.want != "") || !strings.Contains(what, tt.want) {
			t.Errorf("ADEInitramfsToolsFile(%q, %v) = %q, %v; want %q", tt.p, tt.dir, what, ok, tt.want)
		}
	}
}

// disabledMarkers are the strings no disabled script may hold: a scan of the converted guest for
// ADE's strings must not find luksconv's own replacement.
var disabledMarkers = []string{"osencrypt", "azure_crypt_key", "crypt-ade", "azure_bek_disk", "BEK"}

func TestDisableScript(t *testing.T) {
	hook, err := os.ReadFile(filepath.Join(fixture.Root(), "testdata", "ubuntu", "ade2004", "crypt-ade-hook"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range disabledScripts {
		for _, m := range disabledMarkers {
			if strings.Contains(s, m) {
				t.Errorf("disabled script names %q:\n%s", m, s)
			}
		}
		if !strings.HasPrefix(s, "#!/bin/sh\n") {
			t.Errorf("no #!/bin/sh line: %q", s)
		}
	}
	got, ch, err := DisableScript(hook, 0)
	if err != nil || string(got) != disabledScripts[0] || len(ch) != 1 || ch[0].Path != "" || len(ch[0].Before) < 10 {
		t.Fatalf("crypt-ade-hook: %q, %+v, %v", got, ch, err)
	}
	if !strings.Contains(string(got), "luksconv") {
		t.Errorf("no luksconv comment: %q", got)
	}
	if again, ch, err := DisableScript(got, 0); again != nil || ch != nil || err != nil {
		t.Errorf("not idempotent")
	}
	// Room: each shorter form in turn, then an error.
	for _, s := range disabledScripts[1:] {
		in := []byte(strings.Repeat("#", len(s)))
		got, _, err := DisableScript(in, len(s))
		if err != nil || string(got) != s {
			t.Errorf("room %d: %q, %v; want %q", len(s), got, err, s)
		}
	}
	if got, _, err := DisableScript([]byte("#!/bin/sh"), 9); err == nil || got != nil {
		t.Errorf("room 9: %q, %v; want an error", got, err)
	}
	if got, _, err := DisableScript([]byte("x"), 10); err != nil || string(got) != "#!/bin/sh\n" {
		t.Errorf("room 10: %q, %v", got, err)
	}
	// A room below the file's size means the file's own size.
	if got, _, err := DisableScript(hook, 1); err != nil || string(got) != disabledScripts[0] {
		t.Errorf("room 1: %q, %v", got, err)
	}
	// Each form runs, as mkinitramfs runs hooks (with "prereqs") and as a boot script, silently and
	// with status 0.
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	for i, s := range disabledScripts {
		p := filepath.Join(dir, "s"+string(rune('0'+i)))
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{p, "prereqs"}, {p}, {p, "osencrypt"}} {
			out, err := exec.Command(sh, args...).CombinedOutput()
			if err != nil || len(out) != 0 {
				t.Errorf("sh %q: %v %q", args, err, out)
			}
		}
		if out, err := exec.Command(p, "prereqs").CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("%s run directly: %v %q", p, err, out)
		}
	}
}

func TestScanUbuntu(t *testing.T) {
	hook, err := os.ReadFile(filepath.Join(fixture.Root(), "testdata", "ubuntu", "ade2004", "crypt-ade-hook"))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		line int
		what string
	}
	for _, tt := range []struct {
		name, path, in string
		want           []want
	}{
		{"default grub", PathDefaultGrub, uDefaultGrub, []want{{11, "osencrypt"}}},
		{"crypttab 18.04", PathCrypttab, uCrypttab1804, []want{{2, "osencrypt"}, {2, "azure_crypt_key"}}},
		{"crypttab 20.04", PathCrypttab, uCrypttab2004, []want{{2, "osencrypt"}}},
		{"fstab", PathFstab, uFstab, []want{{5, "fstab entry of the ADE BEK volume"}}},
		{"cryptdisks", PathCryptdisks, uCryptdisksPkg + uCryptdisksADE, []want{{14, "mount point /mnt/azure_bek_disk"}}},
		{"hook", "/usr/share/initramfs-tools/hooks/crypt-ade-hook", string(hook), []want{{0, "crypt-ade-hook"}}},
		{"keyscript under a mount prefix", "/mnt/root/usr/sbin/azure_crypt_key.sh", "#!/bin/sh\ncat /x\n", []want{{0, "keyscript"}}},
		{"ORDER", "scripts/init-premount/ORDER", uOrder, []want{{1, "crypt-ade"}}},
		{"cryptroot conf", "conf/conf.d/cryptroot", uCryptrootConf, []want{{1, "osencrypt"}, {1, "azure_crypt_key"}}},
		{"patched cryptroot hook", "/usr/share/initramfs-tools/hooks/cryptroot", "crypttab_find_and_print_entry osencrypt || true\n", []want{{1, "osencrypt"}}},
	} {
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
	// Fixed, every file scans clean.
	pol := Policy{RootUUID: uRoot}
	grub, _, _ := pol.FixDefaultGrub([]byte(uDefaultGrub), 1000)
	crypttab, _ := FixCrypttab([]byte(uCrypttab1804))
	fstab, _ := FixFstab([]byte(uFstab))
	cd, _ := FixCryptdisks([]byte(uCryptdisksPkg + uCryptdisksADE))
	for p, b := range map[string][]byte{
		PathDefaultGrub: grub, PathCrypttab: crypttab, PathFstab: fstab, PathCryptdisks: cd,
		"/usr/share/initramfs-tools/hooks/crypt-ade-hook":          []byte(disabledScripts[0]),
		"/usr/sbin/azure_crypt_key.sh":                             []byte(disabledScripts[3]),
		"/usr/lib/dracut/modules.d/91adeOnline/parse-crypt-ade.sh": []byte("#!/bin/sh\n. parse-crypt-ade.sh\n"),
		"/etc/x": []byte("inst_hook cmdline 30 \"$moddir/parse-crypt-ade.sh\"\n"),
	} {
		if fs := Scan(p, b); fs != nil {
			t.Errorf("%s: %+v", p, fs)
		}
	}
}

// TestUbuntuFixtureStrings checks that the Ubuntu fixture script and ADE stand-ins still write the
// strings the tables above quote.
func TestUbuntuFixtureStrings(t *testing.T) {
	read := func(rel ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{fixture.Root(), "testdata", "ubuntu"}, rel...)...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	script, hook := read("mkubuntu.sh"), read("ade2004", "crypt-ade-hook")
	for _, s := range []string{
		`local P1=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e01`,
		`local ROOT_UUID=2c0d7e5a-$id-4a1b-9c3d-5e6f7a8b9c01 BOOT_UUID=2c0d7e5a-$id-4a1b-9c3d-5e6f7a8b9c02`,
		`KOPTS="` + uKopts + `"`,
		`ROPTS="root=UUID=$ROOT_UUID ro recovery nomodeset dis_ucode_ldr root=/dev/mapper/osencrypt "`,
		`CRYPTTAB_LINE="osencrypt $CRYPTSOURCE /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"`,
		`CRYPTTAB_LINE="osencrypt $CRYPTSOURCE none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh"`,
		`printf '%s' "$CRYPTTAB_LINE" >>"$r/etc/crypttab"`,
		`printf '\nUUID=%s\t/boot\text2\tdefaults\t0 0\n' "$BOOT_UUID"`,
		`printf 'LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0\n'`,
		`printf '\nCRYPTDISKS_MOUNT="$CRYPTDISKS_MOUNT /mnt/azure_bek_disk"\n' >>"$r/etc/default/cryptdisks"`,
		`echo 'GRUB_CMDLINE_LINUX="root=/dev/mapper/osencrypt "'`,
	} {
		if !strings.Contains(script, s) {
			t.Errorf("mkubuntu.sh no longer contains %q", s)
		}
	}
	for _, s := range []string{
		`printf '/dev/disk/by-uuid/%s /boot ext2 defaults 0 0\n' "$uuid_of_boot" >>"${DESTDIR}/etc/fstab"`,
		`printf '%s /mnt/azure_bek_disk auto defaults 0 0\n' '/dev/disk/by-label/BEK\x20VOLUME' >>"${DESTDIR}/etc/fstab"`,
		`mkdir -p "${DESTDIR}/boot/luks" "${DESTDIR}/mnt/azure_bek_disk"`,
	} {
		if !strings.Contains(hook, s) {
			t.Errorf("crypt-ade-hook no longer contains %q", s)
		}
	}
	for _, f := range InitramfsToolsADEFiles {
		if f.What == "" || !strings.HasPrefix(f.Path, "/") {
			t.Errorf("%+v", f)
		}
		if !strings.Contains(script, strings.TrimPrefix(strings.TrimPrefix(f.Path, "/usr/share/initramfs-tools/"), "/usr/sbin/")) {
			t.Errorf("mkubuntu.sh does not install %s", f.Path)
		}
	}
}

func FuzzRootUUID(f *testing.F) {
	for _, s := range []string{uKopts, uRopts, "root=/dev/mapper/osencrypt root=/dev/mapper/osencrypt", kopts8,
		"rd.debug root=/dev/mapper/osencrypt " + ade8, "root=" + uRootArg, "", " root=/dev/mapper/osencrypt\troot=UUID=x "} {
		f.Add(s)
	}
	pol := Policy{RootUUID: uRoot}
	roots := func(args []string) (n int, other []string) {
		for _, a := range args {
			if strings.HasPrefix(a, "root=") {
				if a == "root=/dev/mapper/osencrypt" {
					n++
				} else {
					other = append(other, a)
				}
			}
		}
		return n, other
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, removed := pol.FixCmdline(s)
		unset, unsetRemoved := FixCmdline(s)
		if removed == nil {
			if out != s || unset != s {
				t.Fatalf("changed %q -> %q without removing anything", s, out)
			}
			return
		}
		if !slices.Equal(removed, unsetRemoved) || hasADEArg(out) {
			t.Fatalf("%q -> %q, removed %q (unset: %q)", s, out, removed, unsetRemoved)
		}
		n, other := roots(strings.Fields(s))
		outN, outOther := roots(strings.Fields(out))
		kept := strings.Fields(out)
		if n > 0 && other == nil {
			// Replaced: exactly one root=, the new one; without it the line is what Policy{} gives.
			if outN != 0 || !slices.Equal(outOther, []string{uRootArg}) {
				t.Fatalf("%q -> %q: want one %s", s, out, uRootArg)
			}
			kept = slices.DeleteFunc(kept, func(a string) bool { return a == uRootArg })
		} else if out != unset || !slices.Equal(outOther, other) {
			t.Fatalf("%q -> %q, Policy{} gives %q", s, out, unset)
		}
		if strings.Join(kept, " ") != unset {
			t.Fatalf("%q -> %q, Policy{} gives %q", s, out, unset)
		}
		if again, r := pol.FixCmdline(out); again != out || r != nil {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}
