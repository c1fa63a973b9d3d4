// Package azure is the Azure control plane of luksconv: it finds where an
// Azure Disk Encryption (ADE) disk's key lives, recovers the key-file bytes
// from Key Vault, exports a snapshot for reading, creates the plaintext target
// as a direct-upload managed disk under a Disk Encryption Set, and plans and
// performs the re-creation of the VM around the new OS disk.
//
// The data itself never passes through this package: GrantRead and
// CreateUploadDisk return SAS URLs for package blobio, which moves the pages.
//
// # Where the key is
//
// Single-pass ADE (extension 1.x) stamps the Key Vault references on the disk,
// and on every snapshot taken of it, in
// properties.encryptionSettingsCollection. Dual-pass ADE (0.x, with an Entra
// application) stamps them on the VM instead, in
// properties.storageProfile.osDisk.encryptionSettings. KeySources reads
// whichever is present, following snapshot → source disk → the VM that owns
// the disk.
//
// A secret without a key-encryption key (content type "BEK") holds the
// key-file bytes in standard base64. A "Wrapped BEK" holds the RSA-wrapped
// key-file bytes in base64url; RecoverKey unwraps them with Key Vault's
// unwrapKey operation on the KEK, using the algorithm ADE recorded in the
// secret's DiskEncryptionKeyEncryptionAlgorithm tag (RSA-OAEP by default).
//
// # The target disk
//
// A disk that was ever ADE-encrypted carries that history through snapshots
// and CreateOption=Copy, and such a disk cannot be put under a customer-managed
// key. A disk created with CreateOption=Upload starts with no metadata from
// the source, which is why CreateUploadDisk creates one, copies only the
// properties a VM needs to boot it (OS type, Hyper-V generation, supported
// capabilities, zone, SKU, purchase plan) and never copies
// encryptionSettingsCollection.
//
// # Secrets
//
// SAS URLs and key material are secrets. Errors from this package (type
// *Error) hold the HTTP status and service error code and a message with SAS
// signatures removed by blobio.Redact; they never wrap the SDK's errors, whose
// text carries request URLs and response bodies. Nothing here logs.
//
// # Versions
//
// The package is built on armcompute v8 (disks and snapshots API 2026-03-02,
// virtual machines API 2026-04-01), azsecrets v1.5, azkeys v1.5, armresources
// v1.2 (deployment validation) and armresourcegraph v0.10 (the inventory), and
// is tested with the SDK's own fake servers.
package azure
