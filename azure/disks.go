package azure

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// Limits of Azure managed disks and their access grants.
const (
	// VHDFooterSize is the fixed-VHD footer an upload disk expects after the
	// disk contents: UploadSizeBytes = DiskSizeBytes + 512.
	VHDFooterSize = 512
	// MinUploadDisk and MaxUploadDisk bound DiskSizeBytes of an upload disk
	// (20 MiB and 32 TiB, the documented UploadSizeBytes range less the footer).
	MinUploadDisk = 20 << 20 // 20 MiB
	MaxUploadDisk = 32 << 40 // 32 TiB
	// MaxAccessDuration is the longest SAS grant-access accepts (60 days).
	MaxAccessDuration = 60 * 24 * time.Hour
	// DefaultAccessDuration is used when a duration of 0 is given: long
	// enough to copy a 4 TiB disk at the Standard HDD upload rate.
	DefaultAccessDuration = 24 * time.Hour
)

const mib = 1 << 20

// SnapshotOptions configures SnapshotDisk. The zero value takes a full
// snapshot in the disk's resource group.
type SnapshotOptions struct {
	ResourceGroup string            // default: the disk's
	Incremental   bool              // incremental snapshot (billed by changed pages)
	Tags          map[string]string // tags on the snapshot
}

// SnapshotDisk creates a snapshot named name of the managed disk diskID
// (CreateOption=Copy, which a snapshot may use: the snapshot is only read)
// and returns its resource ID. The platform copies the disk's
// encryptionSettingsCollection onto the snapshot, so KeySources works on
// it. For a consistent image, stop the VM first. opts may be nil.
//
// Azure goes on with a creation it accepted whatever the caller does: when
// ctx ends first (Ctrl-C), SnapshotDisk waits for the creation to end (at
// most two minutes, with a context of its own) and, when the snapshot was
// made (or exists after a PUT whose answer was cut off), returns its ID with
// ctx's error, for the caller to record or name.
func (c *Client) SnapshotDisk(ctx context.Context, diskID, name string, opts *SnapshotOptions) (string, error) {
	const op = "snapshot disk"
	if opts == nil {
		opts = &SnapshotOptions{}
	}
	rid, err := parseID(diskID, typeDisk)
	if err != nil {
		return "", opError(op, diskID, err)
	}
	if name == "" {
		return "", newError(op, diskID, nil, "no snapshot name")
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return "", opError(op, diskID, err)
	}
	d, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return "", opError(op, diskID, err)
	}
	rg := opts.ResourceGroup
	if rg == "" {
		rg = rid.ResourceGroup
	}
	snap := armcompute.Snapshot{
		Location: d.Location,
		Tags:     tagPtrs(opts.Tags),
		Properties: &armcompute.SnapshotProperties{
			CreationData: &armcompute.CreationData{
				CreateOption:     to.Ptr(armcompute.DiskCreateOptionCopy),
				SourceResourceID: to.Ptr(diskID),
			},
			Incremental: to.Ptr(opts.Incremental),
		},
	}
	if d.Properties != nil {
		snap.Properties.OSType = d.Properties.OSType
		snap.Properties.HyperVGeneration = d.Properties.HyperVGeneration
		// The snapshot holds the disk's data: reached no more openly than the disk.
		diskAccess(d.Properties).apply(&snap.Properties.DataAccessAuthMode, &snap.Properties.NetworkAccessPolicy, &snap.Properties.DiskAccessID,
			&snap.Properties.PublicNetworkAccess)
	}
	sc := f.NewSnapshotsClient()
	r, made, err := started(sc.BeginCreateOrUpdate(ctx, rg, name, snap, nil)).settle(ctx, c)
	id := str(r.ID)
	if id == "" {
		id = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", rid.Subscription, rg, typeSnapshot, name)
	}
	if err != nil && !made && ctx.Err() != nil {
		// Cut off before Azure's answer, with no operation to poll: Azure may have accepted the PUT.
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, gerr := sc.Get(gctx, rg, name, nil)
		made = gerr == nil
	}
	if err != nil {
		if made {
			// Cut off by ctx, and made all the same: the caller records or names it.
			return id, opError(op, diskID, err)
		}
		return "", opError(op, diskID, err)
	}
	return id, nil
}

// SnapshotSource returns the resource the snapshot snapID was made from
// (its creationData.sourceResourceId; "" if it records none).
func (c *Client) SnapshotSource(ctx context.Context, snapID string) (string, error) {
	const op = "read snapshot"
	rid, err := parseID(snapID, typeSnapshot)
	if err != nil {
		return "", opError(op, snapID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return "", opError(op, snapID, err)
	}
	r, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return "", opError(op, snapID, err)
	}
	if r.Properties == nil || r.Properties.CreationData == nil {
		return "", nil
	}
	return str(r.Properties.CreationData.SourceResourceID), nil
}

// CheckSnapshotCurrent checks that snapID is a snapshot of diskID that is
// still current: the disk's ownership has not changed since the snapshot
// was taken (its VM was not started, deallocated, attached or detached
// after it), so a rerun that reads the snapshot again loses no write.
// ErrState otherwise.
func (c *Client) CheckSnapshotCurrent(ctx context.Context, snapID, diskID string) error {
	const op = "check snapshot"
	rid, err := parseID(snapID, typeSnapshot)
	if err != nil {
		return opError(op, snapID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return opError(op, snapID, err)
	}
	r, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return opError(op, snapID, err)
	}
	p := r.Properties
	if p == nil || p.CreationData == nil || !sameID(str(p.CreationData.SourceResourceID), diskID) {
		return newError(op, snapID, ErrState, "not a snapshot of %s", diskID)
	}
	o, err := c.ReadDiskOwner(ctx, diskID)
	if err != nil {
		return err
	}
	if p.TimeCreated != nil && o.OwnershipTime.After(*p.TimeCreated) {
		return newError(op, snapID, ErrState, "taken at %s, but %s changed hands at %s (its VM ran or was attached since): the snapshot is stale",
			p.TimeCreated.UTC().Format(time.RFC3339), diskID, o.OwnershipTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// GrantRead opens a snapshot or an unattached disk for export and returns a
// read-only SAS URL to its page blob (DiskSizeBytes+512 bytes long, the last
// 512 a VHD footer) and a revoke function. dur is the SAS lifetime (0 means
// ReadAccessFor the resource's size, or DefaultAccessDuration when it reports none; at most
// MaxAccessDuration).
//
// Call revoke on every path, also after a failure or cancellation, with a
// context that is still live (context.WithoutCancel); it is idempotent and
// may be retried. The SAS URL is a secret: pass it through blobio.Redact
// before showing it.
func (c *Client) GrantRead(ctx context.Context, id string, dur time.Duration) (sasURL string, revoke func(context.Context) error, err error) {
	const op = "grant read access to"
	rid, err := parseID(id, typeSnapshot, typeDisk)
	if err != nil {
		return "", nil, opError(op, id, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return "", nil, opError(op, id, err)
	}
	if dur == 0 {
		// Long enough to read the resource twice (the conversion, then --verify) at a slow rate, and
		// no longer: a revoke that fails leaves the SAS open only that long.
		var size *int64
		if rid.Type == typeSnapshot {
			if r, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil); err == nil && r.Properties != nil {
				size = r.Properties.DiskSizeBytes
			}
		} else if r, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil); err == nil && r.Properties != nil {
			size = r.Properties.DiskSizeBytes
		}
		if size != nil {
			dur = ReadAccessFor(*size)
		}
	}
	secs, err := durationSeconds(dur)
	if err != nil {
		return "", nil, opError(op, id, err)
	}
	data := armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr(secs)}
	// A Trusted Launch source also hands out its VM guest state (secure.go).
	data.GetSecureVMGuestStateSAS = c.guestStateWanted(ctx, f, rid)
	var sas *string
	var rev *revoker
	if rid.Type == typeSnapshot {
		sc := f.NewSnapshotsClient()
		rev = newRevoker(func(ctx context.Context) error {
			_, err := started(sc.BeginRevokeAccess(ctx, rid.ResourceGroup, rid.Name, nil)).wait(ctx, c)
			return opError("revoke access to", id, err)
		})
		r, _, gerr := started(sc.BeginGrantAccess(ctx, rid.ResourceGroup, rid.Name, data, nil)).settle(ctx, c)
		sas, err = r.AccessSAS, gerr
		c.guest.note(id, r.SecurityDataAccessSAS)
	} else {
		dc := f.NewDisksClient()
		rev = newRevoker(func(ctx context.Context) error {
			_, err := started(dc.BeginRevokeAccess(ctx, rid.ResourceGroup, rid.Name, nil)).wait(ctx, c)
			return opError("revoke access to", id, err)
		})
		r, _, gerr := started(dc.BeginGrantAccess(ctx, rid.ResourceGroup, rid.Name, data, nil)).settle(ctx, c)
		sas, err = r.AccessSAS, gerr
		c.guest.note(id, r.SecurityDataAccessSAS)
	}
	if err == nil && str(sas) == "" {
		err = newError(op, id, ErrState, "grant-access returned no SAS URL")
	}
	if err != nil {
		// The grant may have taken effect even though the call failed (a
		// timeout while polling): revoke so no SAS stays open. One cut off by
		// ctx was waited for (settle): a revoke before its end would be undone.
		c.guest.note(id, nil)
		return "", nil, errors.Join(opError(op, id, err), rev.revoke(context.WithoutCancel(ctx)))
	}
	return *sas, c.guest.forgetOnRevoke(id, rev.revoke), nil
}

// revoker runs an end-access call until it succeeds once.
type revoker struct {
	mu   sync.Mutex
	done bool
	f    func(context.Context) error
}

func newRevoker(f func(context.Context) error) *revoker { return &revoker{f: f} }

func (r *revoker) revoke(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return nil
	}
	if err := r.f(ctx); err != nil {
		return err
	}
	r.done = true
	return nil
}

// ReadAccessFor is the read SAS lifetime GrantRead asks for a disk or snapshot of size bytes when
// given 0: an hour plus the disk read twice at 16 MiB/s (the conversion and --verify), rounded up to a
// minute and at most MaxAccessDuration.
func ReadAccessFor(size int64) time.Duration { return UploadAccessFor(2 * max(size, 0)) }

// UploadAccessFor is a write-SAS lifetime for uploading size bytes: an hour
// plus the upload at 16 MiB/s, a quarter of the rate one upload usually
// gets, rounded up to a minute and at most MaxAccessDuration. A slow upload
// still ends in time, while an interrupted one, whose grant cannot be
// revoked without ending the upload (see UploadTarget.Revoke), does not stay
// writable for days.
func UploadAccessFor(size int64) time.Duration {
	const rate = 16 << 20
	d := time.Hour + time.Duration((max(size, 0)+rate-1)/rate)*time.Second
	return min((d+time.Minute-1)/time.Minute*time.Minute, MaxAccessDuration)
}

func durationSeconds(d time.Duration) (int32, error) {
	if d == 0 {
		d = DefaultAccessDuration
	}
	if d < time.Second || d > MaxAccessDuration {
		return 0, fmt.Errorf("SAS duration %v outside 1s..%v", d, MaxAccessDuration)
	}
	return int32((d + time.Second - 1) / time.Second), nil
}

// DiskSpec describes the plaintext target disk. DiskSpecFrom fills it from
// the source; every field can be overridden before CreateUploadDisk.
type DiskSpec struct {
	Subscription  string `json:"subscription,omitempty"` // default: the Client's
	ResourceGroup string `json:"resourceGroup"`          // the new disk's (DiskSpecFrom: the source's when not given)
	Name          string `json:"name"`                   // the new disk's name
	Location      string `json:"location"`               // the source's region; the disk must be in the VM's
	// Zones must match the VM's zone for the disk to be attached to it.
	Zones []string `json:"zones,omitempty"`
	// SKU must be one the VM size supports; "" lets Azure choose
	// (Standard_LRS).
	SKU armcompute.DiskStorageAccountTypes `json:"sku,omitempty"`
	// SizeBytes is the source's DiskSizeBytes, a whole number of MiB;
	// the upload size is SizeBytes+512 (the VHD footer).
	SizeBytes int64 `json:"sizeBytes"`
	// OSType, HyperVGeneration, SupportedCapabilities and PurchasePlan are the source's.
	OSType                armcompute.OperatingSystemTypes   `json:"osType,omitempty"`
	HyperVGeneration      armcompute.HyperVGeneration       `json:"hyperVGeneration,omitempty"`      // V1 or V2
	SupportedCapabilities *armcompute.SupportedCapabilities `json:"supportedCapabilities,omitempty"` // e.g. accelerated networking, architecture
	PurchasePlan          *armcompute.DiskPurchasePlan      `json:"purchasePlan,omitempty"`          // the marketplace plan, nil if none
	// SecurityType is the source's security type. Trusted Launch makes the disk an
	// UploadPreparedSecure one, into which UploadTarget.Finish copies the source's VM guest state;
	// CreateUploadDisk refuses the other (confidential VM) types, and Trusted Launch with
	// HyperVGeneration V1.
	SecurityType armcompute.DiskSecurityTypes `json:"securityType,omitempty"`
	// Tier and BurstingEnabled are the source disk's performance tier and on-demand bursting.
	Tier            string `json:"tier,omitempty"`
	BurstingEnabled bool   `json:"burstingEnabled,omitempty"` // see Tier
	// SKUFromSnapshot: the source disk is gone and SKU names the snapshot's storage, not a disk
	// tier chosen for the VM: an OS disk is then refused on Standard_LRS (give the SKU).
	SKUFromSnapshot bool `json:"skuFromSnapshot,omitempty"`
	// Access is copied from the source (a snapshot's own, else its disk's), so the plaintext disk
	// is reached as the ADE disk was: Entra authentication, private network access.
	Access DataAccess `json:"dataAccess"`
	// DiskEncryptionSetID is the DES whose customer-managed key encrypts
	// the disk at rest; EncryptionType defaults to
	// EncryptionAtRestWithCustomerKey and must match the DES's type.
	DiskEncryptionSetID string                    `json:"diskEncryptionSetId,omitempty"`
	EncryptionType      armcompute.EncryptionType `json:"encryptionType,omitempty"` // see DiskEncryptionSetID
	// Tags are set on the new disk (DiskSpecFrom sets none).
	Tags map[string]string `json:"tags,omitempty"`
	// AccessDuration is the lifetime of the upload SAS (0:
	// DefaultAccessDuration).
	AccessDuration time.Duration `json:"-"`
	// SourceID and Notes are informational: where the spec came from and
	// what DiskSpecFrom could not determine.
	SourceID string   `json:"sourceId,omitempty"`
	Notes    []string `json:"notes,omitempty"` // see SourceID
}

// ID returns the ARM ID the disk will have.
func (s *DiskSpec) ID(defaultSubscription string) string {
	sub := s.Subscription
	if sub == "" {
		sub = defaultSubscription
	}
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", sub, s.ResourceGroup, typeDisk, s.Name)
}

// DiskSpecFrom builds the target spec from a source snapshot or disk: the
// location, size, OS type, Hyper-V generation, supported capabilities,
// purchase plan and security type of the source; the zones and SKU of the
// source disk (a snapshot has neither, so they come from the disk it was
// taken from, if that still exists). resourceGroup "" means the source's.
// When desID is not empty the DES is read to check its region and to pick
// the matching EncryptionType.
func (c *Client) DiskSpecFrom(ctx context.Context, sourceID, resourceGroup, name, desID string) (*DiskSpec, error) {
	const op = "describe target disk from"
	rid, err := parseID(sourceID, typeSnapshot, typeDisk)
	if err != nil {
		return nil, opError(op, sourceID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return nil, opError(op, sourceID, err)
	}
	spec := &DiskSpec{Subscription: rid.Subscription, ResourceGroup: resourceGroup, Name: name, SourceID: sourceID}
	if spec.ResourceGroup == "" {
		spec.ResourceGroup = rid.ResourceGroup
	}
	var (
		loc    *string
		size   *int64
		sizeGB *int32
		common struct {
			os   *armcompute.OperatingSystemTypes
			gen  *armcompute.HyperVGeneration
			caps *armcompute.SupportedCapabilities
			plan *armcompute.DiskPurchasePlan
			sec  *armcompute.DiskSecurityProfile
		}
		diskID string // the disk to take zones and SKU from
	)
	if rid.Type == typeSnapshot {
		s, err := f.NewSnapshotsClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
		if err != nil {
			return nil, opError(op, sourceID, err)
		}
		loc = s.Location
		spec.Access = snapshotAccess(s.Properties)
		if p := s.Properties; p != nil {
			size, sizeGB = p.DiskSizeBytes, p.DiskSizeGB
			common.os, common.gen, common.caps, common.plan, common.sec = p.OSType, p.HyperVGeneration, p.SupportedCapabilities, p.PurchasePlan, p.SecurityProfile
			if p.CreationData != nil {
				if _, err := parseID(str(p.CreationData.SourceResourceID), typeDisk); err == nil {
					diskID = *p.CreationData.SourceResourceID
				}
			}
		}
		if s.SKU != nil && s.SKU.Name != nil {
			// Snapshot SKUs name the snapshot's storage, not a disk tier.
			switch *s.SKU.Name {
			case armcompute.SnapshotStorageAccountTypesPremiumLRS:
				spec.SKU = armcompute.DiskStorageAccountTypesPremiumLRS
			case armcompute.SnapshotStorageAccountTypesStandardLRS:
				spec.SKU = armcompute.DiskStorageAccountTypesStandardLRS
			}
			spec.SKUFromSnapshot = spec.SKU != ""
		}
	} else {
		diskID = sourceID
	}
	if diskID != "" {
		did, _ := parseID(diskID, typeDisk)
		df, err := c.compute(did.Subscription)
		if err != nil {
			return nil, opError(op, sourceID, err)
		}
		d, err := df.NewDisksClient().Get(ctx, did.ResourceGroup, did.Name, nil)
		switch {
		case err == nil:
			for _, z := range d.Zones {
				if z != nil {
					spec.Zones = append(spec.Zones, *z)
				}
			}
			if d.SKU != nil && d.SKU.Name != nil {
				spec.SKU, spec.SKUFromSnapshot = *d.SKU.Name, false
			}
			if p := d.Properties; p != nil {
				spec.Tier, spec.BurstingEnabled = str(p.Tier), deref(p.BurstingEnabled)
			}
			spec.Access = spec.Access.Merge(diskAccess(d.Properties))
			if p := d.Properties; rid.Type == typeDisk && p != nil {
				loc = d.Location
				size, sizeGB = p.DiskSizeBytes, p.DiskSizeGB
				common.os, common.gen, common.caps, common.plan, common.sec = p.OSType, p.HyperVGeneration, p.SupportedCapabilities, p.PurchasePlan, p.SecurityProfile
			} else if p != nil {
				// What the snapshot does not record, its disk may.
				common.os = cmp.Or(common.os, p.OSType)
				common.gen = cmp.Or(common.gen, p.HyperVGeneration)
				common.caps = cmp.Or(common.caps, p.SupportedCapabilities)
				common.plan = cmp.Or(common.plan, p.PurchasePlan)
				common.sec = cmp.Or(common.sec, p.SecurityProfile)
			}
		case rid.Type == typeSnapshot && isNotFound(err):
			spec.Notes = append(spec.Notes, fmt.Sprintf("source disk %s no longer exists: zones and SKU not copied; set them to match the VM", diskID))
		default:
			return nil, opError(op, sourceID, err)
		}
	} else if rid.Type == typeSnapshot {
		spec.Notes = append(spec.Notes, "snapshot does not name its source disk: zones and SKU not copied; set them to match the VM")
	}
	spec.Location = str(loc)
	switch {
	case size != nil:
		spec.SizeBytes = *size
	case sizeGB != nil:
		spec.SizeBytes = int64(*sizeGB) << 30
	}
	if common.os != nil {
		spec.OSType = *common.os
	}
	if common.gen != nil {
		spec.HyperVGeneration = *common.gen
	}
	spec.SupportedCapabilities, spec.PurchasePlan = common.caps, common.plan
	if common.sec != nil && common.sec.SecurityType != nil {
		spec.SecurityType = *common.sec.SecurityType
	}
	if desID != "" {
		if err := c.applyDES(ctx, spec, desID); err != nil {
			return nil, err
		}
	}
	return spec, nil
}

// applyDES reads the DES, checks its region against the disk's and sets the
// matching encryption type.
func (c *Client) applyDES(ctx context.Context, spec *DiskSpec, desID string) error {
	const op = "read disk encryption set"
	did, err := parseID(desID, typeDES)
	if err != nil {
		return opError(op, desID, err)
	}
	f, err := c.compute(did.Subscription)
	if err != nil {
		return opError(op, desID, err)
	}
	des, err := f.NewDiskEncryptionSetsClient().Get(ctx, did.ResourceGroup, did.Name, nil)
	if err != nil {
		return opError(op, desID, err)
	}
	if spec.Location != "" && !sameLocation(str(des.Location), spec.Location) {
		return newError(op, desID, ErrDESMismatch, "DES is in %s, the disk in %s: they must be in the same region", str(des.Location), spec.Location)
	}
	if spec.Subscription != "" && !strings.EqualFold(spec.Subscription, did.Subscription) {
		// A DES serves disks of its own subscription only, and the new disk must be where the
		// VM that attaches it is.
		return newError(op, desID, ErrDESMismatch, "DES is in subscription %s, the disk in %s: they must be in the same subscription", did.Subscription, spec.Subscription)
	}
	spec.DiskEncryptionSetID = desID
	spec.EncryptionType = armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey
	if des.Properties != nil && des.Properties.EncryptionType != nil {
		switch t := *des.Properties.EncryptionType; t {
		case armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey:
		case armcompute.DiskEncryptionSetTypeEncryptionAtRestWithPlatformAndCustomerKeys:
			spec.EncryptionType = armcompute.EncryptionTypeEncryptionAtRestWithPlatformAndCustomerKeys
		default:
			return newError(op, desID, ErrUnsupported, "DES type %s is not for encryption at rest of an ordinary disk", t)
		}
	}
	return nil
}

// Check reports whether CreateUploadDisk would accept the spec, before anything is created.
func (s *DiskSpec) Check() error { return s.validate() }

// validate checks the spec in one place before anything is created.
func (s *DiskSpec) validate() error {
	switch {
	case s.ResourceGroup == "" || s.Name == "":
		return errors.New("target disk needs a resource group and a name")
	case s.Location == "":
		return errors.New("target disk needs a location")
	case s.SizeBytes < MinUploadDisk || s.SizeBytes > MaxUploadDisk:
		return fmt.Errorf("disk size %d outside %d..%d bytes", s.SizeBytes, int64(MinUploadDisk), int64(MaxUploadDisk))
	case s.SizeBytes%mib != 0:
		return fmt.Errorf("disk size %d is not a whole number of MiB (an upload disk is N MiB + 512 bytes)", s.SizeBytes)
	case s.securityError() != nil:
		return s.securityError()
	case s.OSType != "" && (s.SKU == armcompute.DiskStorageAccountTypesUltraSSDLRS || s.SKU == armcompute.DiskStorageAccountTypesPremiumV2LRS):
		return fmt.Errorf("%w: an OS disk cannot be %s (Ultra Disks and Premium SSD v2 are data disks only)", ErrDiskSKU, s.SKU)
	case s.OSType != "" && s.SKUFromSnapshot && s.SKU == armcompute.DiskStorageAccountTypesStandardLRS:
		return fmt.Errorf("%w: the source disk is gone and its snapshot is on Standard_LRS storage, which would make a Standard HDD OS disk", ErrDiskSKU)
	case s.DiskEncryptionSetID == "" && s.EncryptionType != armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey:
		return errors.New("no disk encryption set (set EncryptionType to EncryptionAtRestWithPlatformKey to use a platform key)")
	case s.DiskEncryptionSetID != "" && s.EncryptionType == armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey:
		return errors.New("a disk encryption set needs a customer-key encryption type")
	}
	if s.DiskEncryptionSetID != "" {
		did, err := parseID(s.DiskEncryptionSetID, typeDES)
		if err != nil {
			return err
		}
		if s.Subscription != "" && !sameID(did.Subscription, s.Subscription) {
			return fmt.Errorf("%w: DES subscription %s differs from the disk's %s", ErrDESMismatch, did.Subscription, s.Subscription)
		}
	}
	return nil
}

// diskModel is the create-disk request body: a direct-upload disk that
// carries nothing of the source's ADE state.
func (s *DiskSpec) diskModel() armcompute.Disk {
	cd := &armcompute.CreationData{
		CreateOption:    to.Ptr(armcompute.DiskCreateOptionUpload),
		UploadSizeBytes: to.Ptr(s.SizeBytes + VHDFooterSize),
	}
	if s.SKU == armcompute.DiskStorageAccountTypesUltraSSDLRS || s.SKU == armcompute.DiskStorageAccountTypesPremiumV2LRS {
		// These default to 4 KiB logical sectors; a VHD upload needs 512.
		cd.LogicalSectorSize = to.Ptr[int32](512)
	}
	p := &armcompute.DiskProperties{
		CreationData:          cd,
		SupportedCapabilities: s.SupportedCapabilities,
		PurchasePlan:          s.PurchasePlan,
		// EncryptionSettingsCollection stays nil: it is where ADE lives.
	}
	s.Access.apply(&p.DataAccessAuthMode, &p.NetworkAccessPolicy, &p.DiskAccessID, &p.PublicNetworkAccess)
	if s.OSType != "" {
		p.OSType = to.Ptr(s.OSType)
	}
	if s.HyperVGeneration != "" {
		p.HyperVGeneration = to.Ptr(s.HyperVGeneration)
	}
	et := s.EncryptionType
	if et == "" {
		et = armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey
	}
	p.Encryption = &armcompute.Encryption{Type: to.Ptr(et)}
	if s.DiskEncryptionSetID != "" {
		p.Encryption.DiskEncryptionSetID = to.Ptr(s.DiskEncryptionSetID)
	}
	d := armcompute.Disk{Location: to.Ptr(s.Location), Properties: p, Tags: tagPtrs(s.Tags)}
	if s.SKU != "" {
		d.SKU = &armcompute.DiskSKU{Name: to.Ptr(s.SKU)}
	}
	if s.Tier != "" {
		p.Tier = to.Ptr(s.Tier)
	}
	if s.BurstingEnabled {
		p.BurstingEnabled = to.Ptr(true)
	}
	for _, z := range s.Zones {
		d.Zones = append(d.Zones, to.Ptr(z))
	}
	s.applySecurity(&d) // Trusted Launch: UploadPreparedSecure (secure.go)
	return d
}

// UploadTarget is a managed disk open for direct upload. SASURL is a
// write SAS for blobio's page-blob sink; the rest marshals to JSON.
type UploadTarget struct {
	DiskID          string    `json:"diskId"`          // the disk's resource ID
	SizeBytes       int64     `json:"sizeBytes"`       // the disk's size in bytes (DiskSpec.SizeBytes)
	UploadSizeBytes int64     `json:"uploadSizeBytes"` // SizeBytes + VHDFooterSize: the disk and its VHD footer
	Expires         time.Time `json:"sasExpires"`      // when the write SAS expires
	SASURL          string    `json:"-"`               // the write SAS URL (a secret: not marshalled)
	// SecurityType TrustedLaunch: an UploadPreparedSecure disk, into which Finish copies the VM
	// guest state of GuestStateSource (a source granted by GrantRead) before revoking; GuestStateBytes
	// is how much it copied, GuestStateLogf gets blobio's warnings of that copy (secure.go).
	SecurityType     armcompute.DiskSecurityTypes `json:"securityType,omitempty"`
	GuestStateSource string                       `json:"guestStateSource,omitempty"` // see SecurityType
	GuestStateBytes  int64                        `json:"guestStateBytes,omitempty"`  // see SecurityType
	GuestStateLogf   func(string, ...any)         `json:"-"`                          // see SecurityType
	guestSAS         string
	// Tags are the disk's tags (the spec's, or those read by OpenUploadDisk),
	// e.g. to tell one's own unfinished upload from someone else's disk.
	Tags map[string]string `json:"tags,omitempty"`

	c      *Client
	rid    resourceID
	revoke *revoker
}

// CreateUploadDisk creates the target disk with CreateOption=Upload,
// UploadSizeBytes = SizeBytes+512, the spec's OS type, Hyper-V generation,
// supported capabilities, purchase plan, zones, SKU, location and
// Encryption{Type, DiskEncryptionSetID}, and no encryptionSettingsCollection
// (a disk created by Copy from an ADE disk inherits its ADE flag, which
// rules out a customer-managed key). It then grants write access and
// returns the upload SAS.
//
// The disk must not exist yet (ErrExists; resume an interrupted upload with
// OpenUploadDisk). If the grant fails, access is revoked and the new, empty
// disk deleted. After the data and the VHD footer are written, call Finish;
// on failure, Abort (or keep the disk and resume later).
func (c *Client) CreateUploadDisk(ctx context.Context, spec DiskSpec) (*UploadTarget, error) {
	const op = "create upload disk"
	if spec.Subscription == "" {
		spec.Subscription = c.subscription
	}
	id := spec.ID(c.subscription)
	if err := spec.validate(); err != nil {
		return nil, opError(op, id, err)
	}
	if _, err := c.SecureUploadNote(&spec); err != nil { // a Trusted Launch disk needs its source's guest state
		return nil, err
	}
	secs, err := durationSeconds(spec.AccessDuration)
	if err != nil {
		return nil, opError(op, id, err)
	}
	f, err := c.compute(spec.Subscription)
	if err != nil {
		return nil, opError(op, id, err)
	}
	dc := f.NewDisksClient()
	// A PUT on an existing name would update that disk, not create one.
	if d, err := dc.Get(ctx, spec.ResourceGroup, spec.Name, nil); err == nil {
		state := ""
		if d.Properties != nil && d.Properties.DiskState != nil {
			state = string(*d.Properties.DiskState)
		}
		return nil, newError(op, id, ErrExists, "disk already exists (state %s)", state)
	} else if !isNotFound(err) {
		return nil, opError(op, id, err)
	}
	// One cut off by ctx is waited for (settle): Azure creates the disk all the same, and the caller
	// then finds it, tagged, instead of a creation still under way.
	r, _, err := started(dc.BeginCreateOrUpdate(ctx, spec.ResourceGroup, spec.Name, spec.diskModel(), nil)).settle(ctx, c)
	if err != nil {
		return nil, opError(op, id, err)
	}
	if rid := str(r.ID); rid != "" {
		id = rid
	}
	rid, err := parseID(id, typeDisk)
	if err != nil {
		return nil, opError(op, id, err)
	}
	t := &UploadTarget{DiskID: id, SizeBytes: spec.SizeBytes, UploadSizeBytes: spec.SizeBytes + VHDFooterSize, Tags: maps.Clone(spec.Tags), c: c, rid: rid}
	t.SecurityType, t.GuestStateSource = spec.SecurityType, spec.SourceID
	if err := t.grant(ctx, secs); err != nil {
		// Nothing was written: leave no empty disk behind.
		cleanup := context.WithoutCancel(ctx)
		return nil, errors.Join(err, t.Abort(cleanup))
	}
	return t, nil
}

// UploadTags returns the tags of diskID if it is an upload that has not been
// finished (state ReadyToUpload or ActiveUpload), without granting anything:
// ErrNotFound if there is no such disk, ErrState if it is in another state.
// A caller that tagged its upload at creation uses it to find what an
// interrupted run left, before deciding how to resume it.
func (c *Client) UploadTags(ctx context.Context, diskID string) (map[string]string, error) {
	d, _, err := c.unfinishedUpload(ctx, "read upload disk", diskID)
	if err != nil {
		return nil, err
	}
	return tagValues(d.Tags), nil
}

// OpenUploadDisk grants write access again to a disk created by
// CreateUploadDisk that was not finished (state ReadyToUpload or
// ActiveUpload), to resume an interrupted upload or to replace an expired
// SAS. dur 0 means DefaultAccessDuration. Every tag in tags must be on the
// disk with that value, or no access is granted (ErrState): a caller that
// tagged its disk at creation reopens only its own upload.
func (c *Client) OpenUploadDisk(ctx context.Context, diskID string, dur time.Duration, tags map[string]string) (*UploadTarget, error) {
	const op = "open upload disk"
	secs, err := durationSeconds(dur)
	if err != nil {
		return nil, opError(op, diskID, err)
	}
	d, rid, err := c.unfinishedUpload(ctx, op, diskID)
	if err != nil {
		return nil, err
	}
	have := tagValues(d.Tags)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if got, ok := have[k]; !ok || got != tags[k] {
			return nil, newError(op, diskID, ErrState, "tag %s is %q, want %q: not this upload", k, got, tags[k])
		}
	}
	p := d.Properties
	if p.CreationData == nil || p.CreationData.UploadSizeBytes == nil {
		return nil, newError(op, diskID, ErrState, "disk has no uploadSizeBytes: not an upload disk")
	}
	up := *p.CreationData.UploadSizeBytes
	t := &UploadTarget{DiskID: diskID, SizeBytes: up - VHDFooterSize, UploadSizeBytes: up, Tags: have, c: c, rid: rid}
	t.SecurityType = diskSecurityType(p) // GuestStateSource: the caller's
	if err := t.grant(ctx, secs); err != nil {
		return nil, err
	}
	return t, nil
}

// unfinishedUpload reads diskID and checks that it is an upload that has not
// been finished (ReadyToUpload or ActiveUpload).
func (c *Client) unfinishedUpload(ctx context.Context, op, diskID string) (*armcompute.Disk, resourceID, error) {
	rid, err := parseID(diskID, typeDisk)
	if err != nil {
		return nil, rid, opError(op, diskID, err)
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return nil, rid, opError(op, diskID, err)
	}
	r, err := f.NewDisksClient().Get(ctx, rid.ResourceGroup, rid.Name, nil)
	if err != nil {
		return nil, rid, opError(op, diskID, err)
	}
	p := r.Properties
	if p == nil || p.DiskState == nil || (*p.DiskState != armcompute.DiskStateReadyToUpload && *p.DiskState != armcompute.DiskStateActiveUpload) {
		state := "unknown"
		if p != nil && p.DiskState != nil {
			state = string(*p.DiskState)
		}
		return nil, rid, newError(op, diskID, ErrState, "disk is %s, want %s or %s", state, armcompute.DiskStateReadyToUpload, armcompute.DiskStateActiveUpload)
	}
	return &r.Disk, rid, nil
}

// tagValues is an ARM tag map without its nil values (nil if there are none).
func tagValues(m map[string]*string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if v != nil {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = *v
		}
	}
	return out
}

func (t *UploadTarget) disks() (*armcompute.DisksClient, error) {
	if t.c == nil {
		return nil, fmt.Errorf("%w: upload target was not opened by a Client (use OpenUploadDisk)", ErrState)
	}
	f, err := t.c.compute(t.rid.Subscription)
	if err != nil {
		return nil, err
	}
	return f.NewDisksClient(), nil
}

// grant requests write access; on failure it revokes whatever may have
// been granted.
func (t *UploadTarget) grant(ctx context.Context, secs int32) error {
	const op = "grant write access to"
	dc, err := t.disks()
	if err != nil {
		return opError(op, t.DiskID, err)
	}
	t.revoke = newRevoker(func(ctx context.Context) error {
		_, err := started(dc.BeginRevokeAccess(ctx, t.rid.ResourceGroup, t.rid.Name, nil)).wait(ctx, t.c)
		return opError("revoke access to", t.DiskID, err)
	})
	start := time.Now()
	// One cut off by ctx is waited for (settle): the revoke below would come before its end, and the
	// grant would then open the disk again.
	r, _, err := started(dc.BeginGrantAccess(ctx, t.rid.ResourceGroup, t.rid.Name, armcompute.GrantAccessData{
		Access:                   to.Ptr(armcompute.AccessLevelWrite),
		DurationInSeconds:        to.Ptr(secs),
		GetSecureVMGuestStateSAS: t.guestGrant(),
	}, nil)).settle(ctx, t.c)
	if err == nil && str(r.AccessSAS) == "" {
		err = newError(op, t.DiskID, ErrState, "grant-access returned no SAS URL")
	}
	if err == nil {
		err = t.checkGuestGrant(r.AccessURI)
	}
	if err != nil {
		return errors.Join(opError(op, t.DiskID, err), t.revoke.revoke(context.WithoutCancel(ctx)))
	}
	t.SASURL = *r.AccessSAS
	t.Expires = start.Add(time.Duration(secs) * time.Second)
	return nil
}

// Revoke ends write access. Azure then checks the VHD footer in the last
// 512 bytes (an invalid one fails with InvalidVhd) and makes the disk
// attachable: revoking ends the upload, so an upload to be resumed later is
// not revoked but left to its SAS's expiry (the disk stays ActiveUpload,
// which no VM can attach). It is idempotent and may be retried.
func (t *UploadTarget) Revoke(ctx context.Context) error {
	if t.revoke == nil {
		return newError("revoke access to", t.DiskID, ErrState, "upload target was not opened by a Client (use OpenUploadDisk)")
	}
	return t.revoke.revoke(ctx)
}

// State returns the disk's current state.
func (t *UploadTarget) State(ctx context.Context) (armcompute.DiskState, error) {
	dc, err := t.disks()
	if err != nil {
		return "", opError("read state of", t.DiskID, err)
	}
	d, err := dc.Get(ctx, t.rid.ResourceGroup, t.rid.Name, nil)
	if err != nil {
		return "", opError("read state of", t.DiskID, err)
	}
	if d.Properties == nil || d.Properties.DiskState == nil {
		return "", newError("read state of", t.DiskID, ErrState, "no diskState in the response")
	}
	return *d.Properties.DiskState, nil
}

// Finish revokes write access and checks that the disk is now Unattached,
// ready to be attached to a VM.
func (t *UploadTarget) Finish(ctx context.Context) error {
	if err := t.copyGuestState(ctx); err != nil {
		return err
	}
	if err := t.Revoke(ctx); err != nil {
		return err
	}
	st, err := t.State(ctx)
	if err != nil {
		return err
	}
	if st != armcompute.DiskStateUnattached {
		return newError("finish upload to", t.DiskID, ErrState, "disk is %s after revoke, want %s", st, armcompute.DiskStateUnattached)
	}
	return nil
}

// Abort revokes write access and deletes the disk. Use it when the upload
// is abandoned, not when it is to be resumed.
func (t *UploadTarget) Abort(ctx context.Context) error {
	rerr := t.Revoke(ctx)
	dc, err := t.disks()
	if err != nil {
		return errors.Join(rerr, opError("delete", t.DiskID, err))
	}
	_, err = started(dc.BeginDelete(ctx, t.rid.ResourceGroup, t.rid.Name, nil)).wait(ctx, t.c)
	return errors.Join(rerr, opError("delete", t.DiskID, err))
}

func tagPtrs(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out[k] = to.Ptr(m[k])
	}
	return out
}
