// Package cli defines podid's command line: one cobra command per verb.
package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRoot()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "podid:", err)
		return 1
	}
	return 0
}

// NewRoot returns the root command with every verb attached.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "podid",
		Short:         "EKS Pod Identity and IRSA for any Kubernetes cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd())
	for _, newCmd := range registered {
		root.AddCommand(newCmd())
	}
	return root
}

// registered holds the verbs that files of this package add from init, so
// each verb lives in its own file without editing this one.
var registered []func() *cobra.Command

func register(newCmd func() *cobra.Command) { registered = append(registered, newCmd) }

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
