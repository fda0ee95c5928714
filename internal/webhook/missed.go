package webhook

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// OptOutLabel on a pod keeps the webhook away from it (the deploy/
// objectSelector matches it); such pods are never counted as missed.
const OptOutLabel = "podid.io/webhook"

// missedPods counts pods that run without the injection the webhook would
// give them now. With failurePolicy Ignore, a pod created while the webhook
// is down or unreachable is admitted unmutated and nothing else records it;
// the only honest evidence is the pod itself, seen later without the token
// volume. The same test also catches pods created before their role or
// association existed, which equally need a restart to get credentials, so
// the metric is named for the state, not for its cause.
type missedPods struct {
	informer cache.SharedIndexInformer
	factory  informers.SharedInformerFactory
	mutator  *Mutator
	sas      *ServiceAccountCache
	assoc    Associations
	metrics  *Metrics
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	counted map[types.UID]bool
	kick    chan struct{}
}

func newMissedPods(client kubernetes.Interface, mut *Mutator, sas *ServiceAccountCache, assoc Associations, m *Metrics, log *slog.Logger, interval time.Duration) *missedPods {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTransform(func(obj any) (any, error) {
			// Status and managed fields are most of a pod's size and unused here.
			if p, ok := obj.(*corev1.Pod); ok {
				p.ManagedFields = nil
				p.Status = corev1.PodStatus{Phase: p.Status.Phase}
			}
			return obj, nil
		}))
	d := &missedPods{
		factory:  f,
		informer: f.Core().V1().Pods().Informer(),
		mutator:  mut,
		sas:      sas,
		assoc:    assoc,
		metrics:  m,
		log:      log,
		interval: interval,
		counted:  make(map[types.UID]bool),
		kick:     make(chan struct{}, 1),
	}
	d.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*corev1.Pod); ok && d.missing(p) {
				d.count(p)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				d.mu.Lock()
				delete(d.counted, p.UID)
				d.mu.Unlock()
			}
		},
	})
	return d
}

// Rescan asks for a pass over all pods soon (after associations change).
func (d *missedPods) Rescan() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends, rescanning every interval: a pod whose
// service account reached the cache after the pod did is judged again.
func (d *missedPods) Run(ctx context.Context) {
	d.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), d.informer.HasSynced, d.sas.Synced) {
		return
	}
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		d.scan()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
	}
}

func (d *missedPods) scan() {
	n := 0
	for _, obj := range d.informer.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok && d.missing(p) {
			d.count(p)
			n++
		}
	}
	d.metrics.unmutated.Set(float64(n))
}

func (d *missedPods) count(p *corev1.Pod) {
	d.mu.Lock()
	seen := d.counted[p.UID]
	d.counted[p.UID] = true
	d.mu.Unlock()
	if seen {
		return
	}
	d.metrics.missed.Inc()
	d.log.Warn("pod runs without the AWS credentials the webhook would inject; restart it",
		"namespace", p.Namespace, "pod", p.Name, "serviceAccount", p.Spec.ServiceAccountName)
}

// missing reports whether the webhook would now give the pod an identity
// whose token volume the pod lacks.
func (d *missedPods) missing(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed ||
		p.Namespace == "kube-system" || p.Labels[OptOutLabel] == "disabled" {
		return false
	}
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	associated := d.assoc != nil && d.assoc.Associated(p.Namespace, sa)
	var obj *corev1.ServiceAccount
	if !associated {
		obj = d.sas.Cached(p.Namespace, sa)
	}
	v := podViewOf(p)
	id := d.mutator.Decide(v, obj, associated)
	vol := irsaVolume
	switch id.Mode {
	case ModeNone:
		return false
	case ModePodIdentity:
		vol = podIDVolume
	}
	if hasVolume(v, vol) {
		return false
	}
	return len(d.mutator.Patch(v, id)) > 0
}
