package azure

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azcloud "github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Clouds are the Azure clouds CloudByName knows, by the names `az cloud list` gives them.
var Clouds = map[string]azcloud.Configuration{
	"AzureCloud":        azcloud.AzurePublic,
	"AzureChinaCloud":   azcloud.AzureChina,
	"AzureUSGovernment": azcloud.AzureGovernment,
}

// CloudByName returns the configuration of a cloud named as `az cloud list` names it (case does
// not matter; "" is AzureCloud).
func CloudByName(name string) (azcloud.Configuration, error) {
	if name == "" {
		return azcloud.AzurePublic, nil
	}
	for n, c := range Clouds {
		if strings.EqualFold(n, name) {
			return c, nil
		}
	}
	return azcloud.Configuration{}, fmt.Errorf("azure: unknown cloud %q (want AzureCloud, AzureChinaCloud or AzureUSGovernment)", name)
}

// CloudName is the name `az cloud list` gives the cloud CloudByName(name) returns: "AzureCloud" for "".
func CloudName(name string) string {
	for n := range Clouds {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	return "AzureCloud"
}

// DefaultCredentialIn is DefaultCredential for the cloud c: its sign-in authority.
func DefaultCredentialIn(c azcloud.Configuration) (azcore.TokenCredential, error) {
	return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: azcore.ClientOptions{Cloud: c}})
}
