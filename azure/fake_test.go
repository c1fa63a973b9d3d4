package azure

import (
	"fmt"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/luksconv/luksconv/internal/azurefake"
)

// The fake cloud: an in-memory Microsoft.Compute and Key Vault behind the
// SDK's own fake servers (internal/azurefake), recording every mutating call.

const (
	sub     = "00000000-0000-0000-0000-000000000001"
	rg      = "rg-ade"
	region  = "westeurope"
	vaultU  = "https://adevault.vault.azure.net"
	kekName = azurefake.KEKName
	kekVer  = azurefake.KEKVersion
	// sasSecret is the signature in every SAS the fake hands out; it
	// must never appear in an error.
	sasSecret = azurefake.SASSignature
)

func resID(typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", sub, rg, typ, name)
}

func sasURL(name string) string { return azurefake.StaticSAS(name) }

func key(rg, name string) string { return azurefake.Key(rg, name) }

// cloud is the shared fake with the test it serves, so that setup helpers
// can fail the test.
type cloud struct {
	*azurefake.Cloud
	t *testing.T
}

func newCloud(t *testing.T) *cloud {
	return &cloud{Cloud: azurefake.New(sub), t: t}
}

// client returns an azure.Client wired to the fakes.
func (c *cloud) client() *Client {
	cl, err := New(sub, &azfake.TokenCredential{}, &Options{
		ARM:           c.ARMOptions(),
		Secrets:       c.SecretsOptions(),
		Keys:          c.KeysOptions(),
		PollFrequency: time.Millisecond,
		VMModelDir:    c.t.TempDir(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// wrap encrypts key with the test KEK as Key Vault's wrapKey would.
func (c *cloud) wrap(t *testing.T, alg azkeys.EncryptionAlgorithm, key []byte) []byte {
	t.Helper()
	out, err := c.Wrap(alg, key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func kekURL() string               { return vaultU + "/keys/" + kekName + "/" + kekVer }
func secretURL(name string) string { return vaultU + "/secrets/" + name + "/v1" }
