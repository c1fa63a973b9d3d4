package luksconv

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/ext"
	"github.com/luksconv/luksconv/internal/testenv"
)

// TestCryptrootHookUpdated: ADE's 16.04/18.04 flow patched cryptsetup's cryptroot hook with `patch -b`,
// leaving the original as cryptroot.orig. A cryptsetup update since replaces the hook, without ADE's
// patch, and keeps the stale .orig: the updated hook must stay (putting .orig back would install the
// older cryptsetup's hook beside the newer scripts), while .orig is still disabled. A hook that carries
// the patch (it names osencrypt) is restored from .orig. Checked on a root made by mkfs.ext4 -d, with
// e2fsck -fn after the edits.
func TestCryptrootHookUpdated(t *testing.T) {
	testenv.Need(t, "mkfs.ext4", "mkfs.ext2", "e2fsck", "debugfs", "zstd")
	const (
		orig    = "#!/bin/sh\n# cryptsetup 2:2.0.2 cryptroot hook\ngenerate_initrd_crypttab\n"
		patched = "#!/bin/sh\n# cryptsetup 2:2.0.2 cryptroot hook\ngenerate_initrd_crypttab\n        crypttab_find_and_print_entry osencrypt || true\n"
		updated = "#!/bin/sh\n# cryptsetup 2:2.2.2 cryptroot hook, installed by an update after ADE's patch\ngenerate_initrd_crypttab\n"
	)
	for _, tc := range []struct {
		name, hook, want string
	}{
		{"patched", patched, orig},
		{"updated", updated, updated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := t.TempDir()
			files := map[string]string{
				"etc/fstab":                                      "/dev/mapper/osencrypt / ext4 defaults 0 1\n",
				"etc/crypttab":                                   "osencrypt /dev/sda1 none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh\n",
				"etc/initramfs-tools/initramfs.conf":             "MODULES=most\n",
				"usr/share/initramfs-tools/hooks/cryptroot":      tc.hook,
				"usr/share/initramfs-tools/hooks/cryptroot.orig": orig,
			}
			for name, data := range files {
				if err := os.MkdirAll(filepath.Join(tree, filepath.Dir(name)), 0o755); err != nil {
					t.Fatal(err)
				}
				testenv.WriteFile(t, filepath.Join(tree, filepath.Dir(name)), filepath.Base(name), []byte(data))
			}
			root := filepath.Join(t.TempDir(), "root.img")
			testenv.Run(t, "mkfs.ext4", "-q", "-d", tree, root, "16M")
			boot := bootWithInitrd(t, "mkfs.ext2", adeToolsInitrd(t, "zstd", "-q", "-1", "-c"), nil)

			// The root at output offset 0, /boot after it.
			var vols []guestVolume
			imgs := map[int][]byte{}
			out := int64(0)
			for part, img := range []string{root, boot} {
				b, err := os.ReadFile(img)
				if err != nil {
					t.Fatal(err)
				}
				imgs[part+1] = b
				vols = append(vols, guestVolume{part: part + 1, r: bytes.NewReader(b), size: int64(len(b)), out: out, content: ContentExt4})
				out += int64(len(b))
			}
			e, err := guestEdits(t.Context(), vols, nil, guestOptions{})
			if err != nil {
				t.Fatalf("guest edits: %v", err)
			}
			if e.root == nil || e.root.name != "partition 1" {
				t.Fatalf("root: %+v", e.root)
			}
			for _, p := range e.patches {
				if p.Offset < int64(len(imgs[1])) {
					copy(imgs[1][p.Offset:], p.Data)
				}
			}
			if err := os.WriteFile(root, imgs[1], 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := testenv.RunErr("e2fsck", "-fn", root); err != nil {
				t.Fatalf("e2fsck -fn after the edits: %v\n%s", err, out)
			}
			fs, err := ext.Open(bytes.NewReader(imgs[1]), int64(len(imgs[1])))
			if err != nil {
				t.Fatal(err)
			}
			got, err := fs.ReadFile("/usr/share/initramfs-tools/hooks/cryptroot")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("hooks/cryptroot after the edits:\n%s\nwant:\n%s", got, tc.want)
			}
			if o, err := fs.ReadFile("/usr/share/initramfs-tools/hooks/cryptroot.orig"); err != nil || string(o) == orig {
				t.Errorf("hooks/cryptroot.orig not disabled: %v\n%s", err, o)
			}
			for _, ed := range e.edits {
				if ed.Path == "/usr/share/initramfs-tools/hooks/cryptroot.orig" && strings.Contains(ed.Why, "updated since") != (tc.hook == updated) {
					t.Errorf("the report of the .orig edit: %s", ed.Why)
				}
			}
		})
	}
}
