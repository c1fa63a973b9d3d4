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
		// Not a signature: "design=" and "signature=" keep their values.
		{"https://h/c/b?design=1&signature=2", "https://h/c/b?design=1&signature=2"},
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
