package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// adeKey returns a key file as ADE generates it: base64 of 127 random bytes,
// 172 ASCII bytes, no newline.
func adeKey(t *testing.T) []byte {
	raw := make([]byte, 127)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k := []byte(base64.StdEncoding.EncodeToString(raw))
	if len(k) != 172 {
		t.Fatalf("key file is %d bytes", len(k))
	}
	return k
}

func vaultID(name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.KeyVault/vaults/" + name
}

func adeCollection(kek bool) *armcompute.EncryptionSettingsCollection {
	e := &armcompute.EncryptionSettingsElement{
		DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{SecretURL: to.Ptr(secretURL("bek")), SourceVault: &armcompute.SourceVault{ID: to.Ptr(vaultID("adevault"))}},
	}
	if kek {
		e.KeyEncryptionKey = &armcompute.KeyVaultAndKeyReference{KeyURL: to.Ptr(kekURL()), SourceVault: &armcompute.SourceVault{ID: to.Ptr(vaultID("kekvault"))}}
	}
	return &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true), EncryptionSettingsVersion: to.Ptr("1.1"), EncryptionSettings: []*armcompute.EncryptionSettingsElement{e}}
}

func TestKeySourcesSinglePassSnapshot(t *testing.T) {
	c := newCloud(t)
	c.Snapshots[key(rg, "snap")] = &armcompute.Snapshot{
		ID: to.Ptr(resID(typeSnapshot, "snap")), Location: to.Ptr(region),
		Properties: &armcompute.SnapshotProperties{EncryptionSettingsCollection: adeCollection(true)},
	}
	ks, err := c.client().KeySources(context.Background(), resID(typeSnapshot, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	want := KeySource{
		SecretURL: secretURL("bek"), SecretVaultID: vaultID("adevault"),
		KEKURL: kekURL(), KEKVaultID: vaultID("kekvault"),
		Version: "1.1", Enabled: true, From: FromSnapshot, ResourceID: resID(typeSnapshot, "snap"),
	}
	if len(ks) != 1 || ks[0] != want {
		t.Fatalf("got %+v\nwant %+v", ks, want)
	}
}

// dualPass builds snapshot → disk → VM where only the VM model carries the
// settings, as dual-pass ADE leaves them.
func dualPass(c *cloud, osDisk bool) {
	diskID := resID(typeDisk, "osdisk")
	vmID := resID(typeVM, "vm1")
	c.Snapshots[key(rg, "snap")] = &armcompute.Snapshot{
		ID: to.Ptr(resID(typeSnapshot, "snap")),
		Properties: &armcompute.SnapshotProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(diskID)}},
	}
	c.Disks[key(rg, "osdisk")] = &armcompute.Disk{ID: to.Ptr(diskID), ManagedBy: to.Ptr(vmID), Properties: &armcompute.DiskProperties{}}
	attached := diskID
	if !osDisk {
		attached = resID(typeDisk, "other")
	}
	c.VMs[key(rg, "vm1")] = &armcompute.VirtualMachine{
		ID: to.Ptr(vmID),
		Properties: &armcompute.VirtualMachineProperties{StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{
			ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(attached)},
			EncryptionSettings: &armcompute.DiskEncryptionSettings{
				Enabled:           to.Ptr(true),
				DiskEncryptionKey: &armcompute.KeyVaultSecretReference{SecretURL: to.Ptr(secretURL("bek")), SourceVault: &armcompute.SubResource{ID: to.Ptr(vaultID("adevault"))}},
				KeyEncryptionKey:  &armcompute.KeyVaultKeyReference{KeyURL: to.Ptr(kekURL()), SourceVault: &armcompute.SubResource{ID: to.Ptr(vaultID("adevault"))}},
			},
		}}},
	}
}

func TestKeySourcesDualPassVM(t *testing.T) {
	c := newCloud(t)
	dualPass(c, true)
	cl := c.client()
	for _, id := range []string{resID(typeSnapshot, "snap"), resID(typeDisk, "osdisk"), resID(typeVM, "vm1")} {
		ks, err := cl.KeySources(context.Background(), id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if len(ks) != 1 || ks[0].From != FromVM || ks[0].ResourceID != resID(typeVM, "vm1") || ks[0].SecretURL != secretURL("bek") || ks[0].KEKURL != kekURL() || !ks[0].Enabled {
			t.Fatalf("%s: got %+v", id, ks)
		}
	}
}

func TestKeySourcesNotOSDisk(t *testing.T) {
	c := newCloud(t)
	dualPass(c, false) // the disk is a data disk of vm1: its OS settings do not apply
	_, err := c.client().KeySources(context.Background(), resID(typeSnapshot, "snap"))
	if !errors.Is(err, ErrNoEncryptionSettings) {
		t.Fatalf("err = %v, want ErrNoEncryptionSettings", err)
	}
	if !strings.Contains(err.Error(), "is not its OS disk") {
		t.Errorf("error does not explain: %v", err)
	}
}

func TestKeySourcesNone(t *testing.T) {
	c := newCloud(t)
	c.Snapshots[key(rg, "snap")] = &armcompute.Snapshot{
		ID: to.Ptr(resID(typeSnapshot, "snap")),
		Properties: &armcompute.SnapshotProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(resID(typeDisk, "gone"))}},
	}
	cl := c.client()
	_, err := cl.KeySources(context.Background(), resID(typeSnapshot, "snap"))
	if !errors.Is(err, ErrNoEncryptionSettings) {
		t.Fatalf("err = %v, want ErrNoEncryptionSettings", err)
	}
	if !strings.Contains(err.Error(), "gone") {
		t.Errorf("error does not name the missing source disk: %v", err)
	}
	// The resource itself missing is a not-found, not "no settings".
	_, err = cl.KeySources(context.Background(), resID(typeSnapshot, "nosuch"))
	var ae *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Code != "ResourceNotFound" {
		t.Fatalf("err = %#v, want a 404 *Error", err)
	}
	if _, err := cl.KeySources(context.Background(), resID("Microsoft.Network/networkInterfaces", "nic")); err == nil {
		t.Fatal("a NIC ID was accepted")
	}
}

func TestRecoverKeyBEK(t *testing.T) {
	c := newCloud(t)
	want := adeKey(t)
	c.Secrets["bek/v1"] = azsecrets.Secret{
		Value:       to.Ptr(base64.StdEncoding.EncodeToString(want)),
		ContentType: to.Ptr("BEK"),
		Tags:        map[string]*string{TagKeyFileName: to.Ptr("LinuxPassPhraseFileName")},
	}
	got, err := c.client().RecoverKey(context.Background(), &KeySource{SecretURL: secretURL("bek")})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("key differs: %d bytes, want %d", len(got), len(want))
	}
	if c.UnwrapKey != "" {
		t.Errorf("UnwrapKey called for a plain BEK")
	}
}

func TestRecoverKeyWrapped(t *testing.T) {
	encodings := map[string]func([]byte) string{
		"base64url-raw":     base64.RawURLEncoding.EncodeToString,
		"base64url-padded":  base64.URLEncoding.EncodeToString,
		"std-padded":        base64.StdEncoding.EncodeToString,
		"std-raw":           base64.RawStdEncoding.EncodeToString,
		"url-extra-padding": func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) + "===" },
		"url-wrapped-lines": func(b []byte) string {
			s := base64.RawURLEncoding.EncodeToString(b)
			return s[:100] + "\r\n" + s[100:] + "\n"
		},
	}
	algs := []struct {
		tag  *string // nil: no tag
		used azkeys.EncryptionAlgorithm
	}{
		{to.Ptr("RSA-OAEP"), azkeys.EncryptionAlgorithmRSAOAEP},
		{to.Ptr("RSA-OAEP-256"), azkeys.EncryptionAlgorithmRSAOAEP256},
		{to.Ptr("rsa-oaep-256"), azkeys.EncryptionAlgorithmRSAOAEP256},
		{to.Ptr("RSA1_5"), azkeys.EncryptionAlgorithmRSA15},
		{nil, azkeys.EncryptionAlgorithmRSAOAEP},
		{to.Ptr("A256KW"), azkeys.EncryptionAlgorithmRSAOAEP}, // unknown: ADE's default
	}
	c := newCloud(t)
	cl := c.client()
	for _, a := range algs {
		for encName, enc := range encodings {
			name := "nil"
			if a.tag != nil {
				name = *a.tag
			}
			t.Run(name+"/"+encName, func(t *testing.T) {
				want := adeKey(t)
				tags := map[string]*string{TagKeyFileName: to.Ptr("LinuxPassPhraseFileName")}
				if a.tag != nil {
					tags[TagKEKAlgorithm] = a.tag
				}
				c.Secrets["bek/v1"] = azsecrets.Secret{
					Value:       to.Ptr(enc(c.wrap(t, a.used, want))),
					ContentType: to.Ptr("Wrapped BEK"),
					Tags:        tags,
				}
				got, err := cl.RecoverKey(context.Background(), &KeySource{SecretURL: secretURL("bek"), KEKURL: kekURL()})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("key differs")
				}
				if c.UnwrapAlg != a.used || c.UnwrapKey != kekName+"/"+kekVer {
					t.Fatalf("unwrapped %s with %s, want %s/%s with %s", c.UnwrapKey, c.UnwrapAlg, kekName, kekVer, a.used)
				}
			})
		}
	}
}

// The KEK URL may come only from the secret's tag, written with ":443".
func TestRecoverKeyKEKFromTag(t *testing.T) {
	c := newCloud(t)
	want := adeKey(t)
	c.Secrets["bek/v1"] = azsecrets.Secret{
		Value: to.Ptr(base64.RawURLEncoding.EncodeToString(c.wrap(t, azkeys.EncryptionAlgorithmRSAOAEP256, want))),
		Tags: map[string]*string{
			TagKEKURL:       to.Ptr("https://adevault.vault.azure.net:443/keys/" + kekName + "/" + kekVer),
			TagKEKAlgorithm: to.Ptr("RSA-OAEP-256"),
		},
	}
	ks := KeySource{SecretURL: secretURL("bek")}
	got, err := c.client().RecoverKey(context.Background(), &ks)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("key differs")
	}
	// The caller learns that the key was unwrapped (old ADE builds wrapped base64 of the passphrase).
	if ks.KEKURL != "https://adevault.vault.azure.net:443/keys/"+kekName+"/"+kekVer {
		t.Errorf("KEKURL %q after unwrapping with the tag's KEK", ks.KEKURL)
	}
}

func TestRecoverKeyErrorsHoldNoSecret(t *testing.T) {
	c := newCloud(t)
	cl := c.client()
	key := adeKey(t)
	wrapped := c.wrap(t, azkeys.EncryptionAlgorithmRSAOAEP, key)
	cases := []struct {
		name    string
		secret  azsecrets.Secret
		ks      KeySource
		corrupt bool
		is      error
		leak    []string
	}{
		{
			name:   "BEK not base64",
			secret: azsecrets.Secret{Value: to.Ptr(string(key[:100]) + "!!" + string(key[100:])), ContentType: to.Ptr("BEK")},
			ks:     KeySource{SecretURL: secretURL("bek")},
			is:     ErrBadSecret,
			leak:   []string{string(key[:40]), string(key[100:140])},
		},
		{
			name:   "mixed alphabets",
			secret: azsecrets.Secret{Value: to.Ptr("ab+c/d-e_f" + string(key))},
			ks:     KeySource{SecretURL: secretURL("bek")},
			is:     ErrBadSecret,
			leak:   []string{string(key[:40])},
		},
		{
			name:   "wrapped BEK without KEK",
			secret: azsecrets.Secret{Value: to.Ptr(base64.RawURLEncoding.EncodeToString(wrapped)), ContentType: to.Ptr("Wrapped BEK")},
			ks:     KeySource{SecretURL: secretURL("bek")},
			is:     ErrBadSecret,
			leak:   []string{base64.RawURLEncoding.EncodeToString(wrapped)[:40]},
		},
		{
			name:    "unwrap refused",
			secret:  azsecrets.Secret{Value: to.Ptr(base64.RawURLEncoding.EncodeToString(wrapped)), ContentType: to.Ptr("Wrapped BEK")},
			ks:      KeySource{SecretURL: secretURL("bek"), KEKURL: kekURL()},
			corrupt: true,
			leak:    []string{base64.RawURLEncoding.EncodeToString(wrapped)[:40], base64.StdEncoding.EncodeToString(wrapped)[:40], string(key[:40])},
		},
		{
			name:   "empty value",
			secret: azsecrets.Secret{Value: to.Ptr("")},
			ks:     KeySource{SecretURL: secretURL("bek")},
			is:     ErrBadSecret,
		},
		{
			name: "missing secret",
			ks:   KeySource{SecretURL: secretURL("nosuch")},
			is:   ErrNotFound,
		},
		{
			name: "http vault",
			ks:   KeySource{SecretURL: "http://adevault.vault.azure.net/secrets/bek/v1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.Secrets["bek/v1"] = tc.secret
			c.UnwrapCorrupt = tc.corrupt
			got, err := cl.RecoverKey(context.Background(), &tc.ks)
			if err == nil {
				t.Fatalf("no error, got %d bytes", len(got))
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			for _, l := range tc.leak {
				if strings.Contains(err.Error(), l) {
					t.Errorf("error leaks secret material: %v", err)
				}
			}
			t.Log(err)
		})
	}
}

func TestDecodeBase64(t *testing.T) {
	data := []byte{0xfb, 0xff, 0xbf, 0x00, 0x01}
	for _, s := range []string{
		base64.StdEncoding.EncodeToString(data), base64.RawStdEncoding.EncodeToString(data),
		base64.URLEncoding.EncodeToString(data), base64.RawURLEncoding.EncodeToString(data),
		base64.RawURLEncoding.EncodeToString(data) + "====", " " + base64.StdEncoding.EncodeToString(data) + "\n",
	} {
		got, err := decodeBase64(s)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("decode %q = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "===", "+_ab", "ab=cd", "abcde", "ab*c"} {
		if got, err := decodeBase64(s); err == nil {
			t.Errorf("decode %q = %x, want an error", s, got)
		}
	}
}

func TestParseVaultURL(t *testing.T) {
	for _, tc := range []struct{ in, kind, vault, name, version string }{
		{"https://v.vault.azure.net/secrets/s/123", "secrets", "https://v.vault.azure.net", "s", "123"},
		{"https://V.vault.azure.net:443/keys/k/abc/", "keys", "https://v.vault.azure.net", "k", "abc"},
		{"https://h.managedhsm.azure.net/keys/k", "keys", "https://h.managedhsm.azure.net", "k", ""},
		{"https://v.vault.azure.net:8443/keys/k/1", "keys", "https://v.vault.azure.net:8443", "k", "1"},
	} {
		o, err := parseVaultURL(tc.in, tc.kind)
		if err != nil || o.vault != tc.vault || o.name != tc.name || o.version != tc.version {
			t.Errorf("%s: %+v, %v", tc.in, o, err)
		}
	}
	for _, in := range []string{"http://v.vault.azure.net/secrets/s/1", "https://v.vault.azure.net/keys/k/1", "https://v.vault.azure.net/secrets", "https://v.vault.azure.net/secrets/s/1/x", "https:///secrets/s/1"} {
		if o, err := parseVaultURL(in, "secrets"); err == nil {
			t.Errorf("%s accepted: %+v", in, o)
		}
	}
}

func TestAlgorithm(t *testing.T) {
	for in, want := range map[string]azkeys.EncryptionAlgorithm{
		"RSA-OAEP": azkeys.EncryptionAlgorithmRSAOAEP, "RSA-OAEP-256": azkeys.EncryptionAlgorithmRSAOAEP256,
		" rsa1_5 ": azkeys.EncryptionAlgorithmRSA15, "": azkeys.EncryptionAlgorithmRSAOAEP, "RSA-OAEP-384": azkeys.EncryptionAlgorithmRSAOAEP,
	} {
		if got := Algorithm(in); got != want {
			t.Errorf("Algorithm(%q) = %s, want %s", in, got, want)
		}
	}
}
