// Package e2e is podid's end-to-end test: a real kube-apiserver, the podid
// server, webhook and agent, a network namespace playing a node with the
// agent on 169.254.170.23, and unmodified AWS SDKs (aws-sdk-go-v2, boto3,
// JavaScript v3) running as pods' containers. See docs/E2E.md.
package e2e
