// Package pgtest gives tests a real PostgreSQL database.
//
// With PODID_TEST_POSTGRES set to the DSN of a server the tests may create
// databases on, Start uses that server. Otherwise it runs a private server on
// loopback from the machine's PostgreSQL binaries (initdb and postgres, found
// on PATH or under /usr/lib/postgresql/*/bin): one per test process, started
// on first use, stopped (by PID) when the last test using it ends. The data
// directory is copied from a template made once by initdb and cached, since
// initdb alone takes seconds. As root, the server runs as the postgres user,
// which PostgreSQL requires.
//
// Without the binaries a test is skipped, or fails when CI is set.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the variable holding an existing server's DSN.
const EnvDSN = "PODID_TEST_POSTGRES"

var (
	mu       sync.Mutex
	srv      *server // the private server, nil when stopped
	users    int     // tests holding srv
	held     bool    // Main is running: keep srv until it returns
	dbSeq    int
	external *admin // the server named by PODID_TEST_POSTGRES
)

// admin creates and drops the test databases of one server over one
// connection, kept open since connecting costs about as much as creating.
type admin struct {
	dsn string

	mu   sync.Mutex
	conn *pgx.Conn
	icu  *bool // whether CREATE DATABASE … ICU works here; nil until tried
}

func (a *admin) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		a.conn.Close(context.Background())
		a.conn = nil
	}
}

// exec runs a statement on the admin connection, reconnecting once if the
// connection broke.
func (a *admin) exec(ctx context.Context, q string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if a.conn == nil {
			c, err := pgx.Connect(ctx, a.dsn)
			if err != nil {
				return err
			}
			a.conn = c
		}
		_, err := a.conn.Exec(ctx, q)
		if err == nil || attempt == 1 || !a.conn.IsClosed() {
			return err
		}
		a.conn = nil
	}
}

// Start returns the DSN of a new, empty database for t, dropped (or
// discarded with the private server) when t ends. A test whose subtests call
// Start should call it itself first, so the private server outlives each
// subtest instead of restarting for the next one.
//
// Databases are created with an ICU en-US collation where the server has
// ICU, so that tests see a sort order other than byte order, as production
// databases usually have.
func Start(t testing.TB) string {
	t.Helper()
	var a *admin
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		mu.Lock()
		if external == nil || external.dsn != dsn {
			external = &admin{dsn: dsn}
		}
		a = external
		mu.Unlock()
	} else {
		var err error
		if a, err = acquire(t); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	name, err := a.createDatabase(t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// Registered after acquire's cleanup, so it runs before the server stops.
	t.Cleanup(func() { a.dropDatabase(t, name) })
	return withDatabase(a.dsn, name)
}

// acquire starts the private server if needed and holds it until t ends.
func acquire(t testing.TB) (*admin, error) {
	mu.Lock()
	defer mu.Unlock()
	if srv == nil {
		bin, err := findBinaries()
		if err != nil {
			missing(t, err) // Skip or Fatal: Goexit runs the deferred Unlock
		}
		s, err := startServer(bin)
		if err != nil {
			return nil, err
		}
		srv = s
	}
	users++
	s := srv
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		users--
		if users == 0 && !held && srv == s {
			srv = nil
			if err := s.stop(); err != nil {
				t.Errorf("pgtest: %v", err)
			}
		}
	})
	return s.admin, nil
}

// Main runs a package's tests (call it from TestMain) with the private
// server, once started, kept until the last test has run and then stopped,
// rather than started and stopped again by each top-level test.
func Main(m *testing.M) int {
	mu.Lock()
	held = true
	mu.Unlock()
	code := m.Run()
	mu.Lock()
	held = false
	s := srv
	if users == 0 {
		srv = nil
	}
	mu.Unlock()
	if s != nil && users == 0 {
		if err := s.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
		}
	}
	return code
}

func missing(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("pgtest: no PostgreSQL server for the store tests: %v; "+
		"install Debian's postgresql package (hack/test.sh does as root) or set %s to a server's DSN", err, EnvDSN)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// binaries is where initdb and postgres live.
type binaries struct{ initdb, postgres string }

func findBinaries() (binaries, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	// Debian keeps the server binaries off PATH; prefer the newest version.
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(found, func(i, j int) bool { return pgVersion(found[i]) > pgVersion(found[j]) })
	dirs = append(dirs, found...)
	for _, d := range dirs {
		b := binaries{filepath.Join(d, "initdb"), filepath.Join(d, "postgres")}
		if isExec(b.initdb) && isExec(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, errors.New("initdb and postgres not found on PATH or in /usr/lib/postgresql/*/bin")
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// owner is who runs initdb and postgres: the current user, or the postgres
// user when running as root (postgres refuses to run as root).
type owner struct {
	cred     *syscall.Credential // nil: run as the current user
	uid, gid int
}

func serverOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return owner{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
	}
	return owner{}, errors.New("running as root and there is no postgres user to run the server as")
}

func (o owner) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred, Setpgid: true}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	return cmd
}

// chownTree gives the tree at dir to o.
func (o owner) chownTree(dir string) error {
	if o.cred == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, o.uid, o.gid)
	})
}

// template returns a cached, stopped data directory made by initdb, making
// it the first time. It is keyed by the binaries, so an upgrade makes a new one.
func template(bin binaries, o owner) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(bin.initdb + "\x00" + strconv.Itoa(o.uid)))
	dir := filepath.Join(cache, "podid", "pgtest", "template-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	// initdb into a scratch directory the server's user can write, then move
	// the result into place; a concurrent test process may win the rename.
	scratch, err := os.MkdirTemp("", "podid-pginit-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	if err := o.chownTree(scratch); err != nil {
		return "", err
	}
	data := filepath.Join(scratch, "data")
	cmd := o.command(bin.initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync",
		"--encoding=UTF8", "--locale=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	staged := dir + ".tmp-" + strconv.Itoa(os.Getpid())
	if err := copyTree(data, staged); err != nil {
		os.RemoveAll(staged)
		return "", err
	}
	if err := os.Rename(staged, dir); err != nil {
		os.RemoveAll(staged)
		if _, serr := os.Stat(filepath.Join(dir, "PG_VERSION")); serr == nil {
			return dir, nil // another process made it first
		}
		return "", err
	}
	return dir, nil
}

// copyTree copies regular files and directories, keeping their modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil // initdb makes no symlinks or special files
	})
}

type server struct {
	cmd   *exec.Cmd
	dir   string // socket directory, data directory and log
	dsn   string // superuser DSN for the postgres database
	admin *admin
	done  chan struct{}
	err   error // set when done closes
}

// testSettings are the tests' server settings. Durability is the store's
// business, not this server's: tests that kill processes kill clients,
// never this server, so fsync can go.
var testSettings = []string{"listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off",
	"full_page_writes=off", "max_connections=200", "shared_buffers=32MB"}

func startServer(bin binaries) (*server, error) {
	return startServerWith(bin, testSettings, false)
}

// reapStale stops the servers that earlier test processes started and could
// not stop because they died first, and removes their directories. A server
// is identified by the postmaster.pid in a podid-pgtest directory whose
// owner process is gone, and signalled only if that PID is still a postgres
// running on that directory.
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "podid-pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // not ours, or still being set up
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || alive(owner) {
			continue
		}
		data := filepath.Join(dir, "data")
		if b, err := os.ReadFile(filepath.Join(data, "postmaster.pid")); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && pid > 0 {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				if strings.Contains(string(cmdline), data) {
					syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown, children too
					for i := 0; i < 50 && alive(pid); i++ {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}
		}
		os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.dsn)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited: %v\n%s", s.err, s.log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v: %v\n%s", limit, err, s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	return string(b)
}

// stop asks the postmaster (by PID) for a fast shutdown, kills it if it
// lingers, and removes its directory.
func (s *server) stop() error {
	s.admin.close()
	defer os.RemoveAll(s.dir)
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop postgres (pid %d): %w", pid, err)
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(20 * time.Second):
	}
	// Its own process group (Setpgid) holds only the postmaster and its children.
	syscall.Kill(-pid, syscall.SIGKILL)
	<-s.done
	return fmt.Errorf("postgres (pid %d) ignored a fast shutdown for 20s and was killed", pid)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// createDatabase makes an empty database named after the test. FILE_COPY
// copies the small template faster than the WAL_LOG default of PostgreSQL 15.
func (a *admin) createDatabase(testName string) (string, error) {
	mu.Lock()
	dbSeq++
	seq := dbSeq
	mu.Unlock()
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(testName), "_"), "_")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	name := fmt.Sprintf("t%d_%d_%s", os.Getpid(), seq, base)
	ident := pgx.Identifier{name}.Sanitize()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := "CREATE DATABASE " + ident + " TEMPLATE template0 ENCODING 'UTF8' STRATEGY FILE_COPY"
	a.mu.Lock()
	icu := a.icu
	a.mu.Unlock()
	if icu == nil || *icu {
		err := a.exec(ctx, create+" LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
		ok := err == nil
		a.mu.Lock()
		a.icu = &ok
		a.mu.Unlock()
		if ok {
			return name, nil
		}
	}
	if err := a.exec(ctx, create); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}

func (a *admin) dropDatabase(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// FORCE ends connections a test left open (PostgreSQL 13+).
	if err := a.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Logf("pgtest: drop database %s: %v", name, err)
	}
}

// withDatabase returns admin with its database replaced by name.
func withDatabase(admin, name string) string {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// A key=value DSN: a later dbname wins.
		return admin + " dbname=" + name
	}
	u.Path = "/" + name
	return u.String()
}
