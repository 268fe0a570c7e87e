//go:build integration

package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisStoreConformance runs the Store contract (storeContract) against Redis and against
// a Redis Cluster.
func TestRedisStoreConformance(t *testing.T) {
	var cluster *redisCluster
	clusterStores := 0
	stores := map[string]func(t *testing.T) Store{
		"redis": func(t *testing.T) Store {
			return provisionStore(t, startRedis(t).store("conformance:"))
		},
		// One cluster for every case (it takes seconds to form), a key prefix for each.
		"redis cluster": func(st *testing.T) Store {
			if cluster == nil {
				cluster = startRedisCluster(t)
			}
			clusterStores++
			return provisionStore(st, cluster.store(fmt.Sprintf("conformance%d:", clusterStores)))
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) { storeContract(t, newStore) })
	}
}

// TestLoginPageFloodStoresNothingInRedis: a stranger's cookie-less requests for the phone page
// (or a protected page) keep nothing in Redis either.
func TestLoginPageFloodStoresNothingInRedis(t *testing.T) {
	next := "/" + strings.Repeat("a", 2000)
	rs := startRedis(t)
	g := newGate(t)
	g.redis = rs.Addr()
	g.start("")
	floodPages(t, newVisitor(t), next)
	var left []string
	for _, k := range redisKeys(t, rs) {
		if !strings.HasSuffix(k, revocationsTag+":sweep") { // the background's minute lock, whatever the requests
			left = append(left, k)
		}
	}
	if len(left) != 0 {
		t.Fatalf("the flood left %d keys in Redis: %v", len(left), left)
	}
}

// floodPages asks for the phone page (with a new next each time), a protected page and the
// sign-out page, 50 times each, as a stranger without cookies.
func floodPages(t *testing.T, v *visitor, next string) {
	for i := 0; i < 50; i++ {
		v.jar, _ = newJar()
		v.client.Jar = v.jar
		wantStatus(t, "phone page", v.get("/.otp/login?next="+url.QueryEscape(next+strconv.Itoa(i))), http.StatusOK)
		wantStatus(t, "protected page", v.get(next), http.StatusSeeOther)
		wantStatus(t, "sign-out page", v.get("/.otp/logout"), http.StatusOK)
	}
}

func TestRedisStoreKeysCarryThePrefix(t *testing.T) {
	r := startRedis(t)
	a := provisionStore(t, &RedisStore{Address: r.Addr(), KeyPrefix: "siteA:"})
	b := provisionStore(t, &RedisStore{Address: r.Addr(), KeyPrefix: "siteB:"})
	ctx := context.Background()
	_ = a.Set(ctx, "k", []byte("a"), time.Minute)
	if v, _ := b.Get(ctx, "k"); v != nil {
		t.Errorf("a store with another prefix sees %q", v)
	}
	raw := provisionStore(t, &RedisStore{Address: r.Addr(), KeyPrefix: "siteA"})
	if v, _ := raw.Get(ctx, ":k"); string(v) != "a" {
		t.Errorf("key not stored under the prefix: %q", v)
	}
}

// TestRedisClusterFromOneSeedAddress: `addresses` names a cluster even with one address (a
// cluster's configuration endpoint, or one seed node), so keys on every master answer.
func TestRedisClusterFromOneSeedAddress(t *testing.T) {
	c := startRedisCluster(t)
	s := provisionStore(t, &RedisStore{Addresses: c.addrs()[:1], KeyPrefix: "seed:"})
	ctx := context.Background()
	for i := 0; i < 30; i++ { // 30 keys: on every master, with near certainty
		key := fmt.Sprintf("k%d", i)
		must(t, s.Set(ctx, key, []byte(key), time.Minute))
		if v, err := s.Get(ctx, key); err != nil || string(v) != key {
			t.Fatalf("Get %s through one seed address = %q, %v", key, v, err)
		}
	}
}

// TestALockThatSaysNoTimeFailsClosedInRedis is TestALockThatSaysNoTimeFailsClosed in Redis,
// whose script judges the lock.
func TestALockThatSaysNoTimeFailsClosedInRedis(t *testing.T) {
	lockThatSaysNoTimeFailsClosed(t, provisionStore(t, startRedis(t).store("nolock:")))
}
