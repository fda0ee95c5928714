// Package webhooktest gives tests the webhook's deployment manifest,
// deploy/webhook.yaml, so that they register the webhook as users do.
package webhooktest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
)

// Manifest decodes every object of deploy/webhook.yaml strictly (an
// unknown field fails the test).
func Manifest(t testing.TB) []k8sruntime.Object {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "webhook.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	var objs []k8sruntime.Object
	for _, doc := range strings.Split(string(b), "\n---\n") {
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("deploy/webhook.yaml: %v in:\n%.300s", err, doc)
		}
		objs = append(objs, obj)
	}
	return objs
}

// Configuration is the manifest's MutatingWebhookConfiguration with every
// webhook's clientConfig aimed at url instead of the Service (a test's
// apiserver has no Service network); the caBundle is left for
// --tls-self-signed to fill in.
func Configuration(t testing.TB, url string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	for _, obj := range Manifest(t) {
		if c, ok := obj.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
			}
			return c
		}
	}
	t.Fatal("deploy/webhook.yaml has no MutatingWebhookConfiguration")
	return nil
}
