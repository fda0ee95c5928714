package oidc

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Paths of the issuer documents, relative to the issuer URL, as the
// self-managed IRSA recipe hosts them.
const (
	DiscoveryPath = ".well-known/openid-configuration"
	KeysPath      = "keys.json"
)

// IssuerDocuments returns the discovery document and the public key set,
// by path relative to the issuer URL. Private key material in the input
// is dropped: only public keys are ever published.
func IssuerDocuments(issuer string, rawJWKS []byte) (map[string][]byte, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rawJWKS, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	var pub jose.JSONWebKeySet
	algs := map[string]bool{}
	for _, k := range set.Keys {
		p := k.Public()
		if !p.Valid() || (p.Use != "" && p.Use != "sig") {
			continue
		}
		pub.Keys = append(pub.Keys, p)
		if p.Algorithm != "" {
			algs[p.Algorithm] = true
		}
	}
	if len(pub.Keys) == 0 {
		return nil, fmt.Errorf("the key set has no public signing keys")
	}
	if len(algs) == 0 {
		algs["RS256"] = true // what kube-apiserver signs with
	}
	var algList []string
	for a := range algs {
		algList = append(algList, a)
	}
	sort.Strings(algList)
	base := strings.TrimRight(issuer, "/")
	disc := map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              base + "/" + KeysPath,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": algList,
		"claims_supported":                      []string{"sub", "iss"},
	}
	d, err := json.MarshalIndent(disc, "", "  ")
	if err != nil {
		return nil, err
	}
	k, err := json.MarshalIndent(pub, "", "  ")
	if err != nil {
		return nil, err
	}
	return map[string][]byte{DiscoveryPath: append(d, '\n'), KeysPath: append(k, '\n')}, nil
}
