package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// storageKey is where a generated master key lives in Caddy's storage; instances that share
// storage share it, so each accepts the others' sessions, and it survives restarts.
const storageKey = "otp/master.key"

// minSecretLen is the least a configured secret must have: 32 random characters.
const minSecretLen = 32

// keys are the purpose-bound keys derived from one master key, so that no MAC made for one
// purpose (a CSRF token, say) can stand in for another (a session).
type keys struct {
	code    []byte // code hashes
	session []byte // session cookies
	device  []byte // trusted-browser cookies
	voice   []byte // voice-call scripts
	receipt []byte // delivery receipts' tokens
	csrf    []byte // form tokens
	flow    []byte // flow cookies
	subject []byte // store keys for phones and IPs, so the store holds no plain numbers
	passkey []byte // seals passkeys' subjects, signs the enrol cookie
}

func deriveKeys(master []byte) keys {
	derive := func(purpose string) []byte {
		m := hmac.New(sha256.New, master)
		m.Write([]byte("caddy-otp/" + purpose))
		return m.Sum(nil)
	}
	return keys{code: derive("code"), session: derive("session"), device: derive("device"), voice: derive("voice"), receipt: derive("receipt"), csrf: derive("csrf"), flow: derive("flow"), subject: derive("subject"), passkey: derive("passkey")}
}

// masterKey returns the configured secret, or else the key in Caddy's storage, generating and
// storing it under the storage lock the first time so that concurrent instances agree on one.
func masterKey(ctx caddy.Context, secret string) ([]byte, error) {
	if secret != "" {
		if len(secret) < minSecretLen {
			return nil, fmt.Errorf("secret is %d characters long; it must have at least %d (e.g. the output of `openssl rand -base64 32`)", len(secret), minSecretLen)
		}
		return []byte(secret), nil
	}
	storage := ctx.Storage()
	if storage == nil {
		return nil, errors.New("no secret configured and no Caddy storage to keep a generated one")
	}
	if k, err := loadKey(ctx, storage); err == nil {
		return k, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := storage.Lock(ctx, storageKey); err != nil {
		return nil, fmt.Errorf("locking %s in storage: %v", storageKey, err)
	}
	defer func() { _ = storage.Unlock(context.WithoutCancel(ctx), storageKey) }()
	k, err := loadKey(ctx, storage) // another instance may have made it while we waited
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := storage.Store(ctx, storageKey, []byte(base64.StdEncoding.EncodeToString(k))); err != nil {
		return nil, fmt.Errorf("storing %s: %v", storageKey, err)
	}
	return k, nil
}

func loadKey(ctx context.Context, storage certmagic.Storage) ([]byte, error) {
	raw, err := storage.Load(ctx, storageKey)
	if err != nil {
		return nil, err
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(k) < 32 {
		return nil, fmt.Errorf("%s in storage is damaged; remove it to generate a new one (this signs everyone out)", storageKey)
	}
	return k, nil
}
