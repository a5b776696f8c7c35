package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/lifeboat-dr/lifeboat"
)

// Identity is who calls, as the audit trail and the journal record it.
type Identity struct {
	// Name is the tokens file's name for the caller.
	Name string        `json:"name"`
	Role lifeboat.Role `json:"role"`
	// Via says how the caller was identified: "token", "cert", or
	// "token+cert" (a token over mutual TLS; the token decides the name
	// and role, the certificate's CN is recorded beside it).
	Via string `json:"via"`
	// CertCN is the verified client certificate's common name, if any.
	CertCN string `json:"cert_cn,omitempty"`
}

// Who is the identity in one string for the journal and the audit trail.
func (id Identity) Who() string {
	if id.CertCN != "" && id.CertCN != id.Name {
		return fmt.Sprintf("%s (cert CN=%s)", id.Name, id.CertCN)
	}
	return id.Name
}

// rank orders roles: each may do what the ones below it may.
func rank(r lifeboat.Role) int {
	switch r {
	case lifeboat.RoleViewer:
		return 1
	case lifeboat.RoleOperator:
		return 2
	case lifeboat.RoleAdmin:
		return 3
	}
	return 0
}

// Allows reports whether role r may do what needs role need.
func Allows(r, need lifeboat.Role) bool { return rank(r) >= rank(need) }

// authError is a refused identification.
type authError struct {
	code      int
	msg, hint string
}

// identify finds the caller: the bearer token, else a client certificate
// a "cert" line of the tokens file names. A token over mutual TLS keeps
// the token's name and role and records the certificate's CN beside it.
func (s *Server) identify(r *http.Request) (Identity, *authError) {
	cn := ""
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn = r.TLS.VerifiedChains[0][0].Subject.CommonName
	}
	h := r.Header.Get("Authorization")
	if h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return Identity{}, &authError{http.StatusUnauthorized, "the Authorization header is not \"Bearer <token>\"",
				"send Authorization: Bearer <token>; 'lifeboat api token --name NAME --role ROLE' makes one"}
		}
		t, ok := s.c.Tokens.Match(strings.TrimSpace(tok))
		if !ok {
			return Identity{}, &authError{http.StatusUnauthorized, "the bearer token matches no line of the tokens file",
				"check the token; a new one comes from 'lifeboat api token', and its line must be in api.tokens (the server reads it at start)"}
		}
		id := Identity{Name: t.Name, Role: t.Role, Via: "token", CertCN: cn}
		if cn != "" {
			id.Via = "token+cert"
		}
		return id, nil
	}
	if cn != "" {
		if t, ok := s.c.Tokens.Cert(cn); ok {
			return Identity{Name: t.Name, Role: t.Role, Via: "cert", CertCN: cn}, nil
		}
		return Identity{}, &authError{http.StatusUnauthorized, fmt.Sprintf("client certificate CN=%s is not in the tokens file", cn),
			fmt.Sprintf("add the line \"%s <role> cert\" to api.tokens, or send a bearer token", cn)}
	}
	return Identity{}, &authError{http.StatusUnauthorized, "no credentials: this API needs a bearer token",
		"send Authorization: Bearer <token>; 'lifeboat api token --name NAME --role ROLE' makes one and prints the line for api.tokens"}
}

func forbidden(id Identity, need lifeboat.Role, what string) (int, string, string) {
	return http.StatusForbidden,
		fmt.Sprintf("%s needs role %s; %s has role %s", what, need, id.Name, id.Role),
		fmt.Sprintf("ask for a token with role %s (roles: viewer reads; operator runs planned moves, approves, cancels, resumes; admin also forces failover)", need)
}
