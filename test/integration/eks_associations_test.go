package integration

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	jose "github.com/go-jose/go-jose/v4"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server/servertest"
)

var (
	associationIDRE = regexp.MustCompile(`^a-[a-z0-9]{17}$`)
	uuidRE          = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// eksFixture is a server with one registered cluster and two roles.
type eksFixture struct {
	inst              *servertest.Instance
	ec                *eks.Client
	cluster           string
	roleARN, otherARN string
}

func newEKSFixture(t *testing.T) *eksFixture {
	t.Helper()
	inst := servertest.Start(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	registerCluster(t, inst, podideks.RegisterClusterInput{Name: "c1", Issuer: "https://c1.issuer.test",
		JWKS: jwksOf(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"})})
	ic, _ := adminClients(inst)
	return &eksFixture{inst: inst, ec: eksClient(inst), cluster: "c1",
		roleARN: createRole(t, ic, "app", podIdentityTrust()), otherARN: createRole(t, ic, "other", podIdentityTrust())}
}

func (f *eksFixture) create(t *testing.T, ns, sa string, mutate ...func(*eks.CreatePodIdentityAssociationInput)) *ekstypes.PodIdentityAssociation {
	t.Helper()
	in := &eks.CreatePodIdentityAssociationInput{ClusterName: &f.cluster, Namespace: &ns, ServiceAccount: &sa, RoleArn: &f.roleARN}
	for _, m := range mutate {
		m(in)
	}
	out, err := f.ec.CreatePodIdentityAssociation(ctx(t), in)
	if err != nil {
		t.Fatalf("create %s/%s: %v", ns, sa, err)
	}
	return out.Association
}

// listAll lists the cluster's associations, page by page, as "ns/sa" sorted.
func (f *eksFixture) listAll(t *testing.T, in eks.ListPodIdentityAssociationsInput) (ids []string, pages int) {
	t.Helper()
	in.ClusterName = &f.cluster
	p := eks.NewListPodIdentityAssociationsPaginator(f.ec, &in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx(t))
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		pages++
		for _, a := range page.Associations {
			if aws.ToString(a.ClusterName) != f.cluster || !associationIDRE.MatchString(aws.ToString(a.AssociationId)) {
				t.Errorf("summary %+v", a)
			}
			ids = append(ids, aws.ToString(a.Namespace)+"/"+aws.ToString(a.ServiceAccount))
		}
	}
	slices.Sort(ids)
	return ids, pages
}

// httpStatus is the HTTP status of an SDK error.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func wantAPIError(t *testing.T, what string, err error, code string, status int) {
	t.Helper()
	if apiCode(err) != code || httpStatus(err) != status {
		t.Errorf("%s: err = %v (HTTP %d), want %s (HTTP %d)", what, err, httpStatus(err), code, status)
	}
}

func TestEKSAssociationLifecycle(t *testing.T) {
	f := newEKSFixture(t)
	before := time.Now().Add(-time.Second)
	a := f.create(t, "team-a", "app", func(in *eks.CreatePodIdentityAssociationInput) { in.Tags = map[string]string{"team": "a"} })
	id := aws.ToString(a.AssociationId)
	if !associationIDRE.MatchString(id) {
		t.Errorf("associationId %q does not match %s", id, associationIDRE)
	}
	if got, want := aws.ToString(a.AssociationArn), "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/"+id; got != want {
		t.Errorf("associationArn = %q, want %q", got, want)
	}
	if aws.ToString(a.ClusterName) != "c1" || aws.ToString(a.Namespace) != "team-a" || aws.ToString(a.ServiceAccount) != "app" ||
		aws.ToString(a.RoleArn) != f.roleARN || a.Tags["team"] != "a" || aws.ToBool(a.DisableSessionTags) || a.TargetRoleArn != nil || a.ExternalId != nil {
		t.Errorf("created association %+v", a)
	}
	if a.CreatedAt == nil || a.CreatedAt.Before(before) || a.CreatedAt.After(time.Now().Add(time.Second)) || !a.ModifiedAt.Equal(*a.CreatedAt) {
		t.Errorf("createdAt %v modifiedAt %v", a.CreatedAt, a.ModifiedAt)
	}
	desc, err := f.ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: &f.cluster, AssociationId: &id})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, desc.Association) {
		t.Errorf("describe = %+v, differs from create = %+v", desc.Association, a)
	}

	update := func(what string, in eks.UpdatePodIdentityAssociationInput) (*ekstypes.PodIdentityAssociation, error) {
		t.Helper()
		in.ClusterName, in.AssociationId = &f.cluster, &id
		out, err := f.ec.UpdatePodIdentityAssociation(ctx(t), &in)
		if err != nil {
			return nil, err
		}
		return out.Association, nil
	}
	u, err := update("roleArn", eks.UpdatePodIdentityAssociationInput{RoleArn: &f.otherARN})
	if err != nil || aws.ToString(u.RoleArn) != f.otherARN || u.ModifiedAt.Before(*u.CreatedAt) {
		t.Fatalf("update roleArn: %+v %v", u, err)
	}
	u, err = update("targetRoleArn", eks.UpdatePodIdentityAssociationInput{TargetRoleArn: &f.roleARN})
	if err != nil || aws.ToString(u.TargetRoleArn) != f.roleARN || !uuidRE.MatchString(aws.ToString(u.ExternalId)) {
		t.Fatalf("update targetRoleArn: %+v %v", u, err)
	}
	externalID := aws.ToString(u.ExternalId)
	_, err = update("policy alone", eks.UpdatePodIdentityAssociationInput{Policy: aws.String(policyDoc(stmt("Allow", "s3:GetObject", "*")))})
	wantAPIError(t, "policy with session tags on", err, "InvalidParameterException", http.StatusBadRequest)
	u, err = update("disableSessionTags+policy", eks.UpdatePodIdentityAssociationInput{DisableSessionTags: aws.Bool(true), Policy: aws.String(policyDoc(stmt("Allow", "s3:GetObject", "*")))})
	if err != nil || !aws.ToBool(u.DisableSessionTags) || aws.ToString(u.Policy) == "" || aws.ToString(u.ExternalId) != externalID {
		t.Fatalf("update disableSessionTags and policy: %+v %v", u, err)
	}
	_, err = update("enable tags, keep policy", eks.UpdatePodIdentityAssociationInput{DisableSessionTags: aws.Bool(false)})
	wantAPIError(t, "session tags back on with a policy", err, "InvalidParameterException", http.StatusBadRequest)
	u, err = update("remove target", eks.UpdatePodIdentityAssociationInput{TargetRoleArn: aws.String("")})
	if err != nil || u.TargetRoleArn != nil || u.ExternalId != nil {
		t.Fatalf("remove target role: %+v %v", u, err)
	}

	del, err := f.ec.DeletePodIdentityAssociation(ctx(t), &eks.DeletePodIdentityAssociationInput{ClusterName: &f.cluster, AssociationId: &id})
	if err != nil || aws.ToString(del.Association.AssociationId) != id {
		t.Fatalf("delete: %+v %v", del, err)
	}
	_, err = f.ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: &f.cluster, AssociationId: &id})
	wantAPIError(t, "describe deleted", err, "ResourceNotFoundException", http.StatusNotFound)
	// The namespace/service account is free again.
	f.create(t, "team-a", "app")

	// Each call left a CloudTrail-shaped record naming the cluster.
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(f.inst.AuditLog(t)), "\n") {
		var rec struct {
			EventSource, EventName string
			RequestParameters      map[string]any
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.EventSource == "eks.amazonaws.com" && rec.RequestParameters["clusterName"] == "c1" {
			seen[rec.EventName]++
		}
	}
	for name, n := range map[string]int{"CreatePodIdentityAssociation": 2, "DescribePodIdentityAssociation": 2, "UpdatePodIdentityAssociation": 6, "DeletePodIdentityAssociation": 1} {
		if seen[name] != n {
			t.Errorf("%d audit records of %s, want %d (all: %v)", seen[name], name, n, seen)
		}
	}
}

func TestEKSAssociationIdempotency(t *testing.T) {
	f := newEKSFixture(t)
	token := func(tok, role string) func(*eks.CreatePodIdentityAssociationInput) {
		return func(in *eks.CreatePodIdentityAssociationInput) {
			in.ClientRequestToken, in.RoleArn = aws.String(tok), aws.String(role)
		}
	}
	first := f.create(t, "ns", "sa", token("tok-1", f.roleARN))
	again := f.create(t, "ns", "sa", token("tok-1", f.roleARN))
	if aws.ToString(again.AssociationId) != aws.ToString(first.AssociationId) || !again.CreatedAt.Equal(*first.CreatedAt) {
		t.Errorf("same token, same body: %s, then %s", aws.ToString(first.AssociationId), aws.ToString(again.AssociationId))
	}
	_, err := f.ec.CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: &f.cluster,
		Namespace: aws.String("ns"), ServiceAccount: aws.String("sa"), RoleArn: &f.otherARN, ClientRequestToken: aws.String("tok-1")})
	wantAPIError(t, "same token, different body", err, "InvalidRequestException", http.StatusBadRequest)
	// Without a token of its own the SDK sends a fresh UUID: a second
	// association on the same namespace/service account is a conflict.
	_, err = f.ec.CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: &f.cluster,
		Namespace: aws.String("ns"), ServiceAccount: aws.String("sa"), RoleArn: &f.roleARN})
	wantAPIError(t, "second association on ns/sa", err, "ResourceInUseException", http.StatusConflict)
	if ids, _ := f.listAll(t, eks.ListPodIdentityAssociationsInput{}); !slices.Equal(ids, []string{"ns/sa"}) {
		t.Errorf("associations = %v, want just ns/sa", ids)
	}
}

func TestEKSAssociationListPagination(t *testing.T) {
	f := newEKSFixture(t)
	var all []string
	for i := range 7 {
		ns := []string{"alpha", "beta"}[i%2]
		sa := fmt.Sprintf("sa-%d", i/2)
		f.create(t, ns, sa)
		all = append(all, ns+"/"+sa)
	}
	slices.Sort(all)
	for _, tc := range []struct {
		name      string
		in        eks.ListPodIdentityAssociationsInput
		want      []string
		wantPages int
	}{
		{"pages of 3", eks.ListPodIdentityAssociationsInput{MaxResults: aws.Int32(3)}, all, 3},
		{"pages of 1", eks.ListPodIdentityAssociationsInput{MaxResults: aws.Int32(1)}, all, 7},
		{"one page", eks.ListPodIdentityAssociationsInput{}, all, 1},
		{"namespace", eks.ListPodIdentityAssociationsInput{Namespace: aws.String("beta"), MaxResults: aws.Int32(2)}, []string{"beta/sa-0", "beta/sa-1", "beta/sa-2"}, 2},
		{"service account", eks.ListPodIdentityAssociationsInput{ServiceAccount: aws.String("sa-3")}, []string{"alpha/sa-3"}, 1},
		{"both", eks.ListPodIdentityAssociationsInput{Namespace: aws.String("alpha"), ServiceAccount: aws.String("sa-1")}, []string{"alpha/sa-1"}, 1},
		{"no match", eks.ListPodIdentityAssociationsInput{Namespace: aws.String("gamma")}, nil, 1},
	} {
		got, pages := f.listAll(t, tc.in)
		if !slices.Equal(got, tc.want) || pages != tc.wantPages {
			t.Errorf("%s: %d pages of %v, want %d pages of %v", tc.name, pages, got, tc.wantPages, tc.want)
		}
	}
	for _, in := range []eks.ListPodIdentityAssociationsInput{{MaxResults: aws.Int32(0)}, {MaxResults: aws.Int32(101)}, {NextToken: aws.String("bm90IGEgdG9rZW4")}} {
		in.ClusterName = &f.cluster
		_, err := f.ec.ListPodIdentityAssociations(ctx(t), &in)
		wantAPIError(t, fmt.Sprintf("list maxResults=%v nextToken=%v", aws.ToInt32(in.MaxResults), aws.ToString(in.NextToken)), err, "InvalidParameterException", http.StatusBadRequest)
	}
}

func TestEKSAssociationTags(t *testing.T) {
	f := newEKSFixture(t)
	a := f.create(t, "ns", "sa", func(in *eks.CreatePodIdentityAssociationInput) { in.Tags = map[string]string{"keep": "1", "drop": "2"} })
	arn := a.AssociationArn
	listTags := func() map[string]string {
		t.Helper()
		out, err := f.ec.ListTagsForResource(ctx(t), &eks.ListTagsForResourceInput{ResourceArn: arn})
		if err != nil {
			t.Fatalf("ListTagsForResource: %v", err)
		}
		return out.Tags
	}
	if got := listTags(); !maps.Equal(got, map[string]string{"keep": "1", "drop": "2"}) {
		t.Errorf("tags after create = %v", got)
	}
	if _, err := f.ec.TagResource(ctx(t), &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{"new": "3", "keep": "1b"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ec.UntagResource(ctx(t), &eks.UntagResourceInput{ResourceArn: arn, TagKeys: []string{"drop", "absent"}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"keep": "1b", "new": "3"}
	if got := listTags(); !maps.Equal(got, want) {
		t.Errorf("tags = %v, want %v", got, want)
	}
	desc, err := f.ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: &f.cluster, AssociationId: a.AssociationId})
	if err != nil || !maps.Equal(desc.Association.Tags, want) {
		t.Errorf("describe tags = %v (%v), want %v", desc.Association.Tags, err, want)
	}
	_, err = f.ec.TagResource(ctx(t), &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{"aws:reserved": "x"}})
	wantAPIError(t, "tag with aws: prefix", err, "InvalidParameterException", http.StatusBadRequest)
}

// Every failing association call answers with the EKS exception and status
// and leaves the associations as they were.
func TestEKSAssociationErrors(t *testing.T) {
	f := newEKSFixture(t)
	a := f.create(t, "ns", "sa")
	id, cluster := aws.ToString(a.AssociationId), f.cluster
	unknownID, unknownARN := "a-00000000000000000", "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/a-00000000000000000"
	create := func(mutate func(*eks.CreatePodIdentityAssociationInput)) func() error {
		return func() error {
			in := &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String(cluster), Namespace: aws.String("new"), ServiceAccount: aws.String("sa"), RoleArn: &f.roleARN}
			mutate(in)
			_, err := f.ec.CreatePodIdentityAssociation(ctx(t), in)
			return err
		}
	}
	validPolicy := policyDoc(stmt("Allow", "s3:GetObject", "*"))
	cases := []struct {
		name   string
		call   func() error
		code   string
		status int
	}{
		{"create: unknown cluster", create(func(in *eks.CreatePodIdentityAssociationInput) { in.ClusterName = aws.String("nope") }), "ResourceNotFoundException", 404},
		{"create: same namespace and service account", create(func(in *eks.CreatePodIdentityAssociationInput) { in.Namespace = aws.String("ns") }), "ResourceInUseException", 409},
		{"create: bad namespace", create(func(in *eks.CreatePodIdentityAssociationInput) { in.Namespace = aws.String("Not_A_Namespace") }), "InvalidParameterException", 400},
		{"create: bad service account", create(func(in *eks.CreatePodIdentityAssociationInput) { in.ServiceAccount = aws.String("-sa") }), "InvalidParameterException", 400},
		{"create: bad role ARN", create(func(in *eks.CreatePodIdentityAssociationInput) { in.RoleArn = aws.String("arn:aws:s3:::bucket") }), "InvalidParameterException", 400},
		{"create: bad target role ARN", create(func(in *eks.CreatePodIdentityAssociationInput) { in.TargetRoleArn = aws.String("role/x") }), "InvalidParameterException", 400},
		{"create: policy with session tags", create(func(in *eks.CreatePodIdentityAssociationInput) { in.Policy = &validPolicy }), "InvalidParameterException", 400},
		{"create: policy not JSON", create(func(in *eks.CreatePodIdentityAssociationInput) {
			in.Policy, in.DisableSessionTags = aws.String("{not json"), aws.Bool(true)
		}), "InvalidParameterException", 400},
		{"create: reserved tag", create(func(in *eks.CreatePodIdentityAssociationInput) { in.Tags = map[string]string{"aws:x": "y"} }), "InvalidParameterException", 400},
		{"describe: unknown id", func() error {
			_, err := f.ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: &cluster, AssociationId: &unknownID})
			return err
		}, "ResourceNotFoundException", 404},
		{"describe: unknown cluster", func() error {
			_, err := f.ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: aws.String("nope"), AssociationId: &id})
			return err
		}, "ResourceNotFoundException", 404},
		{"list: unknown cluster", func() error {
			_, err := f.ec.ListPodIdentityAssociations(ctx(t), &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String("nope")})
			return err
		}, "ResourceNotFoundException", 404},
		{"update: unknown id", func() error {
			_, err := f.ec.UpdatePodIdentityAssociation(ctx(t), &eks.UpdatePodIdentityAssociationInput{ClusterName: &cluster, AssociationId: &unknownID, RoleArn: &f.otherARN})
			return err
		}, "ResourceNotFoundException", 404},
		{"update: bad role ARN", func() error {
			_, err := f.ec.UpdatePodIdentityAssociation(ctx(t), &eks.UpdatePodIdentityAssociationInput{ClusterName: &cluster, AssociationId: &id, RoleArn: aws.String("nope")})
			return err
		}, "InvalidParameterException", 400},
		{"update: policy with session tags", func() error {
			_, err := f.ec.UpdatePodIdentityAssociation(ctx(t), &eks.UpdatePodIdentityAssociationInput{ClusterName: &cluster, AssociationId: &id, Policy: &validPolicy})
			return err
		}, "InvalidParameterException", 400},
		{"delete: unknown id", func() error {
			_, err := f.ec.DeletePodIdentityAssociation(ctx(t), &eks.DeletePodIdentityAssociationInput{ClusterName: &cluster, AssociationId: &unknownID})
			return err
		}, "ResourceNotFoundException", 404},
		{"delete: unknown cluster", func() error {
			_, err := f.ec.DeletePodIdentityAssociation(ctx(t), &eks.DeletePodIdentityAssociationInput{ClusterName: aws.String("nope"), AssociationId: &id})
			return err
		}, "ResourceNotFoundException", 404},
		{"tag: unknown association", func() error {
			_, err := f.ec.TagResource(ctx(t), &eks.TagResourceInput{ResourceArn: &unknownARN, Tags: map[string]string{"a": "b"}})
			return err
		}, "ResourceNotFoundException", 404},
		{"untag: unknown association", func() error {
			_, err := f.ec.UntagResource(ctx(t), &eks.UntagResourceInput{ResourceArn: &unknownARN, TagKeys: []string{"a"}})
			return err
		}, "ResourceNotFoundException", 404},
		{"list tags: unknown association", func() error {
			_, err := f.ec.ListTagsForResource(ctx(t), &eks.ListTagsForResourceInput{ResourceArn: &unknownARN})
			return err
		}, "ResourceNotFoundException", 404},
		{"describe cluster: unknown", func() error {
			_, err := f.ec.DescribeCluster(ctx(t), &eks.DescribeClusterInput{Name: aws.String("nope")})
			return err
		}, "ResourceNotFoundException", 404},
	}
	for _, tc := range cases {
		wantAPIError(t, tc.name, tc.call(), tc.code, tc.status)
	}
	after, err := f.ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: &cluster, AssociationId: &id})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, after.Association) {
		t.Errorf("the association changed: %+v, was %+v", after.Association, a)
	}
	if ids, _ := f.listAll(t, eks.ListPodIdentityAssociationsInput{}); !slices.Equal(ids, []string{"ns/sa"}) {
		t.Errorf("associations = %v, want just ns/sa", ids)
	}
}

func TestEKSClusters(t *testing.T) {
	f := newEKSFixture(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := jwksOf(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})
	for _, name := range []string{"c2", "c3", "c4"} {
		registerCluster(t, f.inst, podideks.RegisterClusterInput{Name: name, Issuer: "https://" + name + ".issuer.test", JWKS: jwks, Tags: map[string]string{"env": name}})
	}
	var names []string
	pages := 0
	p := eks.NewListClustersPaginator(f.ec, &eks.ListClustersInput{MaxResults: aws.Int32(2)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		names = append(names, page.Clusters...)
	}
	if want := []string{"c1", "c2", "c3", "c4"}; !slices.Equal(names, want) || pages != 2 {
		t.Errorf("ListClusters: %d pages of %v, want 2 of %v", pages, names, want)
	}
	d, err := f.ec.DescribeCluster(ctx(t), &eks.DescribeClusterInput{Name: aws.String("c3")})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Cluster
	if aws.ToString(c.Name) != "c3" || aws.ToString(c.Arn) != "arn:aws:eks:us-east-1:111122223333:cluster/c3" || c.Status != ekstypes.ClusterStatusActive ||
		aws.ToString(c.Identity.Oidc.Issuer) != "https://c3.issuer.test" || c.Tags["env"] != "c3" || time.Since(aws.ToTime(c.CreatedAt)) > time.Minute {
		t.Errorf("DescribeCluster c3 = %+v", c)
	}

	registerErrors := []struct {
		name string
		in   any
		code string
	}{
		{"duplicate name", podideks.RegisterClusterInput{Name: "c2", Issuer: "https://x.test", JWKS: jwks}, "ResourceInUseException"},
		{"bad name", podideks.RegisterClusterInput{Name: "-x", Issuer: "https://x.test", JWKS: jwks}, "InvalidParameterException"},
		{"bad issuer", podideks.RegisterClusterInput{Name: "x", Issuer: "ftp://x.test", JWKS: jwks}, "InvalidParameterException"},
		{"no key source", podideks.RegisterClusterInput{Name: "x", Issuer: "https://x.test"}, "InvalidParameterException"},
		{"two key sources", podideks.RegisterClusterInput{Name: "x", Issuer: "https://x.test", JWKS: jwks, Discovery: true}, "InvalidParameterException"},
		{"private key in JWKS", podideks.RegisterClusterInput{Name: "x", Issuer: "https://x.test", JWKS: jwksOf(jose.JSONWebKey{Key: key, KeyID: "k", Algorithm: "RS256"})}, "InvalidParameterException"},
		{"token review without kubeconfig", podideks.RegisterClusterInput{Name: "x", Issuer: "https://x.test", JWKS: jwks, TokenReview: true}, "InvalidParameterException"},
		{"unreachable JWKS URL", podideks.RegisterClusterInput{Name: "x", Issuer: "https://x.test", JWKSURL: "http://127.0.0.1:1/keys"}, "InvalidParameterException"},
		{"not JSON", "{", "InvalidRequestException"},
	}
	for _, tc := range registerErrors {
		a := signedJSON(t, f.inst, adminCreds(f.inst), "eks", http.MethodPost, "/podid/clusters", tc.in)
		wantStatus := map[string]int{"ResourceInUseException": 409}[tc.code]
		if wantStatus == 0 {
			wantStatus = 400
		}
		if a.code != tc.code || a.status != wantStatus {
			t.Errorf("register, %s: HTTP %d %s (%s), want %d %s", tc.name, a.status, a.code, a.body, wantStatus, tc.code)
		}
	}

	f.cluster = "c2"
	f.create(t, "ns", "sa")
	if _, err := f.ec.DeleteCluster(ctx(t), &eks.DeleteClusterInput{Name: aws.String("c2")}); err != nil {
		t.Fatal(err)
	}
	_, err = f.ec.DescribeCluster(ctx(t), &eks.DescribeClusterInput{Name: aws.String("c2")})
	wantAPIError(t, "describe deleted cluster", err, "ResourceNotFoundException", 404)
	_, err = f.ec.ListPodIdentityAssociations(ctx(t), &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String("c2")})
	wantAPIError(t, "associations of a deleted cluster", err, "ResourceNotFoundException", 404)
	_, err = f.ec.DeleteCluster(ctx(t), &eks.DeleteClusterInput{Name: aws.String("c2")})
	wantAPIError(t, "delete deleted cluster", err, "ResourceNotFoundException", 404)
	// Its associations went with it: registered again, it has none.
	registerCluster(t, f.inst, podideks.RegisterClusterInput{Name: "c2", Issuer: "https://c2.issuer.test", JWKS: jwks})
	if ids, _ := f.listAll(t, eks.ListPodIdentityAssociationsInput{}); len(ids) != 0 {
		t.Errorf("re-registered cluster has associations %v", ids)
	}
}
