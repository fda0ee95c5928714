package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/podid/podid/internal/audit"
	"github.com/podid/podid/internal/secretbox"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// Labels bind sealed values to their use.
const (
	labelAccessKey  = "podid/access-key"
	labelSealingKey = "podid/sealing-key"
)

var accountIDRE = regexp.MustCompile(`^\d{12}$`)

// bootstrap prepares the data directory: master key, store, account ID,
// session-token sealing keys and the administrator's access key.
func (s *Server) bootstrap(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("server: data dir: %w", err)
	}
	keyFile := s.cfg.MasterKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(s.cfg.DataDir, "master.key")
	}
	master, err := secretbox.LoadOrCreateKey(keyFile, s.cfg.MasterKeyFile == "")
	if err != nil {
		return err
	}
	if s.box, err = secretbox.New(master); err != nil {
		return err
	}

	dsn := s.cfg.Store
	if dsn == "" {
		dsn = filepath.Join(s.cfg.DataDir, "podid.db")
	}
	if s.store, err = store.OpenContext(ctx, dsn); err != nil {
		return fmt.Errorf("server: open store: %w", err)
	}
	s.closers = append(s.closers, s.store.Close)

	if err := s.openAudit(); err != nil {
		return err
	}

	want := s.cfg.AccountID
	if want != "" && !accountIDRE.MatchString(want) {
		return fmt.Errorf("server: --account-id %q must be 12 digits", want)
	}
	if want == "" {
		want = randomAccountID()
	}
	s.account, err = s.store.PutMetaIfAbsent(ctx, "account_id", want)
	if err != nil {
		return fmt.Errorf("server: account: %w", err)
	}
	if s.cfg.AccountID != "" && s.account != s.cfg.AccountID {
		return fmt.Errorf("server: data dir belongs to account %s, not %s", s.account, s.cfg.AccountID)
	}
	if err := s.loadSealingKeys(ctx); err != nil {
		return err
	}
	return s.ensureAdminKey(ctx)
}

func (s *Server) openAudit() error {
	switch s.cfg.AuditLog {
	case "-":
		s.audit = audit.New(os.Stdout)
		return nil
	case "none":
		s.audit = audit.New(nil)
		return nil
	}
	path := s.cfg.AuditLog
	if path == "" {
		path = filepath.Join(s.cfg.DataDir, "audit.log")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("server: audit log: %w", err)
	}
	s.audit = audit.New(f)
	s.closers = append(s.closers, f.Close)
	return nil
}

func randomAccountID() string {
	// A leading non-zero digit keeps the ID 12 digits wide everywhere.
	n, _ := rand.Int(rand.Reader, big.NewInt(9e11))
	return fmt.Sprintf("%012d", n.Int64()+1e11)
}

// loadSealingKeys loads the session-token sealing keys from the store,
// creating the first one on an empty store and rotating if the newest is
// due (see keys.go).
func (s *Server) loadSealingKeys(ctx context.Context) error {
	sealer, err := session.NewSealer(nil)
	if err != nil {
		return err
	}
	s.sealer = sealer
	if err := s.MaintainSealingKeys(ctx); err != nil {
		s.sealer = nil
		return err
	}
	return nil
}

func (s *Server) rootARN() string { return "arn:aws:iam::" + s.account + ":root" }

// ensureAdminKey creates the administrator's access key on first start and
// (re)writes DIR/admin-credentials so the aws CLI can use it.
func (s *Server) ensureAdminKey(ctx context.Context) error {
	keys, err := s.store.ListAccessKeys(ctx, s.rootARN())
	if err != nil {
		return fmt.Errorf("server: access keys: %w", err)
	}
	var id, secret string
	if len(keys) > 0 {
		id = keys[0].AccessKeyID
		b, err := s.box.Open(keys[0].SecretSealed, labelAccessKey+"/"+id)
		if err != nil {
			return fmt.Errorf("server: admin key: %w", err)
		}
		secret = string(b)
	} else {
		id, secret = session.NewAccessKeyID("AKIA"), session.NewSecretAccessKey()
		k := store.AccessKey{
			AccessKeyID:  id,
			SecretSealed: s.box.Seal([]byte(secret), labelAccessKey+"/"+id),
			PrincipalARN: s.rootARN(),
			Status:       "Active",
			CreatedAt:    time.Now().UTC(),
		}
		if err := s.store.CreateAccessKey(ctx, k); err != nil {
			return fmt.Errorf("server: create admin key: %w", err)
		}
	}
	// The region line lets `aws iam list-roles --endpoint-url …` run with
	// nothing but this file: botocore reads a profile's region from the
	// credentials file too, and refuses to sign without one.
	content := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n", id, secret, s.cfg.Region)
	return writeFileAtomic(s.AdminCredentialsFile(), []byte(content), 0o600)
}

// ReadAdminCredentials reads the key pair from an admin-credentials file
// as ensureAdminKey writes it.
func ReadAdminCredentials(path string) (id, secret string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("server: admin credentials: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("server: admin credentials file %s lacks the administrator's keys", path)
	}
	return id, secret, nil
}

// writeFileAtomic replaces path with data through a temporary file, so a
// reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("server: read %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("server: write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
