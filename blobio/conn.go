package blobio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

// PageSize is the page size of a page blob: offsets and lengths of Put Page
// are multiples of it.
const PageSize = 512

// MaxPutPage is the most one Put Page request may carry.
const MaxPutPage = 4 << 20

// DefaultWorkers is the concurrency a connection pool is sized for when the
// options do not say.
const DefaultWorkers = 16

// RetryOptions control this package's retries. The zero value gives the defaults.
type RetryOptions struct {
	// MaxTries is the number of attempts of one request, the first included
	// (default 8). For reads, an attempt that delivered bytes resets the count:
	// only attempts that make no progress are counted.
	MaxTries int
	// TryTimeout bounds one attempt, including reading the response body
	// (default 60 s), so a stalled connection is abandoned and retried.
	TryTimeout time.Duration
	// BaseDelay is the first back-off (default 500 ms); it doubles per failed
	// attempt up to MaxDelay (default 60 s), with random jitter. A Retry-After
	// from the service replaces the computed delay (plus up to 25% jitter) and
	// may exceed MaxDelay, up to 10 minutes.
	BaseDelay, MaxDelay time.Duration
	// NoProgress, if set, bounds the time without any successful request or
	// byte received: once it passes, the next failure is not retried (and no
	// attempt lasts longer than it), so a server that never answers ends the
	// run instead of being retried for hours.
	NoProgress time.Duration
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.MaxTries <= 0 {
		o.MaxTries = 8
	}
	if o.TryTimeout <= 0 {
		o.TryTimeout = 60 * time.Second
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 500 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 60 * time.Second
	}
	if o.MaxDelay < o.BaseDelay {
		o.MaxDelay = o.BaseDelay
	}
	return o
}

const maxRetryAfter = 10 * time.Minute

// delay is the wait before attempt failures+1.
func (o RetryOptions) delay(failures int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		// Never earlier than asked; the jitter keeps many workers that were
		// throttled together from coming back together.
		retryAfter = min(retryAfter, maxRetryAfter)
		return retryAfter + rand.N(retryAfter/4+1)
	}
	d := o.BaseDelay
	for i := 1; i < failures && d < o.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, o.MaxDelay)
	return d/2 + rand.N(d/2+1) // "equal jitter": between d/2 and d
}

// retryableStatus lists the statuses worth another attempt: timeouts,
// throttling (429, and 503 ServerBusy for storage) and server errors.
func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errPermanent marks a failure another attempt cannot fix.
var errPermanent = errors.New("permanent")

// errTryTimeout replaces the per-attempt context's DeadlineExceeded so that it
// is not mistaken for the caller's deadline.
var errTryTimeout = errors.New("no complete response in time")

// retryable reports whether err, from an attempt under the caller's ctx, is
// worth another attempt, and the delay the service asked for.
func retryable(ctx context.Context, err error) (bool, time.Duration) {
	if ctx.Err() != nil || errors.Is(err, errPermanent) {
		return false, 0
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		if !retryableStatus(re.StatusCode) {
			return false, 0
		}
		if re.RawResponse != nil {
			return true, retryAfter(re.RawResponse.Header)
		}
		return true, 0
	}
	// Anything else is the network: refused, reset, truncated, timed out.
	return true, 0
}

// retryAfter reads the service's requested delay, in the forms azcore knows.
func retryAfter(h http.Header) time.Duration {
	for _, k := range []string{"x-ms-retry-after-ms", "retry-after-ms"} {
		if v := h.Get(k); v != "" {
			if ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s > 0 {
			return time.Duration(s) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			if d := time.Until(t); d > 0 {
				return d
			}
		}
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewTransport returns an http.Transport sized for workers concurrent
// requests to one host. Go's default keeps only two idle connections per host
// (the SDK's, ten), so with more workers every request beyond that would pay
// for a new TCP and TLS handshake.
func NewTransport(workers int) *http.Transport {
	if workers <= 0 {
		workers = DefaultWorkers
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		MaxIdleConns:          2*workers + 4,
		MaxIdleConnsPerHost:   workers + 4, // Get Page Ranges and retries ride along with the workers
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		// 4 MiB bodies: fewer system calls per request.
		ReadBufferSize:  256 << 10,
		WriteBufferSize: 256 << 10,
	}
}

// conn is what Source and Sink share: the SDK client for one blob, the
// redaction of its SAS, retry options, logging and counters.
type conn struct {
	client *pageblob.Client
	url    string // redacted
	red    *redactor
	retry  RetryOptions
	logf   func(format string, args ...any)
	own    *http.Transport // closed by close() when this package made it

	requests, retries atomic.Int64
	progress          atomic.Int64 // time.Now().UnixNano() of the last success
}

// noteProgress records a successful request or received bytes.
func (c *conn) noteProgress() { c.progress.Store(time.Now().UnixNano()) }

// stalled reports whether NoProgress has passed since the last success.
func (c *conn) stalled() bool {
	return c.retry.NoProgress > 0 && time.Since(time.Unix(0, c.progress.Load())) >= c.retry.NoProgress
}

// tryTimeout is the bound of one attempt.
func (c *conn) tryTimeout() time.Duration {
	if c.retry.NoProgress > 0 {
		return min(c.retry.TryTimeout, c.retry.NoProgress)
	}
	return c.retry.TryTimeout
}

// errNoProgress ends retries once RetryOptions.NoProgress passed without a success.
var errNoProgress = errors.New("no progress")

func newConn(sasURL string, workers int, rt http.RoundTripper, retry RetryOptions, bearer *Bearer, logf func(string, ...any)) (*conn, error) {
	red := newRedactor(sasURL)
	c := &conn{url: red.redact(sasURL), red: red, retry: retry.withDefaults()}
	c.noteProgress()
	c.logf = func(format string, args ...any) {
		msg := red.redact(fmt.Sprintf(format, args...))
		if logf != nil {
			logf("%s", msg)
		} else {
			log.Print(msg)
		}
	}
	u, err := url.Parse(sasURL)
	if err != nil {
		return nil, c.red.newError("parse URL", "", 0, 0, 0, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return nil, c.red.newError("parse URL", c.url, 0, 0, 0, errors.New("not an http(s) blob URL"))
	}
	if rt == nil {
		c.own = NewTransport(workers)
		rt = c.own
	}
	opts := &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: &http.Client{Transport: limitBodies{rt}},
		// This package retries; the SDK's policy would multiply the attempts
		// and cannot resume a body.
		Retry:     policy.RetryOptions{MaxRetries: -1},
		Telemetry: policy.TelemetryOptions{ApplicationID: "luksconv-blobio"},
	}}
	if bearer != nil && bearer.Credential != nil {
		opts.PerCallPolicies = append(opts.PerCallPolicies, &bearerPolicy{b: *bearer})
	}
	c.client, err = pageblob.NewClientWithNoCredential(sasURL, opts)
	if err != nil {
		return nil, c.red.newError("open", c.url, 0, 0, 0, err)
	}
	return c, nil
}

// do runs f with a per-attempt timeout and retries it up to maxTries times
// (0: the configured MaxTries).
func (c *conn) do(ctx context.Context, op string, off, n int64, maxTries int, f func(ctx context.Context) error) error {
	if maxTries <= 0 {
		maxTries = c.retry.MaxTries
	}
	for tries := 1; ; tries++ {
		c.requests.Add(1)
		tctx, cancel := context.WithTimeout(ctx, c.tryTimeout())
		err := f(tctx)
		if err != nil && ctx.Err() == nil && tctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("%w (%v per attempt)", errTryTimeout, c.tryTimeout())
		}
		cancel()
		if err == nil {
			c.noteProgress()
			return nil
		}
		again, ra := retryable(ctx, err)
		if again && c.stalled() {
			again, err = false, fmt.Errorf("%w for %v: %w", errNoProgress, c.retry.NoProgress, err)
		}
		if !again || tries >= maxTries {
			return c.red.newError(op, c.url, off, n, tries, err)
		}
		d := c.retry.delay(tries, ra)
		c.retries.Add(1)
		c.logf("blobio: %s of bytes [%d, %d): %v; retrying in %v (attempt %d of %d)",
			op, off, off+n, c.red.newError("", "", 0, 0, 0, err).Err, d.Round(time.Millisecond), tries+1, maxTries)
		if err := sleep(ctx, d); err != nil {
			return c.red.newError(op, c.url, off, n, tries, err)
		}
	}
}

func (c *conn) close() {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// statusOf returns the HTTP status of an SDK error, or 0.
func statusOf(err error) (int, string) {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode, re.ErrorCode
	}
	return 0, ""
}

// Response bodies the SDK reads whole are bounded: an error body is cut at
// maxErrorBody (only its first lines matter), a page list fails past
// maxPageListBody (Azure sends at most 10,000 ranges a page, about 1 MB).
const (
	maxErrorBody    = 64 << 10
	maxPageListBody = 32 << 20
)

// limitBodies is a transport that bounds the bodies of error responses and
// page lists.
type limitBodies struct{ rt http.RoundTripper }

func (l limitBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	switch {
	case resp.StatusCode >= 300:
		resp.Body = &cappedBody{rc: resp.Body, left: maxErrorBody}
	case req.URL != nil && req.URL.Query().Get("comp") == "pagelist":
		resp.Body = &cappedBody{rc: resp.Body, left: maxPageListBody, fail: true}
	}
	return resp, nil
}

// cappedBody reads at most left bytes: then EOF, or an error with fail.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
	fail bool
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		if b.fail {
			return 0, bodyTooLong{}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// bodyTooLong ends a page list longer than maxPageListBody. No blob service
// sends one, and another attempt would get the same: it is not retried.
type bodyTooLong struct{}

func (bodyTooLong) Error() string {
	return fmt.Sprintf("blobio: response body longer than %d bytes", maxPageListBody)
}

func (bodyTooLong) Is(target error) bool { return target == errPermanent }
