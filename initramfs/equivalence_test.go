package initramfs

import (
	"bytes"
	"path"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/guest"
)

// Strings as ADE writes them (ade-internals §4.1, §4.3, §10.2, §10.5).
const (
	eqPart     = "5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e14"
	eqBoot     = "0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b01"
	eqMarker   = "#This line was added by Azure Disk Encryption"
	eqOS8      = "osencrypt /dev/disk/by-partuuid/" + eqPart + " /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"
	eqOS7      = "osencrypt /dev/disk/by-partuuid/" + eqPart + " /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,nofail,header=/boot/luks/osluksheader"
	eqLegacy   = "osencrypt UUID=osencrypt-locked none discard,header=/osluksheader"
	eqData     = "9c2a1b7e-5d4f-4e3a-8b2c-1d0e9f8a7b6c /dev/disk/azure/scsi1/lun0-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0 luks,nofail"
	eqData2    = "1b2c3d4e-5d4f-4e3a-8b2c-1d0e9f8a7b6c /dev/disk/azure/scsi1/lun1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_1 luks,nofail"
	eqResource = "resourceencrypt /dev/disk/azure/resource-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,nofail"
	eqUser     = "luks-3f1c9a52 UUID=3f1c9a52-6b0e-4d7a-9a61-0c2e5d8f4b10 none discard"
	eqBEK      = `LABEL=BEK\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0`
	eqMapper   = "3c9b8e4f-0b58-4a16-9a0e-3f2a1c5b7d11"
	eqBEKOnl   = `LABEL=BEK\040VOLUME /bek auto defaults,nofail 0 0`
	eqFstab    = "/dev/mapper/rootvg-rootlv / xfs defaults 0 0\nUUID=" + eqBoot + " /boot xfs defaults 0 0\n"
	eqLVMConf  = "config {\n\tchecks = 1\n}\ndevices {\n\tdir = \"/dev\"\n\tscan = [ \"/dev\" ]\n}\n"
	eqFilter   = `devices { filter = ["a|osencrypt|", "r|` + eqPart + `|"] }`
	eqADEArgs  = "rd.luks.ade.partuuid=" + eqPart + " rd.luks.ade.bootuuid=" + eqBoot + " rd.debug"
	eqAliases  = "rd_LUKS_PARTUUID=" + eqPart + " rd_LUKS_BOOTUUID=" + eqBoot
)

// eqRules are the guest functions for each kind of file, called as the guest side calls them.
var eqRules = map[string]func(pol guest.Policy, p string, b []byte) []byte{
	"crypttab": func(pol guest.Policy, _ string, b []byte) []byte { out, _ := pol.FixCrypttab(b); return out },
	"fstab":    func(pol guest.Policy, _ string, b []byte) []byte { out, _ := pol.FixFstab(b); return out },
	"lvm":      func(pol guest.Policy, _ string, b []byte) []byte { out, _ := pol.FixLVMConf(b); return out },
	"cmdline":  func(pol guest.Policy, p string, b []byte) []byte { out, _ := pol.FixDracutCmdline(p, b); return out },
	"modules": func(_ guest.Policy, p string, b []byte) []byte {
		out, _ := guest.FixDracutModulesList(p, b)
		return out
	},
	"params": func(_ guest.Policy, p string, b []byte) []byte {
		out, _ := guest.FixDracutBuildParameters(p, b)
		return out
	},
}

// eqCases lists every rule over the inputs it must handle; change says whether the input holds
// anything of ADE's under the policy (both sides must then agree on the edit, or both leave it).
var eqCases = []struct {
	name, rule, path, in string
	pol                  guest.Policy
	change               bool
}{
	// crypttab
	{"crypttab osencrypt only, no newline", "crypttab", "etc/crypttab", eqOS8, guest.Policy{}, true},
	{"crypttab osencrypt only, newline", "crypttab", "etc/crypttab", eqOS7 + "\n", guest.Policy{}, true},
	{"crypttab 91ade legacy", "crypttab", "etc/crypttab", "# c\n" + eqLegacy + "\n", guest.Policy{}, true},
	{"crypttab marker above osencrypt", "crypttab", "etc/crypttab", eqUser + "\n" + eqMarker + "\n" + eqOS8, guest.Policy{}, true},
	{"crypttab data volumes kept by default", "crypttab", "etc/crypttab",
		eqUser + "\n" + eqMarker + "\n" + eqData + "\n" + eqResource + "\n" + eqOS8, guest.Policy{}, true},
	{"crypttab data volumes and markers, CrypttabBEK", "crypttab", "etc/crypttab",
		eqUser + "\n" + eqMarker + "\n" + eqData + "\n" + eqMarker + "\n" + eqData2 + "\n" + eqResource + "\n" + eqOS8, guest.Policy{CrypttabBEK: true}, true},
	{"crypttab data volume last without newline, CrypttabBEK", "crypttab", "etc/crypttab",
		eqUser + "\n" + eqMarker + "\n" + eqData, guest.Policy{CrypttabBEK: true}, true},
	{"crypttab no osencrypt, CrypttabBEK", "crypttab", "etc/crypttab", eqMarker + "\n" + eqData2 + "\n", guest.Policy{CrypttabBEK: true}, true},
	{"crypttab CrypttabMappers", "crypttab", "etc/crypttab",
		eqMarker + "\n" + eqData + "\n" + eqResource + "\n" + eqOS8 + "\n", guest.Policy{CrypttabMappers: []string{"resourceencrypt", eqData[:36]}}, true},
	{"crypttab data volumes only, default policy", "crypttab", "etc/crypttab", eqMarker + "\n" + eqData + "\n", guest.Policy{}, false},
	{"crypttab user only", "crypttab", "etc/crypttab", eqUser + "\n#osencrypt /dev/sda2 none\n", guest.Policy{CrypttabBEK: true}, false},
	{"crypttab empty", "crypttab", "etc/crypttab", "", guest.Policy{}, false},
	// fstab
	{"fstab BEK line", "fstab", "etc/fstab", eqFstab + eqBEK + "\n", guest.Policy{}, true},
	{"fstab BEK line with marker", "fstab", "etc/fstab", eqFstab + eqMarker + "\n" + eqBEK + "\n", guest.Policy{}, true},
	{"fstab /bek form, no newline", "fstab", "etc/fstab", eqFstab + eqBEKOnl, guest.Policy{}, true},
	{"fstab clean", "fstab", "etc/fstab", eqFstab + "#" + eqBEK + "\n", guest.Policy{}, false},
	{"fstab data volume and resource disk", "fstab", "etc/fstab", eqFstab + eqMarker + "\n/dev/mapper/" + eqMapper + " /data ext4 defaults,nofail 0 0\n" +
		"/dev/mapper/resourceencrypt /mnt/resource auto defaults,discard,nofail 0 0\n",
		guest.Policy{FstabDevices: map[string]string{"/dev/mapper/" + eqMapper: "UUID=" + eqBoot}, FstabDrop: []string{"/dev/mapper/resourceencrypt"}}, true},
	{"fstab data volume of another disk", "fstab", "etc/fstab", eqFstab + "/dev/mapper/" + eqMapper + " /data ext4 defaults,nofail 0 0\n",
		guest.Policy{FstabDevices: map[string]string{"/dev/mapper/other": "UUID=" + eqBoot}}, false},
	// lvm.conf
	{"lvm.conf ADE's exact line", "lvm", "etc/lvm/lvm.conf", eqLVMConf + eqFilter + "\n", guest.Policy{}, true},
	{"lvm.conf blank line before it", "lvm", "etc/lvm/lvm.conf", eqLVMConf + "\n" + eqFilter + "\n", guest.Policy{}, true},
	{"lvm.conf spacing variant, no newline", "lvm", "etc/lvm/lvm.conf", eqLVMConf + `devices{filter=["a|osencrypt|","r|` + strings.ToUpper(eqPart) + `|"]}`, guest.Policy{}, true},
	{"lvm.conf appended twice", "lvm", "etc/lvm/lvm.conf", eqLVMConf + "\n" + eqFilter + "\n\n" + eqFilter + "\n", guest.Policy{}, true},
	{"lvm.conf filter in the devices section", "lvm", "etc/lvm/lvm.conf", "devices {\n    filter = [ \"a|osencrypt|\", \"r|" + eqPart + "|\" ]\n    scan = 1\n}\n", guest.Policy{}, true},
	{"lvm.conf opening brace kept", "lvm", "etc/lvm/lvm.conf", "devices { filter = [\"a|osencrypt|\"]\n  scan = 1\n}\n", guest.Policy{}, true},
	{"lvm.conf list over lines", "lvm", "etc/lvm/lvm.conf", "devices {\n\tfilter = [ \"a|osencrypt|\", # ADE\n\t\t\"r|.*|\" ]\n}\n", guest.Policy{}, true},
	{"lvm.conf global_filter", "lvm", "etc/lvm/lvm.conf", "devices {\n\tglobal_filter = [ \"a|/dev/mapper/osencrypt|\", \"r|.*|\" ] }\n", guest.Policy{}, true},
	{"lvm.conf osencrypt only rejected", "lvm", "etc/lvm/lvm.conf", "devices {\n  filter = [\"r|osencrypt|\", \"a|.*|\"]\n  # filter osencrypt\n}\n", guest.Policy{}, false},
	{"lvm.conf stock", "lvm", "etc/lvm/lvm.conf", eqLVMConf, guest.Policy{}, false},
	{"lvm.conf devices file turned off", "lvm", "etc/lvm/lvm.conf", "devices {\n\tuse_devicesfile = 1\n}\n" + eqFilter + "\n", guest.Policy{DisableLVMDevicesFile: true}, true},
	{"lvm.conf devices file off, no setting", "lvm", "etc/lvm/lvm.conf", eqLVMConf, guest.Policy{DisableLVMDevicesFile: true}, true},
	// built-in command lines
	{"cmdline.d ADE args", "cmdline", "etc/cmdline.d/90ade.conf", "rd.lvm.lv=rootvg/rootlv " + eqADEArgs + "\n", guest.Policy{}, true},
	{"cmdline.d deprecated aliases", "cmdline", "etc/cmdline.d/91alias.conf", eqAliases + " rd.debug\n", guest.Policy{}, true},
	{"cmdline.d alias with rd.debug on another line, no newline", "cmdline", "etc/cmdline.d/01-default.conf", "rd.debug\nro rd_LUKS_BOOTUUID=" + eqBoot, guest.Policy{}, true},
	{"cmdline.d osencrypt root", "cmdline", "etc/cmdline.d/90crypt.conf", "root=/dev/mapper/osencrypt rd.luks.uuid=osencrypt\n", guest.Policy{}, true},
	{"cmdline.d osencrypt root, RootUUID", "cmdline", "etc/cmdline.d/90crypt.conf", "root=/dev/mapper/osencrypt rd.luks.uuid=osencrypt\n", guest.Policy{RootUUID: eqBoot}, true},
	{"cmdline.d rd.debug alone, DropDebug", "cmdline", "etc/cmdline.d/10-debug.conf", "rd.debug rd.shell\n", guest.Policy{DropDebug: true}, true},
	{"cmdline.d rd.debug alone", "cmdline", "etc/cmdline.d/10-debug.conf", "rd.debug rd.shell\n", guest.Policy{}, false},
	{"cmdline.d AddArgs not added", "cmdline", "etc/cmdline.d/90lvm.conf", "rd.lvm.lv=rootvg/rootlv\n", guest.Policy{AddArgs: []string{"rd.ade=0"}}, false},
	{"cmdline.d AddArgs with ADE args", "cmdline", "etc/cmdline.d/90ade.conf", eqADEArgs + "\n", guest.Policy{AddArgs: []string{"rd.ade=0"}}, true},
	{"etc/cmdline", "cmdline", "etc/cmdline", "ro " + eqAliases + "\n", guest.Policy{}, true},
	// dracut's records of its modules
	{"modules.txt", "modules", "usr/lib/dracut/modules.txt", "bash\nsystemd\nadeOnline\ncrypt\nlvm\n", guest.Policy{}, true},
	{"modules.txt lib, ade last without newline", "modules", "lib/dracut/modules.txt", "bash\ncrypt\nade", guest.Policy{}, true},
	{"modules.txt clean", "modules", "usr/lib/dracut/modules.txt", "bash\ncrypt\nadeOnlineX\n", guest.Policy{}, false},
	{"build-parameter.txt", "params", "usr/lib/dracut/build-parameter.txt", " --kver '4.18.0-477.10.1.el8_8.x86_64' --add 'crypt adeOnline lvm' -f\n", guest.Policy{}, true},
	{"build-parameter.txt lib, ade", "params", "lib/dracut/build-parameter.txt", "--modules 'ade crypt' --add 'ade'", guest.Policy{}, true},
	{"build-parameter.txt clean", "params", "usr/lib/dracut/build-parameter.txt", " --kver '5.14.0' --add 'crypt lvm' --fade 'adeX'\n", guest.Policy{}, false},
}

// eqImage builds a gzip initramfs holding the file (and its directories) as dracut lays it out.
func eqImage(t *testing.T, name, content string) []byte {
	t.Helper()
	var entries []*Entry
	var dirs []string
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		entries = append(entries, dir(d))
	}
	entries = append(entries, file(name, content), file("init", "#!/bin/sh\n"))
	return mustEncode(t, Gzip, mkArchive(t, entries...))
}

// TestADEEditMatchesGuest runs every rule over the same bytes through both paths, the guest function
// and ADEEdit on an image holding the file, and requires the same result: the same new content, or
// no change on both sides.
func TestADEEditMatchesGuest(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range eqCases {
		seen[tc.rule] = true
		t.Run(tc.name, func(t *testing.T) {
			want := eqRules[tc.rule](tc.pol, tc.path, []byte(tc.in))
			if (want != nil) != tc.change {
				t.Fatalf("guest side: changed = %v, want %v (%q)", want != nil, tc.change, want)
			}
			img := eqImage(t, tc.path, tc.in)
			im := parseBytes(t, img)
			edit, findings := ADEEdit(im, tc.pol)
			got, replaced := edit.Replace[tc.path]
			if want == nil {
				if replaced || edit.Replace != nil || edit.Remove != nil {
					t.Fatalf("guest leaves %q alone; ADEEdit: %+v", tc.in, edit)
				}
				return
			}
			if !replaced {
				t.Fatalf("guest rewrites %q to %q; ADEEdit does not (findings %q)", tc.in, want, findings)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%q:\nguest   %q\nADEEdit %q", tc.in, want, got)
			}
			if len(edit.Replace) != 1 || edit.Remove != nil {
				t.Errorf("ADEEdit touches more than %s: %+v", tc.path, edit)
			}
			// And the rewritten image carries it.
			out, _, err := im.Rewrite(t.Context(), bytes.NewReader(img), edit)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := parseBytes(t, out).ReadFile(tc.path); err != nil || !bytes.Equal(b, want) {
				t.Errorf("rewritten image: %s = %q, %v; want %q", tc.path, b, err, want)
			}
		})
	}
	for rule := range eqRules {
		if !seen[rule] {
			t.Errorf("no case for rule %s", rule)
		}
	}
}

// TestADEEditMatchesGuestOneImage puts every changing case's file into one image (the last case per
// path wins, as dracut's later files would) and checks ADEEdit rewrites each as the guest does.
func TestADEEditMatchesGuestOneImage(t *testing.T) {
	pol := guest.Policy{CrypttabBEK: true, DropDebug: true}
	files := map[string]string{}
	for _, tc := range eqCases {
		files[tc.path] = tc.in
	}
	var entries []*Entry
	dirs := map[string]bool{}
	for p := range files {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				entries = append(entries, dir(d))
			}
		}
	}
	for p, s := range files {
		entries = append(entries, file(p, s))
	}
	im := parseBytes(t, mustEncode(t, XZ, mkArchive(t, entries...)))
	edit, _ := ADEEdit(im, pol)
	rule := map[string]string{}
	for _, tc := range eqCases {
		rule[tc.path] = tc.rule
	}
	for p, s := range files {
		want := eqRules[rule[p]](pol, p, []byte(s))
		got, ok := edit.Replace[p]
		if ok != (want != nil) || !bytes.Equal(got, want) {
			t.Errorf("%s: guest %q, ADEEdit %q (replaced %v)", p, want, got, ok)
		}
	}
}
