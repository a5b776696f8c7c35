package api

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
)

// Token is one line of the tokens file: a caller's name, role, and either
// the SHA-256 of its bearer token (only the hash is ever stored) or, with
// "cert", the promise that a client certificate whose CN is Name (signed by
// api.tls.client-ca) identifies the caller without a token.
type Token struct {
	Name string
	Role lifeboat.Role
	// Hash is the SHA-256 of the bearer token; zero for a cert line.
	Hash [sha256.Size]byte
	// Cert: the caller is identified by its client certificate's CN.
	Cert bool
	// Where is file:line, for messages.
	Where string
}

// Tokens are the callers the API knows.
type Tokens []Token

// ParseRole checks a role name.
func ParseRole(s string) (lifeboat.Role, error) {
	switch r := lifeboat.Role(s); r {
	case lifeboat.RoleViewer, lifeboat.RoleOperator, lifeboat.RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("role %q is not a role: use viewer, operator or admin", s)
}

// ParseTokens reads a tokens file: one caller per line,
//
//	<name> <role> sha256:<64 hex digits of the token's SHA-256>
//	<name> <role> cert
//
// Blank lines and lines starting with # are ignored. Errors say file:line
// and how to fix the line; all of them are reported at once.
func ParseTokens(file string, r io.Reader) (Tokens, error) {
	var out Tokens
	var errs []error
	names := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s:%d", file, n)
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			bad("want 3 fields \"<name> <role> sha256:<hex>\", found %d; make a line with 'lifeboat api token --name NAME --role ROLE'", len(f))
			continue
		}
		t := Token{Name: f[0], Where: where}
		role, err := ParseRole(f[1])
		if err != nil {
			bad("%v", err)
			continue
		}
		t.Role = role
		switch {
		case f[2] == "cert":
			t.Cert = true
		case strings.HasPrefix(f[2], "sha256:"):
			h := strings.TrimPrefix(f[2], "sha256:")
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != sha256.Size {
				bad("%q is not 64 hex digits after sha256: (the SHA-256 of the token, e.g. from 'printf %%s TOKEN | sha256sum')", truncate(h, 20))
				continue
			}
			copy(t.Hash[:], b)
		default:
			// Not echoed: it may be the token itself.
			bad("third field must be sha256:<hex of the token's SHA-256> or cert; never write the token itself here")
			continue
		}
		if prev, ok := names[t.Name]; ok {
			bad("name %q is already used at %s: each caller gets one line, so the audit trail says who acted", t.Name, prev)
			continue
		}
		names[t.Name] = where
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: reading: %w", file, err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// LoadTokens reads and parses a tokens file.
func LoadTokens(path string) (Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api.tokens: %w (create it with 'lifeboat api token --name NAME --role ROLE >> %s')", err, path)
	}
	defer f.Close()
	return ParseTokens(path, f)
}

// Match returns the caller whose hash is the bearer token's. Every line is
// compared, in constant time, so the time taken says nothing about which
// hashes are close.
func (ts Tokens) Match(bearer string) (Token, bool) {
	h := sha256.Sum256([]byte(bearer))
	var found Token
	ok := 0
	for _, t := range ts {
		if t.Cert {
			continue
		}
		eq := subtle.ConstantTimeCompare(h[:], t.Hash[:])
		if eq == 1 {
			found = t
		}
		ok |= eq
	}
	return found, ok == 1
}

// Cert returns the caller a client certificate's CN names, if a cert line
// names it.
func (ts Tokens) Cert(cn string) (Token, bool) {
	for _, t := range ts {
		if t.Cert && t.Name == cn {
			return t, true
		}
	}
	return Token{}, false
}

// NewToken makes a random bearer token for name and role, and the line to
// append to the tokens file. The token is shown once; only its hash is kept.
func NewToken(name string, role lifeboat.Role) (token, line string, err error) {
	if name == "" || strings.ContainsAny(name, " \t\n#") {
		return "", "", fmt.Errorf("name %q: give a name without spaces or '#', e.g. alice or ci-drills", name)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return "", "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = "lbt_" + hex.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, fmt.Sprintf("%s %s sha256:%s", name, role, hex.EncodeToString(h[:])), nil
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
