package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/api"
	"github.com/lifeboat-dr/lifeboat/store"
)

// TestMutualTLSIdentity: a client certificate whose CN a "cert" line names
// identifies the caller; a token sent over mutual TLS keeps the token's
// name and role, and the certificate's CN is recorded beside it.
func TestMutualTLSIdentity(t *testing.T) {
	l := newLab(t, "")
	// The CA that signs the clients' certificates.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lifeboat test CA"}, IsCA: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	clientCert := func(cn string) tls.Certificate {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}

	opTok, opLine, err := api.NewToken("operator-alice", lifeboat.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := api.ParseTokens("tokens", strings.NewReader("ci-bot operator cert\n"+opLine+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Spec, cfg.Store, cfg.Tokens = l.spec, l.store, ts
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	hs.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	hs.StartTLS()
	defer srv.Close()
	defer hs.Close()

	with := func(cert *tls.Certificate) *http.Client {
		// hs.Client() is shared: build a new client on a clone of its transport.
		tr := hs.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Transport: tr}
	}
	whoami := func(c *http.Client, token string) (api.Identity, int) {
		req, _ := http.NewRequest("GET", hs.URL+"/v1/whoami", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return api.Identity{}, -1
		}
		defer resp.Body.Close()
		var id api.Identity
		json.NewDecoder(resp.Body).Decode(&id)
		return id, resp.StatusCode
	}

	bot := clientCert("ci-bot")
	if id, code := whoami(with(&bot), ""); code != 200 || id.Name != "ci-bot" || id.Role != lifeboat.RoleOperator || id.Via != "cert" {
		t.Fatalf("cert only: %d %+v", code, id)
	}
	if id, code := whoami(with(&bot), opTok); code != 200 || id.Name != "operator-alice" || id.Via != "token+cert" || id.CertCN != "ci-bot" {
		t.Fatalf("token over mutual TLS: %d %+v", code, id)
	}
	stranger := clientCert("stranger")
	if _, code := whoami(with(&stranger), ""); code != 401 {
		t.Fatalf("a cert no line names: %d, want 401", code)
	}
	if _, code := whoami(with(nil), opTok); code != -1 {
		t.Fatalf("no client certificate: %d, want the TLS handshake to fail", code)
	}
	// The audit trail records the token's name with the cert's CN.
	req, _ := http.NewRequest("POST", hs.URL+"/v1/runs", strings.NewReader(`{"intent":"nope"}`))
	req.Header.Set("Authorization", "Bearer "+opTok)
	resp, err := with(&bot).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	log, _ := store.Audit(l.store)
	recs, _ := log.Audit(context.Background(), time.Time{}, 1)
	if len(recs) != 1 || recs[0].Who != "operator-alice (cert CN=ci-bot)" || recs[0].Status != 400 {
		t.Fatalf("audit: %+v", recs)
	}
}
