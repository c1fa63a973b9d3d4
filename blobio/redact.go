package blobio

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// Redacted replaces secret values in URLs and messages.
const Redacted = "REDACTED"

var (
	// sig=… in a URL, a query string, text holding a URL, or XML (&amp;sig=).
	sigPlain = regexp.MustCompile(`(?i)((?:^|[?&;\s"'(<])sig=)[A-Za-z0-9%+/=_.~-]*`)
	// sig=… inside a URL that was itself query-escaped (a copy-source parameter).
	sigEscaped = regexp.MustCompile(`(?i)((?:%3F|%26)sig%3D)[^&\s"'<>#]*?(%26|[&\s"'<>#]|$)`)
	// "sig": "…" in JSON (a SAS taken apart into its parameters).
	sigJSON = regexp.MustCompile(`(?i)("sig"\s*:\s*")(?:[^"\\]|\\.)*(")`)
)

// Redact returns s with the value of every SAS signature (the sig query
// parameter) replaced by "REDACTED". s may be a URL, a query string or any
// text containing URLs, such as an error message, or JSON holding a "sig"
// member. The other SAS parameters (sv, se, sp, sr, skoid, …) are not
// secret and are kept: the expiry se in particular helps to explain an
// authentication failure.
//
// A parameter is the signature by meaning, not spelling: its name is
// compared after URL-decoding (once or more, as a copy-source URL nests), in
// any case, so %73ig=, SIG= and %2573ig= are redacted as the service would
// read them.
func Redact(s string) string {
	s = sigPlain.ReplaceAllString(s, "${1}"+Redacted)
	s = sigEscaped.ReplaceAllString(s, "${1}"+Redacted+"${2}")
	s = sigJSON.ReplaceAllString(s, "${1}"+Redacted+"${2}")
	// One parameter at a time, each match resuming at the previous one's terminator (which is the
	// next one's delimiter); a leading newline stands for the start of s.
	t := "\n" + s
	var out strings.Builder
	pos := 0
	for pos < len(t) {
		g := anyParam.FindStringSubmatchIndex(t[pos:])
		if g == nil {
			break
		}
		name, val := t[pos+g[4]:pos+g[5]], t[pos+g[8]:pos+g[9]]
		out.WriteString(t[pos : pos+g[8]])
		if isSigName(name) && val != "" && val != Redacted {
			out.WriteString(Redacted)
		} else {
			out.WriteString(val)
		}
		pos += g[9]
	}
	out.WriteString(t[pos:])
	return out.String()[1:]
}

// anyParam is one query parameter in a URL, a query-escaped URL or JSON
// text: delimiter, name (possibly percent-encoded, never an encoded '&' or
// '='), '=' (possibly encoded), value, and what ends the value.
var anyParam = regexp.MustCompile(`(?i)([?&;\s"'(<]|\\u0026|%3F|%26|%253F|%2526)((?:[a-z0-9_.~+-]|%(?:[0-14-9a-f][0-9a-f]|2[0-57-9a-f]|3[0-9a-ce-f]))+)(=|%3D|%253D)([^&;\s"'<>#\\]*?)(%26|%2526|\\u0026|[&;\s"'<>#\\]|$)`)

// IsSignatureName reports whether a query parameter name, as written in a URL, names the SAS
// signature: it decodes (once or more) to "sig" in any case.
func IsSignatureName(name string) bool { return isSigName(name) }

// isSigName reports whether a parameter name decodes to "sig", in any case.
func isSigName(name string) bool {
	for range 4 {
		if strings.EqualFold(name, "sig") {
			return true
		}
		d, err := url.QueryUnescape(name)
		if err != nil || d == name {
			return false
		}
		name = d
	}
	return false
}

// redactor removes the signatures of the SAS URLs it was given wherever they
// appear, also outside a sig= parameter (a service error body may echo a bad
// value). A Source that names a previous snapshot by URL adds that URL's.
type redactor struct {
	mu      sync.RWMutex
	secrets []string
}

func newRedactor(sasURL string) *redactor {
	r := &redactor{}
	r.addURL(sasURL)
	return r
}

// addURL adds the signature of one more SAS URL.
func (r *redactor) addURL(sasURL string) {
	u, err := url.Parse(sasURL)
	if err != nil {
		return
	}
	var found []string
	add := func(s string) {
		// Very short values are not signatures and would blank out ordinary text.
		if len(s) >= 8 && !strings.EqualFold(s, Redacted) {
			found = append(found, s)
		}
	}
	for k, vs := range u.Query() {
		if !isSigName(k) {
			continue
		}
		for _, v := range vs {
			add(v)
			add(url.QueryEscape(v))
			add(url.PathEscape(v))
			add(strings.ReplaceAll(url.QueryEscape(v), "%", "%25"))
		}
	}
	// The raw form as written in the URL (its escaping may differ from ours).
	for _, kv := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		if k, v, ok := strings.Cut(kv, "="); ok && isSigName(k) {
			add(v)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range found {
		if !slices.Contains(r.secrets, f) {
			r.secrets = append(r.secrets, f)
		}
	}
}

func (r *redactor) redact(s string) string {
	s = Redact(s)
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, Redacted)
	}
	return s
}

// newError builds an *Error from a cause that may carry the URL.
func (r *redactor) newError(op, redactedURL string, off, n int64, tries int, cause error) *Error {
	e := &Error{Op: op, URL: redactedURL, Off: off, Len: n, Tries: tries}
	switch {
	case cause == nil:
	case errors.Is(cause, context.Canceled):
		e.Err = context.Canceled
	case errors.Is(cause, context.DeadlineExceeded):
		e.Err = context.DeadlineExceeded
	default:
		var re *azcore.ResponseError
		if errors.As(cause, &re) {
			e.StatusCode, e.Code = re.StatusCode, re.ErrorCode
			e.Err = errors.New(r.redact(describeResponse(re)))
		} else {
			e.Err = errors.New(r.redact(cause.Error()))
		}
		if errors.Is(cause, ErrProtocol) {
			e.Err = sentinelText{e.Err.Error(), ErrProtocol}
		}
	}
	return e
}

// sentinelText is a redacted message that still matches its sentinel (errors.Is).
type sentinelText struct {
	msg string
	is  error
}

func (e sentinelText) Error() string { return e.msg }
func (e sentinelText) Unwrap() error { return e.is }

// describeResponse is a one-line summary of a service error: status, code,
// and the service's message (which explains, for example, an expired SAS).
func describeResponse(re *azcore.ResponseError) string {
	s := fmt.Sprintf("HTTP %d", re.StatusCode)
	if re.ErrorCode != "" {
		s += " " + re.ErrorCode
	}
	if re.RawResponse == nil {
		return s
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil || len(body) == 0 {
		return s
	}
	var x struct {
		Message string `xml:"Message"`
		Detail  string `xml:"AuthenticationErrorDetail"`
	}
	if xml.Unmarshal(body, &x) != nil {
		// Not a storage error body (a proxy's page, say): its first line.
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if len(line) > 200 {
			line = line[:200] + "…"
		}
		return s + ": " + line
	}
	msg := x.Message
	if i := strings.IndexAny(msg, "\r\n"); i >= 0 {
		msg = msg[:i] // the rest is RequestId and Time
	}
	if msg != "" {
		s += ": " + msg
	}
	if x.Detail != "" {
		s += " (" + x.Detail + ")"
	}
	return s
}
