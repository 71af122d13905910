// Package agentcred mints and verifies the per-attempt agent credentials: the bearer tokens an
// agent presents to the coordinator instead of the site-wide executor token, each bound to one
// container of one launch of one job (or to one site's staging of one reference data record)
// and valid for a limited time.
//
// Two kinds exist:
//
//   - a launch credential, minted when the coordinator hands a job to a launcher, one per
//     container, and passed by the launcher to that container's agent (the local launcher in
//     the agent's environment, HTCondor as a file transferred with the proc). It lives as
//     long as the container may wait in the backend's queue and run.
//   - a session credential, minted when an agent's hello is accepted and renewed over the
//     websocket while the session lasts; it is also bound to the agent attempt that said hello
//     (HTCondor "cluster.proc", ...), and is short-lived (Keyring's session TTL): what an agent
//     keeps on reconnecting.
//
// A credential is "ctsagent1." + base64url(JSON claims) + "." + base64url(HMAC-SHA256 of the
// first two parts), with a key every coordinator replica shares (from a file, or kept in
// MongoDB: nothing replica-local), so an agent may reconnect to any replica. Verification is
// stateless; what a credential may do is decided by its caller against the stored job (the
// launch must be the job's current one, the container not finished, ...). Credentials are
// secrets: never log them, never put them in a submit description or an error.
package agentcred

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Prefix starts every credential; it tells credentials from KBase tokens.
const Prefix = "ctsagent1."

// MinKeyBytes is the shortest accepted key.
const MinKeyBytes = 32

// Kind is what a credential is for.
type Kind string

// The kinds.
const (
	KindLaunch  Kind = "launch"
	KindSession Kind = "session"
)

// Claims are what a credential binds.
type Claims struct {
	// Kind is KindLaunch or KindSession.
	Kind Kind `json:"k"`
	// JobID is the CTS job, or the launcher job ID of a reference data staging
	// ("refdata-<id>").
	JobID string `json:"j"`
	// Container is the container number (0 for a staging).
	Container int `json:"c"`
	// Launch is the launch attempt the credential was minted for (jobs.Launch.Attempt, or the
	// staging attempt of the site).
	Launch int `json:"l"`
	// Site is the site of a staging (empty for jobs).
	Site string `json:"s,omitempty"`
	// AgentAttempt is the agent attempt of a session credential.
	AgentAttempt string `json:"a,omitempty"`
	// Expires is when the credential stops being accepted (Unix seconds).
	Expires int64 `json:"x"`
}

// ExpiresAt is Expires as a time.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expires, 0).UTC() }

// ErrInvalid is wrapped by every refusal of Verify: malformed, signed with another key, or
// expired. The message says which without quoting the credential.
var ErrInvalid = errors.New("invalid agent credential")

// Keyring mints and verifies credentials with one key. It is safe for concurrent use.
type Keyring struct {
	key []byte
	now func() time.Time
}

// New returns a Keyring for key (at least MinKeyBytes bytes).
func New(key []byte) (*Keyring, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("agent credential key: %d bytes, want at least %d", len(key), MinKeyBytes)
	}
	return &Keyring{key: append([]byte(nil), key...), now: time.Now}, nil
}

// IsCredential reports whether token has the credential form (it may still be invalid).
func IsCredential(token string) bool { return strings.HasPrefix(token, Prefix) }

var b64 = base64.RawURLEncoding

// Mint returns the credential of c.
func (k *Keyring) Mint(c Claims) string {
	payload, _ := json.Marshal(c) // a struct of strings and integers always marshals
	body := Prefix + b64.EncodeToString(payload)
	return body + "." + b64.EncodeToString(k.sign(body))
}

func (k *Keyring) sign(body string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// Verify checks token's signature and expiry and returns its claims; refusals wrap
// ErrInvalid.
func (k *Keyring) Verify(token string) (Claims, error) {
	if !IsCredential(token) {
		return Claims{}, fmt.Errorf("%w: not a credential", ErrInvalid)
	}
	payload, sig, ok := strings.Cut(strings.TrimPrefix(token, Prefix), ".")
	if !ok {
		return Claims{}, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	body := Prefix + payload
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, k.sign(body)) {
		return Claims{}, fmt.Errorf("%w: bad signature (minted with another key, or altered)", ErrInvalid)
	}
	raw, err := b64.DecodeString(payload)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || (c.Kind != KindLaunch && c.Kind != KindSession) || c.JobID == "" {
		return Claims{}, fmt.Errorf("%w: malformed claims", ErrInvalid)
	}
	if !k.now().Before(c.ExpiresAt()) {
		return Claims{}, fmt.Errorf("%w: expired at %s", ErrInvalid, c.ExpiresAt().Format(time.RFC3339))
	}
	return c, nil
}

// LaunchCredentials mints the launch credentials of containers 0 to n-1 of launch attempt
// launch of jobID, valid until expires.
func (k *Keyring) LaunchCredentials(jobID string, launch, n int, expires time.Time) []string {
	out := make([]string, n)
	for c := range out {
		out[c] = k.Mint(Claims{Kind: KindLaunch, JobID: jobID, Container: c, Launch: launch, Expires: expires.Unix()})
	}
	return out
}

// StagingCredential mints the launch credential of one site's staging of reference data:
// launcher job ID jobID ("refdata-<id>"), staging attempt launch, valid until expires.
func (k *Keyring) StagingCredential(jobID, site string, launch int, expires time.Time) string {
	return k.Mint(Claims{Kind: KindLaunch, JobID: jobID, Site: site, Launch: launch, Expires: expires.Unix()})
}
