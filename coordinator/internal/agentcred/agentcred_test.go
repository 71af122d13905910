package agentcred

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func keyring(t *testing.T, seed byte) *Keyring {
	t.Helper()
	k, err := New([]byte(strings.Repeat(string(rune('a'+seed)), MinKeyBytes)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestMintVerify(t *testing.T) {
	k := keyring(t, 0)
	c := Claims{Kind: KindSession, JobID: "j1", Container: 3, Launch: 1, AgentAttempt: "12.3", Expires: time.Now().Add(time.Hour).Unix()}
	tok := k.Mint(c)
	if !IsCredential(tok) || strings.Contains(tok, " ") {
		t.Fatalf("credential %q", tok)
	}
	got, err := k.Verify(tok)
	if err != nil || got != c {
		t.Fatalf("Verify = %+v, %v; want %+v", got, err, c)
	}
	// Another replica with the same key accepts it.
	if _, err := keyring(t, 0).Verify(tok); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusals(t *testing.T) {
	k := keyring(t, 0)
	valid := Claims{Kind: KindLaunch, JobID: "j1", Container: 0, Expires: time.Now().Add(time.Hour).Unix()}
	tok := k.Mint(valid)
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, Prefix), ".")
	// Claims changed by the holder (another container), with the old signature.
	other := k.Mint(Claims{Kind: KindLaunch, JobID: "j1", Container: 1, Expires: valid.Expires})
	otherPayload, _, _ := strings.Cut(strings.TrimPrefix(other, Prefix), ".")
	for name, bad := range map[string]string{
		"a KBase token":       "ABCDEF0123456789",
		"no signature":        Prefix + payload,
		"altered claims":      Prefix + otherPayload + "." + sig,
		"another key":         keyring(t, 1).Mint(valid),
		"expired":             k.Mint(Claims{Kind: KindLaunch, JobID: "j1", Expires: time.Now().Add(-time.Second).Unix()}),
		"bad base64":          Prefix + "!!!." + sig,
		"unknown kind":        k.Mint(Claims{Kind: "admin", JobID: "j1", Expires: valid.Expires}),
		"empty job":           k.Mint(Claims{Kind: KindLaunch, Expires: valid.Expires}),
		"truncated signature": tok[:len(tok)-3],
	} {
		_, err := k.Verify(bad)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify = %v, want ErrInvalid", name, err)
		}
		if err != nil && strings.Contains(err.Error(), payload) {
			t.Errorf("%s: the error quotes the credential", name)
		}
	}
	if _, err := New(make([]byte, MinKeyBytes-1)); err == nil {
		t.Error("a short key was accepted")
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := New(make([]byte, 32))
	tok := k.Mint(Claims{Kind: KindSession, JobID: "5f0c1d2e-aaaa-bbbb-cccc-0123456789ab", Container: 12, Launch: 0,
		AgentAttempt: "1234.12", Expires: time.Now().Add(time.Hour).Unix()})
	for b.Loop() {
		if _, err := k.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
