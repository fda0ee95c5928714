package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
)

type assocKey struct{ namespace, serviceAccount string }

type assocSet map[assocKey]struct{}

// AssociationSource is one source of namespace/service account pairs that
// have a Pod Identity association. It polls load every interval and keeps
// the last good set when a load fails, so a flapping server or a
// half-written file never takes credentials away from new pods.
type AssociationSource struct {
	name     string
	load     func(ctx context.Context) (assocSet, bool, error) // set, changed, error
	interval time.Duration
	set      atomic.Pointer[assocSet]
	metrics  *Metrics
	log      *slog.Logger
	onChange func()
}

// Loaded reports whether one load has succeeded.
func (s *AssociationSource) Loaded() bool { return s.set.Load() != nil }

// Has reports whether the pair is in the last loaded set.
func (s *AssociationSource) Has(namespace, serviceAccount string) bool {
	p := s.set.Load()
	if p == nil {
		return false
	}
	_, ok := (*p)[assocKey{namespace, serviceAccount}]
	return ok
}

// Refresh loads once now.
func (s *AssociationSource) Refresh(ctx context.Context) error {
	set, changed, err := s.load(ctx)
	if err != nil {
		s.metrics.sourceErrors.WithLabelValues(s.name).Inc()
		return fmt.Errorf("%s associations: %w", s.name, err)
	}
	if old := s.set.Load(); old != nil && (!changed || maps.Equal(*old, set)) {
		return nil
	}
	s.set.Store(&set)
	s.metrics.associations.WithLabelValues(s.name).Set(float64(len(set)))
	s.log.Info("associations loaded", "source", s.name, "count", len(set))
	if s.onChange != nil {
		s.onChange()
	}
	return nil
}

// Run refreshes every interval until ctx ends.
func (s *AssociationSource) Run(ctx context.Context) {
	for {
		if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("associations not refreshed; keeping the last good set", "source", s.name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.interval):
		}
	}
}

// identitiesFile is the upstream webhook's container-credentials
// configuration: {"identities":[{"namespace":…,"serviceAccount":…}]}.
type identitiesFile struct {
	Identities []struct {
		Namespace      string `json:"namespace"`
		ServiceAccount string `json:"serviceAccount"`
	} `json:"identities"`
}

func parseIdentities(b []byte) (assocSet, error) {
	var f identitiesFile
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if f.Identities == nil && !bytes.Contains(b, []byte(`"identities"`)) {
		// An empty object is more likely a truncated write than a deliberate
		// "no associations"; say so instead of dropping them all.
		return nil, errors.New(`no "identities" member`)
	}
	set := make(assocSet, len(f.Identities))
	for i, id := range f.Identities {
		if id.Namespace == "" || id.ServiceAccount == "" {
			return nil, fmt.Errorf("identities[%d]: namespace and serviceAccount are required", i)
		}
		set[assocKey{id.Namespace, id.ServiceAccount}] = struct{}{}
	}
	return set, nil
}

// NewFileSource reads path every interval. Reading the contents (not
// watching the file) follows a ConfigMap volume's ..data symlink swap,
// which replaces the file without writing to it.
func NewFileSource(path string, interval time.Duration, m *Metrics, log *slog.Logger) *AssociationSource {
	var last []byte
	return &AssociationSource{
		name:     "file",
		interval: interval,
		metrics:  m,
		log:      log,
		load: func(context.Context) (assocSet, bool, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, false, err
			}
			if last != nil && bytes.Equal(b, last) {
				return nil, false, nil
			}
			set, err := parseIdentities(b)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %w", path, err)
			}
			last = b
			return set, true, nil
		},
	}
}

// NewServerSource lists the cluster's associations from the podid server
// (or EKS) with the EKS API's ListPodIdentityAssociations every interval.
// Several clients are replicas of one server: a load lists from the one
// that last answered and, when it fails, starts over on the next, so a dead
// replica costs one failed try per poll and never the association set.
func NewServerSource(clients []eks.ListPodIdentityAssociationsAPIClient, cluster string, interval time.Duration, m *Metrics, log *slog.Logger) *AssociationSource {
	var current atomic.Int32 // index of the client that last answered
	return &AssociationSource{
		name:     "server",
		interval: interval,
		metrics:  m,
		log:      log,
		load: func(ctx context.Context) (assocSet, bool, error) {
			if len(clients) == 0 {
				return nil, false, errors.New("no server to list associations from")
			}
			ctx, cancel := context.WithTimeout(ctx, max(interval, 10*time.Second))
			defer cancel()
			first := int(current.Load())
			var errs []error
			for k := range clients {
				i := (first + k) % len(clients)
				set, err := listAssociations(ctx, clients[i], cluster)
				if err == nil {
					if i != first {
						log.Info("associations listed from another server replica", "replica", i)
						current.Store(int32(i))
					}
					return set, true, nil
				}
				errs = append(errs, fmt.Errorf("replica %d: %w", i, err))
				if ctx.Err() != nil {
					break
				}
			}
			return nil, false, errors.Join(errs...)
		},
	}
}

// listAssociations reads every page of the cluster's associations.
func listAssociations(ctx context.Context, client eks.ListPodIdentityAssociationsAPIClient, cluster string) (assocSet, error) {
	set := make(assocSet)
	p := eks.NewListPodIdentityAssociationsPaginator(client, &eks.ListPodIdentityAssociationsInput{
		ClusterName: aws.String(cluster),
		MaxResults:  aws.Int32(100),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, a := range page.Associations {
			set[assocKey{aws.ToString(a.Namespace), aws.ToString(a.ServiceAccount)}] = struct{}{}
		}
	}
	return set, nil
}

// AssociationIndex is the union of its sources.
type AssociationIndex []*AssociationSource

// Associated implements Associations.
func (a AssociationIndex) Associated(namespace, serviceAccount string) bool {
	for _, s := range a {
		if s.Has(namespace, serviceAccount) {
			return true
		}
	}
	return false
}

// Loaded reports whether every source has loaded once.
func (a AssociationIndex) Loaded() bool {
	for _, s := range a {
		if !s.Loaded() {
			return false
		}
	}
	return true
}
