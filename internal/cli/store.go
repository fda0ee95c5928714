package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/store"
)

func init() { register(newStoreCmd) }

// storeFlags are the flags that name the store, as podid server has them.
type storeFlags struct {
	dataDir string
	dsn     string
}

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", server.DefaultDataDir(), "the server's data directory")
	cmd.Flags().StringVar(&f.dsn, "store", "", "store DSN: postgres://… or a SQLite path (default: DATA-DIR/podid.db)")
}

func (f *storeFlags) open(ctx context.Context) (store.Store, error) {
	dsn := f.dsn
	if dsn == "" {
		dsn = filepath.Join(f.dataDir, "podid.db")
	}
	return store.OpenContext(ctx, dsn)
}

const sealedNote = `Secrets in the store (access-key secrets, session-token sealing keys) are
sealed with the server's master key (DATA-DIR/master.key or --master-key-file).
The master key is NOT in the backup and the backup does not unseal them: keep
the key safe separately, and restore for a server that uses the same key.`

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Manage the store: migrate the schema, back up and restore",
		Long: `Manage podid's store: the embedded SQLite database (default) or a
PostgreSQL database shared by several server replicas (--store postgres://…).`,
	}
	cmd.AddCommand(newStoreMigrateCmd(), newStoreBackupCmd(), newStoreRestoreCmd())
	return cmd
}

func newStoreMigrateCmd() *cobra.Command {
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the store's schema up to this podid's version",
		Long: `Apply the pending schema migrations and report the schema version.

Servers also migrate when they start; run this ahead of a rollout to do it
once, up front. On PostgreSQL an advisory lock makes replicas (and this
command) take turns, so starting several at once is safe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			v, err := store.SchemaVersion(cmd.Context(), s)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "store schema at version %d\n", v)
			return nil
		},
	}
	sf.add(cmd)
	return cmd
}

func newStoreBackupCmd() *cobra.Command {
	var sf storeFlags
	var out string
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write a consistent snapshot of the store to a file",
		Long: `Write every table of the store to FILE ("-" for stdout) as versioned JSON
lines, read in one transaction (REPEATABLE READ on PostgreSQL), so the copy is
consistent while servers keep running. The file is created owner-only.

` + sealedNote,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			var info store.BackupInfo
			if out == "-" {
				info, err = store.Backup(cmd.Context(), s, cmd.OutOrStdout())
			} else {
				info, err = writeFileAtomic(out, func(w io.Writer) (store.BackupInfo, error) {
					return store.Backup(cmd.Context(), s, w)
				})
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "backed up %d rows (schema version %d, %s) to %s\n",
				info.Rows, info.SchemaVersion, info.Source, out)
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&out, "out", "", `backup file to write, "-" for stdout`)
	cmd.MarkFlagRequired("out")
	return cmd
}

// writeFileAtomic writes path through a temporary file in its directory,
// synced and renamed into place, so a failed backup never leaves a file
// that looks whole.
func writeFileAtomic(path string, write func(io.Writer) (store.BackupInfo, error)) (store.BackupInfo, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return store.BackupInfo{}, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	info, err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return store.BackupInfo{}, fmt.Errorf("backup to %s: %w", path, err)
	}
	return info, nil
}

func newStoreRestoreCmd() *cobra.Command {
	var sf storeFlags
	var in string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore --in FILE",
		Short: "Load a backup into an empty store",
		Long: `Load a backup made by "podid store backup" (from either backend) into the
store, in one transaction: all of it or nothing. The store must be empty
unless --force, which replaces its contents. Stop the servers first, or at
least expect their caches to hold the old records until they resync.

` + sealedNote,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r io.Reader = cmd.InOrStdin()
			if in != "-" {
				f, err := os.Open(in)
				if err != nil {
					return fmt.Errorf("restore: %w", err)
				}
				defer f.Close()
				r = f
			}
			s, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			info, err := store.Restore(cmd.Context(), s, r, store.RestoreOptions{Force: force})
			if errors.Is(err, store.ErrNotEmpty) {
				return fmt.Errorf("%w; pass --force to replace its contents", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "restored %d rows (schema version %d, from %s, made %s)\n",
				info.Rows, info.SchemaVersion, info.Source, info.CreatedAt.Format("2006-01-02T15:04:05Z"))
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&in, "in", "", `backup file to read, "-" for stdin`)
	cmd.Flags().BoolVar(&force, "force", false, "replace the contents of a store that is not empty")
	cmd.MarkFlagRequired("in")
	return cmd
}
