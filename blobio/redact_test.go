package blobio

import (
	"errors"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://md-x.blob.core.windows.net/c/abcd?sv=2018-03-28&sr=b&si=x&sig=AbC%2Bd%2Fe%3D",
			"https://md-x.blob.core.windows.net/c/abcd?sv=2018-03-28&sr=b&si=x&sig=REDACTED"},
		{"https://h/c/b?sig=secretvalue&se=2026-01-01", "https://h/c/b?sig=REDACTED&se=2026-01-01"},
		{"https://h/c/b?SIG=secret", "https://h/c/b?SIG=REDACTED"},
		{`Get "http://127.0.0.1:1/a/b?sp=r&sig=xyz%3D": connection refused`, `Get "http://127.0.0.1:1/a/b?sp=r&sig=REDACTED": connection refused`},
		{"<Url>https://h/c/b?sv=1&amp;sig=abc</Url>", "<Url>https://h/c/b?sv=1&amp;sig=REDACTED</Url>"},
		{"sig=abc&sv=1", "sig=REDACTED&sv=1"},
		// A SAS URL inside another URL's query (a copy source).
		{"https://d/c/b?comp=x&src=https%3A%2F%2Fs%2Fc%2Fb%3Fsv%3D1%26sig%3DAb%252Bc%26se%3D2", "https://d/c/b?comp=x&src=https%3A%2F%2Fs%2Fc%2Fb%3Fsv%3D1%26sig%3DREDACTED%26se%3D2"},
		// The name by meaning: percent-encoded in any case, double-encoded, in JSON.
		{"https://h/c/b?sv=1&%73ig=secret1&se=2", "https://h/c/b?sv=1&%73ig=REDACTED&se=2"},
		{"https://h/c/b?%53%49%47=secret2", "https://h/c/b?%53%49%47=REDACTED"},
		{"https://h/c/b?s%69G=secret3&x=1", "https://h/c/b?s%69G=REDACTED&x=1"},
		{"https://h/c/b?%2573ig=secret4", "https://h/c/b?%2573ig=REDACTED"},
		{`{"path":"https://h/c/b?sv=1\u0026%73ig=secret5\u0026se=2"}`, `{"path":"https://h/c/b?sv=1\u0026%73ig=REDACTED\u0026se=2"}`},
		{"https://d/c/b?src=https%3A%2F%2Fs%2Fb%3Fsv%3D1%26%2573ig%3Dsecret6%26se%3D2", "https://d/c/b?src=https%3A%2F%2Fs%2Fb%3Fsv%3D1%26%2573ig%3DREDACTED%26se%3D2"},
		// A SAS taken apart into JSON members: the signature's value goes, escaped quotes and all.
		{`{"sv":"2020-10-02","sig":"Ab\"c+d/e=","se":"2"}`, `{"sv":"2020-10-02","sig":"REDACTED","se":"2"}`},
		{`{"SIG" : "x\\y"}`, `{"SIG" : "REDACTED"}`},
		// Not a signature: "design=" and "signature=" keep their values.
		{"https://h/c/b?design=1&signature=2", "https://h/c/b?design=1&signature=2"},
		{`{"signature":"kept","design":"kept"}`, `{"signature":"kept","design":"kept"}`},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestRedactorKnownSecret(t *testing.T) {
	const sasURL = "https://h/c/b?sv=1&sig=Zm9vYmFy%2Bc2VjcmV0%2F%3D"
	r := newRedactor(sasURL)
	// The service echoes a bad value in an XML error body, not as sig=.
	msg := "<QueryParameterValue>Zm9vYmFy+c2VjcmV0/=</QueryParameterValue> and Zm9vYmFy%2Bc2VjcmV0%2F%3D"
	got := r.redact(msg)
	if strings.Contains(got, "Zm9vYmFy") {
		t.Fatalf("secret survived: %q", got)
	}
	e := r.newError("read", r.redact(sasURL), 0, 512, 2, errors.New(sasURL+" "+msg))
	if s := e.Error(); strings.Contains(s, "Zm9vYmFy") || !strings.Contains(s, "sig=REDACTED") {
		t.Fatalf("Error() = %q", s)
	}
}

// TestRedactorEncodedName: a SAS whose sig parameter name is percent-encoded (which the service reads
// as sig) has its value removed from errors too.
func TestRedactorEncodedName(t *testing.T) {
	for _, name := range []string{"%73ig", "%73%69%67", "SIG", "Sig", "s%49g"} {
		sasURL := "https://h/c/b?sv=1&" + name + "=Zm9vYmFyc2VjcmV0&se=2"
		r := newRedactor(sasURL)
		e := r.newError("read", r.redact(sasURL), 0, 512, 1, errors.New("echo: Zm9vYmFyc2VjcmV0 and "+sasURL))
		if s := e.Error(); strings.Contains(s, "Zm9vYmFy") {
			t.Errorf("%s: Error() = %q", name, s)
		}
		if got := Redact(sasURL); strings.Contains(got, "Zm9vYmFy") {
			t.Errorf("%s: Redact = %q", name, got)
		}
	}
}
