package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/internal/testenv"
)

// ADE-style dracut modules written from ade-internals §4.1-4.2 (the real ones are not redistributable
// here). Their depends() asks only for bash so that dracut runs in about a second: the real modules
// pull in crypt and systemd, which changes what else is in the image but not how ADE's files get there.
var adeModuleFiles = map[string]map[string]string{
	"91adeOnline": {
		"module-setup.sh": `#!/bin/bash
depends() {
    echo bash
    return 0
}
installkernel() {
    hostonly='' instmods drbg dm_crypt =crypto =drivers/crypto =arch/x86/crypto
}
install() {
    inst_hook cmdline 30 "$moddir/parse-crypt-ade.sh"
    inst_script "$moddir/crypt-run-generator-ade.sh" "/sbin/crypt-run-generator-ade"
    dracut_need_initqueue
}
`,
		"parse-crypt-ade.sh": `#!/bin/sh
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh
if getargbool 1 rd.ade -d -n rd_NO_ADE; then
    partuuid=$(getarg rd.luks.ade.partuuid)
    bootuuid=$(getarg rd.luks.ade.bootuuid)
    printf 'SUBSYSTEM=="block", ENV{ID_PART_ENTRY_UUID}=="*%s*", RUN+="/sbin/initqueue --unique --settled --onetime --name crypt-run-generator-ade-%%k /sbin/crypt-run-generator-ade $env{DEVNAME} osencrypt %s"\n' \
        "$partuuid" "$bootuuid" > /etc/udev/rules.d/70-luks-ade.rules
fi
`,
		"crypt-run-generator-ade.sh": `#!/bin/sh
dev=$1 luks=$2 bootuuid=$3
echo "$luks $dev /bek/LinuxPassPhraseFileName timeout=10,discard,header=/boot/luks/osluksheader" >> /etc/crypttab
echo "UUID=$bootuuid /boot auto defaults 0 0" >> /etc/fstab
echo 'LABEL=BEK\040VOLUME /bek auto defaults,nofail 0 0' >> /etc/fstab
systemctl daemon-reload
systemctl start bek.mount boot.mount cryptsetup.target
`,
	},
	"91ade": {
		"module-setup.sh": `#!/bin/bash
check() {
    return 0
}
depends() {
    echo bash
    return 0
}
install() {
    inst_script "$moddir/cryptroot-ask-ade.sh" /sbin/cryptroot-ask-ade
    inst_hook cmdline 30 "$moddir/parse-crypt-ade.sh"
    inst_rules "$moddir/50-udev-ade.rules"
    inst "$ADE_TEST_OSLUKSHEADER" /osluksheader
}
`,
		"parse-crypt-ade.sh": `#!/bin/sh
printf 'ENV{ID_FS_UUID}=="osencrypt-locked", RUN+="/sbin/initqueue --onetime --unique --settled --name cryptroot-ask-ade /sbin/cryptroot-ask-ade $env{DEVNAME} osencrypt"\n' > /etc/udev/rules.d/70-luks-ade.rules
`,
		"cryptroot-ask-ade.sh": `#!/bin/sh
mkdir -p /mnt/azure_bek_disk
mount -L "BEK VOLUME" /mnt/azure_bek_disk
for k in /mnt/azure_bek_disk/LinuxPassPhraseFileName*; do break; done
cryptsetup --key-file "$k" --header /osluksheader luksOpen "$1" "$2"
`,
		"50-udev-ade.rules": `SUBSYSTEM=="block", ATTRS{device_id}=="?00000000-0000-*", ATTR{partition}=="2", ENV{ID_FS_UUID}="osencrypt-locked", ENV{ID_FS_UUID_ENC}="osencrypt-locked", ENV{ID_FS_USAGE}="crypto"
`,
	},
}

const (
	testCrypttab = "luks-home UUID=1234 none discard\nosencrypt /dev/disk/by-partuuid/8a3f /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"
	testLVMConf  = "global {\n    use_lvmetad = 0\n}\ndevices { filter = [\"a|osencrypt|\", \"r|8a3f|\"] }\n"
	testFstab    = "/dev/mapper/rootvg-rootlv / xfs defaults 0 0\nLABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0\n"
)

// dracutImage runs the real dracut with a module directory that adds ADE's module, an early microcode
// cpio and copies of crypttab, lvm.conf and fstab as ADE leaves them on the host.
func dracutImage(t *testing.T, module, compress string) string {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "dracut")
	if err := os.MkdirAll(filepath.Join(base, "modules.d", module), 0o755); err != nil {
		t.Fatal(err)
	}
	sys, err := filepath.Glob("/usr/lib/dracut/*")
	if err != nil || len(sys) == 0 {
		t.Fatalf("no /usr/lib/dracut: %v", err)
	}
	for _, p := range sys {
		if filepath.Base(p) != "modules.d" {
			if err := os.Symlink(p, filepath.Join(base, filepath.Base(p))); err != nil {
				t.Fatal(err)
			}
		}
	}
	mods, _ := filepath.Glob("/usr/lib/dracut/modules.d/*")
	for _, p := range mods {
		if err := os.Symlink(p, filepath.Join(base, "modules.d", filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range adeModuleFiles[module] {
		if err := os.WriteFile(filepath.Join(base, "modules.d", module, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "fw/intel-ucode"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, dir, "fw/intel-ucode/06-55-04", bytes.Repeat([]byte{0x5a, 0x17, 0x01}, 1001))
	hdr := make([]byte, 64<<10)
	copy(hdr, "LUKS\xba\xbe\x00\x02")
	testenv.WriteFile(t, dir, "osluksheader", hdr)
	testenv.WriteFile(t, dir, "crypttab", []byte(testCrypttab))
	testenv.WriteFile(t, dir, "lvm.conf", []byte(testLVMConf))
	testenv.WriteFile(t, dir, "fstab", []byte(testFstab))
	out := filepath.Join(dir, "initramfs.img")
	name := strings.TrimLeft(module, "0123456789")
	cmd := exec.Command("dracut", "--no-kernel", "--no-hostonly", "-m", "bash "+name, "--kver", "0.0.0-test",
		"--fwdir", filepath.Join(dir, "fw"), "--tmpdir", dir, "--"+compress,
		"--include", filepath.Join(dir, "crypttab"), "/etc/crypttab",
		"--include", filepath.Join(dir, "lvm.conf"), "/etc/lvm/lvm.conf",
		"--include", filepath.Join(dir, "fstab"), "/etc/fstab",
		"-f", out)
	cmd.Env = append(os.Environ(), "dracutbasedir="+base, "ADE_TEST_OSLUKSHEADER="+filepath.Join(dir, "osluksheader"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dracut: %v\n%s", err, b)
	}
	return out
}

// listingLines returns lsinitrd's file lines keyed by name.
func listingLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if n := lsinitrdNames(l); len(n) == 1 {
			m[n[0]] = l
		}
	}
	return m
}

func TestADEEditDracut(t *testing.T) {
	testenv.Need(t, "dracut", "lsinitrd", "cpio", "xz", "zstd")
	testenv.NeedRoot(t)
	for _, tc := range []struct {
		module, compress string
		comp             Compression
		wantRemoved      []string
	}{
		{"91adeOnline", "xz", XZ, []string{"usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh", "usr/sbin/crypt-run-generator-ade"}},
		{"91ade", "zstd", Zstd, []string{
			"etc/udev/rules.d/50-udev-ade.rules", "osluksheader", "usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh", "usr/sbin/cryptroot-ask-ade"}},
	} {
		t.Run(tc.module, func(t *testing.T) {
			t.Parallel()
			path := dracutImage(t, tc.module, tc.compress)
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			im := parseBytes(t, img)
			if len(im.Segments) != 2 || im.Segments[0].Compression != None || im.Segments[1].Compression != tc.comp {
				t.Fatalf("dracut image layout: %d segments", len(im.Segments))
			}
			before := lsinitrd(t, path)
			oldLines := listingLines(before)
			for _, f := range tc.wantRemoved {
				if _, ok := oldLines[f]; !ok {
					t.Fatalf("dracut did not put %s into the image; lsinitrd:\n%s", f, before)
				}
			}
			edit, findings := ADEEdit(im, guest.Policy{})
			sort.Strings(edit.Remove)
			if strings.Join(edit.Remove, " ") != strings.Join(tc.wantRemoved, " ") {
				t.Errorf("ADEEdit removes %v, want %v", edit.Remove, tc.wantRemoved)
			}
			replaced := []string{"etc/crypttab", "etc/fstab", "etc/lvm/lvm.conf", "usr/lib/dracut/modules.txt"}
			for _, r := range replaced {
				if _, ok := edit.Replace[r]; !ok {
					t.Errorf("ADEEdit does not rewrite %s", r)
				}
			}
			t.Logf("findings:\n%s", strings.Join(findings, "\n"))
			out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), edit)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.NotFound) > 0 || rep.Segments[0].Rewritten || !bytes.Equal(out[:im.Segments[1].Offset], img[:im.Segments[1].Offset]) {
				t.Errorf("report %+v: early cpio must be copied", rep)
			}
			newPath := testenv.WriteFile(t, t.TempDir(), "new.img", out)
			after := lsinitrd(t, newPath)
			newLines := listingLines(after)
			for name := range newLines {
				if strings.Contains(name, "-ade") || strings.Contains(name, "osluksheader") {
					t.Errorf("lsinitrd still lists %s", name)
				}
			}
			// Everything else is listed exactly as before (replaced files differ only in size).
			gone := map[string]bool{}
			for _, f := range tc.wantRemoved {
				gone[f] = true
			}
			for name, l := range oldLines {
				nl, ok := newLines[name]
				switch {
				case gone[name]:
					if ok {
						t.Errorf("%s still present", name)
					}
				case !ok:
					t.Errorf("%s lost", name)
				case edit.Replace[name] == nil && nl != l:
					t.Errorf("%s changed:\n%s\n%s", name, l, nl)
				}
			}
			if len(newLines) != len(oldLines)-len(tc.wantRemoved) {
				t.Errorf("%d files listed after, %d before, %d removed", len(newLines), len(oldLines), len(tc.wantRemoved))
			}
			if m := strings.Index(after, "dracut modules:"); m < 0 || strings.Contains(after[m:m+200], "ade") {
				t.Errorf("lsinitrd still lists an ADE dracut module:\n%s", after)
			}
			for name, check := range map[string]func(string) bool{
				"etc/crypttab":     func(s string) bool { return s == "luks-home UUID=1234 none discard\n" },
				"etc/lvm/lvm.conf": func(s string) bool { return s == "global {\n    use_lvmetad = 0\n}\n" },
				"etc/fstab":        func(s string) bool { return s == "/dev/mapper/rootvg-rootlv / xfs defaults 0 0\n" },
			} {
				got := lsinitrd(t, newPath, "-f", name)
				if !check(got) {
					t.Errorf("lsinitrd -f %s on the rewritten image:\n%q", name, got)
				}
			}
			if tc.comp == XZ {
				s := rep.Segments[1]
				seg := testenv.WriteFile(t, t.TempDir(), "main.xz", out[s.NewOffset:s.NewOffset+s.NewLength])
				if robot := string(sh(t, "", nil, "xz --list --robot "+seg)); !strings.Contains(robot, "\tCRC32\t") {
					t.Errorf("rewritten xz segment is not CRC32:\n%s", robot)
				}
			}
		})
	}
}
