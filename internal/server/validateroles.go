package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/eks"
)

// withRoleValidation implements --validate-roles: a Create or Update of a
// Pod Identity association whose roleArn or targetRoleArn iam:GetRole does
// not find is refused before it is stored. It runs only for callers that
// are authenticated and allowed the operation on the cluster, so it tells
// nobody else whether a role exists; the EKS service then checks again.
func (s *Server) withRoleValidation(next http.Handler) http.Handler {
	if s.upstream == nil || !s.cfg.ValidateRoles {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op, ok := eks.Route(r.Method, r.URL.Path)
		if !ok || (op.Name != "CreatePodIdentityAssociation" && op.Name != "UpdatePodIdentityAssociation") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil || len(body) > maxBodySize {
			next.ServeHTTP(w, r)
			return
		}
		p, err := s.authenticate(r.Context(), r, body, "eks")
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		resource := "arn:aws:eks:" + s.cfg.Region + ":" + s.account + ":cluster/" + op.Cluster
		if op.ID != "" {
			resource = "arn:aws:eks:" + s.cfg.Region + ":" + s.account + ":podidentityassociation/" + op.Cluster + "/" + op.ID
		}
		if s.authz.AuthorizeContext(r.Context(), p, "eks:"+op.Name, resource, nil) != nil {
			next.ServeHTTP(w, r)
			return
		}
		var in struct {
			RoleArn       string `json:"roleArn"`
			TargetRoleArn string `json:"targetRoleArn"`
		}
		_ = json.Unmarshal(body, &in)
		for _, f := range []struct{ name, arn string }{{"roleArn", in.RoleArn}, {"targetRoleArn", in.TargetRoleArn}} {
			if f.arn == "" {
				continue
			}
			if err := s.upstream.ValidateRole(r.Context(), f.name, f.arn); err != nil {
				c := &call{requestID: awsproto.NewRequestID(), started: time.Now(), service: op.Service, action: op.Name, caller: p, params: restParams(op, body)}
				s.fail(w, r, c, err, true)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
