// Command storm measures sign-ins: it starts a fake Restcomm, runs this repository's Caddy with
// the otp gate against it, and lets many visitors sign in at once (phone page, send, code from
// the SMS, verify) for a while. It prints sign-ins per second, their latency, and the CPU time
// Caddy spent per sign-in. Loopback only, bounded in time.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func main() {
	caddyBin := flag.String("caddy", "", "the Caddy binary built from this repository")
	visitors := flag.Int("visitors", 32, "visitors signing in at once (at most 100)")
	duration := flag.Duration("duration", 15*time.Second, "how long the storm lasts")
	flag.Parse()
	if *caddyBin == "" || *visitors < 1 || *visitors > 100 || *duration > 5*time.Minute {
		log.Fatal("usage: storm -caddy PATH [-visitors 1..100] [-duration <=5m]")
	}

	sms := restcommtest.NewServer()
	defer sms.Close()
	port := freePort()
	dir, err := os.MkdirTemp("", "otp-storm")
	check(err)
	defer os.RemoveAll(dir)
	cfg := fmt.Sprintf(`{
	admin off
	storage file_system %s
}
http://127.0.0.1:%d {
	otp {
		sender restcomm {
			account_sid %s
			auth_token %s
			from +12015550100
			base_url %s
		}
		public_url http://127.0.0.1:%d
		phones *
		regions US
		max_sms_per_hour 100000000
		send_limit 1000000 10m
		ip_limit 1000000 10m
		resend_after 1ms
		secret bench-secret-bench-secret-bench-secret
	}
	respond "hello"
}
`, dir, port, sms.AccountSID, sms.AuthToken, sms.BaseURL(), port)
	check(os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(cfg), 0o600))
	cmd := exec.Command(*caddyBin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	check(cmd.Start())
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(base)

	cpu0 := cpuTime(cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var mu sync.Mutex
	var latencies []time.Duration
	failures := 0
	var wg sync.WaitGroup
	start := time.Now()
	for v := 0; v < *visitors; v++ {
		wg.Add(1)
		go func(phone string, from net.IP) {
			defer wg.Done()
			dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
			transport := &http.Transport{DialContext: dialer.DialContext}
			for ctx.Err() == nil {
				t0 := time.Now()
				err := signIn(base, phone, sms, transport)
				mu.Lock()
				if err != nil {
					failures++
					if failures <= 3 {
						log.Printf("sign-in failed: %v", err)
					}
				} else {
					latencies = append(latencies, time.Since(t0))
				}
				mu.Unlock()
			}
		}(fmt.Sprintf("+120155501%02d", v), net.IPv4(127, 0, 1, byte(1+v)))
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime(cmd.Process.Pid) - cpu0

	slices.Sort(latencies)
	n := len(latencies)
	if n == 0 {
		log.Fatalf("no sign-in succeeded (%d failures)", failures)
	}
	fmt.Printf("sign-in storm: %d visitors for %s\n", *visitors, elapsed.Round(time.Millisecond))
	fmt.Printf("  sign-ins      %d (%d failed)\n", n, failures)
	fmt.Printf("  per second    %.0f\n", float64(n)/elapsed.Seconds())
	fmt.Printf("  latency       p50 %s  p99 %s  (phone page + send + verify)\n",
		latencies[n/2].Round(10*time.Microsecond), latencies[n*99/100].Round(10*time.Microsecond))
	fmt.Printf("  Caddy CPU     %.0f µs per sign-in (3 requests)\n", float64(cpu.Microseconds())/float64(n))
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var codeRE = regexp.MustCompile(`#([0-9]+)$`)

// signIn is one visitor's whole sign-in, with a fresh browser.
// signIn walks one whole sign-in through transport, which connects from the visitor's own
// loopback address, as visitors come from addresses of their own.
func signIn(base, phone string, sms *restcommtest.Server, transport http.RoundTripper) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/.otp/login?next=%2F")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(body)
	if m == nil {
		return fmt.Errorf("phone page: %d", resp.StatusCode)
	}
	csrf := string(m[1])
	post := func(path string, form url.Values) (int, error) {
		resp, err := c.PostForm(base+path, form)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	before, _ := sms.LastMessageTo(phone)
	if status, err := post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {phone}}); err != nil || status != http.StatusSeeOther {
		return fmt.Errorf("send: %d %v", status, err)
	}
	// The gate sends in the background: wait for this sign-in's SMS.
	var msg restcommtest.Message
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Microsecond) {
		var ok bool
		if msg, ok = sms.LastMessageTo(phone); ok && msg.SID != before.SID {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no SMS for %s", phone)
		}
	}
	code := codeRE.FindStringSubmatch(msg.Body)
	if code == nil {
		return fmt.Errorf("no code in the SMS to %s", phone)
	}
	if status, err := post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code[1]}}); err != nil || status != http.StatusSeeOther {
		return fmt.Errorf("verify: %d %v", status, err)
	}
	return nil
}

// cpuTime is the user and system CPU time a process has used, from /proc.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	check(err)
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(base string) {
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(base + "/.otp/login"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatal("caddy did not start")
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
