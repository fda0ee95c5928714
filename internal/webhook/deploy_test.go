package webhook

import (
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podid/podid/internal/webhook/webhooktest"
)

// TestDeployManifest decodes deploy/webhook.yaml strictly and checks the
// properties that keep a webhook from hurting a cluster.
func TestDeployManifest(t *testing.T) {
	var (
		mwc  *admissionregistrationv1.MutatingWebhookConfiguration
		dep  *appsv1.Deployment
		svc  *corev1.Service
		role *rbacv1.ClusterRole
	)
	for _, obj := range webhooktest.Manifest(t) {
		switch o := obj.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			mwc = o
		case *appsv1.Deployment:
			dep = o
		case *corev1.Service:
			svc = o
		case *rbacv1.ClusterRole:
			role = o
		}
	}
	if mwc == nil || dep == nil || svc == nil || role == nil {
		t.Fatal("manifest lacks a MutatingWebhookConfiguration, Deployment, Service or ClusterRole")
	}
	if mwc.Name != DefaultWebhookConfigName {
		t.Errorf("configuration %q: --tls-self-signed maintains %q", mwc.Name, DefaultWebhookConfigName)
	}
	podLabels := labels.Set(dep.Spec.Template.Labels)
	for _, w := range mwc.Webhooks {
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Ignore {
			t.Errorf("%s: failurePolicy must be Ignore", w.Name)
		}
		if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: sideEffects must be None", w.Name)
		}
		for _, r := range w.Rules {
			if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) || !slices.Equal(r.Resources, []string{"pods"}) {
				t.Errorf("%s: rule %+v: CREATE of pods only", w.Name, r)
			}
		}
		ns, err := metaSelector(w.NamespaceSelector)
		if err != nil || ns.Matches(labels.Set{"kubernetes.io/metadata.name": "kube-system"}) || !ns.Matches(labels.Set{"kubernetes.io/metadata.name": "default"}) {
			t.Errorf("%s: namespaceSelector must exclude kube-system only (%v)", w.Name, err)
		}
		obj, err := metaSelector(w.ObjectSelector)
		if err != nil || obj.Matches(labels.Set{OptOutLabel: "disabled"}) || !obj.Matches(labels.Set{}) {
			t.Errorf("%s: objectSelector must skip %s=disabled (%v)", w.Name, OptOutLabel, err)
		}
		if obj.Matches(podLabels) {
			t.Errorf("%s: the webhook's own pods are not opted out", w.Name)
		}
		if s := w.ClientConfig.Service; s == nil || s.Name != svc.Name || s.Namespace != svc.Namespace || s.Path == nil || *s.Path != "/mutate" {
			t.Errorf("%s: clientConfig does not point at the Service's /mutate", w.Name)
		}
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Error("the Service does not select the Deployment's pods")
	}
	if *dep.Spec.Replicas < 2 {
		t.Error("one replica: every restart is a window of unmutated pods")
	}
	args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
	for _, want := range []string{"webhook", "--listen=", "--cluster=", "--server=", "--tls-self-signed"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "mutatingwebhookconfigurations") && !slices.Equal(r.ResourceNames, []string{mwc.Name}) {
			t.Errorf("RBAC on webhook configurations must be limited to %s", mwc.Name)
		}
	}
}

func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}
