package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/server"
)

func newServerCmd() *cobra.Command {
	var cfg server.Config
	var logLevel string
	var rotation time.Duration
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the identity plane: IAM, STS, the Pod Identity association API and EKS Auth",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = log
			switch {
			case rotation < 0:
				return fmt.Errorf("--sealing-key-rotation %v: must not be negative", rotation)
			case rotation == 0:
				cfg.SealingKeyRotation = -1 // disabled
			default:
				cfg.SealingKeyRotation = rotation
			}
			srv, err := server.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			log.Info("administrator credentials", "file", srv.AdminCredentialsFile())
			return srv.ListenAndServe(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "address to listen on (host:port)")
	f.StringVar(&cfg.DataDir, "data-dir", server.DefaultDataDir(), "directory for the store, keys, audit log and admin-credentials")
	f.StringVar(&cfg.Store, "store", "", "store DSN (default: DATA-DIR/podid.db, embedded SQLite)")
	f.StringVar(&cfg.AccountID, "account-id", "", "12-digit account ID to create on first start (default: random)")
	f.StringVar(&cfg.Region, "region", "us-east-1", "region used in ARNs")
	f.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "32-byte key that encrypts secrets at rest (default: DATA-DIR/master.key, created)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "private key for --tls-cert (PEM)")
	f.StringVar(&cfg.AuditLog, "audit-log", "", `audit log file, "-" for stdout, "none" to disable (default: DATA-DIR/audit.log)`)
	f.StringVar(&cfg.OIDCCAFile, "oidc-ca-file", "", "extra CA certificates (PEM) trusted when fetching OIDC issuer keys")
	f.StringSliceVar(&cfg.AgentServiceAccounts, "agent-service-account", []string{"kube-system/podid-agent"}, "namespace/name of service accounts whose tokens (audience podid) authenticate node agents")
	f.StringVar(&cfg.Upstream, "upstream", "local", `where pod credentials come from: "local" (podid's own STS) or "aws" (the real STS, with this server's AWS credentials from the standard chain)`)
	f.BoolVar(&cfg.ValidateRoles, "validate-roles", false, "with --upstream aws: check an association's roles with iam:GetRole before storing it (roles in the server's own account)")
	f.BoolVar(&cfg.ServeOIDC, "serve-oidc", false, "serve each cluster's issuer discovery document and keys.json at /podid/oidc/CLUSTER/ (IRSA with this server as the issuer host)")
	f.DurationVar(&rotation, "sealing-key-rotation", server.DefaultSealingKeyRotation, "create a new session-token sealing key when the newest is this old (0 disables); old keys are kept until their tokens have expired")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.MarkFlagsRequiredTogether("tls-cert", "tls-key")
	return cmd
}
