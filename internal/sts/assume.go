package sts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// Limits STS enforces.
const (
	maxSessionTags    = 50
	maxTagKeyLen      = 128
	maxTagValueLen    = 256
	maxSessionPolicy  = 2048
	maxPolicyARNs     = 10
	chainedMaxSession = time.Hour
	defaultDuration   = time.Hour
	// packedLimit is what podid counts session policies and tags against.
	// AWS packs them in an undisclosed binary form; podid counts the
	// policy's compact size plus each tag's key and value, which is stricter
	// than AWS for tags and close for policies.
	packedLimit = 2048
)

// AssumeInput is one role assumption, from whichever API asked for it.
type AssumeInput struct {
	Principal   *policy.Principal // matched against the trust policy's Principal
	Caller      *session.Session  // the calling session, for chaining and transitive tags; nil otherwise
	Action      string            // sts:AssumeRole, sts:AssumeRoleWithWebIdentity
	RoleARN     string
	SessionName string
	Duration    time.Duration // 0: one hour
	MaxDuration time.Duration // an extra cap from the caller's API; 0: none
	// ServiceDuration means the calling service sets the lifetime itself
	// (EKS Auth: six hours) whatever the role's MaxSessionDuration says.
	ServiceDuration bool
	Tags            []session.Tag
	TransitiveKeys  []string
	ExternalID      string
	SourceIdentity  string
	Policy          string
	PolicyARNs      []string
	Context         policy.Context // extra condition keys (caller's, the token's)
	// Cluster, Namespace and ServiceAccount say whom an EKS Pod Identity
	// session is for even when session tags are disabled. The local STS
	// ignores them; an upstream STS derives SourceIdentity from them.
	Cluster, Namespace, ServiceAccount string
	// CallerToken is Caller's session token. The local STS does not need it
	// (Caller is already opened); an upstream STS signs the chained call with it.
	CallerToken string
}

// AssumeOutput is the new session.
type AssumeOutput struct {
	Session          *session.Session
	Token            string
	Role             store.Role
	PackedPolicySize *int
}

var roleARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})$`)

// Assume checks the role's trust policy and mints a session.
func (s *Service) Assume(ctx context.Context, in AssumeInput) (*AssumeOutput, error) {
	// Role chaining: the calling role session's own policies must allow
	// sts:AssumeRole on the role. Checked here rather than by each API so
	// that an upstream STS (which does this check itself) replaces it whole.
	if in.Caller != nil && in.Caller.RoleARN != "" {
		if err := s.Authz.AuthorizeContext(ctx, session.PrincipalOf(in.Caller), "sts:AssumeRole", in.RoleARN, nil); err != nil {
			return nil, err
		}
	}
	m := roleARNRE.FindStringSubmatch(in.RoleARN)
	if m == nil {
		return nil, awsproto.ValidationError("1 validation error detected: Value '%s' at 'roleArn' failed to satisfy constraint: Member must be a role ARN (arn:aws:iam::ACCOUNT:role/NAME)", in.RoleARN)
	}
	if err := validateSessionName(in.SessionName); err != nil {
		return nil, err
	}
	now := s.now()

	// Tags: inherited transitive tags first, then the request's own.
	var tags []session.Tag
	var transitive []string
	seen := map[string]bool{}
	if in.Caller != nil {
		for _, k := range in.Caller.TransitiveTagKeys {
			for _, t := range in.Caller.Tags {
				if strings.EqualFold(t.Key, k) {
					tags = append(tags, t)
					transitive = append(transitive, t.Key)
					seen[strings.ToLower(t.Key)] = true
				}
			}
		}
	}
	if err := validateTags(in.Tags, in.TransitiveKeys); err != nil {
		return nil, err
	}
	for _, t := range in.Tags {
		if seen[strings.ToLower(t.Key)] {
			return nil, awsproto.Errorf(http.StatusBadRequest, "InvalidParameterValue",
				"Tag key %q conflicts with a transitive tag inherited from the calling session", t.Key)
		}
		tags = append(tags, t)
	}
	transitive = append(transitive, in.TransitiveKeys...)
	if len(tags) > maxSessionTags {
		return nil, awsproto.ValidationError("1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to %d", maxSessionTags)
	}

	sourceIdentity := in.SourceIdentity
	if in.Caller != nil && in.Caller.SourceIdentity != "" {
		if sourceIdentity != "" && sourceIdentity != in.Caller.SourceIdentity {
			return nil, awsproto.AccessDenied("The source identity of the calling session (%s) cannot be changed", in.Caller.SourceIdentity)
		}
		sourceIdentity = in.Caller.SourceIdentity
	}
	if sourceIdentity != "" && !sourceIdentityRE.MatchString(sourceIdentity) {
		return nil, awsproto.ValidationError("1 validation error detected: Value '%s' at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64", sourceIdentity)
	}

	packed, err := s.checkSessionPolicies(ctx, in.Policy, in.PolicyARNs, tags)
	if err != nil {
		return nil, err
	}

	chained := in.Caller != nil && in.Caller.RoleARN != ""
	duration := in.Duration
	if duration == 0 {
		duration = defaultDuration
	}
	if chained && in.ServiceDuration && duration > chainedMaxSession {
		duration = chainedMaxSession
	}
	if chained && duration > chainedMaxSession {
		return nil, awsproto.ValidationError("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	if in.MaxDuration > 0 && duration > in.MaxDuration {
		duration = in.MaxDuration
	}

	// The role must exist in this account; otherwise the caller learns only
	// that it is not authorized, as in AWS.
	denied := awsproto.AccessDenied("User: %s is not authorized to perform: %s on resource: %s", principalName(in.Principal), in.Action, in.RoleARN)
	if m[1] != s.Account {
		return nil, denied
	}
	tr, err := s.role(ctx, m[2])
	role := tr.role
	if errors.Is(err, store.ErrNotFound) || (err == nil && role.ARN != in.RoleARN) {
		return nil, denied
	}
	if err != nil {
		return nil, fmt.Errorf("sts: get role: %w", err)
	}
	if max := time.Duration(role.MaxSessionDuration) * time.Second; !chained && !in.ServiceDuration && duration > max {
		return nil, awsproto.ValidationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	trust := tr.trust
	if trust == nil {
		return nil, denied
	}
	req := &policy.Request{Principal: in.Principal, Resource: role.ARN, Context: trustContext(in, tags, sourceIdentity, now)}
	actions := []string{in.Action}
	if len(in.Tags) > 0 {
		actions = append(actions, "sts:TagSession")
	}
	if in.SourceIdentity != "" {
		actions = append(actions, "sts:SetSourceIdentity")
	}
	for _, a := range actions {
		req.Action = a
		if d, _ := trust.Evaluate(req); d != policy.Allow {
			return nil, awsproto.AccessDenied("User: %s is not authorized to perform: %s on resource: %s", principalName(in.Principal), a, in.RoleARN)
		}
	}

	sess := &session.Session{
		AccessKeyID:       session.NewAccessKeyID("ASIA"),
		SecretAccessKey:   session.NewSecretAccessKey(),
		Account:           s.Account,
		RoleARN:           role.ARN,
		RoleID:            role.RoleID,
		SessionName:       in.SessionName,
		Tags:              tags,
		TransitiveTagKeys: transitive,
		SourceIdentity:    sourceIdentity,
		Policy:            in.Policy,
		PolicyARNs:        in.PolicyARNs,
		Chained:           chained,
		Expiration:        now.Add(duration).Truncate(time.Second),
	}
	token, err := s.Sealer.Seal(sess)
	if err != nil {
		return nil, fmt.Errorf("sts: seal session: %w", err)
	}
	return &AssumeOutput{Session: sess, Token: token, Role: role, PackedPolicySize: packed}, nil
}

var sourceIdentityRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func principalName(p *policy.Principal) string {
	if p == nil {
		return "anonymous"
	}
	switch {
	case len(p.ARNs) > 0:
		return p.ARNs[0]
	case p.ID != "":
		return p.ID
	}
	return p.Account
}

func trustContext(in AssumeInput, tags []session.Tag, sourceIdentity string, now time.Time) policy.Context {
	c := policy.Context{}
	for k, v := range in.Context {
		c[k] = v
	}
	var keys []string
	for _, t := range tags {
		c.Set("aws:RequestTag/"+t.Key, t.Value)
		keys = append(keys, t.Key)
	}
	if len(keys) > 0 {
		c.Set("aws:TagKeys", keys...)
	}
	if len(in.TransitiveKeys) > 0 {
		c.Set("sts:TransitiveTagKeys", in.TransitiveKeys...)
	}
	if in.ExternalID != "" {
		c.Set("sts:ExternalId", in.ExternalID)
	}
	c.Set("sts:RoleSessionName", in.SessionName)
	if sourceIdentity != "" {
		c.Set("sts:SourceIdentity", sourceIdentity)
	}
	c.Set("aws:CurrentTime", now.UTC().Format(time.RFC3339))
	c.Set("aws:EpochTime", strconv.FormatInt(now.Unix(), 10))
	return c
}

func validateTags(tags []session.Tag, transitive []string) error {
	if len(tags) > maxSessionTags {
		return awsproto.ValidationError("1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to %d", maxSessionTags)
	}
	keys := map[string]bool{}
	for i, t := range tags {
		if len(t.Key) < 1 || len(t.Key) > maxTagKeyLen {
			return awsproto.ValidationError("1 validation error detected: Value '%s' at 'tags.%d.member.key' failed to satisfy constraint: Member must have length between 1 and %d", t.Key, i+1, maxTagKeyLen)
		}
		if len(t.Value) > maxTagValueLen {
			return awsproto.ValidationError("1 validation error detected: Value at 'tags.%d.member.value' failed to satisfy constraint: Member must have length less than or equal to %d", i+1, maxTagValueLen)
		}
		if !tagRE.MatchString(t.Key) || !tagValueRE.MatchString(t.Value) {
			return awsproto.ValidationError("1 validation error detected: Value at 'tags.%d.member' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*", i+1)
		}
		if strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterValue", "Tag key %q uses the reserved prefix aws:", t.Key)
		}
		lk := strings.ToLower(t.Key)
		if keys[lk] {
			return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterValue", "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
		}
		keys[lk] = true
	}
	for _, k := range transitive {
		if !keys[strings.ToLower(k)] {
			return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterValue", "The specified transitive tag key %q must be included in the requested tags.", k)
		}
	}
	return nil
}

var (
	tagRE      = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$`)
	tagValueRE = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
)

// checkSessionPolicies validates the session policy and policy ARNs and
// returns the packed size percentage (nil when no policy or tag is passed).
func (s *Service) checkSessionPolicies(ctx context.Context, doc string, arns []string, tags []session.Tag) (*int, error) {
	if doc != "" {
		if len(doc) > maxSessionPolicy {
			return nil, awsproto.ValidationError("1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to %d", maxSessionPolicy)
		}
		if _, err := policy.Parse(doc, policy.Identity); err != nil {
			return nil, awsproto.Errorf(http.StatusBadRequest, "MalformedPolicyDocument", "%s", err.Error())
		}
	}
	if len(arns) > maxPolicyARNs {
		return nil, awsproto.ValidationError("1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to %d", maxPolicyARNs)
	}
	for _, arn := range arns {
		if !strings.HasPrefix(arn, "arn:aws:iam::") || !strings.Contains(arn, ":policy/") {
			return nil, awsproto.ValidationError("1 validation error detected: Value '%s' at 'policyArns' failed to satisfy constraint: Member must be a policy ARN", arn)
		}
	}
	if doc == "" && len(arns) == 0 && len(tags) == 0 {
		return nil, nil
	}
	size := 0
	if doc != "" {
		size += policy.Size(doc)
	}
	for _, arn := range arns {
		size += len(arn)
	}
	for _, t := range tags {
		size += len(t.Key) + len(t.Value)
	}
	pct := (size*100 + packedLimit - 1) / packedLimit
	if pct > 100 {
		return nil, awsproto.Errorf(http.StatusBadRequest, "PackedPolicyTooLarge", "Packed policy consumes %d%% of allotted space, please use smaller policy.", pct)
	}
	return &pct, nil
}

func (s *Service) assumeRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleARN, err := form.Required("RoleArn")
	if err != nil {
		return nil, err
	}
	name, err := form.Required("RoleSessionName")
	if err != nil {
		return nil, err
	}
	secs, err := form.Int("DurationSeconds", 0, 900, 43200)
	if err != nil {
		return nil, err
	}
	externalID := form.Get("ExternalId")
	if form.Has("ExternalId") && (len(externalID) < 2 || len(externalID) > 1224) {
		return nil, awsproto.ValidationError("1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must have length between 2 and 1224")
	}
	in := AssumeInput{
		Principal:      awsPrincipal(caller),
		Action:         "sts:AssumeRole",
		RoleARN:        roleARN,
		SessionName:    name,
		Duration:       time.Duration(secs) * time.Second,
		Tags:           tagsOf(form.KeyValues("Tags")),
		TransitiveKeys: form.Members("TransitiveTagKeys"),
		ExternalID:     externalID,
		SourceIdentity: form.Get("SourceIdentity"),
		Policy:         form.Get("Policy"),
		Context:        callerContext(caller),
	}
	if caller.Session != nil {
		in.Caller = caller.Session
	}
	for i := 1; ; i++ {
		arn := form.Get("PolicyArns.member." + strconv.Itoa(i) + ".arn")
		if arn == "" {
			break
		}
		in.PolicyARNs = append(in.PolicyARNs, arn)
	}
	// The caller's own policies must allow sts:AssumeRole on the role too
	// (Assume checks it for role sessions).
	if !caller.IsRoleSession() {
		if err := s.Authz.AuthorizeContext(ctx, caller, "sts:AssumeRole", roleARN, nil); err != nil {
			return nil, err
		}
	}
	out, err := s.Assume(ctx, in)
	if err != nil {
		return nil, err
	}
	return assumeRoleResult{
		Credentials:             credentialsOf(out.Session, out.Token),
		AssumedRoleUser:         assumedRoleUserXML{AssumedRoleId: out.Session.RoleID + ":" + out.Session.SessionName, Arn: out.Session.AssumedRoleARN()},
		PackedPolicySize:        out.PackedPolicySize,
		SessionTokenSize:        len(out.Token),
		SessionTokenUtilization: out.PackedPolicySize,
		SourceIdentity:          out.Session.SourceIdentity,
	}, nil
}

// awsPrincipal describes a signed caller for trust-policy matching.
func awsPrincipal(p *session.Principal) *policy.Principal {
	pp := &policy.Principal{Type: "AWS", Account: p.Account, ARNs: []string{p.ARN}}
	if p.IsRoleSession() {
		pp.ARNs = append(pp.ARNs, p.Session.RoleARN)
	}
	return pp
}

func callerContext(p *session.Principal) policy.Context {
	c := policy.Context{}
	c.Set("aws:PrincipalAccount", p.Account)
	c.Set("aws:userid", p.UserID)
	if p.IsRoleSession() {
		c.Set("aws:PrincipalArn", p.Session.RoleARN)
		for _, t := range p.Session.Tags {
			c.Set("aws:PrincipalTag/"+t.Key, t.Value)
		}
	} else {
		c.Set("aws:PrincipalArn", p.ARN)
	}
	return c
}

func tagsOf(kvs []awsproto.KeyValue) []session.Tag {
	tags := make([]session.Tag, len(kvs))
	for i, kv := range kvs {
		tags[i] = session.Tag{Key: kv.Key, Value: kv.Value}
	}
	return tags
}

func (s *Service) getSessionToken(_ context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	if caller.Session != nil {
		return nil, awsproto.AccessDenied("Cannot call GetSessionToken with session credentials")
	}
	// Root's sessions are capped at one hour, as in AWS.
	secs, err := form.Int("DurationSeconds", 3600, 900, 129600)
	if err != nil {
		return nil, err
	}
	if caller.IsRoot() && secs > 3600 {
		secs = 3600
	}
	sess := &session.Session{
		AccessKeyID:     session.NewAccessKeyID("ASIA"),
		SecretAccessKey: session.NewSecretAccessKey(),
		Account:         caller.Account,
		PrincipalARN:    caller.ARN,
		Expiration:      s.now().Add(time.Duration(secs) * time.Second).Truncate(time.Second),
	}
	token, err := s.Sealer.Seal(sess)
	if err != nil {
		return nil, fmt.Errorf("sts: seal session: %w", err)
	}
	return getSessionTokenResult{Credentials: credentialsOf(sess, token)}, nil
}
