package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors of Open.
var (
	// ErrCorrupt: the file is not a journal this program can read (not SQLite, another program's
	// database, a newer schema, or damaged). The message names the file; moving it away starts an
	// empty journal, at the price of the guarantees for the activations it remembered.
	ErrCorrupt = errors.New("journal: not a readable invoker journal")
	// ErrLocked: another process (or another Open in this one) holds the journal.
	ErrLocked = errors.New("journal: in use by another invoker")
)

// State is how far the invoker got with an activation.
type State int

const (
	// None: the id is not in the journal (never seen, or pruned).
	None State = iota
	// Started: handed to the executor; the action's code may have run.
	Started
	// Finished: the record is known and the acks are about to go out.
	Finished
	// Answered: the acks went out; Entry.Acks are their bytes.
	Answered
)

func (s State) String() string {
	switch s {
	case None:
		return "none"
	case Started:
		return "started"
	case Finished:
		return "finished"
	case Answered:
		return "answered"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Ack is one acknowledgement as it went onto Kafka.
type Ack struct {
	Topic string
	Value []byte
}

// Entry is what the journal holds for one activation id.
type Entry struct {
	State State
	// Plan is the caller's ack plan, kept opaque (Finished and Answered).
	Plan int
	// Record is the activation record's bytes (Finished; Answered while the store has not
	// confirmed it).
	Record []byte
	// Acks are the acknowledgements as sent (Answered), in order.
	Acks []Ack
}

// Pending is a record the activation store has not confirmed yet: one row of the outbox.
type Pending struct {
	ID     string
	Record []byte
	// Attempts is how many deliveries of it failed so far.
	Attempts int
}

// Options of a journal. Zero values take the defaults noted.
type Options struct {
	// KeepAnswered is how many answered activations are kept at most (default 100000).
	KeepAnswered int
	// KeepFor is how long any activation is kept after its last change (default 24 h). Rows whose
	// record is still pending delivery are never pruned.
	KeepFor time.Duration
	// KeepBytes bounds the bytes of acks and records of answered activations (default 256 MiB).
	KeepBytes int64
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.KeepAnswered <= 0 {
		o.KeepAnswered = 100000
	}
	if o.KeepFor <= 0 {
		o.KeepFor = 24 * time.Hour
	}
	if o.KeepBytes <= 0 {
		o.KeepBytes = 256 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// applicationID marks the SQLite file as ours ("TMJ1"), so another database put in its place is
// refused instead of being written to.
const applicationID = 0x544d4a31

// schemaVersion is the layout below (PRAGMA user_version). A newer file is refused.
const schemaVersion = 1

const schema = `
CREATE TABLE activations (
	id       TEXT    NOT NULL PRIMARY KEY,
	state    INTEGER NOT NULL,
	updated  INTEGER NOT NULL,           -- unix ms of the last change
	plan     INTEGER NOT NULL DEFAULT 0,
	record   BLOB,                       -- Finished; Answered while pending
	acks     BLOB,                       -- Answered: encodeAcks
	pending  INTEGER NOT NULL DEFAULT 0, -- 1: the record is in the outbox
	attempts INTEGER NOT NULL DEFAULT 0,
	next_try INTEGER NOT NULL DEFAULT 0  -- unix ms
);
CREATE INDEX activations_outbox ON activations(next_try) WHERE pending = 1;
CREATE INDEX activations_age ON activations(state, updated);`

// Journal is one invoker's journal. Safe for concurrent use; every method is one SQLite
// transaction on the journal's one connection.
type Journal struct {
	path string
	opts Options
	db   *sql.DB
	lock *os.File
	// The statements of every activation's path, compiled once: SQLite's parse and plan of
	// these took about as long as their execution.
	lookup, start, finish, answer *sql.Stmt
}

// Open opens (creating if needed) the journal at path, checks that it is one and intact, and
// makes every pending record due at once (the invoker just started: whatever waited for a retry
// is tried now).
func Open(path string, opts Options) (j *Journal, err error) {
	opts.defaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		cerr := lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.Join(fmt.Errorf("%w: %s (is an invoker with the same id running on this state directory?)", ErrLocked, path), cerr)
		}
		return nil, errors.Join(fmt.Errorf("journal %s: lock: %w", path, err), cerr)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, lock.Close())
		}
	}()
	// Made before SQLite opens it so that it is private from the first byte: SQLite creates the
	// -wal and -shm files with the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	q := url.Values{}
	// WAL is set once the file is known to be ours (prepare): it rewrites the file's header.
	// EXCLUSIVE: the flock above already keeps other processes out, and it spares the shared-memory
	// WAL index (and its lock calls) on every transaction.
	for _, p := range []string{"locking_mode(EXCLUSIVE)", "synchronous(NORMAL)", "busy_timeout(5000)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	// One connection: SQLite has one writer at a time, and reads are single-row lookups.
	db.SetMaxOpenConns(1)
	db.SetConnMaxLifetime(0)
	j = &Journal{path: path, opts: opts, db: db, lock: lock}
	if err := j.prepare(context.Background()); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if err := j.compile(context.Background()); err != nil {
		return nil, errors.Join(err, j.closeStatements(), db.Close())
	}
	return j, nil
}

// The statements of an activation's path (Lookup, Start, Finish, Answer).
const (
	lookupSQL = `SELECT state, plan, record, acks FROM activations WHERE id = ?`
	startSQL  = `INSERT INTO activations (id, state, updated) VALUES (?, ?, ?)
		ON CONFLICT (id) DO NOTHING`
	finishSQL = `INSERT INTO activations (id, state, updated, plan, record, pending, attempts, next_try)
		VALUES (?1, ?2, ?3, ?4, ?5, 1, 0, ?6)
		ON CONFLICT (id) DO UPDATE SET state = ?2, updated = ?3, plan = ?4, record = ?5, pending = 1, attempts = 0, next_try = ?6`
	answerSQL = `INSERT INTO activations (id, state, updated, acks) VALUES (?1, ?2, ?3, ?4)
		ON CONFLICT (id) DO UPDATE SET state = ?2, updated = ?3, acks = ?4,
			pending = CASE WHEN ?5 THEN 0 ELSE pending END,
			record = CASE WHEN ?5 THEN NULL ELSE record END,
			next_try = CASE WHEN ?5 THEN next_try ELSE ?6 END`
)

// compile prepares the statements of an activation's path on the journal's one connection.
func (j *Journal) compile(ctx context.Context) error {
	for _, s := range []struct {
		stmt **sql.Stmt
		sql  string
	}{{&j.lookup, lookupSQL}, {&j.start, startSQL}, {&j.finish, finishSQL}, {&j.answer, answerSQL}} {
		st, err := j.db.PrepareContext(ctx, s.sql)
		if err != nil {
			return fmt.Errorf("journal %s: prepare: %w", j.path, err)
		}
		*s.stmt = st
	}
	return nil
}

func (j *Journal) closeStatements() error {
	var errs []error
	for _, st := range []*sql.Stmt{j.lookup, j.start, j.finish, j.answer} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// prepare checks the file is our journal (creating the schema in an empty one) and intact.
func (j *Journal) prepare(ctx context.Context) error {
	var app, ver int
	if err := j.db.QueryRowContext(ctx, `PRAGMA application_id`).Scan(&app); err != nil {
		return j.corrupt(err)
	}
	if err := j.db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&ver); err != nil {
		return j.corrupt(err)
	}
	switch {
	case app == 0 && ver == 0:
		var tables int
		if err := j.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&tables); err != nil {
			return j.corrupt(err)
		}
		if tables != 0 {
			return fmt.Errorf("%w: %s is another program's SQLite database", ErrCorrupt, j.path)
		}
		if err := j.create(ctx); err != nil {
			return err
		}
	case app != applicationID:
		return fmt.Errorf("%w: %s is another program's SQLite database (application_id %#x)", ErrCorrupt, j.path, app)
	case ver > schemaVersion:
		return fmt.Errorf("%w: %s has schema version %d, newer than this program's %d", ErrCorrupt, j.path, ver, schemaVersion)
	}
	if _, err := j.db.ExecContext(ctx, `PRAGMA journal_mode = WAL`); err != nil {
		return j.corrupt(err)
	}
	rows, err := j.db.QueryContext(ctx, `PRAGMA quick_check`)
	if err != nil {
		return j.corrupt(err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return errors.Join(j.corrupt(err), rows.Close())
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return j.corrupt(err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s fails its integrity check: %s", ErrCorrupt, j.path, strings.Join(problems, "; "))
	}
	if _, err := j.db.ExecContext(ctx, `UPDATE activations SET next_try = 0 WHERE pending = 1`); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return nil
}

func (j *Journal) create(ctx context.Context) error {
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return j.corrupt(err)
	}
	stmts := []string{schema, fmt.Sprintf(`PRAGMA application_id = %d`, applicationID), fmt.Sprintf(`PRAGMA user_version = %d`, schemaVersion)}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return errors.Join(fmt.Errorf("journal %s: create: %w", j.path, err), tx.Rollback())
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("journal %s: create: %w", j.path, err)
	}
	return nil
}

// corrupt wraps an error of the first reads: SQLite's "not a database" and "malformed" become
// ErrCorrupt, anything else (permissions, disk) stays what it is.
func (j *Journal) corrupt(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("%w: %s: %w (move it away to start with an empty journal)", ErrCorrupt, j.path, err)
		}
	}
	return fmt.Errorf("journal %s: %w", j.path, err)
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Close closes the journal and releases its lock. Callers stop using it first.
func (j *Journal) Close() error {
	return errors.Join(j.closeStatements(), j.db.Close(), j.lock.Close())
}

func (j *Journal) nowMs() int64 { return j.opts.Now().UnixMilli() }

// Lookup returns what the journal holds for id (State None when nothing).
func (j *Journal) Lookup(ctx context.Context, id string) (Entry, error) {
	var e Entry
	var acks []byte
	err := j.lookup.QueryRowContext(ctx, id).Scan(&e.State, &e.Plan, &e.Record, &acks)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Entry{State: None}, nil
	case err != nil:
		return Entry{}, fmt.Errorf("journal: look up %s: %w", id, err)
	}
	if e.State < Started || e.State > Answered {
		return Entry{}, fmt.Errorf("journal: %s has an unknown state %d", id, int(e.State))
	}
	if e.State == Answered {
		if e.Acks, err = decodeAcks(acks); err != nil {
			return Entry{}, fmt.Errorf("journal: acks of %s: %w", id, err)
		}
	}
	return e, nil
}

// Start marks id Started, unless the journal already holds it.
func (j *Journal) Start(ctx context.Context, id string) error {
	_, err := j.start.ExecContext(ctx, id, Started, j.nowMs())
	if err != nil {
		return fmt.Errorf("journal: start %s: %w", id, err)
	}
	return nil
}

// Finish marks id Finished with its record and ack plan, and puts the record in the outbox. Its
// first delivery is left to the caller (the outbox tries it only after the caller's Answer says it
// failed, or after a restart).
func (j *Journal) Finish(ctx context.Context, id string, plan int, record []byte) error {
	if record == nil {
		record = []byte{}
	}
	now := j.nowMs()
	_, err := j.finish.ExecContext(ctx, id, Finished, now, plan, record, now+time.Hour.Milliseconds())
	if err != nil {
		return fmt.Errorf("journal: finish %s: %w", id, err)
	}
	return nil
}

// Answer marks id Answered with the acks sent. delivered says the activation store has the record
// (or keeps none): the outbox row is done. Otherwise the record stays in the outbox, due at
// retryAt.
func (j *Journal) Answer(ctx context.Context, id string, acks []Ack, delivered bool, retryAt time.Time) error {
	enc := encodeAcks(acks)
	_, err := j.answer.ExecContext(ctx, id, Answered, j.nowMs(), enc, delivered, retryAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("journal: answer %s: %w", id, err)
	}
	return nil
}

// Due returns up to limit outbox records due at now, the longest waiting first.
func (j *Journal) Due(ctx context.Context, now time.Time, limit int) ([]Pending, error) {
	rows, err := j.db.QueryContext(ctx, `SELECT id, record, attempts FROM activations
		WHERE pending = 1 AND next_try <= ? AND record IS NOT NULL ORDER BY next_try, updated LIMIT ?`, now.UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("journal: due records: %w", err)
	}
	var out []Pending
	for rows.Next() {
		var p Pending
		if err := rows.Scan(&p.ID, &p.Record, &p.Attempts); err != nil {
			return nil, errors.Join(fmt.Errorf("journal: due records: %w", err), rows.Close())
		}
		out = append(out, p)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("journal: due records: %w", err)
	}
	return out, nil
}

// NextDue is when the earliest outbox record is due; ok is false when the outbox is empty.
func (j *Journal) NextDue(ctx context.Context) (at time.Time, ok bool, err error) {
	var ms sql.NullInt64
	if err := j.db.QueryRowContext(ctx, `SELECT MIN(next_try) FROM activations WHERE pending = 1 AND record IS NOT NULL`).Scan(&ms); err != nil {
		return time.Time{}, false, fmt.Errorf("journal: next due record: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(ms.Int64), true, nil
}

// Delivered takes id's record out of the outbox (the store confirmed it). An answered row drops
// the record; a finished one keeps it, to answer a redelivery with.
func (j *Journal) Delivered(ctx context.Context, id string) error {
	_, err := j.db.ExecContext(ctx, `UPDATE activations SET pending = 0,
		record = CASE WHEN state = ? THEN NULL ELSE record END WHERE id = ?`, Answered, id)
	if err != nil {
		return fmt.Errorf("journal: delivered %s: %w", id, err)
	}
	return nil
}

// Postpone records a failed delivery of id's record: attempts failures so far, next try at.
func (j *Journal) Postpone(ctx context.Context, id string, attempts int, at time.Time) error {
	_, err := j.db.ExecContext(ctx, `UPDATE activations SET attempts = ?, next_try = ? WHERE id = ? AND pending = 1`,
		attempts, at.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("journal: postpone %s: %w", id, err)
	}
	return nil
}

// Expedite makes every outbox record due now (the store answered again: no reason to wait out
// the backoff of the others).
func (j *Journal) Expedite(ctx context.Context) error {
	if _, err := j.db.ExecContext(ctx, `UPDATE activations SET next_try = ? WHERE pending = 1 AND next_try > ?`, j.nowMs(), j.nowMs()); err != nil {
		return fmt.Errorf("journal: expedite the outbox: %w", err)
	}
	return nil
}

// Depth is the number of records in the outbox.
func (j *Journal) Depth(ctx context.Context) (int, error) {
	var n int
	if err := j.db.QueryRowContext(ctx, `SELECT count(*) FROM activations WHERE pending = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("journal: outbox depth: %w", err)
	}
	return n, nil
}

// Prune deletes what the journal need not keep: rows unchanged for KeepFor, and the oldest
// answered rows beyond KeepAnswered or KeepBytes. A row whose record is still in the outbox is
// never deleted. It returns how many rows went.
func (j *Journal) Prune(ctx context.Context) (int64, error) {
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("journal: prune: %w", err)
	}
	var total int64
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM activations WHERE pending = 0 AND updated < ?`, []any{j.nowMs() - j.opts.KeepFor.Milliseconds()}},
		{`DELETE FROM activations WHERE id IN (SELECT id FROM activations WHERE state = ? AND pending = 0
			ORDER BY updated DESC, rowid DESC LIMIT -1 OFFSET ?)`, []any{Answered, j.opts.KeepAnswered}},
		{`DELETE FROM activations WHERE id IN (SELECT id FROM (
			SELECT id, SUM(COALESCE(length(acks), 0) + COALESCE(length(record), 0))
				OVER (ORDER BY updated DESC, rowid DESC) AS kept
			FROM activations WHERE state = ? AND pending = 0) WHERE kept > ?)`, []any{Answered, j.opts.KeepBytes}},
	} {
		res, err := tx.ExecContext(ctx, q.sql, q.args...)
		if err != nil {
			return 0, errors.Join(fmt.Errorf("journal: prune: %w", err), tx.Rollback())
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, errors.Join(fmt.Errorf("journal: prune: %w", err), tx.Rollback())
		}
		total += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("journal: prune: %w", err)
	}
	return total, nil
}
