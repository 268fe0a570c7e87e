package caddyotp

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// redisPool shares one client, and its view of revocations, among the configs that name the
// same Redis, so that a reload neither reconnects nor forgets.
var redisPool = caddy.NewUsagePool()

// RedisStore keeps the gate's state in Redis (module http.handlers.otp.stores.redis), so that
// several Caddy instances behind one site share codes, limits and sign-outs. Every operation has
// the memory store's semantics: TTLs are Redis's own, counters are atomic (INCR and PEXPIRE in one
// script), a code is consumed with GETDEL. A protected request makes no Redis round trip:
// revocations are kept locally, fed by pub/sub and by a log of new ones read every half second.
type RedisStore struct {
	// host:port of a single Redis. Default 127.0.0.1:6379.
	Address string `json:"address,omitempty"`
	// A Redis Cluster's nodes (one is enough: the others are discovered), or the Sentinels
	// when master_name is set.
	Addresses []string `json:"addresses,omitempty"`
	// The Sentinel master's name.
	MasterName string `json:"master_name,omitempty"`
	Username   string `json:"username,omitempty"`
	// The password; placeholders such as {env.REDIS_PASSWORD} are resolved at Provision.
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`
	// Prefix of every key and of the pub/sub channel. Default "caddy-otp:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Connect with TLS.
	TLS bool `json:"tls,omitempty"`
	// The server name TLS expects, if not the address's host.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// How long to wait for a connection. Default 2s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// How long to wait for one command's answer. Default 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	be *redisBackend
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision resolves placeholders and attaches to the shared client for these settings. The
// client connects lazily, so `caddy validate` and `caddy adapt` make no network call.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	return s.provision(ctx, ctx.Logger())
}

// provision is Provision with the config's logger given.
func (s *RedisStore) provision(_ caddy.Context, logger *zap.Logger) error {
	repl := caddy.NewReplacer()
	s.Address = repl.ReplaceKnown(s.Address, "")
	for i := range s.Addresses {
		s.Addresses[i] = repl.ReplaceKnown(s.Addresses[i], "")
	}
	s.Username = repl.ReplaceKnown(s.Username, "")
	s.Password = repl.ReplaceKnown(s.Password, "")
	if s.Address == "" && len(s.Addresses) == 0 {
		s.Address = "127.0.0.1:6379"
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = "caddy-otp:"
	}
	if s.DialTimeout <= 0 {
		s.DialTimeout = caddy.Duration(2 * time.Second)
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(time.Second)
	}
	if s.Address != "" && len(s.Addresses) > 0 {
		return errors.New("redis store: give address or addresses, not both")
	}
	cluster := len(s.Addresses) > 0 && s.MasterName == ""
	if cluster && s.DB != 0 {
		return errors.New("redis store: a Redis Cluster has only db 0; remove db, or use key_prefix to separate sites")
	}
	if cluster && strings.ContainsAny(s.KeyPrefix, "{}") {
		return fmt.Errorf("redis store: key_prefix %q has a brace; on a Redis Cluster the store sets its own hash tags, and braces in the prefix would split them", s.KeyPrefix)
	}
	addrs := s.Addresses
	if s.Address != "" {
		addrs = []string{s.Address}
	}
	opts := &redis.UniversalOptions{
		Addrs: addrs, MasterName: s.MasterName, Username: s.Username, Password: s.Password, DB: s.DB, IsClusterMode: cluster,
		DialTimeout: time.Duration(s.DialTimeout), ReadTimeout: time.Duration(s.Timeout), WriteTimeout: time.Duration(s.Timeout),
		ContextTimeoutEnabled: true,
	}
	if s.TLS {
		opts.TLSConfig = &tls.Config{ServerName: s.TLSServerName, MinVersion: tls.VersionTLS12}
	}
	v, _, err := redisPool.LoadOrNew(s.poolKey(), func() (caddy.Destructor, error) {
		return newRedisBackend(redis.NewUniversalClient(opts), s.KeyPrefix, logger), nil
	})
	if err != nil {
		return err
	}
	s.be = v.(*redisBackend)
	s.be.hold(s, logger) // the background's messages go to the newest config that holds it
	return nil
}

// poolKey names the settings, the password only by a hash.
func (s *RedisStore) poolKey() string {
	pw := sha256.Sum256([]byte(s.Password))
	b, _ := json.Marshal([]any{s.Address, s.Addresses, s.MasterName, s.Username, hex.EncodeToString(pw[:8]), s.DB, s.KeyPrefix, s.TLS, s.TLSServerName, s.DialTimeout, s.Timeout})
	return "otp.store.redis." + string(b)
}

// storeName names the state this store holds, for the gate's default audience: the same keys
// in the same Redis, whichever address of a cluster names it.
func (s *RedisStore) storeName() string {
	return "redis\x00" + strconv.Itoa(s.DB) + "\x00" + s.KeyPrefix
}

// Cleanup releases this config's hold on the client; the last holder closes it.
func (s *RedisStore) Cleanup() error {
	if s.be == nil {
		return nil
	}
	s.be.release(s)
	_, err := redisPool.Delete(s.poolKey())
	return err
}

func (s *RedisStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.be.client.Get(ctx, s.be.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (s *RedisStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.be.client.Set(ctx, s.be.prefix+key, value, ttl).Err()
}

func (s *RedisStore) Take(ctx context.Context, key string) ([]byte, error) {
	b, err := s.be.client.GetDel(ctx, s.be.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (s *RedisStore) Delete(ctx context.Context, key string) error {
	return s.be.client.Del(ctx, s.be.prefix+key).Err()
}

// raiseScript sets a value unless the key holds one of the same or a higher rank (first byte):
// one round trip, atomic.
var raiseScript = redis.NewScript(`
local old = redis.call("GET", KEYS[1])
if old and string.len(old) > 0 and string.byte(old, 1) >= string.byte(ARGV[1], 1) then return 0 end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1`)

func (s *RedisStore) Raise(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if len(value) == 0 {
		return false, nil
	}
	n, err := raiseScript.Run(ctx, s.be.client, []string{s.be.prefix + key}, value, max(1, ttl.Milliseconds())).Int64()
	return n == 1, err
}

// incrScript increments and, for a new counter, sets its expiry: one round trip, atomic.
var incrScript = redis.NewScript(`
local n = redis.call("INCR", KEYS[1])
if n == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
return n`)

func (s *RedisStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	return incrScript.Run(ctx, s.be.client, []string{s.be.prefix + key}, max(1, ttl.Milliseconds())).Int64()
}

// tallyScript is Tally in one round trip: KEYS are the locks (ARGV[1] of them), then the
// counters; ARGV[2] is Now and ARGV[3] the counters' TTL in milliseconds, then one cap per
// counter. A missing lock reads as false. Lock times are compared as decimal strings of the
// same length (Lua's numbers would round nanoseconds); a value that is not decimal digits
// holds, as in holds.
var tallyScript = redis.NewScript(`
local locks, nl, now, held = {}, tonumber(ARGV[1]), ARGV[2], false
for i = 1, nl do
  local v = redis.call("GET", KEYS[i])
  locks[i] = v
  if v and (not v:match("^%d+$") or #v > #now or (#v == #now and v > now)) then held = true end
end
local counts = {}
if not held then
  for i = nl + 1, #KEYS do
    local n = redis.call("INCR", KEYS[i])
    if n == 1 then redis.call("PEXPIRE", KEYS[i], ARGV[3]) end
    counts[#counts + 1] = n
    if n > tonumber(ARGV[3 + i - nl]) then break end
  end
end
return {locks, counts, held and 1 or 0}`)

func (s *RedisStore) Tally(ctx context.Context, t Tally) (Tallied, error) {
	keys := make([]string, 0, len(t.Locks)+len(t.Counters))
	for _, k := range append(t.Locks[:len(t.Locks):len(t.Locks)], t.Counters...) {
		keys = append(keys, s.be.prefix+k)
	}
	args := []any{len(t.Locks), strconv.FormatInt(t.Now, 10), max(1, t.TTL.Milliseconds())}
	for _, c := range t.Caps {
		args = append(args, c)
	}
	v, err := tallyScript.Run(ctx, s.be.client, keys, args...).Slice()
	if err != nil {
		return Tallied{}, err
	}
	var out Tallied
	if len(v) != 3 {
		return out, fmt.Errorf("redis store: tally answered %d values", len(v))
	}
	held, _ := v[2].(int64)
	out.Held = held == 1
	locks, _ := v[0].([]any)
	for i := range t.Locks {
		var b []byte
		if i < len(locks) {
			if s, ok := locks[i].(string); ok {
				b = []byte(s)
			}
		}
		out.Locks = append(out.Locks, b)
	}
	counts, _ := v[1].([]any)
	for _, c := range counts {
		n, _ := c.(int64)
		out.Counts = append(out.Counts, n)
	}
	return out, nil
}

// UnmarshalCaddyfile reads the Redis store's block:
//
//	store redis {
//	    address 127.0.0.1:6379            # or: addresses HOST:PORT... (a Cluster, one node is enough; or Sentinels with master_name)
//	    master_name mymaster
//	    username otp
//	    password {env.REDIS_PASSWORD}
//	    db 0
//	    key_prefix caddy-otp:
//	    tls
//	    tls_server_name redis.internal
//	    dial_timeout 2s
//	    timeout 1s
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		s.Address = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return parseBlock(d, "redis store", map[string]func() error{
		"address":         func() error { return oneString(d, &s.Address) },
		"addresses":       func() error { return someStrings(d, &s.Addresses, "HOST:PORT HOST:PORT ...") },
		"master_name":     func() error { return oneString(d, &s.MasterName) },
		"username":        func() error { return oneString(d, &s.Username) },
		"password":        func() error { return oneString(d, &s.Password) },
		"db":              func() error { return oneInt(d, &s.DB, "0 to 15") },
		"key_prefix":      func() error { return oneString(d, &s.KeyPrefix) },
		"tls":             func() error { return noValue(d, &s.TLS) },
		"tls_server_name": func() error { return oneString(d, &s.TLSServerName) },
		"dial_timeout":    func() error { return oneDuration(d, &s.DialTimeout) },
		"timeout":         func() error { return oneDuration(d, &s.Timeout) },
	})
}

var (
	_ Store                 = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)
