package upstream

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/awsproto"
)

// ValidateRole checks with iam:GetRole that roleARN exists (--validate-roles).
// IAM answers GetRole only for the caller's own account, so roles in other
// accounts (the usual case for targetRoleArn) pass unchecked: STS will say
// at the first AssumeRole whether they can be assumed.
func (a *Assumer) ValidateRole(ctx context.Context, field, roleARN string) error {
	id, err := a.Identity(ctx)
	if err != nil {
		return awsproto.Errorf(http.StatusServiceUnavailable, "ServiceUnavailableException", "--validate-roles: the server's own AWS identity is unknown: %v", err)
	}
	parts := strings.SplitN(roleARN, ":", 6)
	own := strings.SplitN(id, ":", 6)
	if len(parts) < 6 || len(own) < 6 || parts[4] != own[4] {
		return nil
	}
	name := roleARN[strings.LastIndex(roleARN, "/")+1:]
	ctx, cancel := context.WithTimeout(ctx, a.CallTimeout)
	defer cancel()
	out, err := iam.NewFromConfig(a.cfg).GetRole(ctx, &iam.GetRoleInput{RoleName: &name})
	var ae smithy.APIError
	switch {
	case err == nil && aws.ToString(out.Role.Arn) != roleARN:
		return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterException", "%s %s does not exist: the role %s is %s (check its path)", field, roleARN, name, aws.ToString(out.Role.Arn))
	case err == nil:
		return nil
	case errors.As(err, &ae) && ae.ErrorCode() == "NoSuchEntity":
		return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterException", "%s %s does not exist (iam:GetRole: %s)", field, roleARN, ae.ErrorMessage())
	case errors.As(err, &ae) && ae.ErrorCode() == "AccessDenied":
		return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterException", "%s %s cannot be validated: the server's identity %s may not call iam:GetRole on it (grant it, or run without --validate-roles)", field, roleARN, id)
	}
	return awsproto.Errorf(http.StatusServiceUnavailable, "ServiceUnavailableException", "--validate-roles: iam:GetRole %s: %v", roleARN, err)
}
