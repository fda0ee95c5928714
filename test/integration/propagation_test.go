package integration

import (
	"crypto/rsa"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	jose "github.com/go-jose/go-jose/v4"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/store/pgtest"
)

// Changes made on one replica reach another's caches through PostgreSQL
// LISTEN/NOTIFY: association, trust policy, inline policy and cluster
// changes on A are honoured by B within 1 s (in practice tens of
// milliseconds), although with notifications on the caches' TTL is 30 s.
// B has the old state cached before each change.
func TestChangePropagationOnPostgres(t *testing.T) {
	dsn := pgtest.Start(t)
	keyFile := servertest.MasterKeyFile(t)
	withStore := func(c *server.Config) {
		c.Store, c.MasterKeyFile, c.AccountID = dsn, keyFile, account
	}
	a := servertest.Start(t, withStore)
	b := servertest.Start(t, withStore)

	const cluster = "prop"
	key1, key2, issuer := rsaKey(t), rsaKey(t), "https://propagation.issuer.test"
	register := func(k *rsa.PrivateKey, kid string) {
		t.Helper()
		registerCluster(t, a, podideks.RegisterClusterInput{Name: cluster, Issuer: issuer,
			JWKS: jwksOf(jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})})
	}
	register(key1, "k1")
	ic, _ := adminClients(a)
	roleARN := createRole(t, ic, "app", podIdentityTrust())
	associate := func(sa string) string {
		t.Helper()
		out, err := eksClient(a).CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String(cluster),
			Namespace: aws.String("default"), ServiceAccount: aws.String(sa), RoleArn: &roleARN})
		if err != nil {
			t.Fatalf("associate %s: %v", sa, err)
		}
		return aws.ToString(out.Association.AssociationId)
	}
	deleteAssociation := func(id string) {
		t.Helper()
		if _, err := eksClient(a).DeletePodIdentityAssociation(ctx(t), &eks.DeletePodIdentityAssociationInput{
			ClusterName: aws.String(cluster), AssociationId: &id}); err != nil {
			t.Fatal(err)
		}
	}
	associate("app")

	var podSeq atomic.Int64
	// podOK reports whether B gives credentials to a pod of sa whose token
	// is signed with k.
	podOK := func(k *rsa.PrivateKey, kid, sa string) bool {
		tok := signJWT(t, k, kid, jose.RS256, podClaims(issuer, "default", sa, fmt.Sprintf("pod-%d", podSeq.Add(1))))
		return podAssume(t, b, cluster, tok).status == http.StatusOK
	}

	// propagated runs change on A and polls B every 5 ms until want holds.
	// It logs how long after the change began B first answered from the new
	// state (an upper bound: the end of that answer) and the last answer
	// from the old state, and fails beyond 1 s.
	var worst time.Duration
	propagated := func(what string, before, want func() bool, change func()) {
		t.Helper()
		if !before() {
			t.Fatalf("%s: B does not show the state before the change", what)
		}
		start := time.Now()
		change()
		changed := time.Since(start)
		lastOld := time.Duration(-1)
		for {
			at := time.Since(start)
			ok := want()
			seen := time.Since(start)
			if ok {
				old := "none"
				if lastOld >= 0 {
					old = "+" + lastOld.Round(100*time.Microsecond).String()
				}
				t.Logf("%-44s change on A took %-9v B answered from the new state by +%-9v last old answer began %s",
					what, changed.Round(100*time.Microsecond), seen.Round(100*time.Microsecond), old)
				worst = max(worst, seen)
				if seen > time.Second {
					t.Errorf("%s: B first showed the change %v after it began, want ≤ 1 s", what, seen)
				}
				return
			}
			lastOld = at
			if at > 5*time.Second {
				t.Fatalf("%s: B still shows the old state after 5 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	not := func(f func() bool) func() bool { return func() bool { return !f() } }
	app1 := func() bool { return podOK(key1, "k1", "app") }

	// Associations: created, then deleted while B has it cached.
	web := func() bool { return podOK(key1, "k1", "web") }
	var webID string
	propagated("association created", not(web), web, func() { webID = associate("web") })
	propagated("association deleted", web, not(web), func() { deleteAssociation(webID) })

	// The role's trust policy: no longer trusting pods, then again.
	setTrust := func(trust any) func() {
		return func() {
			if _, err := ic.UpdateAssumeRolePolicy(ctx(t), &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("app"),
				PolicyDocument: aws.String(mustJSON(trust))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ec2Trust := map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow",
		"Principal": map[string]any{"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}}}
	propagated("trust policy no longer trusts pods", app1, not(app1), setTrust(ec2Trust))
	propagated("trust policy trusts pods again", not(app1), app1, setTrust(podIdentityTrust()))

	// An inline policy of a role whose session calls B.
	const listPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:ListClusters","Resource":"*"}]}`
	lister := roleSession(t, a, "lister", listPolicy)
	canList := func() bool {
		return signedJSON(t, b, lister, "eks", http.MethodGet, "/clusters", "").status == http.StatusOK
	}
	propagated("inline policy deleted", canList, not(canList), func() {
		if _, err := ic.DeleteRolePolicy(ctx(t), &iam.DeleteRolePolicyInput{RoleName: aws.String("lister"), PolicyName: aws.String("p")}); err != nil {
			t.Fatal(err)
		}
	})

	// The cluster registered again with another key (B has the old one's
	// runtime), then deleted.
	app2 := func() bool { return podOK(key2, "k2", "app") }
	propagated("cluster re-registered with a new key", app1, app2, func() {
		if _, err := eksClient(a).DeleteCluster(ctx(t), &eks.DeleteClusterInput{Name: aws.String(cluster)}); err != nil {
			t.Fatal(err)
		}
		register(key2, "k2")
		associate("app")
	})
	if app1() {
		t.Error("B still accepts tokens signed with the key of the deleted registration")
	}
	propagated("cluster deleted", app2, not(app2), func() {
		if _, err := eksClient(a).DeleteCluster(ctx(t), &eks.DeleteClusterInput{Name: aws.String(cluster)}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("slowest propagation: %v", worst.Round(100*time.Microsecond))
}
