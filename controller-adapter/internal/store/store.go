package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Sentinel errors. Callers map them to HTTP statuses with errors.Is.
var (
	// ErrNotFound: the entity or activation does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the entity exists and the write did not ask to overwrite it.
	ErrConflict = errors.New("store: already exists")
	// ErrUnauthorized: the uuid is unknown or the key does not match.
	ErrUnauthorized = errors.New("store: invalid credentials")
)

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Never edit an applied migration: append a new one.
var migrations = []string{
	// 1: subjects, actions, activations.
	`CREATE TABLE namespaces (
		name    TEXT NOT NULL PRIMARY KEY,
		subject TEXT NOT NULL
	);
	CREATE TABLE auth_keys (
		uuid      TEXT NOT NULL PRIMARY KEY,
		secret    TEXT NOT NULL,
		namespace TEXT NOT NULL REFERENCES namespaces(name)
	);
	CREATE INDEX auth_keys_namespace ON auth_keys(namespace);
	CREATE TABLE actions (
		doc_id    TEXT NOT NULL PRIMARY KEY,
		root_ns   TEXT NOT NULL,
		rev_n     INTEGER NOT NULL,
		revision  TEXT NOT NULL,
		deleted   INTEGER NOT NULL,
		updated   INTEGER NOT NULL,
		doc       TEXT NOT NULL
	);
	CREATE INDEX actions_list ON actions(root_ns, deleted, updated);
	CREATE TABLE activations (
		namespace     TEXT NOT NULL,
		activation_id TEXT NOT NULL,
		entity        TEXT NOT NULL,
		start_ms      INTEGER NOT NULL,
		doc           TEXT NOT NULL,
		PRIMARY KEY (namespace, activation_id)
	);
	CREATE INDEX activations_by_start ON activations(namespace, start_ms);
	CREATE INDEX activations_by_entity ON activations(namespace, entity, start_ms);`,
	// 2: the latest evidence an enclave of each image published (issue #16).
	`CREATE TABLE evidence (
		image   TEXT NOT NULL PRIMARY KEY,
		updated INTEGER NOT NULL,
		doc     TEXT NOT NULL
	);`,
	// 3: packages and package bindings (issue #18). public is 1 for a published package that is
	// not a binding: what another namespace may list.
	`CREATE TABLE packages (
		doc_id    TEXT NOT NULL PRIMARY KEY,
		namespace TEXT NOT NULL,
		rev_n     INTEGER NOT NULL,
		revision  TEXT NOT NULL,
		deleted   INTEGER NOT NULL,
		updated   INTEGER NOT NULL,
		public    INTEGER NOT NULL,
		doc       TEXT NOT NULL
	);
	CREATE INDEX packages_list ON packages(namespace, deleted, updated);`,
	// 4: activation content too large for a Kafka record, until the activation is answered (issue #17).
	`CREATE TABLE activation_contents (
		namespace     TEXT NOT NULL,
		activation_id TEXT NOT NULL,
		expires_ms    INTEGER NOT NULL,
		content       BLOB NOT NULL,
		PRIMARY KEY (namespace, activation_id)
	);
	CREATE INDEX activation_contents_expiry ON activation_contents(expires_ms);`,
	// 5: triggers, rules and the alarms feed's schedules (issue #18; triggers.go, schedules.go).
	migrationTriggers,
	// 6: a namespace's own throttles (issue #18): OpenWhisk's UserLimits fields that override the
	// system's, as JSON; '{}' takes the system's everywhere.
	`ALTER TABLE namespaces ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';`,
	// 7: the operator's invoker drains (issue #20; drains.go), so that a restarted controller
	// keeps an invoker under maintenance out of the routing.
	`CREATE TABLE invoker_drains (
		invoker    INTEGER NOT NULL PRIMARY KEY,
		to_invoker INTEGER NOT NULL,
		force      INTEGER NOT NULL,
		started_ms INTEGER NOT NULL,
		drained    INTEGER NOT NULL,
		moved      TEXT NOT NULL,
		not_moved  TEXT NOT NULL
	);`,
	// 8: the entities' generation (cache.go): every entity write bumps it in its own transaction,
	// so that a cached read knows whether anything it was read with has changed since.
	`CREATE TABLE generation (
		id INTEGER NOT NULL PRIMARY KEY,
		n  INTEGER NOT NULL
	);
	INSERT INTO generation (id, n) VALUES (1, 0);`,
}

// Store is the embedded database. Safe for concurrent use.
type Store struct {
	w     *sql.DB // exactly one connection: SQLite has one writer at a time
	r     *sql.DB // readers; WAL lets them run beside the writer
	now   func() time.Time
	cache readCache // the invoke path's reads, valid while the generation holds (cache.go)
	gen   *os.File  // the published generation (cache.go)
}

// Open opens (creating if needed) the database file at path and migrates it
// to the current schema.
func Open(path string) (*Store, error) {
	// The file is made before SQLite opens it so that it is private from the first byte: SQLite
	// creates the -wal and -shm files with the database file's mode, whatever the umask.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	q := url.Values{}
	// secure_delete zeroes freed content, so a value overwritten (a key upgraded to its hash) or
	// deleted does not linger in free pages of the file.
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)", "secure_delete(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, errors.Join(err, w.Close()))
	}
	r.SetMaxOpenConns(8)
	gen, err := os.OpenFile(path+generationSuffix, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, errors.Join(err, r.Close(), w.Close()))
	}
	s := &Store{w: w, r: r, now: time.Now, gen: gen}
	if err := s.migrate(context.Background()); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, errors.Join(err, s.Close()))
	}
	if _, err := s.hashPlaintextKeys(context.Background()); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, errors.Join(err, s.Close()))
	}
	if _, err := s.ExpireContents(context.Background()); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, errors.Join(err, s.Close()))
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close(), s.gen.Close())
}

// SchemaVersion is the number of migrations applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var cur int
	if err := s.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&cur); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if cur > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program's %d", cur, len(migrations))
	}
	for v := cur + 1; v <= len(migrations); v++ {
		// Not s.tx: the generation a write bumps is itself made by a migration.
		err := s.txOn(ctx, s.w, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, v)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", v, err)
		}
	}
	return nil
}

// tx runs fn in a write transaction of entities or subjects, committing when fn returns nil. The
// transaction also bumps the generation, published once it committed (cache.go), so that no
// cached read outlives the write, whichever process made it.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	var gen int64
	err := s.txOn(ctx, s.w, func(tx *sql.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `UPDATE generation SET n = n + 1 WHERE id = 1 RETURNING n`).Scan(&gen); err != nil {
			return fmt.Errorf("bump the generation: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.publishGeneration(gen)
}

// beginner is what txOn needs of *sql.DB and *sql.Conn.
type beginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// txRelaxed runs fn in a write transaction committed with synchronous=NORMAL: in WAL mode the
// commit then does not wait for the disk (a crash of the process loses nothing; a crash of the
// machine may lose the last such commits, never the database). Activation records take this
// path: they sit on every blocking invocation's critical path, and OpenWhisk's own activation
// store is no more durable. Entities and subjects keep synchronous=FULL.
func (s *Store) txRelaxed(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("writer connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		return fmt.Errorf("relax synchronous: %w", err)
	}
	defer func() {
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = FULL`); rerr != nil {
			// The connection must not serve a durable write relaxed: drop it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("restore synchronous: %w", rerr))
		}
	}()
	return s.txOn(ctx, conn, fn)
}

func (s *Store) txOn(ctx context.Context, db beginner, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
