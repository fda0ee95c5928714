// Package webhook is podid's mutating admission webhook: it injects the
// environment, projected service-account token volume and mount that the AWS
// SDKs need for IRSA (web identity) and for EKS Pod Identity (container
// credentials).
//
// The mutation is a JSON Patch of individual fields. It never re-serialises a
// container or a container array, so fields this binary does not know (a
// sidecar's restartPolicy, probes, fields added by later Kubernetes releases)
// reach the apiserver exactly as the user wrote them.
package webhook

import (
	"math/rand/v2"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Mode says which kind of AWS credentials a pod gets.
type Mode string

// Modes, also used as the "mode" label of the metrics.
const (
	ModeNone        Mode = "none"
	ModeIRSA        Mode = "irsa"
	ModePodIdentity Mode = "pod_identity"
)

// Well-known names, as the EKS webhook uses them; SDKs and users look for them.
const (
	DefaultAnnotationPrefix = "eks.amazonaws.com"
	DefaultAudience         = "sts.amazonaws.com"
	PodIdentityAudience     = "pods.eks.amazonaws.com"

	// PodIdentityLabel marks pods that got Pod Identity, so that operators
	// (and podid doctor) can select them.
	PodIdentityLabel = "eks.amazonaws.com/pod-identity"

	irsaVolume      = "aws-iam-token"
	irsaMountPath   = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	irsaTokenPath   = "token"
	podIDVolume     = "eks-pod-identity-token"
	podIDMountPath  = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	podIDTokenPath  = "eks-pod-identity-token"
	podIDURIv4      = "http://169.254.170.23/v1/credentials"
	podIDURIv6      = "http://[fd00:ec2::23]/v1/credentials"
	defaultMode     = 420 // 0644, what the apiserver would default anyway
	maxExpiration   = 86400
	minExpiration   = 600
	podIDMaxJitter  = 86400 - 79200
	envRoleARN      = "AWS_ROLE_ARN"
	envTokenFile    = "AWS_WEB_IDENTITY_TOKEN_FILE"
	envFullURI      = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
	envAuthFile     = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
	envRegion       = "AWS_REGION"
	envDefRegion    = "AWS_DEFAULT_REGION"
	envRegionalSTS  = "AWS_STS_REGIONAL_ENDPOINTS"
	annRoleARN      = "role-arn"
	annAudience     = "audience"
	annRegionalSTS  = "sts-regional-endpoints"
	annExpiration   = "token-expiration"
	annSkipContainr = "skip-containers"
)

// Options configure a Mutator.
type Options struct {
	// AnnotationPrefix is the domain of the service-account and pod
	// annotations (default eks.amazonaws.com).
	AnnotationPrefix string
	// Region, if set, is injected as AWS_REGION and AWS_DEFAULT_REGION.
	Region string
	// IPv6 makes Pod Identity pods reach the agent at [fd00:ec2::23].
	IPv6 bool
	// Jitter returns how many seconds (0 to 7200) to take off a Pod
	// Identity token's 86400 s lifetime. Nil means uniformly random, so a
	// fleet started at once does not refresh at once; tests fix it.
	Jitter func() int64
}

// Mutator computes the patch for one pod. It is safe for concurrent use.
type Mutator struct {
	prefix string
	region string
	uri    string
	jitter func() int64
}

// NewMutator returns a Mutator for o.
func NewMutator(o Options) *Mutator {
	m := &Mutator{prefix: o.AnnotationPrefix, region: o.Region, uri: podIDURIv4, jitter: o.Jitter}
	if m.prefix == "" {
		m.prefix = DefaultAnnotationPrefix
	}
	if o.IPv6 {
		m.uri = podIDURIv6
	}
	if m.jitter == nil {
		m.jitter = func() int64 { return rand.Int64N(podIDMaxJitter + 1) }
	}
	return m
}

// Identity is what a pod should get.
type Identity struct {
	Mode        Mode
	RoleARN     string // IRSA only
	Audience    string // IRSA only
	RegionalSTS bool   // IRSA only
	Expiration  int64  // token lifetime, seconds
}

// Decide returns the identity for pod. sa may be nil (not found);
// associated says whether the pod's namespace and service account have a
// Pod Identity association on this cluster. Pod Identity wins over IRSA:
// all three SDKs prefer web identity when both are configured, so injecting
// both would silently make the association useless.
func (m *Mutator) Decide(pod *podView, sa *corev1.ServiceAccount, associated bool) Identity {
	if associated {
		return Identity{Mode: ModePodIdentity, Expiration: maxExpiration - clamp(m.jitter(), 0, podIDMaxJitter)}
	}
	if sa == nil {
		return Identity{Mode: ModeNone}
	}
	role := strings.TrimSpace(sa.Annotations[m.prefix+"/"+annRoleARN])
	if role == "" {
		return Identity{Mode: ModeNone}
	}
	id := Identity{Mode: ModeIRSA, RoleARN: role, Audience: DefaultAudience, Expiration: maxExpiration}
	if a := strings.TrimSpace(sa.Annotations[m.prefix+"/"+annAudience]); a != "" {
		id.Audience = a
	}
	if v, err := strconv.ParseBool(sa.Annotations[m.prefix+"/"+annRegionalSTS]); err == nil {
		id.RegionalSTS = v
	}
	// The pod's annotation overrides the service account's; an unparsable
	// value is ignored rather than failing the pod.
	for _, ann := range []map[string]string{sa.Annotations, pod.meta().Annotations} {
		if v, err := strconv.ParseInt(strings.TrimSpace(ann[m.prefix+"/"+annExpiration]), 10, 64); err == nil {
			id.Expiration = clamp(v, minExpiration, maxExpiration)
		}
	}
	return id
}

func clamp(v, lo, hi int64) int64 {
	return max(lo, min(v, hi))
}

// PatchOp is one RFC 6902 operation. podid only ever adds.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// The injected objects have their own small types so the patch holds
// exactly these fields and nothing a corev1 round trip would add.
type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly"`
}

type tokenProjection struct {
	Audience          string `json:"audience"`
	ExpirationSeconds int64  `json:"expirationSeconds"`
	Path              string `json:"path"`
}

type volume struct {
	Name      string `json:"name"`
	Projected struct {
		DefaultMode int `json:"defaultMode"`
		Sources     []struct {
			ServiceAccountToken tokenProjection `json:"serviceAccountToken"`
		} `json:"sources"`
	} `json:"projected"`
}

func newTokenVolume(name string, p tokenProjection) volume {
	var v volume
	v.Name = name
	v.Projected.DefaultMode = defaultMode
	v.Projected.Sources = make([]struct {
		ServiceAccountToken tokenProjection `json:"serviceAccountToken"`
	}, 1)
	v.Projected.Sources[0].ServiceAccountToken = p
	return v
}

// Patch returns the operations that give pod the identity id, or none when
// there is nothing to do (ModeNone, every container skipped, or everything
// already present, as on a reinvocation).
func (m *Mutator) Patch(pod *podView, id Identity) []PatchOp {
	if id.Mode == ModeNone {
		return nil
	}
	windows := isWindows(pod)
	var (
		volName, mountPath, tokenPath string
		creds                         []envVar
		proj                          tokenProjection
	)
	switch id.Mode {
	case ModeIRSA:
		volName, mountPath, tokenPath = irsaVolume, irsaMountPath, irsaTokenPath
		creds = []envVar{
			{envRoleARN, id.RoleARN},
			{envTokenFile, hostPath(mountPath+"/"+tokenPath, windows)},
		}
		proj = tokenProjection{Audience: id.Audience, ExpirationSeconds: id.Expiration, Path: tokenPath}
	case ModePodIdentity:
		volName, mountPath, tokenPath = podIDVolume, podIDMountPath, podIDTokenPath
		creds = []envVar{
			{envFullURI, m.uri},
			{envAuthFile, hostPath(mountPath+"/"+tokenPath, windows)},
		}
		proj = tokenProjection{Audience: PodIdentityAudience, ExpirationSeconds: id.Expiration, Path: tokenPath}
	default:
		return nil
	}
	// A container without a name is invalid (the apiserver rejects the pod
	// after admission) and may be a JSON null, which cannot be patched into.
	skip := m.skipContainers(pod)
	var ops []PatchOp
	eligible := false
	mounted := false
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if skip[c.Name] || c.Name == "" {
			continue
		}
		eligible = true
		ops, mounted = m.patchContainer(ops, "/spec/initContainers/"+strconv.Itoa(i), c, id, creds, volName, mountPath, mounted)
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if skip[c.Name] || c.Name == "" {
			continue
		}
		eligible = true
		ops, mounted = m.patchContainer(ops, "/spec/containers/"+strconv.Itoa(i), c, id, creds, volName, mountPath, mounted)
	}
	if !eligible {
		return nil
	}
	if mounted && !hasVolume(pod, volName) {
		v := newTokenVolume(volName, proj)
		if len(pod.Spec.Volumes) == 0 {
			ops = append(ops, PatchOp{"add", "/spec/volumes", []volume{v}})
		} else {
			ops = append(ops, PatchOp{"add", "/spec/volumes/-", v})
		}
	}
	if labels := pod.meta().Labels; id.Mode == ModePodIdentity && labels[PodIdentityLabel] != "enabled" {
		if labels == nil {
			ops = append(ops, PatchOp{"add", "/metadata/labels", map[string]string{PodIdentityLabel: "enabled"}})
		} else {
			ops = append(ops, PatchOp{"add", "/metadata/labels/" + escapePointer(PodIdentityLabel), "enabled"})
		}
	}
	return ops
}

// patchContainer appends the operations for one container. mounted reports
// whether some container mounts (or already mounted) the token volume, so
// the volume is added only when it is used.
func (m *Mutator) patchContainer(ops []PatchOp, path string, c *containerView, id Identity, creds []envVar, volName, mountPath string, mounted bool) ([]PatchOp, bool) {
	have := make(map[string]bool, len(c.Env))
	for _, e := range c.Env {
		have[e.Name] = true
	}
	var add []envVar
	if id.Mode == ModeIRSA && id.RegionalSTS && !have[envRegionalSTS] {
		add = append(add, envVar{envRegionalSTS, "regional"})
	}
	// Region: any region the user set wins, and envFrom may carry one we
	// cannot see (a ConfigMap), so its presence also means hands off.
	if m.region != "" && !have[envRegion] && !have[envDefRegion] && len(c.EnvFrom) == 0 {
		add = append(add, envVar{envDefRegion, m.region}, envVar{envRegion, m.region})
	}
	// The credential variables go in as a pair or not at all: a user who
	// set either one configured credentials deliberately, and half a pair
	// would point the SDK at a token meant for another endpoint.
	if !have[creds[0].Name] && !have[creds[1].Name] {
		add = append(add, creds...)
	}
	switch {
	case len(add) == 0:
	case len(c.Env) == 0:
		ops = append(ops, PatchOp{"add", path + "/env", add})
	default:
		for _, e := range add {
			ops = append(ops, PatchOp{"add", path + "/env/-", e})
		}
	}
	// No second mount of the volume, and none over a path the user already
	// mounts something at (the kubelet would refuse the pod).
	for _, vm := range c.VolumeMounts {
		if vm.Name == volName {
			return ops, true
		}
		if strings.TrimRight(vm.MountPath, "/") == mountPath {
			return ops, mounted
		}
	}
	vm := volumeMount{Name: volName, MountPath: mountPath, ReadOnly: true}
	if len(c.VolumeMounts) == 0 {
		ops = append(ops, PatchOp{"add", path + "/volumeMounts", []volumeMount{vm}})
	} else {
		ops = append(ops, PatchOp{"add", path + "/volumeMounts/-", vm})
	}
	return ops, true
}

// skipContainers parses the pod's comma-separated skip-containers annotation.
func (m *Mutator) skipContainers(pod *podView) map[string]bool {
	v, ok := pod.meta().Annotations[m.prefix+"/"+annSkipContainr]
	if !ok {
		return nil
	}
	skip := make(map[string]bool)
	for name := range strings.SplitSeq(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			skip[name] = true
		}
	}
	return skip
}

func hasVolume(pod *podView, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

// isWindows reports whether the pod is meant for Windows nodes: its
// spec.os or its node selector, the only signals at admission (the node is
// not chosen yet).
func isWindows(pod *podView) bool {
	return (pod.Spec.OS != nil && pod.Spec.OS.Name == string(corev1.Windows)) ||
		pod.Spec.NodeSelector["kubernetes.io/os"] == "windows" ||
		pod.Spec.NodeSelector["beta.kubernetes.io/os"] == "windows"
}

// hostPath turns the token file path into the form the process in the
// container sees. On Windows the kubelet mounts /var/run/... at
// C:\var\run\..., and the SDKs open the file by that name; the mountPath in
// the spec stays in the POSIX form the kubelet expects.
func hostPath(p string, windows bool) string {
	if !windows {
		return p
	}
	return `C:` + strings.ReplaceAll(p, "/", `\`)
}

// escapePointer escapes a JSON Pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
