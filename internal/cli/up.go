package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/agent/eksauth"
	"github.com/podid/podid/internal/server"
)

func init() { register(newUpCmd) }

func newUpCmd() *cobra.Command {
	var cfg server.Config
	var af agentFlags
	var logLevel string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a server (embedded store) and an agent on loopback, and print the exports that point the aws CLI and SDKs at them",
		Long: `Run the all-in-one local mode: a podid server with its embedded store and a
node agent bound to loopback, in one process. The export lines printed on
standard output point the aws CLI and the SDKs at the server (as the
administrator), and show the container-credentials variables a workload uses to
get its role through the agent.

The agent signs its EKS Auth calls with the administrator's keys. Pod Identity
needs a registered cluster and an association (podid cluster register,
podid association create); the pod tokens come from that cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			cfg.Logger = log
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return fmt.Errorf("up: server listener: %w", err)
			}
			serverURL := "http://" + ln.Addr().String()
			srvDone := make(chan error, 1)
			go func() {
				srvDone <- srv.Serve(ctx, ln)
				cancel() // the agent is of no use without its server
			}()

			// server.New wrote the file before returning.
			id, secret, err := server.ReadAdminCredentials(srv.AdminCredentialsFile())
			if err != nil {
				return err
			}
			af.servers = []string{serverURL}
			af.region = cfg.Region
			auth := &eksauth.SigV4{Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""), Region: cfg.Region}
			lns, err := agent.Listen(af.binds, af.healthAddr, af.metricsAddr)
			if err != nil {
				return err
			}
			printExports(cmd, serverURL, srv.AdminCredentialsFile(), cfg.Region, af.cluster, lns)

			agentErr := runAgent(ctx, log, af, auth, lns)
			cancel()
			srvErr := <-srvDone
			if errors.Is(srvErr, context.Canceled) {
				srvErr = nil
			}
			return errors.Join(agentErr, srvErr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "server address (host:port)")
	f.StringVar(&cfg.DataDir, "data-dir", server.DefaultDataDir(), "directory for the store, keys, audit log and admin-credentials")
	f.StringVar(&cfg.AccountID, "account-id", "", "12-digit account ID to create on first start (default: random)")
	f.StringVar(&cfg.Region, "region", "us-east-1", "region used in ARNs and signatures")
	f.StringVar(&cfg.AuditLog, "audit-log", "", `audit log file, "-" for stdout, "none" to disable (default: DATA-DIR/audit.log)`)
	f.StringSliceVar(&cfg.AgentServiceAccounts, "agent-service-account", []string{"kube-system/podid-agent"}, "namespace/name of service accounts whose tokens (audience podid) authenticate node agents")
	f.StringVar(&af.cluster, "cluster", "local", "cluster the agent asks credentials for")
	f.StringSliceVar(&af.binds, "agent-bind", []string{"127.0.0.1:2701"}, "agent credentials address(es) (host:port)")
	f.StringVar(&af.healthAddr, "health-addr", "127.0.0.1:2703", `agent /healthz and /readyz ("" to disable)`)
	f.StringVar(&af.metricsAddr, "metrics-addr", "127.0.0.1:2705", `agent /metrics ("" to disable)`)
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	af.maxEntries = agent.DefaultMaxEntries
	af.refreshTTL = agent.DefaultRefreshTTL
	af.upstreamTimeout = agent.DefaultAttemptTimeout
	return cmd
}

// printExports writes shell lines for the user to paste: the administrator's
// view of the server, and (commented) what a workload sets to go through the
// agent. The secret keys stay in the credentials file.
func printExports(cmd *cobra.Command, serverURL, credsFile, region, cluster string, lns *agent.Listeners) {
	out := cmd.OutOrStdout()
	credsURL := "http://" + lns.Credentials[0].Addr().String() + agent.CredentialsPath
	fmt.Fprintf(out, "# podid is up: server %s, agent %s (cluster %q)\n", serverURL, credsURL, cluster)
	fmt.Fprintf(out, "# Paste these to use the aws CLI and SDKs as the administrator:\n")
	fmt.Fprintf(out, "export AWS_ENDPOINT_URL=%s\n", serverURL)
	fmt.Fprintf(out, "export AWS_SHARED_CREDENTIALS_FILE=%s\n", shellQuote(credsFile))
	// botocore reads AWS_DEFAULT_REGION; the Go and JS SDKs AWS_REGION.
	fmt.Fprintf(out, "export AWS_REGION=%s AWS_DEFAULT_REGION=%s\n", region, region)
	fmt.Fprintf(out, "# A workload gets its association's role through the agent with (and no other credentials):\n")
	fmt.Fprintf(out, "#   export AWS_CONTAINER_CREDENTIALS_FULL_URI=%s\n", credsURL)
	fmt.Fprintf(out, "#   export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/path/to/pod/token   # audience pods.eks.amazonaws.com\n")
	fmt.Fprintf(out, "# First: podid cluster register --name %s --issuer URL --jwks-file FILE; podid association create ...\n", cluster)
	if f, ok := out.(*os.File); ok {
		_ = f.Sync()
	}
}

func shellQuote(s string) string {
	if !strings.ContainsAny(s, " \t\n'\"$`\\*?[]#~=%!&;|<>(){}") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
