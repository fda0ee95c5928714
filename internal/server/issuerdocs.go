package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/podid/podid/internal/oidc"
	"github.com/podid/podid/internal/store"
)

// IssuerDocsPrefix is where --serve-oidc publishes each registered cluster's
// issuer documents: PREFIX/CLUSTER/.well-known/openid-configuration and
// PREFIX/CLUSTER/keys.json. A cluster whose apiserver runs with
// --service-account-issuer=https://SERVER/podid/oidc/CLUSTER (and is
// registered with that issuer) can then use IRSA against AWS IAM with this
// server as its public issuer host.
const IssuerDocsPrefix = "/podid/oidc/"

// withIssuerDocs serves the issuer documents (unauthenticated, as OIDC
// requires) from the key set stored for each cluster.
func (s *Server) withIssuerDocs(next http.Handler) http.Handler {
	if !s.cfg.ServeOIDC {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, IssuerDocsPrefix)
		if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			next.ServeHTTP(w, r)
			return
		}
		cluster, doc, _ := strings.Cut(rest, "/")
		if doc != oidc.DiscoveryPath && doc != oidc.KeysPath {
			http.NotFound(w, r)
			return
		}
		c, err := s.store.GetCluster(r.Context(), cluster)
		if errors.Is(err, store.ErrNotFound) || (err == nil && len(c.JWKS) == 0) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			s.log.Error("issuer documents", "cluster", cluster, "err", err)
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
		docs, err := oidc.IssuerDocuments(c.Issuer, c.JWKS)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(docs[doc])
	})
}
