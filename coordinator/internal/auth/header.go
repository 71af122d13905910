package auth

import (
	"strings"

	"github.com/kbase/cts/coordinator/internal/ctserr"
)

// The CTS Authorization header messages, both with app code 10030.
const (
	msgNoBearerToken = "Authorization header requires Bearer scheme followed by token"
	msgNotBearer     = "Authorization header requires Bearer scheme"
)

// ParseAuthHeader returns the token of a CTS Authorization header, "Bearer <token>" with the
// scheme in any case. Like FastAPI's get_authorization_scheme_param, the scheme ends at the
// first space; the token is then trimmed. A header without a scheme or without a token
// (including an empty header) gives "Authorization header requires Bearer scheme followed by
// token", another scheme "Authorization header requires Bearer scheme", both as
// *ctserr.Error code 10030 (401). Whether an absent header is an error is the caller's
// decision (code 10010 on routes that need a user).
func ParseAuthHeader(h string) (string, error) {
	scheme, token, _ := strings.Cut(strings.TrimSpace(h), " ")
	token = strings.TrimSpace(token)
	if scheme == "" || token == "" {
		return "", ctserr.New(ctserr.CodeInvalidAuthHeader, msgNoBearerToken)
	}
	if !strings.EqualFold(scheme, "bearer") {
		return "", ctserr.New(ctserr.CodeInvalidAuthHeader, msgNotBearer)
	}
	return token, nil
}
