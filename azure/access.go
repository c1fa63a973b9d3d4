package azure

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/blobio"
)

// DiskDataScope is the token scope of a managed disk's or snapshot's export and upload URLs when
// they need Entra authentication. The service checks for "https://disk.azure.com/" with its slash.
const DiskDataScope = "https://disk.azure.com//.default"

// DataAccess is who may reach a disk's or snapshot's data, and from where. A new disk copies its
// source's, so the plaintext copy is no less protected than the ADE disk it replaces.
type DataAccess struct {
	// AuthMode AzureActiveDirectory: export and upload URLs need an Entra token (role Data Operator
	// for Managed Disks) besides the SAS.
	AuthMode armcompute.DataAccessAuthMode `json:"dataAccessAuthMode,omitempty"`
	// NetworkAccessPolicy AllowPrivate (through DiskAccessID's private endpoint) or DenyAll.
	NetworkAccessPolicy armcompute.NetworkAccessPolicy `json:"networkAccessPolicy,omitempty"`
	// DiskAccessID is the resource ID of the disk access resource whose private endpoint reaches the
	// data with AllowPrivate ("" otherwise).
	DiskAccessID string `json:"diskAccessId,omitempty"`
	// PublicNetworkAccess Disabled: the data URLs do not answer from the internet.
	PublicNetworkAccess armcompute.PublicNetworkAccess `json:"publicNetworkAccess,omitempty"`
}

// NeedsToken reports whether the data URLs need an Entra token besides the SAS.
func (a DataAccess) NeedsToken() bool {
	return a.AuthMode == armcompute.DataAccessAuthModeAzureActiveDirectory
}

// Private reports whether the data URLs answer only inside a virtual network (or not at all).
func (a DataAccess) Private() bool {
	return a.NetworkAccessPolicy == armcompute.NetworkAccessPolicyAllowPrivate || a.NetworkAccessPolicy == armcompute.NetworkAccessPolicyDenyAll ||
		a.PublicNetworkAccess == armcompute.PublicNetworkAccessDisabled
}

// Merge fills the fields of a that are empty from b.
func (a DataAccess) Merge(b DataAccess) DataAccess {
	if a.AuthMode == "" {
		a.AuthMode = b.AuthMode
	}
	if a.NetworkAccessPolicy == "" {
		a.NetworkAccessPolicy, a.DiskAccessID = b.NetworkAccessPolicy, b.DiskAccessID
	}
	if a.PublicNetworkAccess == "" {
		a.PublicNetworkAccess = b.PublicNetworkAccess
	}
	return a
}

func diskAccess(p *armcompute.DiskProperties) DataAccess {
	if p == nil {
		return DataAccess{}
	}
	return DataAccess{AuthMode: deref(p.DataAccessAuthMode), NetworkAccessPolicy: deref(p.NetworkAccessPolicy), DiskAccessID: str(p.DiskAccessID),
		PublicNetworkAccess: deref(p.PublicNetworkAccess)}
}

func snapshotAccess(p *armcompute.SnapshotProperties) DataAccess {
	if p == nil {
		return DataAccess{}
	}
	return DataAccess{AuthMode: deref(p.DataAccessAuthMode), NetworkAccessPolicy: deref(p.NetworkAccessPolicy), DiskAccessID: str(p.DiskAccessID),
		PublicNetworkAccess: deref(p.PublicNetworkAccess)}
}

// apply sets a's non-empty fields on a new disk's or snapshot's properties.
func (a DataAccess) apply(auth **armcompute.DataAccessAuthMode, nap **armcompute.NetworkAccessPolicy, access **string, pna **armcompute.PublicNetworkAccess) {
	if a.AuthMode != "" {
		*auth = &a.AuthMode
	}
	if a.NetworkAccessPolicy != "" {
		*nap = &a.NetworkAccessPolicy
	}
	if a.DiskAccessID != "" {
		*access = &a.DiskAccessID
	}
	if a.PublicNetworkAccess != "" {
		*pna = &a.PublicNetworkAccess
	}
}

// ReadDataAccess reads the data access settings of a disk or snapshot.
func (c *Client) ReadDataAccess(ctx context.Context, id string) (DataAccess, error) {
	const op = "read data access of"
	rid, err := parseID(id, typeDisk, typeSnapshot)
	if err != nil {
		return DataAccess{}, opError(op, id, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return DataAccess{}, opError(op, id, err)
	}
	if rid.Type == typeSnapshot {
		s, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
		if err != nil {
			return DataAccess{}, opError(op, id, err)
		}
		return snapshotAccess(s.Properties), nil
	}
	d, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return DataAccess{}, opError(op, id, err)
	}
	return diskAccess(d.Properties), nil
}

// DataBearer is the Entra credential for the data URLs of a resource whose DataAccess needs a token
// (nil when it does not): the Client's own credential with DiskDataScope.
func (c *Client) DataBearer(a DataAccess) *blobio.Bearer {
	if !a.NeedsToken() {
		return nil
	}
	return &blobio.Bearer{Credential: c.cred, Scope: DiskDataScope}
}
