package integration

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/store/pgtest"
)

// sealingKeyOf reads the sealing key ID out of a PDS1 session token.
func sealingKeyOf(t *testing.T, token string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "PDS1"))
	if err != nil || len(raw) < 1+int(raw[0]) {
		t.Fatalf("not a PDS1 token: %v", err)
	}
	return string(raw[1 : 1+int(raw[0])])
}

// Two replicas on one PostgreSQL store. A rotates its sealing key every
// second; B reloads keys only when it meets one it does not know. Role
// session credentials A seals right after a rotation work on B at once,
// and those sealed before it still work on both.
func TestSealingKeyRotationAcrossReplicas(t *testing.T) {
	dsn := pgtest.Start(t)
	keyFile := servertest.MasterKeyFile(t)
	a := servertest.Start(t, func(c *server.Config) {
		c.Store, c.MasterKeyFile, c.AccountID = dsn, keyFile, account
		c.SealingKeyRotation = time.Second
		c.KeyReloadInterval = 100 * time.Millisecond
	})
	b := servertest.Start(t, func(c *server.Config) {
		c.Store, c.MasterKeyFile, c.AccountID = dsn, keyFile, account
		c.KeyReloadInterval = time.Hour
	})

	ic, sc := adminClients(a)
	roleARN := createRole(t, ic, "rotating", map[string]any{
		"Version":   "2012-10-17",
		"Statement": []any{map[string]any{"Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::" + account + ":root"}, "Action": "sts:AssumeRole"}},
	})
	assume := func() (*sts.AssumeRoleOutput, string) {
		t.Helper()
		out, err := sc.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: &roleARN, RoleSessionName: aws.String("rot")})
		if err != nil {
			t.Fatalf("AssumeRole on A: %v", err)
		}
		return out, sealingKeyOf(t, aws.ToString(out.Credentials.SessionToken))
	}
	whoamiOn := func(inst *servertest.Instance, out *sts.AssumeRoleOutput) (string, error) {
		t.Helper()
		c := out.Credentials
		cl := sts.NewFromConfig(awsConfig(inst, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)))
		id, err := cl.GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
		if err != nil {
			return "", err
		}
		return aws.ToString(id.Arn), nil
	}

	before, k0 := assume()
	bKey := b.SealingKeyID()
	// Wait for A to rotate past the key B holds.
	var after *sts.AssumeRoleOutput
	var k1 string
	for deadline := time.Now().Add(15 * time.Second); ; {
		if a.SealingKeyID() != bKey {
			if after, k1 = assume(); k1 != bKey && k1 != k0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("A did not rotate its sealing key within 15 s (still %s)", a.SealingKeyID())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.SealingKeyID() != bKey {
		t.Fatalf("B reloaded its keys (%s → %s) before meeting the new key; the test proves nothing", bKey, b.SealingKeyID())
	}

	wantARN := "arn:aws:sts::" + account + ":assumed-role/rotating/rot"
	arn, err := whoamiOn(b, after)
	if err != nil {
		t.Fatalf("credentials A sealed with new key %s, on B (which held %s): %v", k1, bKey, err)
	}
	if arn != wantARN {
		t.Errorf("B says %s, want %s", arn, wantARN)
	}
	for _, inst := range []*servertest.Instance{a, b} {
		if _, err := whoamiOn(inst, before); err != nil {
			t.Errorf("credentials sealed before the rotation (key %s) on %s: %v", k0, inst.URL, err)
		}
	}
	if b.SealingKeyID() == bKey {
		t.Errorf("B still seals with %s after loading newer keys", bKey)
	}
}
