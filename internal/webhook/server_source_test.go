package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/server/servertest"
)

// registerCluster registers a cluster (keys from an inline JWKS; the
// webhook never verifies tokens) through podid's POST /podid/clusters.
func registerCluster(t testing.TB, inst *servertest.Instance, name string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	body, _ := json.Marshal(map[string]any{"name": name, "issuer": "https://kubernetes.default.svc", "jwks": json.RawMessage(jwks)})
	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/podid/clusters", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: inst.AccessKeyID, SecretAccessKey: inst.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "eks", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("register cluster: %s: %s", resp.Status, b)
	}
}

func eksClient(inst *servertest.Instance) *eks.Client {
	return eks.New(eks.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(inst.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(inst.AccessKeyID, inst.SecretAccessKey, ""),
	})
}

// TestServerSourceRealServer lists associations from a real podid server
// through the real aws-sdk-go-v2 EKS client, across pages, and only for
// the webhook's own cluster.
func TestServerSourceRealServer(t *testing.T) {
	inst := servertest.Start(t)
	registerCluster(t, inst, "c1")
	registerCluster(t, inst, "c2")
	client := eksClient(inst)
	ctx := context.Background()
	create := func(cluster, ns, sa string) string {
		out, err := client.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
			ClusterName: aws.String(cluster), Namespace: aws.String(ns), ServiceAccount: aws.String(sa),
			RoleArn: aws.String("arn:aws:iam::111122223333:role/app"),
		})
		if err != nil {
			t.Fatalf("create association %s %s/%s: %v", cluster, ns, sa, err)
		}
		return aws.ToString(out.Association.AssociationId)
	}
	var firstID string
	for i := range 130 { // more than one page of 100
		id := create("c1", "team", "sa"+strconv.Itoa(i))
		if i == 0 {
			firstID = id
		}
	}
	create("c2", "other", "x")

	s := NewServerSource([]eks.ListPodIdentityAssociationsAPIClient{client}, "c1", time.Hour, NewMetrics(), discardLogger())
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Has("team", "sa0") || !s.Has("team", "sa129") || s.Has("other", "x") || s.Has("team", "sa130") {
		t.Fatal("wrong set from the server")
	}
	if _, err := client.DeletePodIdentityAssociation(ctx, &eks.DeletePodIdentityAssociationInput{ClusterName: aws.String("c1"), AssociationId: aws.String(firstID)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Has("team", "sa0") || !s.Has("team", "sa1") {
		t.Fatal("deleted association still listed")
	}

	// Bad credentials: the refresh fails and the last good set stays.
	bad := eks.New(eks.Options{Region: "us-east-1", BaseEndpoint: aws.String(inst.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIAXXXXXXXXXXXXXXXX", "wrong", "")})
	s2 := NewServerSource([]eks.ListPodIdentityAssociationsAPIClient{bad}, "c1", time.Hour, NewMetrics(), discardLogger())
	if err := s2.Refresh(ctx); err == nil || s2.Loaded() {
		t.Fatalf("refresh with bad credentials: %v", err)
	}
}

// TestServerSourceFailsOver: with --server naming two replicas, one of
// which fails every call, the associations come from the other; the failed
// replica is tried once per poll at most (no SDK retries on it), and not at
// all once the other has answered.
func TestServerSourceFailsOver(t *testing.T) {
	inst := servertest.Start(t)
	registerCluster(t, inst, "c1")
	if _, err := eksClient(inst).CreatePodIdentityAssociation(context.Background(), &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String("c1"), Namespace: aws.String("team"), ServiceAccount: aws.String("app"),
		RoleArn: aws.String("arn:aws:iam::111122223333:role/app"),
	}); err != nil {
		t.Fatal(err)
	}
	var deadHits atomic.Int32
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		deadHits.Add(1)
		http.Error(w, `{"message":"replica is failing"}`, http.StatusServiceUnavailable)
	}))
	defer dead.Close()

	t.Setenv("AWS_ACCESS_KEY_ID", inst.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", inst.SecretAccessKey)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	clients, err := eksClients(context.Background(), Config{Servers: []string{dead.URL, inst.URL}, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	s := NewServerSource(clients, "c1", time.Hour, NewMetrics(), discardLogger())
	ctx := context.Background()
	if err := s.Refresh(ctx); err != nil {
		t.Fatalf("refresh with one failing replica: %v", err)
	}
	if !s.Has("team", "app") {
		t.Fatal("association missing after failover")
	}
	if n := deadHits.Load(); n != 1 {
		t.Errorf("failing replica tried %d times in the first poll, want 1", n)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := deadHits.Load(); n != 1 {
		t.Errorf("failing replica tried again (%d calls) while the other answers", n)
	}

	// Every replica failing: the error names each, and the set stays.
	only := NewServerSource(clients[:1], "c1", time.Hour, NewMetrics(), discardLogger())
	if err := only.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "replica 0") {
		t.Errorf("refresh with no working replica: %v", err)
	}
}
