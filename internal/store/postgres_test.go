package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
	"github.com/podid/podid/internal/store/storetest"
)

// openPostgres returns a store on a new database for each test, and the same
// database when the same test opens it again.
func postgresOpener(t *testing.T) func(t *testing.T) store.Store {
	dsns := map[string]string{}
	return func(t *testing.T) store.Store {
		dsn, ok := dsns[t.Name()]
		if !ok {
			dsn = pgtest.Start(t)
			dsns[t.Name()] = dsn
		}
		s, err := store.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestPostgresContract(t *testing.T) {
	pgtest.Start(t) // holds the private server across the subtests
	storetest.Run(t, postgresOpener(t))
}

func TestOpenPostgresDSN(t *testing.T) {
	dsn := pgtest.Start(t)
	for _, d := range []string{dsn, "postgresql" + strings.TrimPrefix(dsn, "postgres")} {
		s, err := store.Open(d)
		if err != nil {
			t.Fatalf("Open(%q): %v", d, err)
		}
		if _, ok := s.(*store.Postgres); !ok {
			t.Errorf("Open(%q) = %T, want *store.Postgres", d, s)
		}
		s.Close()
	}
	// A server that is not there: an error naming the target, not a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := store.OpenContext(ctx, "postgres://podid:secret@127.0.0.1:1/podid?connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/podid") || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open(unreachable) = %v, want an error naming the server without the password", err)
	}
}

// replicas opens n stores on one database, as n server replicas would.
func replicas(t *testing.T, dsn string, n int) []*store.Postgres {
	t.Helper()
	out := make([]*store.Postgres, n)
	for i := range out {
		s, err := store.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out[i] = s
	}
	return out
}

// race runs fn(i) for i < n on goroutines released together.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func TestPostgresMigrateConcurrently(t *testing.T) {
	dsn := pgtest.Start(t)
	const n = 4
	stores := make([]*store.Postgres, n)
	errs := race(n, func(i int) error {
		var err error
		stores[i], err = store.OpenPostgres(t.Context(), dsn)
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	v, err := store.SchemaVersion(t.Context(), stores[0])
	if err != nil {
		t.Fatal(err)
	}
	if v != store.MigrationCount {
		t.Errorf("schema version %d after concurrent starts, want %d", v, store.MigrationCount)
	}
}

func TestPostgresReplicasCreateSameAssociation(t *testing.T) {
	rs := replicas(t, pgtest.Start(t), 2)
	ctx := t.Context()
	if err := rs[0].CreateCluster(ctx, store.Cluster{Name: "prod", ARN: "arn:aws:eks:us-east-1:123456789012:cluster/prod"}); err != nil {
		t.Fatal(err)
	}
	for round := range 10 {
		sa := fmt.Sprintf("sa%d", round)
		errs := race(2, func(i int) error {
			id := fmt.Sprintf("a-%016d%d", round, i)
			return rs[i].CreateAssociation(ctx, store.Association{
				ID: id, ARN: "arn:aws:eks:us-east-1:123456789012:podidentityassociation/prod/" + id,
				ClusterName: "prod", Namespace: "default", ServiceAccount: sa,
				RoleARN: "arn:aws:iam::123456789012:role/app",
			})
		})
		var ok, exists int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrExists):
				exists++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 || exists != 1 {
			t.Fatalf("round %d: %d created, %d ErrExists; want exactly one of each", round, ok, exists)
		}
	}
}

func TestPostgresReplicasUpdateRole(t *testing.T) {
	rs := replicas(t, pgtest.Start(t), 2)
	ctx := t.Context()
	if err := rs[0].CreateRole(ctx, store.Role{Name: "app", RoleID: "AROAAPP", Path: "/",
		ARN: "arn:aws:iam::123456789012:role/app", MaxSessionDuration: 3600}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := race(n, func(i int) error {
		_, err := rs[i%2].UpdateRole(ctx, "app", func(r *store.Role) error {
			r.Tags = append(r.Tags, store.Tag{Key: fmt.Sprintf("k%02d", i), Value: "v"})
			r.Description = strconv.Itoa(len(r.Tags))
			return nil
		})
		return err
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := rs[1].GetRole(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tags) != n || r.Description != strconv.Itoa(n) {
		t.Fatalf("%d tags (description %q) after %d concurrent appends on two replicas: updates lost", len(r.Tags), r.Description, n)
	}
}

// TestPostgresDeleteRoleRacesPutRolePolicy: DeleteRole and PutRolePolicy on
// the same role at once end in one of the two consistent outcomes, never a
// policy left on a deleted role or an error other than the sentinels.
func TestPostgresDeleteRoleRacesPutRolePolicy(t *testing.T) {
	rs := replicas(t, pgtest.Start(t), 2)
	ctx := t.Context()
	for round := range 10 {
		name := fmt.Sprintf("r%d", round)
		if err := rs[0].CreateRole(ctx, store.Role{Name: name, RoleID: "AROA" + name, Path: "/",
			ARN: "arn:aws:iam::123456789012:role/" + name, MaxSessionDuration: 3600}); err != nil {
			t.Fatal(err)
		}
		errs := race(2, func(i int) error {
			if i == 0 {
				return rs[0].DeleteRole(ctx, name)
			}
			return rs[1].PutRolePolicy(ctx, store.RolePolicy{RoleName: name, PolicyName: "p", Document: "{}"})
		})
		delErr, putErr := errs[0], errs[1]
		_, getErr := rs[0].GetRole(ctx, name)
		switch {
		case delErr == nil && errors.Is(putErr, store.ErrNotFound) && errors.Is(getErr, store.ErrNotFound):
			// deleted first
		case errors.Is(delErr, store.ErrConflict) && putErr == nil && getErr == nil:
			// the policy went in first
		default:
			t.Fatalf("round %d: DeleteRole = %v, PutRolePolicy = %v, role afterwards: %v", round, delErr, putErr, getErr)
		}
	}
}
