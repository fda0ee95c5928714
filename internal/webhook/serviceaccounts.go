package webhook

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// DefaultLookupTimeout bounds the synchronous GET on a cache miss. It must
// leave room inside the webhook's timeoutSeconds (10 in deploy/).
const DefaultLookupTimeout = 3 * time.Second

// ServiceAccountCache serves service accounts from an informer and, on a
// miss, from a synchronous GET. The miss is the upstream webhook's most
// reported bug: a service account created just before its pod is not in
// the watch cache yet, and the pod silently starts without credentials.
type ServiceAccountCache struct {
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   corelisters.ServiceAccountLister
	timeout  time.Duration
	metrics  *Metrics
}

// NewServiceAccountCache returns a cache over all namespaces; call Start.
func NewServiceAccountCache(client kubernetes.Interface, metrics *Metrics, timeout time.Duration) *ServiceAccountCache {
	if timeout <= 0 {
		timeout = DefaultLookupTimeout
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0,
		// Keep only what the webhook reads: a cluster can hold many service
		// accounts, and their secrets lists and managed fields add up.
		informers.WithTransform(func(obj any) (any, error) {
			if sa, ok := obj.(*corev1.ServiceAccount); ok {
				return stripServiceAccount(sa), nil
			}
			return obj, nil
		}))
	inf := f.Core().V1().ServiceAccounts()
	return &ServiceAccountCache{
		client:   client,
		factory:  f,
		informer: inf.Informer(),
		lister:   inf.Lister(),
		timeout:  timeout,
		metrics:  metrics,
	}
}

func stripServiceAccount(sa *corev1.ServiceAccount) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Name: sa.Name, Namespace: sa.Namespace, UID: sa.UID,
		ResourceVersion: sa.ResourceVersion, Annotations: sa.Annotations,
	}}
}

// Start runs the informer until ctx ends.
func (c *ServiceAccountCache) Start(ctx context.Context) { c.factory.Start(ctx.Done()) }

// Synced reports whether the initial list has been loaded.
func (c *ServiceAccountCache) Synced() bool { return c.informer.HasSynced() }

// Cached returns the service account from the cache only (nil if absent),
// for background work that must not load the apiserver.
func (c *ServiceAccountCache) Cached(namespace, name string) *corev1.ServiceAccount {
	sa, err := c.lister.ServiceAccounts(namespace).Get(name)
	if err != nil {
		return nil
	}
	return sa
}

// ServiceAccount implements ServiceAccounts.
func (c *ServiceAccountCache) ServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	sa, err := c.lister.ServiceAccounts(namespace).Get(name)
	if err == nil {
		return sa, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("service account cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	sa, err = c.client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		c.metrics.saLookups.WithLabelValues("not_found").Inc()
		return nil, nil
	case err != nil:
		c.metrics.saLookups.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("get service account (cache miss): %w", err)
	}
	c.metrics.saLookups.WithLabelValues("found").Inc()
	return stripServiceAccount(sa), nil
}
