package caddyotp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/redis/go-redis/v9"
)

// A passkey is one WebAuthn credential of a subject, as the gate keeps it: the credential (its
// id, public key, sign counter, transports and flags), whose it is, a name to show, when it was
// made and last used. The owner (the WebAuthn user handle) is the subject's keyed hash; the
// subject itself, needed to issue a session, is kept sealed, never in clear.
type passkey struct {
	Credential webauthn.Credential `json:"credential"`
	Owner      []byte              `json:"owner"`
	Sealed     []byte              `json:"subject"`
	Name       string              `json:"name"`
	Made       time.Time           `json:"made"`
	Used       time.Time           `json:"used,omitzero"`
}

// passkeyVault keeps passkeys where they outlive a restart and reach every instance of the
// gate: Caddy's storage, or the gate's Redis. Records are per relying party and owner; a missing
// owner has none, which is not an error. An error means the vault could not answer.
type passkeyVault interface {
	// load returns every passkey of owner.
	load(ctx context.Context, owner []byte) ([]passkey, error)
	// save creates or replaces p (by its owner and credential id).
	save(ctx context.Context, p passkey) error
	// update replaces p only if it is still there, in one step with remove and removeAll: a
	// passkey removed meanwhile stays removed, and update reports false.
	update(ctx context.Context, p passkey) (bool, error)
	// remove deletes owner's passkey id, reporting whether there was one.
	remove(ctx context.Context, owner, id []byte) (bool, error)
	// removeAll deletes every passkey of owner and says how many there were.
	removeAll(ctx context.Context, owner []byte) (int, error)
}

// newPasskeyVault is the vault of a gate: in its Redis when the store is Redis, else in Caddy's
// storage (the file system by default, or the storage module Caddy's instances share).
func newPasskeyVault(store Store, storage certmagic.Storage, rpID string) passkeyVault {
	if rs, ok := store.(*RedisStore); ok && rs.be != nil {
		return &redisVault{client: rs.be.client, prefix: rs.be.prefix + "passkeys:" + rpID + ":"}
	}
	return &storageVault{storage: storage, dir: path.Join("otp", "passkeys", safeName(rpID))}
}

// safeName keeps a relying party id to the characters a storage key takes everywhere.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(s))
}

// storageVault keeps each passkey in a file of Caddy's storage, DIR/OWNER/ID.json, where ID
// is a hash of the credential id (which may be 1023 bytes long, more than a file name takes).
// Changes to a file hold Caddy's storage lock of its name, which every instance sharing the
// storage obeys.
type storageVault struct {
	storage certmagic.Storage
	dir     string
}

func (v *storageVault) ownerDir(owner []byte) string {
	return path.Join(v.dir, hex.EncodeToString(owner))
}

func (v *storageVault) file(owner, id []byte) string {
	return path.Join(v.ownerDir(owner), credentialName(id)+".json")
}

// credentialName names a credential id in the vault's keys: a hash of fixed length.
func credentialName(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:16])
}

// locked runs f holding the storage lock of key.
func (v *storageVault) locked(ctx context.Context, key string, f func() error) error {
	if err := v.storage.Lock(ctx, key); err != nil {
		return err
	}
	defer func() { _ = v.storage.Unlock(context.WithoutCancel(ctx), key) }()
	return f()
}

func (v *storageVault) load(ctx context.Context, owner []byte) ([]passkey, error) {
	keys, err := v.storage.List(ctx, v.ownerDir(owner), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]passkey, 0, len(keys))
	for _, k := range keys {
		b, err := v.storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		var p passkey
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (v *storageVault) save(ctx context.Context, p passkey) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	f := v.file(p.Owner, p.Credential.ID)
	return v.locked(ctx, f, func() error { return v.storage.Store(ctx, f, b) })
}

func (v *storageVault) update(ctx context.Context, p passkey) (bool, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	f, kept := v.file(p.Owner, p.Credential.ID), false
	err = v.locked(ctx, f, func() error {
		if kept = v.storage.Exists(ctx, f); !kept {
			return nil
		}
		return v.storage.Store(ctx, f, b)
	})
	return kept, err
}

func (v *storageVault) remove(ctx context.Context, owner, id []byte) (bool, error) {
	return v.delete(ctx, v.file(owner, id))
}

// delete removes the file key under its lock, reporting whether it was there.
func (v *storageVault) delete(ctx context.Context, key string) (bool, error) {
	found := false
	err := v.locked(ctx, key, func() error {
		if found = v.storage.Exists(ctx, key); !found {
			return nil
		}
		if err := v.storage.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	return found, err
}

func (v *storageVault) removeAll(ctx context.Context, owner []byte) (int, error) {
	keys, err := v.storage.List(ctx, v.ownerDir(owner), false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		found, err := v.delete(ctx, k)
		if err != nil {
			return n, err
		}
		if found {
			n++
		}
	}
	return n, nil
}

// redisVault keeps an owner's passkeys in one Redis hash, credential id to record, with no
// expiry: one key, so that a Redis Cluster keeps it in one slot.
type redisVault struct {
	client redis.UniversalClient
	prefix string
}

func (v *redisVault) key(owner []byte) string {
	return v.prefix + "{" + hex.EncodeToString(owner) + "}"
}

func (v *redisVault) load(ctx context.Context, owner []byte) ([]passkey, error) {
	all, err := v.client.HGetAll(ctx, v.key(owner)).Result()
	if err != nil {
		return nil, err
	}
	out := make([]passkey, 0, len(all))
	for _, b := range all {
		var p passkey
		if err := json.Unmarshal([]byte(b), &p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (v *redisVault) save(ctx context.Context, p passkey) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return v.client.HSet(ctx, v.key(p.Owner), credentialName(p.Credential.ID), b).Err()
}

// redisUpdate sets a field of a hash only if it is there.
var redisUpdate = redis.NewScript(`if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
	redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
	return 1
end
return 0`)

func (v *redisVault) update(ctx context.Context, p passkey) (bool, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	n, err := redisUpdate.Run(ctx, v.client, []string{v.key(p.Owner)}, credentialName(p.Credential.ID), b).Int()
	return n == 1, err
}

func (v *redisVault) remove(ctx context.Context, owner, id []byte) (bool, error) {
	n, err := v.client.HDel(ctx, v.key(owner), credentialName(id)).Result()
	return n > 0, err
}

func (v *redisVault) removeAll(ctx context.Context, owner []byte) (int, error) {
	var n *redis.IntCmd
	_, err := v.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.HLen(ctx, v.key(owner))
		p.Del(ctx, v.key(owner))
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n.Val()), nil
}

// sealer seals a value (a passkey's subject, a challenge) with AES-GCM, bound to additional
// data (the owner, the ceremony's kind), and opens it again.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) sealer {
	block, err := aes.NewCipher(key[:32])
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return sealer{aead}
}

func (s sealer) seal(ad []byte, value string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(value), ad), nil
}

func (s sealer) open(ad, sealed []byte) (string, bool) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", false
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	return string(plain), err == nil
}
