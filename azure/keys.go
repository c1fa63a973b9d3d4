package azure

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// Where a KeySource was found.
const (
	FromSnapshot = "snapshot" // the snapshot's encryptionSettingsCollection
	FromDisk     = "disk"     // the disk's encryptionSettingsCollection
	FromVM       = "vm"       // the VM's storageProfile.osDisk.encryptionSettings (dual pass)
)

// Secret tags written by ADE (Azure/azure-linux-extensions, Common.py).
const (
	TagKEKURL        = "DiskEncryptionKeyEncryptionKeyURL"    // the KEK that wrapped the secret
	TagKEKAlgorithm  = "DiskEncryptionKeyEncryptionAlgorithm" // the wrap algorithm (RSA-OAEP, …)
	TagKeyFileName   = "DiskEncryptionKeyFileName"            // the name of the key file the secret holds
	ContentTypeBEK   = "BEK"                                  // content type of a plain BEK secret
	ContentTypeWBEK  = "Wrapped BEK"                          // content type of a BEK wrapped with a KEK
	DefaultAlgorithm = "RSA-OAEP"                             // ADE's default when the tag is absent
)

// KeySource says where one ADE volume key lives in Key Vault. It holds only
// URLs and resource IDs, no secrets, and marshals to JSON for reports.
type KeySource struct {
	// SecretURL is the Key Vault secret holding the key file,
	// https://<vault>.vault.azure.net/secrets/<name>/<version>.
	SecretURL string `json:"secretUrl"`
	// SecretVaultID is the ARM ID of the vault holding the secret.
	SecretVaultID string `json:"secretVaultId,omitempty"`
	// KEKURL is the key-encryption key that wrapped the secret, empty when
	// the secret is a plain BEK.
	KEKURL string `json:"kekUrl,omitempty"`
	// KEKVaultID is the ARM ID of the vault holding the KEK.
	KEKVaultID string `json:"kekVaultId,omitempty"`
	// Version is encryptionSettingsVersion: "1.1" for single-pass ADE,
	// "1.0" for ADE with an Entra application; empty when read from a VM.
	Version string `json:"version,omitempty"`
	// Enabled is the collection's (or the VM osDisk settings') enabled
	// flag. Settings are stamped before the volume is encrypted, so neither
	// value proves the on-disk state.
	Enabled bool `json:"enabled"`
	// From is FromSnapshot, FromDisk or FromVM, and ResourceID the resource
	// the settings were read from.
	From       string `json:"from"`
	ResourceID string `json:"resourceId"` // see From
}

// KeySources returns the ADE key references for the resource id: a
// snapshot, a managed disk or a VM (its OS disk). Single-pass settings are
// read from the resource itself; when it has none the search continues to
// the disk a snapshot was taken from, then to the VM a disk is the OS disk
// of (dual pass keeps the settings on the VM only). The settings found on a
// source disk or VM are the current ones, which differ from the snapshot's
// if the key was rotated since; check From.
//
// A disk may list several settings (one per volume); the OS volume of a
// Linux OS disk normally has one. ErrNoEncryptionSettings is returned when
// nothing is found.
func (c *Client) KeySources(ctx context.Context, id string) ([]KeySource, error) {
	const op = "read encryption settings of"
	var tried []string
	next := id
	var wantOSDisk string // when following a disk to its VM: the disk must be that VM's OS disk
	for hop := 0; next != "" && hop < 3; hop++ {
		rid, err := parseID(next, typeSnapshot, typeDisk, typeVM)
		if err != nil {
			return nil, opError(op, next, err)
		}
		f, err := c.compute(rid.Subscription)
		if err != nil {
			return nil, opError(op, next, err)
		}
		var ks []KeySource
		follow := ""
		switch rid.Type {
		case typeSnapshot:
			r, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
			if err != nil {
				if hop > 0 {
					tried = append(tried, fmt.Sprintf("%s: %v", next, opError("get", "", err)))
					next = ""
					continue
				}
				return nil, opError(op, next, err)
			}
			if p := r.Properties; p != nil {
				ks = fromCollection(p.EncryptionSettingsCollection, FromSnapshot, next)
				if p.CreationData != nil && p.CreationData.SourceResourceID != nil {
					if _, err := parseID(*p.CreationData.SourceResourceID, typeDisk); err == nil {
						follow = *p.CreationData.SourceResourceID
					}
				}
			}
		case typeDisk:
			r, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
			if err != nil {
				if hop > 0 {
					tried = append(tried, fmt.Sprintf("source disk %s: %v", next, opError("get", "", err)))
					next = ""
					continue
				}
				return nil, opError(op, next, err)
			}
			if r.Properties != nil {
				ks = fromCollection(r.Properties.EncryptionSettingsCollection, FromDisk, next)
			}
			if r.ManagedBy != nil {
				if _, err := parseID(*r.ManagedBy, typeVM); err == nil {
					follow, wantOSDisk = *r.ManagedBy, next
				}
			}
		case typeVM:
			r, err := f.NewVirtualMachinesClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
			if err != nil {
				if hop > 0 {
					tried = append(tried, fmt.Sprintf("VM %s: %v", next, opError("get", "", err)))
					next = ""
					continue
				}
				return nil, opError(op, next, err)
			}
			var osd *armcompute.OSDisk
			if r.Properties != nil && r.Properties.StorageProfile != nil {
				osd = r.Properties.StorageProfile.OSDisk
			}
			if wantOSDisk != "" && (osd == nil || osd.ManagedDisk == nil || !sameID(str(osd.ManagedDisk.ID), wantOSDisk)) {
				// Dual pass stamps only the OS volume on the VM model.
				tried = append(tried, fmt.Sprintf("VM %s: %s is not its OS disk", next, wantOSDisk))
				next = ""
				continue
			}
			if osd != nil {
				ks = fromVMSettings(osd.EncryptionSettings, next)
			}
		}
		if len(ks) > 0 {
			return ks, nil
		}
		tried = append(tried, fmt.Sprintf("%s: none", next))
		next = follow
	}
	return nil, newError(op, id, ErrNoEncryptionSettings, "no ADE Key Vault references found (looked at %s)", strings.Join(tried, "; "))
}

func fromCollection(col *armcompute.EncryptionSettingsCollection, from, id string) []KeySource {
	if col == nil {
		return nil
	}
	var out []KeySource
	for _, e := range col.EncryptionSettings {
		if e == nil || e.DiskEncryptionKey == nil || str(e.DiskEncryptionKey.SecretURL) == "" {
			continue
		}
		k := KeySource{
			SecretURL:  *e.DiskEncryptionKey.SecretURL,
			Version:    str(col.EncryptionSettingsVersion),
			Enabled:    col.Enabled != nil && *col.Enabled,
			From:       from,
			ResourceID: id,
		}
		if v := e.DiskEncryptionKey.SourceVault; v != nil {
			k.SecretVaultID = str(v.ID)
		}
		if kek := e.KeyEncryptionKey; kek != nil {
			k.KEKURL = str(kek.KeyURL)
			if kek.SourceVault != nil {
				k.KEKVaultID = str(kek.SourceVault.ID)
			}
		}
		out = append(out, k)
	}
	return out
}

func fromVMSettings(s *armcompute.DiskEncryptionSettings, id string) []KeySource {
	if s == nil || s.DiskEncryptionKey == nil || str(s.DiskEncryptionKey.SecretURL) == "" {
		return nil
	}
	k := KeySource{
		SecretURL:  *s.DiskEncryptionKey.SecretURL,
		Enabled:    s.Enabled != nil && *s.Enabled,
		From:       FromVM,
		ResourceID: id,
	}
	if v := s.DiskEncryptionKey.SourceVault; v != nil {
		k.SecretVaultID = str(v.ID)
	}
	if kek := s.KeyEncryptionKey; kek != nil {
		k.KEKURL = str(kek.KeyURL)
		if kek.SourceVault != nil {
			k.KEKVaultID = str(kek.SourceVault.ID)
		}
	}
	return []KeySource{k}
}

// RecoverKey fetches the secret ks.SecretURL and returns the key-file bytes
// it protects: the bytes cryptsetup's --key-file reads (for Linux ADE, the
// 172-byte ASCII passphrase). A plain BEK secret is standard base64 of
// those bytes. A KEK-wrapped secret (ks.KEKURL set, or the secret's
// DiskEncryptionKeyEncryptionKeyURL tag, or content type "Wrapped BEK") is
// base64url of the wrapped bytes; it is unwrapped by Key Vault with the
// algorithm in the DiskEncryptionKeyEncryptionAlgorithm tag (RSA-OAEP when
// the tag is absent or unknown) and the key version in the KEK URL. Both
// base64 alphabets are accepted, with or without padding.
//
// When the KEK is named only by the tag, ks.KEKURL is set to it: KEKURL then
// tells the caller, as for a KEK named by the encryption settings, that the
// key was unwrapped (see the base64 note below).
//
// The caller owns the result and should clear it (clear(key)) when done.
// Intermediate buffers are cleared here; the secret string inside the SDK's
// response cannot be. Errors never contain secret or key bytes.
//
// Old ADE extension builds base64-encoded the passphrase before wrapping; if
// the result does not open the LUKS header, try its base64 decoding.
func (c *Client) RecoverKey(ctx context.Context, ks *KeySource) ([]byte, error) {
	const op = "recover key from"
	if ks == nil || ks.SecretURL == "" {
		return nil, errors.New("azure: recover key: no secret URL")
	}
	sv, err := parseVaultURL(ks.SecretURL, "secrets")
	if err != nil {
		return nil, opError(op, ks.SecretURL, err)
	}
	sc, err := c.secretsClient(sv.vault)
	if err != nil {
		return nil, opError(op, ks.SecretURL, err)
	}
	resp, err := sc.GetSecret(ctx, sv.name, sv.version, nil)
	if err != nil {
		return nil, opError("get secret", ks.SecretURL, err)
	}
	if resp.Value == nil || *resp.Value == "" {
		return nil, newError(op, ks.SecretURL, ErrBadSecret, "secret has no value")
	}
	kekURL := ks.KEKURL
	if kekURL == "" {
		kekURL = strings.TrimSpace(tag(resp.Tags, TagKEKURL))
	}
	if kekURL == "" {
		if strings.EqualFold(strings.TrimSpace(str(resp.ContentType)), ContentTypeWBEK) {
			return nil, newError(op, ks.SecretURL, ErrBadSecret, "content type %q but no key-encryption key URL on the disk or in tag %s", ContentTypeWBEK, TagKEKURL)
		}
		key, err := decodeBase64(*resp.Value)
		if err != nil {
			return nil, newError(op, ks.SecretURL, ErrBadSecret, "BEK value is not base64: %v", err)
		}
		return key, nil
	}

	kv, err := parseVaultURL(kekURL, "keys")
	if err != nil {
		return nil, opError(op, ks.SecretURL, err)
	}
	wrapped, err := decodeBase64(*resp.Value)
	if err != nil {
		return nil, newError(op, ks.SecretURL, ErrBadSecret, "wrapped BEK value is not base64url: %v", err)
	}
	defer clear(wrapped)
	alg := Algorithm(tag(resp.Tags, TagKEKAlgorithm))
	kc, err := c.keysClient(kv.vault)
	if err != nil {
		return nil, opError(op, kekURL, err)
	}
	ur, err := kc.UnwrapKey(ctx, kv.name, kv.version, azkeys.KeyOperationParameters{
		Algorithm: to.Ptr(alg),
		Value:     wrapped,
	}, nil)
	if err != nil {
		return nil, opError(fmt.Sprintf("unwrap key (%s) with", alg), kekURL, err)
	}
	if len(ur.Result) == 0 {
		return nil, newError("unwrap key with", kekURL, ErrBadSecret, "empty result")
	}
	ks.KEKURL = kekURL
	return ur.Result, nil
}

// Algorithm maps the value of ADE's DiskEncryptionKeyEncryptionAlgorithm tag
// to a Key Vault algorithm: RSA-OAEP, RSA-OAEP-256 or RSA1_5, matched
// without regard to case; anything else, including "", is RSA-OAEP, the
// extension's default.
func Algorithm(tagValue string) azkeys.EncryptionAlgorithm {
	for _, a := range []azkeys.EncryptionAlgorithm{azkeys.EncryptionAlgorithmRSAOAEP, azkeys.EncryptionAlgorithmRSAOAEP256, azkeys.EncryptionAlgorithmRSA15} {
		if strings.EqualFold(strings.TrimSpace(tagValue), string(a)) {
			return a
		}
	}
	return azkeys.EncryptionAlgorithmRSAOAEP
}

func tag(tags map[string]*string, name string) string {
	for k, v := range tags {
		if strings.EqualFold(k, name) {
			return str(v)
		}
	}
	return ""
}

// maxSecret bounds a secret value (Key Vault allows 25 KiB).
const maxSecret = 64 << 10

// decodeBase64 decodes standard or URL-safe base64, padded, unpadded or
// over-padded, ignoring whitespace. The work buffer is cleared; the error
// names a position, never the data.
func decodeBase64(s string) ([]byte, error) {
	if len(s) > maxSecret {
		return nil, fmt.Errorf("%d characters, more than %d", len(s), maxSecret)
	}
	buf := make([]byte, 0, len(s))
	defer func() { clear(buf[:cap(buf)]) }()
	std, urlsafe := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n':
			continue
		case ch == '+' || ch == '/':
			std = true
		case ch == '-' || ch == '_':
			urlsafe = true
		case ch == '=':
		case ch >= 'A' && ch <= 'Z', ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9':
		default:
			return nil, fmt.Errorf("invalid character at offset %d", i)
		}
		buf = append(buf, ch)
	}
	if std && urlsafe {
		return nil, errors.New("mixes the standard and URL-safe alphabets")
	}
	body := buf
	for len(body) > 0 && body[len(body)-1] == '=' {
		body = body[:len(body)-1]
	}
	for i, ch := range body {
		if ch == '=' {
			return nil, fmt.Errorf("padding inside the data at offset %d", i)
		}
	}
	if len(body) == 0 {
		return nil, errors.New("empty")
	}
	enc := base64.RawStdEncoding
	if urlsafe {
		enc = base64.RawURLEncoding
	}
	out := make([]byte, enc.DecodedLen(len(body)))
	n, err := enc.Decode(out, body)
	if err != nil {
		clear(out)
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("corrupt input at offset %d", int64(ce))
		}
		return nil, errors.New("corrupt input")
	}
	return out[:n], nil
}

// vaultObject is a parsed Key Vault object URL.
type vaultObject struct {
	vault   string // https://host, default port removed
	name    string
	version string // "" for the latest
}

// parseVaultURL splits https://host[:443]/<kind>/<name>[/<version>]. The
// default port is dropped because the Key Vault challenge policy compares
// the request host with the vault domain and rejects "host:443".
func parseVaultURL(raw, kind string) (vaultObject, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return vaultObject{}, fmt.Errorf("Key Vault URL: %v", err)
	}
	if !strings.EqualFold(u.Scheme, "https") || u.Hostname() == "" {
		return vaultObject{}, fmt.Errorf("Key Vault URL %q: want https://<vault>/%s/<name>/<version>", raw, kind)
	}
	host := u.Hostname()
	if p := u.Port(); p != "" && p != "443" {
		host += ":" + p
	}
	seg := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	if len(seg) < 2 || len(seg) > 3 || !strings.EqualFold(seg[0], kind) || seg[1] == "" {
		return vaultObject{}, fmt.Errorf("Key Vault URL %q: want https://<vault>/%s/<name>/<version>", raw, kind)
	}
	o := vaultObject{vault: "https://" + strings.ToLower(host), name: seg[1]}
	if len(seg) == 3 {
		o.version = seg[2]
	}
	return o, nil
}

func (c *Client) secretsClient(vault string) (*azsecrets.Client, error) {
	if c.opts.NewSecretsClient != nil {
		return c.opts.NewSecretsClient(vault)
	}
	return azsecrets.NewClient(vault, c.cred, c.opts.Secrets)
}

func (c *Client) keysClient(vault string) (*azkeys.Client, error) {
	if c.opts.NewKeysClient != nil {
		return c.opts.NewKeysClient(vault)
	}
	return azkeys.NewClient(vault, c.cred, c.opts.Keys)
}
