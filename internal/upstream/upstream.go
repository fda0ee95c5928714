// Package upstream is the Assumer of `podid server --upstream aws`: instead
// of minting credentials itself, podid asks the real STS AssumeRole for each
// pod's role session, signed with the server's own AWS identity (the SDK's
// standard credential chain), and hands the real credentials back through
// EKS Auth unchanged.
package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/sts"
)

// Durations STS allows.
const (
	// maxDuration is the longest a role session may be asked for (the role's
	// MaxSessionDuration must allow it; otherwise podid falls back to 1 h).
	maxDuration = 6 * time.Hour
	// chainedDuration is STS's hard cap on role chaining: a server that runs
	// as a role session itself, and every target-role session, get 1 h.
	chainedDuration = time.Hour
)

// Cache windows.
const (
	// reuseWindow: a cached session is handed out again only while this much
	// validity remains, so the SDKs (which refresh 5–15 minutes before
	// expiry) never receive credentials they would refresh at once.
	reuseWindow = 15 * time.Minute
	// staleWindow: when STS fails, a cached session that still has this much
	// validity is served rather than an error.
	staleWindow = 5 * time.Minute
)

// Retry budget: the agent gives one EKS Auth attempt 5 s, and a target-role
// chain makes two STS calls, so each call gets at most 2 s in all.
const (
	DefaultCallTimeout = 2 * time.Second
	maxAttempts        = 3
	backoffBase        = 100 * time.Millisecond
	backoffMax         = 500 * time.Millisecond
)

// Assumer calls the real STS. It implements eks.Assumer.
type Assumer struct {
	cfg    aws.Config
	client *awssts.Client
	log    *slog.Logger
	now    func() time.Time
	// CallTimeout bounds one STS call with its retries.
	CallTimeout time.Duration

	idMu     sync.Mutex
	identity string    // the server's own ARN, once known
	idFailed time.Time // last failed lookup: not retried for a while

	mu        sync.Mutex
	cache     map[string]*entry
	lastSweep time.Time

	// slots bounds concurrent STS calls across all sessions, so a cold
	// start of a large fleet queues here (within each call's budget)
	// instead of all at once at STS.
	slots chan struct{}
}

// MaxConcurrentCalls bounds concurrent AssumeRole calls per server.
const MaxConcurrentCalls = 32

// entry is one role session: the last good credentials and, while a call is
// under way, the flight every concurrent request for the key waits on.
type entry struct {
	done     chan struct{} // closed when the flight ends
	out      *sts.AssumeOutput
	err      error
	failedAt time.Time
}

// failureHold is how long a failed call's answer stands for its key, so an
// STS outage or throttling is not met with a new call per request.
const failureHold = 2 * time.Second

// New loads the server's AWS configuration from the standard chain. region
// is used when the environment names none. AWS_ENDPOINT_URL_STS and
// AWS_ENDPOINT_URL are honoured by the SDK.
func New(ctx context.Context, region string, log *slog.Logger) (*Assumer, error) {
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithDefaultRegion(region),
		config.WithRetryer(newRetryer))
	if err != nil {
		return nil, fmt.Errorf("upstream: load AWS config: %w", err)
	}
	return NewFromConfig(cfg, log), nil
}

// NewFromConfig builds an Assumer on an SDK config.
func NewFromConfig(cfg aws.Config, log *slog.Logger) *Assumer {
	if log == nil {
		log = slog.Default()
	}
	return &Assumer{
		cfg:         cfg,
		client:      awssts.NewFromConfig(cfg),
		log:         log,
		now:         time.Now,
		CallTimeout: DefaultCallTimeout,
		cache:       map[string]*entry{},
		slots:       make(chan struct{}, MaxConcurrentCalls),
	}
}

// newRetryer retries throttling, 5xx and connection errors a bounded number
// of times with full-jitter exponential backoff. The SDK's retry token
// bucket is off: during an outage it would turn into instant failures for
// requests the cache could otherwise have absorbed by waiting.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.RateLimiter = ratelimit.None
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			d := backoffBase << attempt
			if d > backoffMax {
				d = backoffMax
			}
			return rand.N(d) + 1, nil
		})
	})
}

// Identity returns the ARN the server acts as (sts:GetCallerIdentity),
// asked once and remembered.
func (a *Assumer) Identity(ctx context.Context) (string, error) {
	a.idMu.Lock()
	defer a.idMu.Unlock()
	if a.identity != "" {
		return a.identity, nil
	}
	// During an outage every flight would otherwise wait here in turn.
	if a.now().Sub(a.idFailed) < 30*time.Second {
		return "", errors.New("upstream: GetCallerIdentity failed recently")
	}
	ctx, cancel := context.WithTimeout(ctx, a.CallTimeout)
	defer cancel()
	out, err := a.client.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		a.idFailed = a.now()
		return "", fmt.Errorf("upstream: GetCallerIdentity: %w", err)
	}
	a.identity = aws.ToString(out.Arn)
	return a.identity, nil
}

// PrincipalARN is what a trust policy names for the caller arn: the role
// of an assumed-role session, else the ARN itself. The role's path is not
// in an assumed-role ARN; a role with a path must be named with it.
func PrincipalARN(arn string) string {
	// arn:aws:sts::A:assumed-role/NAME/SESSION → arn:aws:iam::A:role/NAME
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) == 6 && parts[2] == "sts" && strings.HasPrefix(parts[5], "assumed-role/") {
		rest := strings.TrimPrefix(parts[5], "assumed-role/")
		name, _, _ := strings.Cut(rest, "/")
		return "arn:" + parts[1] + ":iam::" + parts[4] + ":role/" + name
	}
	return arn
}

// Assume implements eks.Assumer: one role session, from the cache while it
// has at least 15 minutes left, else from STS (one call per key at a time).
func (a *Assumer) Assume(ctx context.Context, in sts.AssumeInput) (*sts.AssumeOutput, error) {
	key := cacheKey(in)
	now := a.now()

	a.mu.Lock()
	a.sweep(now)
	e := a.cache[key]
	if e != nil {
		select {
		case <-e.done:
			if e.out != nil && e.out.Session.Expiration.Sub(now) >= reuseWindow {
				a.mu.Unlock()
				return e.out, nil
			}
			if e.err == nil || now.Sub(e.failedAt) >= failureHold {
				e = a.startFlight(key, in, e.out)
			}
		default: // a call for this key is under way: wait for it
		}
	} else {
		e = a.startFlight(key, in, nil)
	}
	a.mu.Unlock()

	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, unavailable("the request ended while waiting for STS: %v", ctx.Err())
	}
	if e.err != nil {
		// Keep serving a cached session through an STS outage while the SDKs
		// would still accept it; never after STS said no.
		if e.out != nil && e.out.Session.Expiration.Sub(a.now()) >= staleWindow && !isDenied(e.err) {
			a.log.Warn("upstream STS failed; serving the cached session", "role", in.RoleARN, "error", e.err)
			return e.out, nil
		}
		return nil, e.err
	}
	return e.out, nil
}

// startFlight starts the STS call for key; prev is the last good session,
// kept as a fallback. a.mu is held.
func (a *Assumer) startFlight(key string, in sts.AssumeInput, prev *sts.AssumeOutput) *entry {
	e := &entry{done: make(chan struct{}), out: prev}
	a.cache[key] = e
	go func() {
		// The call outlives the request that started it: others wait on it.
		ctx, cancel := context.WithTimeout(context.Background(), a.callBudget(in))
		defer cancel()
		out, err := a.assume(ctx, in)
		a.mu.Lock()
		if err == nil {
			e.out = out
		} else {
			e.failedAt = a.now()
		}
		e.err = err
		a.mu.Unlock()
		close(e.done)
	}()
	return e
}

func (a *Assumer) callBudget(sts.AssumeInput) time.Duration {
	if a.CallTimeout > 0 {
		return a.CallTimeout
	}
	return DefaultCallTimeout
}

// sweep drops sessions past expiry, at most once a minute. a.mu is held.
func (a *Assumer) sweep(now time.Time) {
	if now.Sub(a.lastSweep) < time.Minute {
		return
	}
	a.lastSweep = now
	for k, e := range a.cache {
		select {
		case <-e.done:
			if e.out == nil || !now.Before(e.out.Session.Expiration) {
				delete(a.cache, k)
			}
		default:
		}
	}
}

// uuidSuffix is the per-request part of eks's session names.
var uuidSuffix = regexp.MustCompile(`-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// cacheKey names a role session: two requests may share credentials only
// when everything that decides what the credentials may do and whom they
// are attributed to is equal — role, tags (with the pod's name and UID),
// transitive keys, session policy, external ID, source identity, the
// calling session (for a target role), and the session name but for its
// random UUID. So the same pod asking again (agent restarts, SDK retries,
// container restarts) reuses one session; two pods never share one.
func cacheKey(in sts.AssumeInput) string {
	k := struct {
		Role, Name, Policy, ExternalID, Subject, Caller string
		Tags                                            []session.Tag
		Transitive, PolicyARNs                          []string
		Duration                                        time.Duration
	}{
		Role: in.RoleARN, Name: uuidSuffix.ReplaceAllString(in.SessionName, ""), Policy: in.Policy, ExternalID: in.ExternalID,
		Subject: sourceIdentity(in), Tags: in.Tags, Transitive: in.TransitiveKeys, PolicyARNs: in.PolicyARNs, Duration: in.Duration,
	}
	if in.Caller != nil {
		k.Caller = in.Caller.AccessKeyID
	}
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sourceIdentity is the stable name of whom a pod session is for:
// SERVICEACCOUNT@NAMESPACE.CLUSTER, e.g. "app@team-a.prod" (the characters
// STS allows, [\w+=,.@-], 2 to 64 of them). A namespace has no dots and a
// service account no "@", so it reads back unambiguously; one too long
// keeps its first 55 characters and a hash of the whole. It is per service
// account, not per pod: the pod is in the session name and tags.
func sourceIdentity(in sts.AssumeInput) string {
	if in.Cluster == "" || in.Namespace == "" || in.ServiceAccount == "" {
		return in.SourceIdentity
	}
	s := in.ServiceAccount + "@" + in.Namespace + "." + in.Cluster
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_+=,.@-", r) {
			return r
		}
		return '-'
	}, s)
	if len(s) > 64 {
		sum := sha256.Sum256([]byte(s))
		s = s[:55] + "-" + hex.EncodeToString(sum[:4])
	}
	return s
}

// assume makes the AssumeRole call (and its 1-hour retry).
func (a *Assumer) assume(ctx context.Context, in sts.AssumeInput) (*sts.AssumeOutput, error) {
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		return nil, unavailable("too many AssumeRole calls in flight for %s: %v", in.RoleARN, ctx.Err())
	}
	req := &awssts.AssumeRoleInput{
		RoleArn:         aws.String(in.RoleARN),
		RoleSessionName: aws.String(in.SessionName),
	}
	for _, t := range in.Tags {
		req.Tags = append(req.Tags, ststypes.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)})
	}
	req.TransitiveTagKeys = in.TransitiveKeys
	if in.Policy != "" {
		req.Policy = aws.String(in.Policy)
	}
	for _, arn := range in.PolicyARNs {
		req.PolicyArns = append(req.PolicyArns, ststypes.PolicyDescriptorType{Arn: aws.String(arn)})
	}
	if in.ExternalID != "" {
		req.ExternalId = aws.String(in.ExternalID)
	}
	var opts []func(*awssts.Options)
	duration := maxDuration
	if in.Duration > 0 && in.Duration < duration {
		duration = in.Duration
	}
	if in.Caller != nil {
		// A target role: signed by the first session, which STS treats as
		// role chaining (1 h). Its source identity carries over by itself, so
		// the target's trust needs no sts:SetSourceIdentity.
		c := in.Caller
		opts = append(opts, func(o *awssts.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, in.CallerToken)
		})
		duration = min(duration, chainedDuration)
	} else {
		if si := sourceIdentity(in); si != "" {
			req.SourceIdentity = aws.String(si)
		}
		if id, err := a.Identity(ctx); err == nil && strings.Contains(id, ":assumed-role/") {
			duration = min(duration, chainedDuration)
		}
	}
	req.DurationSeconds = aws.Int32(int32(duration / time.Second))
	out, err := a.client.AssumeRole(ctx, req, opts...)
	if err != nil && duration > chainedDuration && isDurationError(err) {
		// The role's MaxSessionDuration (or chaining we did not detect)
		// allows less: 1 h is always allowed.
		req.DurationSeconds = aws.Int32(int32(chainedDuration / time.Second))
		out, err = a.client.AssumeRole(ctx, req, opts...)
	}
	if err != nil {
		return nil, a.mapError(ctx, err, in)
	}
	return convert(in, req, out), nil
}

func isDurationError(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "ValidationError" &&
		(strings.Contains(ae.ErrorMessage(), "MaxSessionDuration") || strings.Contains(ae.ErrorMessage(), "DurationSeconds"))
}

func convert(in sts.AssumeInput, req *awssts.AssumeRoleInput, out *awssts.AssumeRoleOutput) *sts.AssumeOutput {
	c := out.Credentials
	sess := &session.Session{
		AccessKeyID:       aws.ToString(c.AccessKeyId),
		SecretAccessKey:   aws.ToString(c.SecretAccessKey),
		RoleARN:           in.RoleARN,
		SessionName:       in.SessionName,
		Tags:              in.Tags,
		TransitiveTagKeys: in.TransitiveKeys,
		SourceIdentity:    aws.ToString(out.SourceIdentity),
		Policy:            in.Policy,
		PolicyARNs:        in.PolicyARNs,
		Chained:           in.Caller != nil,
		Expiration:        aws.ToTime(c.Expiration),
	}
	if parts := strings.SplitN(in.RoleARN, ":", 6); len(parts) == 6 {
		sess.Account = parts[4]
	}
	if u := out.AssumedRoleUser; u != nil {
		// arn:aws:sts::A:assumed-role/NAME/SESSION: the session name as STS
		// recorded it; AROA…:SESSION: the role's unique ID.
		arn := aws.ToString(u.Arn)
		if i := strings.LastIndex(arn, "/"); i >= 0 {
			sess.SessionName = arn[i+1:]
		}
		sess.RoleID, _, _ = strings.Cut(aws.ToString(u.AssumedRoleId), ":")
	}
	if sess.SourceIdentity == "" {
		sess.SourceIdentity = aws.ToString(req.SourceIdentity)
	}
	return &sts.AssumeOutput{Session: sess, Token: aws.ToString(c.SessionToken)}
}

func isDenied(err error) bool {
	var ae *awsproto.Error
	return errors.As(err, &ae) && ae.Code == "AccessDeniedException"
}

func unavailable(format string, args ...any) error {
	return awsproto.Errorf(http.StatusServiceUnavailable, "ServiceUnavailableException", "podid could not reach AWS STS: "+format, args...)
}

// mapError turns an STS failure into the EKS Auth exception the agent and
// the SDKs understand, naming what to fix.
func (a *Assumer) mapError(ctx context.Context, err error, in sts.AssumeInput) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		// Connection refused, timeouts, the retry budget spent on 5xx.
		return unavailable("AssumeRole %s: %v", in.RoleARN, err)
	}
	code, msg := ae.ErrorCode(), ae.ErrorMessage()
	switch code {
	case "AccessDenied":
		principal := "podid's own role"
		if in.Caller != nil {
			principal = in.Caller.RoleARN
		} else if id, ierr := a.Identity(ctx); ierr == nil {
			principal = PrincipalARN(id)
		}
		actions := "sts:AssumeRole, sts:TagSession and sts:SetSourceIdentity"
		if in.Caller != nil {
			actions = "sts:AssumeRole and sts:TagSession"
			if in.ExternalID != "" {
				actions += " with the condition sts:ExternalId = the association's externalId"
			}
		}
		return awsproto.Errorf(http.StatusBadRequest, "AccessDeniedException",
			"STS denied AssumeRole on %s: %s. Its trust policy must have a statement allowing the principal %s the actions %s (podid trust-policy prints it)",
			in.RoleARN, msg, principal, actions)
	case "ValidationError", "MalformedPolicyDocument", "PackedPolicyTooLarge", "InvalidParameterValue":
		return awsproto.Errorf(http.StatusBadRequest, code, "%s", msg)
	case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
		return awsproto.Errorf(http.StatusTooManyRequests, "ThrottlingException", "AWS STS is throttling podid's AssumeRole calls: %s", msg)
	case "RegionDisabledException":
		return awsproto.Errorf(http.StatusServiceUnavailable, "ServiceUnavailableException", "AWS STS is not activated in this region: %s", msg)
	case "ExpiredToken", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException":
		return awsproto.Errorf(http.StatusServiceUnavailable, "ServiceUnavailableException", "AWS STS rejected podid server's own credentials (%s): %s", code, msg)
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return unavailable("%s: %s", code, msg)
	}
	return awsproto.Errorf(http.StatusInternalServerError, "InternalServerException", "AWS STS AssumeRole %s failed: %s: %s", in.RoleARN, code, msg)
}
