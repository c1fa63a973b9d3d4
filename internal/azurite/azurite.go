// Package azurite starts Azurite, Microsoft's local Azure Storage emulator,
// for tests: a real page-blob server on a loopback port, in memory, with the
// well-known development account.
//
// The azurite-blob command is looked up in this order: $AZURITE_BLOB (a
// path), the project-local install <repo>/.tools/azurite (made by
// InstallCommand), and $PATH. If none is found and npm is available, Start
// runs InstallCommand once (set LUKSCONV_AZURITE_INSTALL=0 to forbid that).
// When Azurite cannot be had, Start skips the test with a loud message, or
// fails it when LUKSCONV_REQUIRE_AZURITE=1 (for CI).
package azurite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/luksconv/luksconv/internal/scriptcache"
)

// Version is the Azurite release installed and tested against. 3.35.0 is the
// newest that supports Node 20; newer releases require Node 21 or 22.
const Version = "3.35.0"

// The development account every Azurite serves (from Azurite's README).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Server is a running Azurite blob service.
type Server struct {
	// BlobEndpoint is the service URL, http://127.0.0.1:PORT/devstoreaccount1.
	BlobEndpoint string
	cred         *sas.SharedKeyCredential
}

// InstallDir is where InstallCommand puts Azurite: <repo>/.tools/azurite.
func InstallDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".tools", "azurite"), nil
}

// InstallCommand is the command that installs the pinned Azurite into dir.
func InstallCommand(dir string) []string {
	return []string{"npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--loglevel=error", "azurite@" + Version}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

var installMu sync.Mutex

// Command returns the path of azurite-blob, installing it if allowed.
func Command() (string, error) {
	if p := os.Getenv("AZURITE_BLOB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("AZURITE_BLOB=%s: %w", p, err)
		}
		return p, nil
	}
	dir, err := InstallDir()
	if err != nil {
		return "", err
	}
	local := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(local); err == nil {
		return local, nil
	}
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p, nil
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", errors.New("node is not installed (Azurite is a Node.js program)")
	}
	if os.Getenv("LUKSCONV_AZURITE_INSTALL") == "0" {
		return "", errors.New("azurite-blob not found and LUKSCONV_AZURITE_INSTALL=0")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", errors.New("azurite-blob not found and npm is not installed")
	}
	installMu.Lock()
	defer installMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Test binaries of several packages may run at once: one installs.
	unlock, err := scriptcache.Lock(filepath.Join(dir, ".install.lock"), func() {})
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(local); err == nil {
		return local, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := InstallCommand(dir)
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if _, err := os.Stat(local); err != nil {
		return "", fmt.Errorf("%s succeeded but %s is missing", strings.Join(args, " "), local)
	}
	return local, nil
}

var listening = regexp.MustCompile(`listens on (http://127\.0\.0\.1:[0-9]+)`)

// Start starts Azurite's blob service on a free loopback port, in memory,
// and stops it when the test ends. It skips the test, loudly, when Azurite
// cannot be found or installed (fails it if LUKSCONV_REQUIRE_AZURITE=1).
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Command()
	if err != nil {
		dir, _ := InstallDir()
		msg := fmt.Sprintf("AZURITE UNAVAILABLE, Azure page-blob tests NOT RUN: %v\n"+
			"    install it with: %s", err, strings.Join(InstallCommand(dir), " "))
		if os.Getenv("LUKSCONV_REQUIRE_AZURITE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cred, err := container.NewSharedKeyCredential(Account, Key)
	if err != nil {
		t.Fatal(err)
	}
	// Port 0: the kernel picks a free port and Azurite prints it, so no
	// other process can take it between choosing and binding.
	cmd := exec.Command(bin,
		"--inMemoryPersistence",
		"--blobHost", "127.0.0.1", "--blobPort", "0",
		// The SDK sends a newer x-ms-version than Azurite 3.35 knows.
		"--skipApiVersionCheck",
		// Accept headers Azurite does not implement (CRC64) instead of failing with 500.
		"--loose",
		"--disableTelemetry",
		// No access log: it would print every request URL, SAS signature included.
		"--silent",
	)
	cmd.Dir = t.TempDir() // Azurite writes its debug and metadata files into the working directory
	newProcessGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	endpoint := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case endpoint <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		// Azurite runs node, which may have children: end the process group.
		terminate(cmd, false)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			terminate(cmd, true)
			<-exited
		}
	}
	var base string
	select {
	case base = <-endpoint:
	case <-exited:
		t.Fatalf("azurite exited during start-up:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		stop()
		t.Fatalf("azurite did not report a listening port within 30s:\n%s", logs.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("azurite output:\n%s", logs.String())
		}
	})
	return &Server{BlobEndpoint: base + "/" + Account, cred: cred}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) WriteString(s string) {
	l.Write([]byte(s))
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Credential is the shared key credential of the development account.
func (s *Server) Credential() *sas.SharedKeyCredential { return s.cred }

// BlobURL is the URL of a blob, without a SAS.
func (s *Server) BlobURL(containerName, blobName string) string {
	return s.BlobEndpoint + "/" + url.PathEscape(containerName) + "/" + url.PathEscape(blobName)
}

// ContainerClient returns a shared-key client for a container, with the
// SDK's retries off (a test wants failures at once).
func (s *Server) ContainerClient(t testing.TB, containerName string) *container.Client {
	t.Helper()
	c, err := container.NewClientWithSharedKeyCredential(s.BlobEndpoint+"/"+url.PathEscape(containerName), s.cred,
		&container.ClientOptions{ClientOptions: azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateContainer creates a container. Names have 3 to 63 characters.
func (s *Server) CreateContainer(t testing.TB, containerName string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.ContainerClient(t, containerName).Create(ctx, nil); err != nil {
		t.Fatalf("creating container %q: %v", containerName, err)
	}
}

// BlobSAS returns a service SAS URL for one blob (which need not exist yet),
// signed with the development key, valid from a minute ago for ttl.
func (s *Server) BlobSAS(t testing.TB, containerName, blobName string, perms sas.BlobPermissions, ttl time.Duration) string {
	t.Helper()
	now := time.Now().UTC()
	qp, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		StartTime:     now.Add(-time.Minute),
		ExpiryTime:    now.Add(ttl),
		Permissions:   perms.String(),
		ContainerName: containerName,
		BlobName:      blobName,
	}.SignWithSharedKey(s.cred)
	if err != nil {
		t.Fatal(err)
	}
	return s.BlobURL(containerName, blobName) + "?" + qp.Encode()
}

// ReadSAS and WriteSAS are the permissions grant-access gives: a snapshot's
// read SAS, and an upload disk's write SAS (which may also read).
var (
	ReadSAS  = sas.BlobPermissions{Read: true}
	WriteSAS = sas.BlobPermissions{Read: true, Write: true, Create: true}
)
