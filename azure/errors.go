package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/luksconv/luksconv/blobio"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoEncryptionSettings: neither the resource nor the resources it
	// was derived from carry ADE Key Vault references.
	ErrNoEncryptionSettings = errors.New("azure: no ADE encryption settings")
	// ErrNotFound: the resource does not exist (HTTP 404).
	ErrNotFound = errors.New("azure: not found")
	// ErrExists: the target disk already exists.
	ErrExists = errors.New("azure: already exists")
	// ErrUnsupported: the source needs a feature this package does not
	// implement (a confidential VM's disk, an unmanaged disk, a DES that is
	// not for encryption at rest, for instance).
	ErrUnsupported = errors.New("azure: unsupported")
	// ErrState: a resource is not in the state the operation needs.
	ErrState = errors.New("azure: unexpected resource state")
	// ErrDiskSKU: the new disk's SKU cannot serve (an Ultra or Premium SSD v2 OS disk) or was only
	// guessed from a snapshot's storage (Standard_LRS for an OS disk): the caller must choose it.
	ErrDiskSKU = errors.New("azure: choose the new disk's SKU")
	// ErrLicense: the VM runs a Red Hat pay-as-you-go image and the re-creation needs a licensing
	// choice (RecreateOptions.License).
	ErrLicense = errors.New("azure: choose the re-created VM's RHEL licensing")
	// ErrDESMismatch: the Disk Encryption Set cannot encrypt the new disk: it is in another region
	// or another subscription. The same DES fails the same way every time.
	ErrDESMismatch = errors.New("azure: the disk encryption set cannot encrypt this disk")
	// ErrBadSecret: the Key Vault secret or unwrap result is malformed.
	ErrBadSecret = errors.New("azure: malformed ADE secret")
)

// Error describes a failed Azure operation. Its text never contains a SAS
// signature or key material: SDK errors are not wrapped, only their HTTP
// status, error code and service message (passed through blobio.Redact) are
// kept.
type Error struct {
	Op         string // what was attempted, e.g. "grant read access"
	Resource   string // resource ID or Key Vault object URL
	StatusCode int    // HTTP status, 0 if the request got no response
	Code       string // ARM or Key Vault error code, e.g. "InvalidVhd"
	Message    string // redacted detail
	cause      error  // a sentinel or context error, never an SDK error
}

// Error names the operation, the resource, the HTTP status, the error code and the redacted message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("azure: ")
	b.WriteString(e.Op)
	if e.Resource != "" {
		b.WriteString(" ")
		b.WriteString(e.Resource)
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns ErrNotFound for a 404, a context error when the operation
// was cancelled, or the sentinel the operation failed with.
func (e *Error) Unwrap() error { return e.cause }

// maxMessage bounds the service text kept in an Error.
const maxMessage = 1000

// opError converts any error from the SDK or this package into an *Error for
// operation op on resource. The SDK error itself is dropped after its status,
// code and service message have been copied out, redacted.
func opError(op, resource string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Resource: blobio.Redact(resource)}
	var re *azcore.ResponseError
	var ours *Error
	switch {
	case errors.As(err, &ours):
		// Already ours and already names the resource.
		return err
	case errors.As(err, &re):
		e.StatusCode, e.Code = re.StatusCode, re.ErrorCode
		e.Message = serviceMessage(re)
		if re.StatusCode == 404 {
			e.cause = ErrNotFound
		}
	default:
		e.Message = err.Error()
		for _, s := range []error{context.Canceled, context.DeadlineExceeded, ErrNotFound, ErrExists, ErrUnsupported, ErrState, ErrBadSecret, ErrNoEncryptionSettings, ErrDiskSKU, ErrLicense, ErrDESMismatch} {
			if errors.Is(err, s) {
				e.cause = s
				break
			}
		}
	}
	e.Message = blobio.Redact(e.Message)
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "…"
	}
	return e
}

// newError returns an *Error with a sentinel cause and a message of our own.
func newError(op, resource string, cause error, format string, args ...any) error {
	return &Error{Op: op, Resource: blobio.Redact(resource), Message: blobio.Redact(fmt.Sprintf(format, args...)), cause: cause}
}

// serviceMessage extracts error.message from an ARM or Key Vault error body
// ({"error":{"code":…,"message":…}}); it falls back to the HTTP status text.
func serviceMessage(re *azcore.ResponseError) string {
	if re.RawResponse == nil {
		return ""
	}
	if body, err := runtime.Payload(re.RawResponse); err == nil && len(body) > 0 {
		var v struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &v) == nil && v.Error.Message != "" {
			return v.Error.Message
		}
	}
	return re.RawResponse.Status
}

// isNotFound reports whether err is a 404 from the service.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == 404
	}
	return errors.Is(err, ErrNotFound)
}
