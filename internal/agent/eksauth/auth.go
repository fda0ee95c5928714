package eksauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
)

// SigV4 signs requests with credentials from Credentials, as the AWS node
// agent does with the node's instance role.
type SigV4 struct {
	Credentials aws.CredentialsProvider
	Region      string
	Signer      *v4.Signer // nil: a default signer
	Now         func() time.Time
}

// Authenticate implements Authenticator.
func (s *SigV4) Authenticate(ctx context.Context, r *http.Request, payloadHash string) error {
	creds, err := s.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	signer := s.Signer
	if signer == nil {
		signer = v4.NewSigner()
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	return signer.SignHTTP(ctx, creds, r, payloadHash, ServiceName, s.Region, now)
}

// BearerTokenFile authenticates with the agent's own projected
// service-account token. The file is read on every call because the kubelet
// rotates it in place.
type BearerTokenFile struct {
	Path string
}

// maxTokenFileSize bounds the token file; service-account tokens are a few KiB.
const maxTokenFileSize = 64 << 10

// Authenticate implements Authenticator.
func (b *BearerTokenFile) Authenticate(_ context.Context, r *http.Request, _ string) error {
	f, err := os.Open(b.Path)
	if err != nil {
		return fmt.Errorf("agent token: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return fmt.Errorf("agent token %s: %w", b.Path, err)
	}
	if len(buf) > maxTokenFileSize {
		return fmt.Errorf("agent token %s: larger than %d bytes", b.Path, maxTokenFileSize)
	}
	tok := strings.TrimSpace(string(buf))
	if tok == "" {
		return fmt.Errorf("agent token %s: empty", b.Path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return fmt.Errorf("agent token %s: contains whitespace", b.Path)
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// ReloadingCredentials is the default AWS credential chain, reloaded when
// the shared credentials or config file changes.
//
// config.LoadDefaultConfig snapshots static keys from the shared credentials
// file into a never-expiring provider, so a file rotated in place (as
// credential helpers and secret mounts do) would otherwise go unnoticed until
// a restart. Providers that expire (SSO, assume-role, web identity, process)
// keep their own refresh; only the file check is added.
type ReloadingCredentials struct {
	// Load builds the chain; nil means config.LoadDefaultConfig.
	Load func(ctx context.Context) (aws.Config, error)
	// Files are watched for changes (mtime and size); nil means the shared
	// credentials and config files the SDK would read.
	Files []string

	mu    sync.Mutex
	cur   aws.CredentialsProvider
	stamp string
}

// Retrieve implements aws.CredentialsProvider.
func (p *ReloadingCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	prov, err := p.provider(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	return prov.Retrieve(ctx)
}

func (p *ReloadingCredentials) provider(ctx context.Context) (aws.CredentialsProvider, error) {
	stamp := fileStamp(p.files())
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil && stamp == p.stamp {
		return p.cur, nil
	}
	load := p.Load
	if load == nil {
		load = func(ctx context.Context) (aws.Config, error) { return config.LoadDefaultConfig(ctx) }
	}
	cfg, err := load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS config: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("no AWS credentials found in the default chain")
	}
	p.cur, p.stamp = cfg.Credentials, stamp
	return p.cur, nil
}

func (p *ReloadingCredentials) files() []string {
	if p.Files != nil {
		return p.Files
	}
	creds := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if creds == "" {
		creds = config.DefaultSharedCredentialsFilename()
	}
	conf := os.Getenv("AWS_CONFIG_FILE")
	if conf == "" {
		conf = config.DefaultSharedConfigFilename()
	}
	return []string{creds, conf}
}

func fileStamp(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			b.WriteString("-;")
			continue
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String()
}
