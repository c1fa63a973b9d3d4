package initramfs

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/guest"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/ubuntufixture"
)

// initramfsToolsImage is a small initramfs-tools layout as mkinitramfs and ADE's Ubuntu hooks leave it
// (both flows at once), plus files the edit must keep.
func initramfsToolsImage(t *testing.T, extra ...*Entry) []byte {
	t.Helper()
	entries := []*Entry{
		dir("conf"), file("conf/initramfs.conf", "MODULES=most\n"), dir("conf/conf.d"), dir("conf/conf.d/cryptheader"),
		file("conf/conf.d/cryptheader/osluksheader", "LUKS\xba\xbe\x00\x01"),
		file("conf/conf.d/cryptroot", "target=osencrypt,source=/dev/sda1,key=none,rootdev,keyscript=/lib/cryptsetup/scripts/azure_crypt_key.sh,header=/conf/conf.d/cryptheader/osluksheader\n"),
		dir("cryptroot"), file("cryptroot/crypttab", "osencrypt /dev/sda1 none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh\n"),
		dir("boot"), dir("boot/luks"), file("boot/luks/osluksheader", "LUKS\xba\xbe\x00\x02"),
		dir("etc"), file("etc/fstab", "/dev/disk/by-uuid/2c0d7e5a-2204-4a1b-9c3d-5e6f7a8b9c02 /boot ext2 defaults 0 0\n"+
			`/dev/disk/by-label/BEK\x20VOLUME /mnt/azure_bek_disk auto defaults 0 0`+"\n"),
		dir("mnt"), dir("mnt/azure_bek_disk"),
		dir("scripts"), file("scripts/functions", "run_scripts() { :; }\n"),
		dir("scripts/init-premount"),
		file("scripts/init-premount/ORDER", "/scripts/init-premount/udev \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n"+
			"/scripts/init-premount/crypt-ade-boot \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n"),
		file("scripts/init-premount/udev", "#!/bin/sh\n"),
		file("scripts/init-premount/crypt-ade-boot", "#!/bin/sh\nmount -a\ncryptsetup luksOpen /dev/sda1 osencrypt\n"),
		dir("scripts/local-top"), file("scripts/local-top/ORDER", "/scripts/local-top/cryptroot \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n"),
		file("scripts/local-top/cryptroot", "#!/bin/sh\n"),
		dir("usr"), dir("usr/sbin"), file("usr/sbin/azure_crypt_key.sh", "#!/bin/sh\ncat /x/LinuxPassPhraseFileName\n"),
		file("usr/sbin/cryptsetup", "\x7fELF"),
	}
	return mkArchive(t, append(entries, extra...)...)
}

func TestADEEditInitramfsTools(t *testing.T) {
	raw := initramfsToolsImage(t)
	img := mustEncode(t, Gzip, raw)
	im := parseBytes(t, img)
	if !IsInitramfsTools(im) {
		t.Fatal("not recognised as an initramfs-tools image")
	}
	e, findings := ADEEdit(im, guest.Policy{})
	t.Logf("findings:\n%s", strings.Join(findings, "\n"))
	wantRemove := []string{"boot/luks/osluksheader", "conf/conf.d/cryptheader/osluksheader", "scripts/init-premount/crypt-ade-boot", "usr/sbin/azure_crypt_key.sh"}
	wantPrefix := []string{"boot/luks", "conf/conf.d/cryptheader", "mnt/azure_bek_disk"}
	if !slices.Equal(e.Remove, wantRemove) || !slices.Equal(e.RemovePrefix, wantPrefix) {
		t.Errorf("Remove %q, RemovePrefix %q; want %q, %q", e.Remove, e.RemovePrefix, wantRemove, wantPrefix)
	}
	wantReplace := map[string]string{
		"conf/conf.d/cryptroot":       "",
		"cryptroot/crypttab":          "",
		"etc/fstab":                   "",
		"scripts/init-premount/ORDER": "/scripts/init-premount/udev \"$@\"\n[ -e /conf/param.conf ] && . /conf/param.conf\n",
	}
	if len(e.Replace) != len(wantReplace) {
		t.Errorf("Replace has %d files, want %d", len(e.Replace), len(wantReplace))
	}
	for k, v := range wantReplace {
		if got, ok := e.Replace[k]; !ok || string(got) != v {
			t.Errorf("Replace[%s] = %q (%v), want %q", k, got, ok, v)
		}
	}
	for _, f := range findings {
		if strings.Contains(f, "rebuild") {
			t.Errorf("unexpected finding %q", f)
		}
	}
	for _, w := range []string{"remove boot/luks/osluksheader: ADE's copy of the LUKS header (8 bytes)", "remove mnt/azure_bek_disk/:", "rewrite etc/fstab:"} {
		if !slices.ContainsFunc(findings, func(f string) bool { return strings.HasPrefix(f, w) }) {
			t.Errorf("no finding %q", w)
		}
	}
	out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), e)
	if err != nil {
		t.Fatal(err)
	}
	if rep.NotFound != nil {
		t.Errorf("not found: %q", rep.NotFound)
	}
	nim := parseBytes(t, out)
	var names []string
	for k := range nim.Files() {
		names = append(names, k)
	}
	sort.Strings(names)
	want := []string{"boot", "conf", "conf/conf.d", "conf/conf.d/cryptroot", "conf/initramfs.conf", "cryptroot", "cryptroot/crypttab",
		"etc", "etc/fstab", "mnt", "scripts", "scripts/functions", "scripts/init-premount", "scripts/init-premount/ORDER",
		"scripts/init-premount/udev", "scripts/local-top", "scripts/local-top/ORDER", "scripts/local-top/cryptroot", "usr", "usr/sbin", "usr/sbin/cryptsetup"}
	if !slices.Equal(names, want) {
		t.Errorf("rewritten image holds\n%q\nwant\n%q", names, want)
	}
	// Idempotent: the rewritten image needs no edit.
	if e2, f2 := ADEEdit(nim, guest.Policy{}); e2.Remove != nil || e2.RemovePrefix != nil || e2.Replace != nil || f2 != nil {
		t.Errorf("second edit: %+v %q", e2, f2)
	}
}

func TestADEEditInitramfsToolsKeeps(t *testing.T) {
	// A directory of ADE's that also holds something else stays (with that); a file that still names
	// ADE after the edit is a "rebuild" finding; a dracut image's fstab keeps a /boot line.
	raw := initramfsToolsImage(t, file("boot/luks/other", "x"), file("scripts/local-top/mine", "#!/bin/sh\n[ -b /dev/mapper/osencrypt ]\n"))
	im := parseBytes(t, raw)
	e, findings := ADEEdit(im, guest.Policy{})
	if slices.Contains(e.RemovePrefix, "boot/luks") || !slices.Contains(e.Remove, "boot/luks/osluksheader") {
		t.Errorf("Remove %q, RemovePrefix %q", e.Remove, e.RemovePrefix)
	}
	if !slices.ContainsFunc(findings, func(f string) bool {
		return strings.HasPrefix(f, "scripts/local-top/mine: still names osencrypt") && strings.Contains(f, "rebuild")
	}) {
		t.Errorf("no rebuild finding for scripts/local-top/mine: %q", findings)
	}
	if _, _, err := im.Rewrite(t.Context(), bytes.NewReader(raw), e); err != nil {
		t.Fatal(err)
	}

	const fstab = "/dev/disk/by-uuid/x /boot ext2 defaults 0 0\nLABEL=BEK\\040VOLUME /bek auto defaults,nofail 0 0\n"
	dracut := mkArchive(t, dir("etc"), file("etc/fstab", fstab), dir("boot"), dir("boot/luks"), file("boot/luks/osluksheader", "h"),
		dir("scripts"), file("scripts/crypt-ade-boot", "x"), dir("mnt"), dir("mnt/azure_bek_disk"))
	dim := parseBytes(t, dracut)
	if IsInitramfsTools(dim) {
		t.Fatal("a dracut image taken for initramfs-tools")
	}
	e, _ = ADEEdit(dim, guest.Policy{})
	if e.Remove != nil || e.RemovePrefix != nil || string(e.Replace["etc/fstab"]) != "/dev/disk/by-uuid/x /boot ext2 defaults 0 0\n" {
		t.Errorf("dracut image: %+v", e)
	}
}

// TestADEEditUbuntuFixtures is the oracle test on the initrds Debian's mkinitramfs made for the Ubuntu
// fixture disks (18.04 gzip with the keyscript and the patched cryptroot hook's header copy, 20.04 lz4
// and 22.04 zstd with crypt-ade-boot): ADEEdit + Rewrite in the same compression, then Debian's own
// lsinitramfs and unmkinitramfs show that the image unpacks, lists no ADE file, holds no file naming
// osencrypt, azure_crypt_key or crypt-ade, keeps every other entry (lsinitramfs -l line: mode, owner,
// size, mtime) and every other file byte for byte, and that its ORDER files list exactly the scripts
// that remain.
func TestADEEditUbuntuFixtures(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Ubuntu fixture set")
	}
	testenv.Need(t, "lsinitramfs", "unmkinitramfs", "cpio", "gzip", "lz4", "zstd")
	m := ubuntufixture.Load(t)
	type want struct {
		comp         Compression
		remove, pfx  []string
		replace      map[string]string
		listedBefore []string // ADE's files mkinitramfs put there, as a check on the fixture
	}
	wants := map[string]want{
		ubuntufixture.DiskU1804: {Gzip,
			[]string{"boot/luks/osluksheader", "conf/conf.d/cryptheader/osluksheader", "usr/sbin/azure_crypt_key.sh"},
			[]string{"boot/luks", "conf/conf.d/cryptheader"},
			map[string]string{"cryptroot/crypttab": ""},
			[]string{"boot/luks/osluksheader", "conf/conf.d/cryptheader/osluksheader", "usr/sbin/azure_crypt_key.sh"}},
		ubuntufixture.DiskU2004: {LZ4Legacy,
			[]string{"boot/luks/osluksheader", "scripts/init-premount/crypt-ade-boot"},
			[]string{"boot/luks", "mnt/azure_bek_disk"},
			map[string]string{"etc/fstab": "", "scripts/init-premount/ORDER": ""},
			[]string{"scripts/init-premount/crypt-ade-boot", "boot/luks/osluksheader", "mnt/azure_bek_disk"}},
	}
	wants[ubuntufixture.DiskU2204] = func() want { w := wants[ubuntufixture.DiskU2004]; w.comp = Zstd; return w }()
	// 22.04 with 4096-byte LUKS sectors and the 24.04 online flow leave the same initrd files.
	wants[ubuntufixture.DiskU2204K] = wants[ubuntufixture.DiskU2204]
	wants[ubuntufixture.DiskU2404] = wants[ubuntufixture.DiskU2204]
	for i := range m.Disks {
		d := &m.Disks[i]
		w, ok := wants[d.Name]
		if !ok {
			t.Errorf("fixture disk %s has no expectations here", d.Name)
			continue
		}
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			path := m.Path(d.Initrd)
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			im := parseBytes(t, img)
			if len(im.Segments) != 1 || im.Segments[0].Compression != w.comp || !IsInitramfsTools(im) {
				t.Fatalf("fixture initrd: %d segments, %s, initramfs-tools %v", len(im.Segments), im.Segments[0].Compression, IsInitramfsTools(im))
			}
			before := lsLong(t, path)
			for _, f := range w.listedBefore {
				if _, ok := before[f]; !ok {
					t.Fatalf("mkinitramfs did not put %s into the fixture's initrd", f)
				}
			}
			e, findings := ADEEdit(im, guest.Policy{})
			t.Logf("findings:\n%s", strings.Join(findings, "\n"))
			if !slices.Equal(e.Remove, w.remove) || !slices.Equal(e.RemovePrefix, w.pfx) {
				t.Errorf("Remove %q RemovePrefix %q; want %q %q", e.Remove, e.RemovePrefix, w.remove, w.pfx)
			}
			if len(e.Replace) != len(w.replace) {
				t.Errorf("Replace: %d files, want %d", len(e.Replace), len(w.replace))
			}
			for k, v := range w.replace {
				if got, ok := e.Replace[k]; !ok || string(got) != v {
					t.Errorf("Replace[%s] = %q, want %q", k, got, v)
				}
			}
			for _, f := range findings {
				if strings.Contains(f, "rebuild") {
					t.Errorf("finding: %s", f)
				}
			}
			out, rep, err := im.Rewrite(t.Context(), bytes.NewReader(img), e)
			if err != nil {
				t.Fatal(err)
			}
			if rep.NotFound != nil || len(rep.Segments) != 1 || rep.Segments[0].NewCompression != w.comp || !rep.Segments[0].Rewritten {
				t.Errorf("report: %+v", rep)
			}
			t.Logf("%s: %d -> %d bytes (%s)", d.Name, len(img), len(out), w.comp)
			newPath := testenv.WriteFile(t, t.TempDir(), "initrd.img", out)

			// lsinitramfs: ADE's entries gone, every other entry listed exactly as before.
			after := lsLong(t, newPath)
			gone := func(name string) bool {
				return slices.Contains(w.remove, name) || slices.ContainsFunc(w.pfx, func(p string) bool { return name == p || strings.HasPrefix(name, p+"/") })
			}
			for name, l := range before {
				nl, ok := after[name]
				switch {
				case gone(name):
					if ok {
						t.Errorf("%s still listed", name)
					}
				case !ok:
					t.Errorf("%s lost", name)
				case e.Replace[name] == nil && nl != l:
					t.Errorf("%s changed:\n%s\n%s", name, l, nl)
				}
			}
			for name := range after {
				if _, ok := before[name]; !ok {
					t.Errorf("%s appeared", name)
				}
				for _, s := range []string{"osluksheader", "azure_crypt_key", "crypt-ade", "azure_bek_disk", "boot/luks", "cryptheader"} {
					if strings.Contains(name, s) {
						t.Errorf("lsinitramfs lists %s", name)
					}
				}
			}

			// unmkinitramfs: unpacks; no file names ADE; every other file byte for byte.
			oldDir, newDir := unmkinitramfs(t, path), unmkinitramfs(t, newPath)
			if hits, n := testenv.GrepTree(t, newDir, ubuntufixture.ADEMarkers); hits != nil || n < 100 {
				t.Errorf("%d files unpacked; ADE residue: %+v", n, hits)
			}
			oldFiles, newFiles := treeFiles(t, oldDir), treeFiles(t, newDir)
			for name, of := range oldFiles {
				nf, ok := newFiles[name]
				switch {
				case gone(name):
					if ok {
						t.Errorf("%s unpacked", name)
					}
				case !ok:
					t.Errorf("%s not unpacked", name)
				case e.Replace[name] != nil:
					if nf.data != w.replace[name] || nf.mode != of.mode {
						t.Errorf("%s: %q %v, want %q %v", name, nf.data, nf.mode, w.replace[name], of.mode)
					}
				case nf != of:
					t.Errorf("%s differs from the original's", name)
				}
			}
			if len(newFiles) != len(oldFiles)-len(w.remove) {
				t.Errorf("%d files unpacked, %d before, %d removed", len(newFiles), len(oldFiles), len(w.remove))
			}
			// ORDER files list exactly the scripts that remain in their directory, in the original order.
			orders := 0
			for name, nf := range newFiles {
				if filepath.Base(name) != "ORDER" {
					continue
				}
				orders++
				listed := orderScripts(nf.data)
				var oldListed []string
				for _, s := range orderScripts(oldFiles[name].data) {
					if !gone(strings.TrimPrefix(s, "/")) {
						oldListed = append(oldListed, s)
					}
				}
				if !slices.Equal(listed, oldListed) {
					t.Errorf("%s lists %q, want %q", name, listed, oldListed)
				}
				var present []string
				for f := range newFiles {
					if filepath.Dir(f) == filepath.Dir(name) && f != name {
						present = append(present, "/"+f)
					}
				}
				sort.Strings(present)
				sorted := slices.Sorted(slices.Values(listed))
				if !slices.Equal(sorted, present) {
					t.Errorf("%s lists %q; the directory holds %q", name, listed, present)
				}
			}
			if orders == 0 {
				t.Errorf("no ORDER file unpacked")
			}
		})
	}
}

// lsLong returns `lsinitramfs -l`'s lines keyed by the entry's name.
func lsLong(t *testing.T, path string) map[string]string {
	t.Helper()
	cmd := exec.Command("lsinitramfs", "-l", path)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lsinitramfs -l %s: %v", path, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 9 {
			m[f[8]] = l
		} else {
			t.Fatalf("lsinitramfs -l line %q", l)
		}
	}
	return m
}

// unmkinitramfs unpacks an image with Debian's unmkinitramfs and returns the directory; an image with no
// early cpio unpacks straight into it.
func unmkinitramfs(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("unmkinitramfs", path, dir).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("unmkinitramfs %s: %v\n%s", path, err, out)
	}
	return dir
}

// treeFile is a regular file's or a symlink's content (the target) and mode, as unpacked.
type treeFile struct {
	data string
	mode fs.FileMode
}

// treeFiles maps every regular file and symlink below dir, by its path relative to dir, to its content.
func treeFiles(t *testing.T, dir string) map[string]treeFile {
	t.Helper()
	m := map[string]treeFile{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := de.Info()
		if err != nil {
			return err
		}
		var data []byte
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			s, err := os.Readlink(p)
			if err != nil {
				return err
			}
			data = []byte(s)
		case info.Mode().IsRegular():
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		m[rel] = treeFile{string(data), info.Mode()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// orderScripts returns the scripts an initramfs-tools ORDER file runs, in order.
func orderScripts(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "/scripts/") {
			out = append(out, f[0])
		}
	}
	return out
}

// TestADEEditMatchesGuestInitramfsTools is TestADEEditMatchesGuest for the copies in an initramfs-tools
// image: each through the guest function and through ADEEdit on an image holding it, the same result.
func TestADEEditMatchesGuestInitramfsTools(t *testing.T) {
	const (
		bekHook = `/dev/disk/by-label/BEK\x20VOLUME /mnt/azure_bek_disk auto defaults 0 0`
		boot    = "/dev/disk/by-uuid/2c0d7e5a-2204-4a1b-9c3d-5e6f7a8b9c02 /boot ext2 defaults 0 0"
		param   = "[ -e /conf/param.conf ] && . /conf/param.conf\n"
	)
	rules := map[string]func(pol guest.Policy, p string, b []byte) []byte{
		"cryptroot/crypttab": func(pol guest.Policy, _ string, b []byte) []byte { out, _ := pol.FixCrypttab(b); return out },
		"conf/conf.d/cryptroot": func(pol guest.Policy, p string, b []byte) []byte {
			out, _ := pol.FixCryptrootConf(p, b)
			return out
		},
		"etc/fstab": func(pol guest.Policy, _ string, b []byte) []byte {
			pol.FstabAdd = nil
			out, _ := pol.FixInitramfsToolsFstab(b)
			return out
		},
		"scripts/init-premount/ORDER": func(_ guest.Policy, p string, b []byte) []byte {
			out, _ := guest.FixInitramfsToolsOrder(p, b)
			return out
		},
		"scripts/local-top/ORDER": func(_ guest.Policy, p string, b []byte) []byte {
			out, _ := guest.FixInitramfsToolsOrder(p, b)
			return out
		},
	}
	for _, tc := range []struct {
		name, path, in string
		pol            guest.Policy
		change         bool
	}{
		{"cryptroot/crypttab 18.04", "cryptroot/crypttab", "osencrypt /dev/sda1 none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh\n", guest.Policy{}, true},
		{"cryptroot/crypttab empty", "cryptroot/crypttab", "", guest.Policy{}, false},
		{"cryptroot/crypttab other volume", "cryptroot/crypttab", "swap /dev/sda3 /dev/urandom swap\n", guest.Policy{}, false},
		{"conf.d/cryptroot", "conf/conf.d/cryptroot", "target=osencrypt,source=/dev/sda1,key=none,rootdev,keyscript=/lib/cryptsetup/scripts/azure_crypt_key.sh\n", guest.Policy{}, true},
		{"conf.d/cryptroot data, CrypttabBEK", "conf/conf.d/cryptroot", "target=d1,source=/dev/sdc1,key=/mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0\n", guest.Policy{CrypttabBEK: true}, true},
		{"fstab hook lines", "etc/fstab", boot + "\n" + bekHook + "\n", guest.Policy{}, true},
		{"fstab FstabAdd never added", "etc/fstab", "", guest.Policy{FstabAdd: []string{"UUID=1 /data ext4 defaults 0 0"}}, false},
		{"fstab /usr kept", "etc/fstab", "UUID=1 /usr ext4 defaults 0 2\n" + bekHook, guest.Policy{}, true},
		{"ORDER only ADE's", "scripts/init-premount/ORDER", "/scripts/init-premount/crypt-ade-boot \"$@\"\n" + param, guest.Policy{}, true},
		{"ORDER clean", "scripts/local-top/ORDER", "/scripts/local-top/cryptroot \"$@\"\n" + param, guest.Policy{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := rules[tc.path](tc.pol, tc.path, []byte(tc.in))
			if (want != nil) != tc.change {
				t.Fatalf("guest side: changed = %v, want %v (%q)", want != nil, tc.change, want)
			}
			var entries []*Entry
			for _, d := range []string{"conf", "scripts", "scripts/init-premount", "scripts/local-top", "cryptroot", "etc", "conf/conf.d"} {
				entries = append(entries, dir(d))
			}
			entries = append(entries, file("conf/initramfs.conf", "MODULES=most\n"), file("scripts/functions", "#\n"),
				file("scripts/local-top/cryptroot", "#!/bin/sh\n"), file(tc.path, tc.in))
			im := parseBytes(t, mkArchive(t, entries...))
			edit, _ := ADEEdit(im, tc.pol)
			got, ok := edit.Replace[tc.path]
			if ok != (want != nil) || !bytes.Equal(got, want) || len(edit.Replace) > 1 {
				t.Errorf("%q: guest %q, ADEEdit %q (%+v)", tc.in, want, got, edit)
			}
		})
	}
}
