package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/agent/eksauth"
)

func init() { register(newAgentCmd) }

// agentFlags are the flags `podid agent` and `podid up` share.
type agentFlags struct {
	cluster, region, tokenFile, caFile string
	servers, binds                     []string
	healthAddr, metricsAddr            string
	maxEntries                         int
	refreshTTL, upstreamTimeout        time.Duration
}

func newAgentCmd() *cobra.Command {
	var af agentFlags
	var logLevel string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: the container-credentials endpoint on 169.254.170.23 and fd00:ec2::23",
		Long: `Run the node agent (a DaemonSet with hostNetwork). SDKs in pods call it through
AWS_CONTAINER_CREDENTIALS_FULL_URI with their service-account token; the agent
trades the token with the server's EKS Auth API (AssumeRoleForPodIdentity) and
caches the credentials per token.

The agent authenticates to the server with SigV4 and the default AWS credential
chain (environment, shared credentials file: rotated files are re-read), or,
with --token-file, with its own projected service-account token (audience
"podid"), which also lets the server check that pod tokens come from this node.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), log, af, nil, nil)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&af.servers, "server", nil, "EKS Auth endpoint: the podid server URL (default: https://eks-auth.REGION.api.aws); several (comma-separated or repeated) are replicas, failed over between")
	f.StringVar(&af.cluster, "cluster", "", "cluster name, as registered with the server (required)")
	f.StringVar(&af.region, "region", "", "region for SigV4 (default: from the AWS config, else us-east-1)")
	f.StringVar(&af.tokenFile, "token-file", "", "authenticate with this service-account token file (re-read on every call) instead of SigV4")
	f.StringVar(&af.caFile, "server-ca-file", "", "extra CA certificates (PEM) to trust for the server")
	f.StringSliceVar(&af.binds, "bind", agent.DefaultBinds, "addresses to serve credentials on (host:port, repeatable)")
	f.StringVar(&af.healthAddr, "health-addr", agent.DefaultHealthAddr, `address for /healthz and /readyz ("" to disable)`)
	f.StringVar(&af.metricsAddr, "metrics-addr", agent.DefaultMetricsAddr, `address for Prometheus /metrics ("" to disable)`)
	f.IntVar(&af.maxEntries, "max-cache-entries", agent.DefaultMaxEntries, "cache size bound (least recently used entries are evicted)")
	f.DurationVar(&af.refreshTTL, "refresh-ttl", agent.DefaultRefreshTTL, "how long cached credentials are served before they are refreshed")
	f.DurationVar(&af.upstreamTimeout, "upstream-timeout", agent.DefaultAttemptTimeout, "timeout of one call to the server")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("cluster")
	cmd.AddCommand(newSetupNetworkCmd())
	return cmd
}

// runAgent builds the EKS Auth client and serves until ctx ends. auth, if
// set, replaces the flags' choice (podid up signs with the admin's keys);
// lns, if set, are already open.
func runAgent(ctx context.Context, log *slog.Logger, af agentFlags, auth eksauth.Authenticator, lns *agent.Listeners) error {
	client, err := newEKSAuthClient(ctx, af, auth)
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		Cluster:    af.cluster,
		Upstream:   client,
		Logger:     log,
		MaxEntries: af.maxEntries,
		RefreshTTL: af.refreshTTL,
		// One agent attempt may try every replica once.
		AttemptTimeout: af.upstreamTimeout * time.Duration(len(client.Clients)),
	})
	if err != nil {
		return err
	}
	if lns == nil {
		if lns, err = agent.Listen(af.binds, af.healthAddr, af.metricsAddr); err != nil {
			a.Close()
			return err
		}
	}
	defer lns.Close()
	log.Info("podid agent starting", "cluster-name", af.cluster, "server", endpointsOf(client), "auth", authMode(af, auth))
	return a.Serve(ctx, lns, probe(client))
}

func authMode(af agentFlags, auth eksauth.Authenticator) string {
	switch {
	case auth != nil:
		return "sigv4-static"
	case af.tokenFile != "":
		return "service-account-token"
	}
	return "sigv4"
}

// endpointsOf lists the failover's servers for the log.
func endpointsOf(f *eksauth.Failover) []string {
	out := make([]string, len(f.Clients))
	for i, c := range f.Clients {
		out[i] = c.Endpoint
	}
	return out
}

// newEKSAuthClient builds the client of every --server, behind one failover.
func newEKSAuthClient(ctx context.Context, af agentFlags, auth eksauth.Authenticator) (*eksauth.Failover, error) {
	if af.cluster == "" {
		return nil, errors.New("--cluster is required")
	}
	region := af.region
	if region == "" && af.tokenFile == "" {
		// Only the region: credentials are resolved per call.
		if cfg, err := config.LoadDefaultConfig(ctx); err == nil {
			region = cfg.Region
		}
	}
	if region == "" {
		region = "us-east-1"
	}
	switch {
	case auth != nil:
	case af.tokenFile != "":
		if _, err := os.Stat(af.tokenFile); err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		auth = &eksauth.BearerTokenFile{Path: af.tokenFile}
	default:
		auth = &eksauth.SigV4{Credentials: &eksauth.ReloadingCredentials{}, Region: region}
	}
	endpoints := eksauth.SplitEndpoints(af.servers...)
	if len(endpoints) == 0 {
		endpoints = []string{"https://eks-auth." + region + ".api.aws"}
	}
	for _, endpoint := range endpoints {
		if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
			return nil, fmt.Errorf("--server %q: want an http:// or https:// URL", endpoint)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = agent.DefaultMaxConcurrent
	if af.caFile != "" {
		pem, err := os.ReadFile(af.caFile)
		if err != nil {
			return nil, fmt.Errorf("--server-ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--server-ca-file %s: no certificates", af.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	f := eksauth.NewFailover(eksauth.Client{
		HTTPClient: &http.Client{Transport: tr},
		Auth:       auth,
		UserAgent:  "podid-agent",
	}, endpoints...)
	f.TryTimeout = af.upstreamTimeout
	return f, nil
}

// probe checks that some server answers HTTP at all (any status will do: a
// real EKS Auth endpoint has no health path).
func probe(f *eksauth.Failover) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, c := range f.Clients {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Endpoint, "/")+"/healthz", nil)
			if err != nil {
				return err
			}
			resp, err := c.HTTPClient.Do(req)
			if err == nil {
				resp.Body.Close()
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}

func newSetupNetworkCmd() *cobra.Command {
	var cfg agent.NetworkConfig
	var kind string
	cmd := &cobra.Command{
		Use:   "setup-network",
		Short: "Put 169.254.170.23 and fd00:ec2::23 on a dedicated interface (run as the DaemonSet's init container)",
		Long: `Put the agent's link-local addresses on a dedicated interface through netlink.
A dummy link is preferred, as on EKS nodes; where the kernel lacks the dummy
driver a port-less bridge is used, and failing that lo. Running it again changes
nothing. It needs CAP_NET_ADMIN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kind != "" && kind != "auto" {
				cfg.Kinds = []string{kind}
			}
			res, err := agent.SetupNetwork(nil, cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, n := range res.Notes {
				fmt.Fprintln(out, "note:", n)
			}
			verb := "using existing"
			if res.Created {
				verb = "created"
			}
			fmt.Fprintf(out, "%s %s link %s with %s\n", verb, res.Kind, res.Link, strings.Join(addressesOr(cfg.Addresses), ", "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Link, "link", agent.DefaultLinkName, "interface name")
	f.StringSliceVar(&cfg.Addresses, "address", agent.DefaultAddresses, "addresses to assign (CIDR, repeatable)")
	f.StringVar(&kind, "link-kind", "auto", "auto (dummy, then a port-less bridge, then lo), dummy, bridge or lo")
	return cmd
}

func addressesOr(a []string) []string {
	if len(a) == 0 {
		return agent.DefaultAddresses
	}
	return a
}
