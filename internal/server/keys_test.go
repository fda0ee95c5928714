package server_test

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
)

// clock is a settable clock for sealing-key rotation.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock() *clock {
	c := &clock{}
	c.set(time.Now())
	return c
}

func (c *clock) Now() time.Time          { return *c.t.Load() }
func (c *clock) set(t time.Time)         { c.t.Store(&t) }
func (c *clock) advance(d time.Duration) { c.set(c.Now().Add(d)) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func stsClient(inst *servertest.Instance, id, secret, token string) *sts.Client {
	return sts.NewFromConfig(aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(id, secret, token),
		BaseEndpoint:     aws.String(inst.URL),
		RetryMaxAttempts: 1,
	})
}

// creds are session credentials from GetSessionToken.
type creds struct{ id, secret, token string }

func mint(t *testing.T, inst *servertest.Instance) creds {
	t.Helper()
	out, err := stsClient(inst, inst.AccessKeyID, inst.SecretAccessKey, "").GetSessionToken(testCtx(t), &sts.GetSessionTokenInput{})
	if err != nil {
		t.Fatalf("GetSessionToken on %s: %v", inst.URL, err)
	}
	c := out.Credentials
	return creds{aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)}
}

// whoami calls GetCallerIdentity on inst with c and returns the error.
func whoami(t *testing.T, inst *servertest.Instance, c creds) error {
	t.Helper()
	_, err := stsClient(inst, c.id, c.secret, c.token).GetCallerIdentity(testCtx(t), &sts.GetCallerIdentityInput{})
	return err
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// tokenKeyID reads the sealing key ID out of a session token
// ("PDS1" + base64url(len | id | …)).
func tokenKeyID(t *testing.T, token string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(token[len("PDS1"):])
	if err != nil || len(raw) < 1+int(raw[0]) {
		t.Fatalf("token is not PDS1: %v", err)
	}
	return string(raw[1 : 1+int(raw[0])])
}

func storedKeyIDs(t *testing.T, st store.Store) []string {
	t.Helper()
	keys, err := st.ListSealingKeys(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func openStore(t *testing.T, dsn string) store.Store {
	t.Helper()
	st, err := store.OpenContext(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// One server with a settable clock: the newest key seals until it is older
// than the rotation period; a rotation keeps the old key for the old tokens
// until the new key has been current for the retention period.
func TestSealingKeyRotation(t *testing.T) {
	clk := newClock()
	const rotation = 24 * time.Hour
	inst := servertest.Start(t, func(c *server.Config) {
		c.Now = clk.Now
		c.SealingKeyRotation = rotation
		c.KeyReloadInterval = time.Hour // the background loop stays out of the way
	})
	st := openStore(t, filepath.Join(inst.DataDir, "podid.db"))
	ctx := testCtx(t)
	retention := inst.KeyRetention()
	if retention < 36*time.Hour {
		t.Fatalf("retention %v is shorter than a 36 h GetSessionToken session", retention)
	}

	k0 := inst.SealingKeyID()
	if ids := storedKeyIDs(t, st); len(ids) != 1 || ids[0] != k0 {
		t.Fatalf("stored keys %v, want [%s]", ids, k0)
	}
	old := mint(t, inst)
	if got := tokenKeyID(t, old.token); got != k0 {
		t.Fatalf("token sealed with %s, want %s", got, k0)
	}

	// Not due yet.
	clk.advance(rotation - time.Minute)
	if err := inst.MaintainSealingKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if got := inst.SealingKeyID(); got != k0 {
		t.Fatalf("rotated before the period: %s", got)
	}

	// Due: a new key seals, the old one still opens.
	clk.advance(time.Minute)
	if err := inst.MaintainSealingKeys(ctx); err != nil {
		t.Fatal(err)
	}
	k1 := inst.SealingKeyID()
	if k1 == k0 {
		t.Fatal("no rotation once the key reached the rotation period")
	}
	if ids := storedKeyIDs(t, st); len(ids) != 2 || ids[0] != k0 || ids[1] != k1 {
		t.Fatalf("stored keys after rotation %v, want [%s %s]", ids, k0, k1)
	}
	fresh := mint(t, inst)
	if got := tokenKeyID(t, fresh.token); got != k1 {
		t.Fatalf("token after rotation sealed with %s, want the new key %s", got, k1)
	}
	for name, c := range map[string]creds{"old": old, "new": fresh} {
		if err := whoami(t, inst, c); err != nil {
			t.Errorf("%s token after rotation: %v", name, err)
		}
	}

	// Just inside the retention after k1 took over: k0 stays (k2 is due and
	// created, since the rotation period is shorter).
	clk.advance(retention - time.Minute)
	if err := inst.MaintainSealingKeys(ctx); err != nil {
		t.Fatal(err)
	}
	k2 := inst.SealingKeyID()
	if ids := storedKeyIDs(t, st); len(ids) != 3 || ids[0] != k0 || ids[1] != k1 || ids[2] != k2 {
		t.Fatalf("stored keys inside the retention %v, want [%s %s %s]", ids, k0, k1, k2)
	}
	if err := whoami(t, inst, old); err != nil {
		t.Errorf("old token inside the retention: %v", err)
	}

	// Past it: k0 goes, k1 (superseded only now) stays.
	clk.advance(2 * time.Minute)
	if err := inst.MaintainSealingKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := storedKeyIDs(t, st); len(ids) != 2 || ids[0] != k1 || ids[1] != k2 {
		t.Fatalf("stored keys past the retention %v, want [%s %s]", ids, k1, k2)
	}
	if err := whoami(t, inst, old); errorCode(err) != "InvalidClientTokenId" {
		t.Errorf("token of the deleted key: err = %v, want InvalidClientTokenId", err)
	}
	if err := whoami(t, inst, fresh); err != nil {
		t.Errorf("token of the kept key: %v", err)
	}
}

// Rotation disabled: the key never changes, however old.
func TestSealingKeyRotationDisabled(t *testing.T) {
	clk := newClock()
	inst := servertest.Start(t, func(c *server.Config) {
		c.Now = clk.Now
		c.SealingKeyRotation = -1
		c.KeyReloadInterval = time.Hour
	})
	k0 := inst.SealingKeyID()
	clk.advance(10 * 365 * 24 * time.Hour)
	if err := inst.MaintainSealingKeys(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := inst.SealingKeyID(); got != k0 {
		t.Fatalf("rotation disabled, but the key changed from %s to %s", k0, got)
	}
}

// The background loop rotates by itself.
func TestSealingKeyLoop(t *testing.T) {
	inst := servertest.Start(t, func(c *server.Config) {
		c.SealingKeyRotation = 300 * time.Millisecond
		c.KeyReloadInterval = 50 * time.Millisecond
	})
	k0 := inst.SealingKeyID()
	deadline := time.Now().Add(10 * time.Second)
	for inst.SealingKeyID() == k0 {
		if time.Now().After(deadline) {
			t.Fatal("the background loop did not rotate the key within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two replicas on one store: A rotates; a token A seals with the new key
// verifies on B at once (B reloads on the unknown key ID), and B then seals
// with the new key too. Forged key IDs cost at most one reload a second.
func TestUnknownKeyReloadAcrossReplicas(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "shared.db")
			if backend == "postgres" {
				dsn = pgtest.Start(t)
			}
			testUnknownKeyReload(t, dsn)
		})
	}
}

func testUnknownKeyReload(t *testing.T, dsn string) {
	keyFile := servertest.MasterKeyFile(t)
	clkA, clkB := newClock(), newClock()
	replica := func(clk *clock) func(*server.Config) {
		return func(c *server.Config) {
			c.Store, c.MasterKeyFile = dsn, keyFile
			c.Now = clk.Now
			c.SealingKeyRotation = 24 * time.Hour
			c.KeyReloadInterval = time.Hour // only an unknown key makes B reload
		}
	}
	a := servertest.Start(t, replica(clkA))
	b := servertest.Start(t, replica(clkB))
	k0 := a.SealingKeyID()
	if got := b.SealingKeyID(); got != k0 {
		t.Fatalf("replicas seal with different keys: %s and %s", k0, got)
	}
	old := mint(t, a)

	clkA.advance(25 * time.Hour)
	if err := a.MaintainSealingKeys(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	k1 := a.SealingKeyID()
	if k1 == k0 || b.SealingKeyID() != k0 {
		t.Fatalf("after rotating on A: A seals with %s, B with %s; want A on a new key, B still on %s", k1, b.SealingKeyID(), k0)
	}
	fresh := mint(t, a)
	if got := tokenKeyID(t, fresh.token); got != k1 {
		t.Fatalf("A sealed with %s, want %s", got, k1)
	}
	if err := whoami(t, b, fresh); err != nil {
		t.Fatalf("token sealed by A with its new key, on B: %v", err)
	}
	if got := b.SealingKeyID(); got != k1 {
		t.Errorf("B seals with %s after reloading, want the newest key %s", got, k1)
	}
	if got := tokenKeyID(t, mint(t, b).token); got != k1 {
		t.Errorf("B sealed with %s, want %s", got, k1)
	}
	if err := whoami(t, b, old); err != nil {
		t.Errorf("token of the previous key on B: %v", err)
	}

	// Forged tokens naming unknown keys, all at once: each is refused, and
	// together they cost B at most two reloads (one now, one a second later).
	before := b.KeyReloads()
	sealer, err := session.NewSealer([]session.Key{{ID: "kforged", Secret: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess := &session.Session{AccessKeyID: session.NewAccessKeyID("ASIA"), SecretAccessKey: session.NewSecretAccessKey(),
				Account: b.Account(), PrincipalARN: "arn:aws:iam::" + b.Account() + ":root", Expiration: time.Now().Add(time.Hour)}
			tok, err := sealer.Seal(sess)
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = whoami(t, b, creds{sess.AccessKeyID, sess.SecretAccessKey, tok})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if errorCode(err) != "InvalidClientTokenId" {
			t.Errorf("forged token %d: err = %v, want InvalidClientTokenId", i, err)
		}
	}
	if n := b.KeyReloads() - before; n < 1 || n > 2 {
		t.Errorf("forged tokens caused %d reloads, want 1 or 2", n)
	}
}

// Two replicas starting at once on an empty store may each create a first
// key; both are kept, and both replicas seal with the newest.
func TestFirstKeyRace(t *testing.T) {
	dsn := pgtest.Start(t)
	keyFile := servertest.MasterKeyFile(t)
	cfg := func(c *server.Config) {
		c.Store, c.MasterKeyFile = dsn, keyFile
		c.KeyReloadInterval = time.Hour
	}
	insts := make([]*servertest.Instance, 2)
	var wg sync.WaitGroup
	for i := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			insts[i] = servertest.Start(t, cfg)
		}()
	}
	wg.Wait()
	if insts[0] == nil || insts[1] == nil {
		t.FailNow()
	}
	a, b := insts[0], insts[1]
	// Whatever the race did, after one reload each they agree.
	for _, inst := range insts {
		if err := inst.MaintainSealingKeys(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if a.SealingKeyID() != b.SealingKeyID() {
		t.Fatalf("replicas seal with %s and %s after reloading", a.SealingKeyID(), b.SealingKeyID())
	}
	ca, cb := mint(t, a), mint(t, b)
	for _, inst := range insts {
		for _, c := range []creds{ca, cb} {
			if err := whoami(t, inst, c); err != nil {
				t.Errorf("token on %s: %v", inst.URL, err)
			}
		}
	}
}
