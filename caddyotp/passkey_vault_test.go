package caddyotp

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/go-webauthn/webauthn/webauthn"
)

// TestPasskeysInCaddysStorage: the vault keeps, lists, updates and removes passkeys in Caddy's
// file storage; a credential id as long as WebAuthn allows fits; an update never brings back a
// passkey removed meanwhile (a revocation racing a sign-in); no file holds the subject in clear.
func TestPasskeysInCaddysStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := newPasskeyVault(nil, &certmagic.FileStorage{Path: dir}, "localhost")
	seal := newSealer(subKey(make([]byte, 32), "subject"))
	owner := bytes.Repeat([]byte{7}, 16)
	sealed, err := seal.seal(owner, alice)
	if err != nil {
		t.Fatal(err)
	}
	long := passkey{Credential: webauthn.Credential{ID: bytes.Repeat([]byte{1}, 1023), PublicKey: []byte("key")}, Owner: owner, Sealed: sealed, Name: "Chrome · Linux", Made: time.Now()}
	short := passkey{Credential: webauthn.Credential{ID: []byte{2}}, Owner: owner, Sealed: sealed, Made: time.Now()}
	for _, p := range []passkey{long, short} {
		if err := v.save(ctx, p); err != nil {
			t.Fatalf("saving a credential id of %d bytes: %v", len(p.Credential.ID), err)
		}
	}
	got, err := v.load(ctx, owner)
	if err != nil || len(got) != 2 {
		t.Fatalf("load: %d passkeys, %v", len(got), err)
	}
	if subject, ok := seal.open(owner, got[0].Sealed); !ok || subject != alice {
		t.Errorf("the subject does not open: %q %v", subject, ok)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if bytes.Contains(b, []byte("2015550123")) {
			t.Errorf("%s holds the number", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if other, err := v.load(ctx, bytes.Repeat([]byte{8}, 16)); err != nil || len(other) != 0 {
		t.Errorf("another owner has %d passkeys, %v", len(other), err)
	}

	long.Credential.Authenticator.SignCount = 5
	if kept, err := v.update(ctx, long); err != nil || !kept {
		t.Fatalf("update of a kept passkey: %v %v", kept, err)
	}
	if removed, err := v.remove(ctx, owner, long.Credential.ID); err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if kept, err := v.update(ctx, long); err != nil || kept {
		t.Errorf("an update after the removal: kept %v, %v", kept, err)
	}
	if n, err := v.removeAll(ctx, owner); err != nil || n != 1 {
		t.Errorf("removeAll: %d, %v; want the one left", n, err)
	}
	if got, _ := v.load(ctx, owner); len(got) != 0 {
		t.Errorf("after removeAll %d passkeys", len(got))
	}
}
