package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Defaults for the settings that are not command-line flags.
const (
	DefaultWebhookConfigName = "podid-webhook"
	DefaultServiceName       = "podid-webhook"
	DefaultNamespace         = "podid-system"
	DefaultServerInterval    = 10 * time.Second
	DefaultFileInterval      = 2 * time.Second
	DefaultRescanInterval    = time.Minute
	caBundleInterval         = time.Minute
	shutdownGrace            = 10 * time.Second
)

// Config configures a webhook. The first group are podid webhook's flags.
type Config struct {
	Listen           string   // host:port
	Cluster          string   // cluster name in the association API
	Servers          []string // podid server (EKS API) URLs, replicas of one; empty: no server associations
	Kubeconfig       string   // empty: in-cluster configuration
	TLSCert, TLSKey  string
	TLSSelfSigned    bool
	Region           string
	IPv6             bool
	AssociationsFile string
	AnnotationPrefix string

	// RestConfig, if set, is used instead of Kubeconfig.
	RestConfig *rest.Config
	// Listener, if set, is served instead of listening on Listen.
	Listener net.Listener
	// WebhookConfigName is the MutatingWebhookConfiguration whose caBundle
	// --tls-self-signed maintains (default podid-webhook).
	WebhookConfigName string
	// ServiceName and Namespace name the Service in front of the webhook,
	// for the self-signed certificate's names (defaults podid-webhook and
	// $POD_NAMESPACE or podid-system).
	ServiceName, Namespace string
	// EKS, if set, lists associations instead of clients for Servers.
	EKS eks.ListPodIdentityAssociationsAPIClient
	// Polling intervals: the server's associations, the associations and
	// TLS files, and the pass over pods that counts missed ones.
	ServerInterval, FileInterval, RescanInterval time.Duration
	// LookupTimeout bounds a service-account GET on a cache miss.
	LookupTimeout time.Duration
	Logger        *slog.Logger
}

// Webhook is a configured webhook, listening; Serve runs it.
type Webhook struct {
	cfg      Config
	log      *slog.Logger
	client   kubernetes.Interface
	metrics  *Metrics
	handler  *Handler
	sas      *ServiceAccountCache
	sources  AssociationIndex
	missed   *missedPods
	fileCert *FileCertificate
	self     *SelfSigned
	getCert  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	ln       net.Listener
	stopping atomic.Bool
}

// New checks cfg, connects to the apiserver, loads or makes the serving
// certificate and listens. Nothing runs until Serve.
func New(ctx context.Context, cfg Config) (*Webhook, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(cfg.Servers) > 0 && cfg.Cluster == "" && cfg.EKS == nil {
		return nil, errors.New("--server needs --cluster")
	}
	if len(cfg.Servers) == 0 && cfg.EKS != nil && cfg.Cluster == "" {
		return nil, errors.New("an EKS client needs --cluster")
	}
	if cfg.TLSSelfSigned == (cfg.TLSCert != "" || cfg.TLSKey != "") {
		if cfg.TLSSelfSigned {
			return nil, errors.New("--tls-self-signed excludes --tls-cert and --tls-key")
		}
		return nil, errNoCert
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	setDefault(&cfg.WebhookConfigName, DefaultWebhookConfigName)
	setDefault(&cfg.ServiceName, DefaultServiceName)
	setDefault(&cfg.Namespace, os.Getenv("POD_NAMESPACE"))
	setDefault(&cfg.Namespace, DefaultNamespace)
	setDefault(&cfg.ServerInterval, DefaultServerInterval)
	setDefault(&cfg.FileInterval, DefaultFileInterval)
	setDefault(&cfg.RescanInterval, DefaultRescanInterval)

	w := &Webhook{cfg: cfg, log: cfg.Logger, metrics: NewMetrics()}
	rc := cfg.RestConfig
	if rc == nil {
		var err error
		if cfg.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("kubernetes client configuration: %w", err)
		}
	}
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "podid-webhook"
	// The defaults (5 QPS) would throttle cache-miss lookups in a burst of
	// pods; these bound a misbehaving webhook's load instead.
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	w.client = client

	mut := NewMutator(Options{AnnotationPrefix: cfg.AnnotationPrefix, Region: cfg.Region, IPv6: cfg.IPv6})
	w.sas = NewServiceAccountCache(client, w.metrics, cfg.LookupTimeout)
	if err := w.addSources(ctx); err != nil {
		return nil, err
	}
	var assoc Associations
	if len(w.sources) > 0 {
		assoc = w.sources
	}
	w.handler = &Handler{Mutator: mut, ServiceAccounts: w.sas, Associations: assoc, Metrics: w.metrics, Log: w.log}
	w.missed = newMissedPods(client, mut, w.sas, assoc, w.metrics, w.log, cfg.RescanInterval)
	for _, s := range w.sources {
		s.onChange = w.missed.Rescan
	}

	if cfg.TLSSelfSigned {
		mwc, err := getWebhookConfig(ctx, client, cfg.WebhookConfigName)
		if err != nil {
			w.log.Warn("cannot read the webhook configuration for certificate names; using the defaults", "err", err)
		}
		hosts := webhookHosts(mwc, cfg.ServiceName, cfg.Namespace)
		if w.self, err = NewSelfSigned(hosts); err != nil {
			return nil, err
		}
		w.getCert = w.self.GetCertificate
		w.log.Info("self-signed serving certificate created", "names", hosts)
	} else {
		if w.fileCert, err = LoadFileCertificate(cfg.TLSCert, cfg.TLSKey, w.metrics, w.log); err != nil {
			return nil, err
		}
		w.getCert = w.fileCert.GetCertificate
	}

	w.ln = cfg.Listener
	if w.ln == nil {
		if w.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	return w, nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

func (w *Webhook) addSources(ctx context.Context) error {
	cfg := w.cfg
	if cfg.AssociationsFile != "" {
		w.sources = append(w.sources, NewFileSource(cfg.AssociationsFile, cfg.FileInterval, w.metrics, w.log))
	}
	clients, err := eksClients(ctx, cfg)
	if err != nil {
		return err
	}
	if len(clients) > 0 {
		w.sources = append(w.sources, NewServerSource(clients, cfg.Cluster, cfg.ServerInterval, w.metrics, w.log))
	}
	if len(w.sources) == 0 {
		w.log.Warn("no --server and no --associations-file: Pod Identity is off, IRSA only")
	}
	return nil
}

// eksClients returns cfg.EKS, or one EKS API client per --server URL.
func eksClients(ctx context.Context, cfg Config) ([]eks.ListPodIdentityAssociationsAPIClient, error) {
	if cfg.EKS != nil {
		return []eks.ListPodIdentityAssociationsAPIClient{cfg.EKS}, nil
	}
	if len(cfg.Servers) == 0 {
		return nil, nil
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if len(cfg.Servers) > 1 {
		// The other replicas are the retry: a dead one must not hold a poll
		// up with the SDK's backoff.
		opts = append(opts, awsconfig.WithRetryMaxAttempts(1))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration for --server: %w", err)
	}
	if ac.Region == "" {
		// Only the SigV4 scope needs it; podid's server accepts any.
		ac.Region = "us-east-1"
	}
	var clients []eks.ListPodIdentityAssociationsAPIClient
	for _, url := range cfg.Servers {
		clients = append(clients, eks.NewFromConfig(ac, func(o *eks.Options) { o.BaseEndpoint = aws.String(url) }))
	}
	return clients, nil
}

// Addr is the address the webhook listens on.
func (w *Webhook) Addr() net.Addr { return w.ln.Addr() }

// CABundle is the PEM CA that signed the serving certificate under
// --tls-self-signed, nil otherwise.
func (w *Webhook) CABundle() []byte {
	if w.self == nil {
		return nil
	}
	return w.self.CAPEM
}

// Metrics returns the webhook's metrics.
func (w *Webhook) Metrics() *Metrics { return w.metrics }

// Handler returns the /mutate handler.
func (w *Webhook) Handler() *Handler { return w.handler }

// Ready returns why the webhook is not ready, or nil: the service-account
// cache must have synced and every association source loaded once, or pods
// admitted meanwhile would miss credentials they should get.
func (w *Webhook) Ready() error {
	var why []string
	if w.stopping.Load() {
		why = append(why, "shutting down")
	}
	if !w.sas.Synced() {
		why = append(why, "service account cache not synced")
	}
	for _, s := range w.sources {
		if !s.Loaded() {
			why = append(why, s.name+" associations not loaded")
		}
	}
	if len(why) > 0 {
		return errors.New(strings.Join(why, "; "))
	}
	return nil
}

// Serve runs the webhook until ctx ends, then finishes the admissions in
// flight.
func (w *Webhook) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.sas.Start(ctx)
	for _, s := range w.sources {
		go s.Run(ctx)
	}
	go w.missed.Run(ctx)
	if w.fileCert != nil {
		go w.fileCert.Run(ctx, w.cfg.FileInterval)
	}
	if w.self != nil {
		go runCABundleSync(ctx, w.client, w.cfg.WebhookConfigName, w.self.CAPEM, caBundleInterval, w.metrics, w.log)
	}

	mux := http.NewServeMux()
	mux.Handle("/mutate", w.handler) // answers methods other than POST with 405
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "ok\n") })
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if err := w.Ready(); err != nil {
			http.Error(rw, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(rw, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.metrics.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{GetCertificate: w.getCert, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(w.ln, "", "") }()
	w.log.Info("webhook serving", "addr", w.ln.Addr().String(), "cluster", w.cfg.Cluster)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	w.stopping.Store(true)
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
