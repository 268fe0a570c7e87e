//go:build integration

package caddyotp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// built is ./cmd/caddy, built once for every test that runs it as a process.
var built struct {
	sync.Once
	bin string
	err error
	out []byte
}

// buildCaddy builds ./cmd/caddy once per test run.
func buildCaddy(t *testing.T) string {
	t.Helper()
	built.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-otp-bin")
		if err != nil {
			built.err = err
			return
		}
		afterTests = append(afterTests, func() { os.RemoveAll(dir) })
		built.bin = filepath.Join(dir, "caddy")
		args := []string{"build", "-o", built.bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		built.out, built.err = exec.Command("go", append(args, "../cmd/caddy")...).CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", built.err, built.out)
	}
	return built.bin
}

func waitListening(t *testing.T, port int, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("caddy did not listen on %d:\n%s", port, out)
}

// caddyProcess is this repository's Caddy running as a process of its own.
type caddyProcess struct {
	cmd *exec.Cmd
	out *output
}

// runCaddy writes the Caddyfile cfg, runs the built Caddy with it (and env), and waits until it
// listens on port. The process is stopped when the test ends, if not before.
func runCaddy(t *testing.T, cfg string, port int, env ...string) *caddyProcess {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &caddyProcess{cmd: exec.Command(buildCaddy(t), "run", "--config", path, "--adapter", "caddyfile"), out: new(output)}
	p.cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir()), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	waitListening(t, port, p.out)
	return p
}

// stop ends the process gracefully; stopping twice is harmless.
func (p *caddyProcess) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
	}
}

// redisDeployment is a real Redis the tests run against: one redis-server, or a Redis Cluster
// of three masters. Both are started by the tests themselves and stopped when the test ends.
type redisDeployment interface {
	// storeLines are the Caddyfile lines of a redis store block that reach it.
	storeLines() string
	// store is a RedisStore that reaches it.
	store(prefix string) *RedisStore
	// serverOf is the redis-server that holds key: the only one, or the key's cluster master.
	serverOf(key string) *redisServer
}

// onEveryRedis runs test on a single redis-server and on a three-master Redis Cluster.
func onEveryRedis(t *testing.T, test func(t *testing.T, r redisDeployment)) {
	t.Run("single", func(t *testing.T) { test(t, startRedis(t, withPersistence)) })
	t.Run("cluster", func(t *testing.T) { test(t, startRedisCluster(t)) })
}

// redisServer is a real redis-server on a loopback port of its own, which a test can stop and
// start again.
type redisServer struct {
	t       *testing.T
	port    int
	dir     string
	persist bool     // an append-only file, written before each command is answered
	args    []string // more arguments, e.g. a cluster node's
	cmd     *exec.Cmd
	out     *output
}

// withPersistence makes a server keep its data across a stop and a start, as a production Redis
// with appendonly on does.
func withPersistence(r *redisServer) { r.persist = true }

func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// startRedis runs redis-server for the test; it is stopped when the test ends.
func startRedis(t *testing.T, opts ...func(*redisServer)) *redisServer {
	t.Helper()
	r := newRedisServer(t, opts...)
	r.Start()
	return r
}

func newRedisServer(t *testing.T, opts ...func(*redisServer)) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("the Redis tests need redis-server: apt-get install -y redis-server (%v)", err)
	}
	r := &redisServer{t: t, port: freePort(t), dir: t.TempDir()}
	for _, o := range opts {
		o(r)
	}
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server (again) on the same port and in the same directory.
func (r *redisServer) Start() {
	r.t.Helper()
	r.out = new(output)
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--dir", r.dir, "--protected-mode", "no"}
	if r.persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	r.cmd = exec.Command("redis-server", append(args, r.args...)...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", r.Addr(), 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("redis-server did not start on %s:\n%s", r.Addr(), r.out)
}

// Stop kills the server, as a crash or a network cut would look to its clients.
func (r *redisServer) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *redisServer) String() string { return fmt.Sprintf("redis-server on %s", r.Addr()) }

func (r *redisServer) storeLines() string { return "address " + r.Addr() }

func (r *redisServer) store(prefix string) *RedisStore {
	return &RedisStore{Address: r.Addr(), KeyPrefix: prefix}
}

func (r *redisServer) serverOf(string) *redisServer { return r }

// redisCluster is a Redis Cluster of three masters and no replicas, each persistent, as
// `redis-cli --cluster create` makes it.
type redisCluster struct {
	t     *testing.T
	nodes []*redisServer
}

// startRedisCluster starts three cluster-enabled servers, joins them into one cluster, and
// waits until every node reports it healthy.
func startRedisCluster(t *testing.T) *redisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("the Redis Cluster tests need redis-cli: apt-get install -y redis-server (%v)", err)
	}
	c := &redisCluster{t: t}
	for i := 0; i < 3; i++ {
		n := newRedisServer(t, withPersistence)
		n.args = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(freePort(t)), "--cluster-node-timeout", "1000"}
		n.Start()
		c.nodes = append(c.nodes, n)
	}
	create := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, c.addrs()...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitHealthy()
	return c
}

func (c *redisCluster) addrs() []string {
	var a []string
	for _, n := range c.nodes {
		a = append(a, n.Addr())
	}
	return a
}

// waitHealthy waits until every node says the cluster is ok, as it does once all slots are served.
func (c *redisCluster) waitHealthy() { c.t.Helper(); c.waitState(nil, "ok") }

func (c *redisCluster) String() string { return "Redis Cluster on " + strings.Join(c.addrs(), " ") }

func (c *redisCluster) storeLines() string { return "addresses " + strings.Join(c.addrs(), " ") }

func (c *redisCluster) store(prefix string) *RedisStore {
	return &RedisStore{Addresses: c.addrs(), KeyPrefix: prefix}
}

func (c *redisCluster) serverOf(key string) *redisServer {
	c.t.Helper()
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs()})
	defer cl.Close()
	m, err := cl.MasterForKey(context.Background(), key)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range c.nodes {
		if n.Addr() == m.Options().Addr {
			return n
		}
	}
	c.t.Fatalf("no node of %s is %s", c, m.Options().Addr)
	return nil
}

// waitState waits until the nodes other than except report the cluster's state as state.
func (c *redisCluster) waitState(except *redisServer, state string) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range c.nodes {
		if n == except {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr()})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:"+state) {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				c.t.Fatalf("%s did not report cluster_state:%s: %v %s", n, state, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
}

// redisKeys lists every key in the Redis at rs.
func redisKeys(t *testing.T, rs *redisServer) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// output collects a child process's output; safe to read while the process writes.
type output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func newJar() (http.CookieJar, error) { return cookiejar.New(nil) }
