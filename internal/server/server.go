// Package server assembles podid's identity plane: one HTTP listener that
// serves every AWS API podid speaks (IAM and STS over the query protocol,
// EKS and EKS Auth over restJson1), routed by protocol, behind SigV4.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/audit"
	"github.com/podid/podid/internal/authz"
	"github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/iam"
	"github.com/podid/podid/internal/oidc"
	"github.com/podid/podid/internal/secretbox"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/internal/upstream"
)

// Config is what `podid server` takes from its flags.
type Config struct {
	Listen        string // host:port
	DataDir       string
	Store         string // store DSN; "" means DataDir/podid.db
	AccountID     string // 12 digits; "" picks one at first start
	Region        string
	MasterKeyFile string // "" means DataDir/master.key
	TLSCert       string
	TLSKey        string
	AuditLog      string // file path, "-" for stdout, "" for DataDir/audit.log
	OIDCCAFile    string // extra CA for OIDC issuers with private CAs
	// AgentServiceAccounts ("namespace/name") may authenticate node agents
	// with their own service-account tokens.
	AgentServiceAccounts []string
	// Upstream is where pod credentials come from: "local" (or "") mints
	// them here; "aws" asks the real STS with the server's own AWS identity
	// (see docs/UPSTREAM-AWS.md).
	Upstream string
	// ValidateRoles (aws upstream only) checks association roles with
	// iam:GetRole before storing them.
	ValidateRoles bool
	// ServeOIDC publishes each cluster's issuer documents under
	// IssuerDocsPrefix (for IRSA with this server as the issuer host).
	ServeOIDC bool
	// SealingKeyRotation is how long a session-token sealing key seals new
	// tokens before a new one replaces it: 0 means
	// DefaultSealingKeyRotation, negative disables rotation.
	SealingKeyRotation time.Duration
	// KeyReloadInterval is how often the sealing keys are reloaded from the
	// store (and rotated and pruned as due); 0 means
	// DefaultKeyReloadInterval.
	KeyReloadInterval time.Duration
	// Now is the clock for sealing-key rotation and retention; nil means
	// time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is a running identity plane.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	box     *secretbox.Box
	sealer  *session.Sealer
	account string
	audit   *audit.Logger
	closers []func() error

	iam   *iam.Service
	sts   *sts.Service
	eks   *eks.Service
	authz *authz.Authorizer

	upstream *upstream.Assumer // nil in local mode

	oidcClient *http.Client
	issuersMu  sync.Mutex
	issuers    map[string]*oidc.KeySet

	keysMu sync.Mutex
	keys   map[string]cachedKey // access key ID → secret

	// keysSem lets one sealing-key reload run at a time; keysLoadedAt
	// (guarded by it) is when the last one started.
	keysSem      chan struct{}
	keysLoadedAt time.Time
	keyReloads   atomic.Int64 // reloads started, for tests
}

type cachedKey struct {
	secret    string
	principal string
	fetched   time.Time
}

// DefaultDataDir is $XDG_DATA_HOME/podid or ~/.local/share/podid.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "podid")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "podid-data"
	}
	return filepath.Join(home, ".local", "share", "podid")
}

// New opens the store, bootstraps the account on first start and wires the
// services. It does not listen yet.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir()
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	s := &Server{cfg: cfg, log: cfg.Logger, issuers: map[string]*oidc.KeySet{}, keys: map[string]cachedKey{},
		keysSem: make(chan struct{}, 1)}
	if err := s.bootstrap(ctx); err != nil {
		s.Close()
		return nil, err
	}
	client, err := oidc.HTTPClient(cfg.OIDCCAFile)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.oidcClient = client
	s.authz = &authz.Authorizer{Store: s.store}
	s.iam = &iam.Service{Store: s.store, Authz: s.authz, Account: s.account}
	s.sts = &sts.Service{Store: s.store, Authz: s.authz, Sealer: s.sealer, Account: s.account, IssuerKeys: s.issuerKeys}
	s.eks = &eks.Service{Store: s.store, Authz: s.authz, STS: s.sts, Account: s.account, Region: cfg.Region,
		HTTPClient: client, AgentServiceAccounts: cfg.AgentServiceAccounts}
	s.watchStore()
	switch cfg.Upstream {
	case "", "local":
	case "aws":
		up, err := upstream.New(ctx, cfg.Region, s.log)
		if err != nil {
			s.Close()
			return nil, err
		}
		// Learn once whether the server is itself a role session (then STS
		// caps every session at 1 h); not fatal: STS may be down right now.
		if id, err := up.Identity(ctx); err != nil {
			s.log.Warn("upstream aws: cannot learn the server's own AWS identity yet", "error", err)
		} else {
			s.log.Info("upstream aws: pod credentials come from AWS STS", "identity", id, "trust_principal", upstream.PrincipalARN(id))
		}
		s.eks.STS = up
		s.upstream = up
	default:
		s.Close()
		return nil, fmt.Errorf("server: unknown upstream %q (want local or aws)", cfg.Upstream)
	}
	if cfg.ValidateRoles && s.upstream == nil {
		s.Close()
		return nil, errors.New("server: --validate-roles needs --upstream aws")
	}
	return s, nil
}

// Account returns the account ID.
func (s *Server) Account() string { return s.account }

// AdminCredentialsFile is the path of the administrator's credentials.
func (s *Server) AdminCredentialsFile() string {
	return filepath.Join(s.cfg.DataDir, "admin-credentials")
}

func (s *Server) issuerKeys(issuer string) *oidc.KeySet {
	s.issuersMu.Lock()
	defer s.issuersMu.Unlock()
	ks, ok := s.issuers[issuer]
	if !ok {
		ks = oidc.NewKeySet(oidc.FromDiscovery(s.oidcClient, issuer), jose.JSONWebKeySet{}, 0)
		s.issuers[issuer] = ks
	}
	return ks
}

// Close releases the store and the audit log.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Serve answers requests on ln until ctx ends, then drains in-flight
// requests for up to five seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.withIssuerDocs(s.withRoleValidation(s.Handler())),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// The sealing-key loop runs while the server serves.
	loopCtx, stopLoop := context.WithCancel(ctx)
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.keyLoop(loopCtx)
	}()
	defer func() {
		stopLoop()
		<-loopDone
	}()
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	s.log.Info("podid server listening", "addr", ln.Addr().String(), "tls", s.cfg.TLSCert != "", "account", s.account, "data_dir", s.cfg.DataDir)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	return nil
}

// ListenAndServe listens on cfg.Listen.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}
