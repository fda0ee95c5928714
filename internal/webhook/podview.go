package webhook

import corev1 "k8s.io/api/core/v1"

// podView is the part of a Pod the webhook reads. Admission decodes into
// it rather than into corev1.Pod: probes, resources (quantity parsing) and
// the rest are skipped, which halves the cost of a review, and the patch
// never depends on fields it does not touch anyway.
type podView struct {
	Metadata *podMeta `json:"metadata"` // nil: absent or null
	Spec     struct {
		ServiceAccountName string            `json:"serviceAccountName"`
		NodeSelector       map[string]string `json:"nodeSelector"`
		OS                 *struct {
			Name string `json:"name"`
		} `json:"os"`
		Volumes        []named         `json:"volumes"`
		InitContainers []containerView `json:"initContainers"`
		Containers     []containerView `json:"containers"`
	} `json:"spec"`
}

type podMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

type named struct {
	Name string `json:"name"`
}

type containerView struct {
	Name         string     `json:"name"`
	Env          []named    `json:"env"`
	EnvFrom      []struct{} `json:"envFrom"` // only whether there is any
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

func (p *podView) meta() *podMeta {
	if p.Metadata == nil {
		return &podMeta{}
	}
	return p.Metadata
}

// podViewOf converts a pod from an informer.
func podViewOf(p *corev1.Pod) *podView {
	v := &podView{Metadata: &podMeta{
		Name: p.Name, GenerateName: p.GenerateName, Namespace: p.Namespace,
		Labels: p.Labels, Annotations: p.Annotations,
	}}
	s := &v.Spec
	s.ServiceAccountName = p.Spec.ServiceAccountName
	s.NodeSelector = p.Spec.NodeSelector
	if p.Spec.OS != nil {
		s.OS = &struct {
			Name string `json:"name"`
		}{string(p.Spec.OS.Name)}
	}
	for _, vol := range p.Spec.Volumes {
		s.Volumes = append(s.Volumes, named{vol.Name})
	}
	conv := func(cs []corev1.Container) []containerView {
		out := make([]containerView, len(cs))
		for i, c := range cs {
			out[i].Name = c.Name
			for _, e := range c.Env {
				out[i].Env = append(out[i].Env, named{e.Name})
			}
			out[i].EnvFrom = make([]struct{}, len(c.EnvFrom))
			for _, m := range c.VolumeMounts {
				out[i].VolumeMounts = append(out[i].VolumeMounts, struct {
					Name      string `json:"name"`
					MountPath string `json:"mountPath"`
				}{m.Name, m.MountPath})
			}
		}
		return out
	}
	s.InitContainers = conv(p.Spec.InitContainers)
	s.Containers = conv(p.Spec.Containers)
	return v
}
