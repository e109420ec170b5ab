package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// InvokerDrain is an operator's drain of one invoker (issue #20) as the controller keeps it across
// restarts: where its images go, which moved (image -> invoker, -1 for none) and which were given
// up (image -> reason).
type InvokerDrain struct {
	Invoker  int
	To       int
	Force    bool
	Started  time.Time
	Drained  bool
	Moved    map[string]int
	NotMoved map[string]string
}

// PutInvokerDrain replaces invoker d.Invoker's drain.
func (s *Store) PutInvokerDrain(ctx context.Context, d InvokerDrain) error {
	if d.Invoker < 0 {
		return fmt.Errorf("put drain: invoker %d: must be 0 or more", d.Invoker)
	}
	moved, err := json.Marshal(orEmpty(d.Moved))
	if err != nil {
		return fmt.Errorf("put drain of invoker%d: moved: %w", d.Invoker, err)
	}
	notMoved, err := json.Marshal(orEmpty(d.NotMoved))
	if err != nil {
		return fmt.Errorf("put drain of invoker%d: not moved: %w", d.Invoker, err)
	}
	// Delete and insert rather than SQLite's INSERT OR REPLACE: the SQL stays portable (doc.go).
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM invoker_drains WHERE invoker = ?`, d.Invoker); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO invoker_drains
			(invoker, to_invoker, force, started_ms, drained, moved, not_moved) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			d.Invoker, d.To, d.Force, d.Started.UnixMilli(), d.Drained, string(moved), string(notMoved)); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put drain of invoker%d: %w", d.Invoker, err)
	}
	return nil
}

// DeleteInvokerDrain removes invoker id's drain; none is no error.
func (s *Store) DeleteInvokerDrain(ctx context.Context, id int) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM invoker_drains WHERE invoker = ?`, id); err != nil {
		return fmt.Errorf("delete drain of invoker%d: %w", id, err)
	}
	return nil
}

// InvokerDrains returns every invoker's drain, by invoker number.
func (s *Store) InvokerDrains(ctx context.Context) ([]InvokerDrain, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT invoker, to_invoker, force, started_ms, drained, moved, not_moved
		FROM invoker_drains ORDER BY invoker`)
	if err != nil {
		return nil, fmt.Errorf("list drains: %w", err)
	}
	defer rows.Close() // a read-only cursor: rows.Err below reports what went wrong
	var out []InvokerDrain
	for rows.Next() {
		var d InvokerDrain
		var started int64
		var moved, notMoved string
		if err := rows.Scan(&d.Invoker, &d.To, &d.Force, &started, &d.Drained, &moved, &notMoved); err != nil {
			return nil, fmt.Errorf("list drains: %w", err)
		}
		d.Started = time.UnixMilli(started)
		if err := json.Unmarshal([]byte(moved), &d.Moved); err != nil {
			return nil, fmt.Errorf("drain of invoker%d: moved: %w", d.Invoker, err)
		}
		if err := json.Unmarshal([]byte(notMoved), &d.NotMoved); err != nil {
			return nil, fmt.Errorf("drain of invoker%d: not moved: %w", d.Invoker, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list drains: %w", err)
	}
	return out, nil
}

// orEmpty keeps a nil map as {} in the column.
func orEmpty[M ~map[K]V, K comparable, V any](m M) M {
	if m == nil {
		return M{}
	}
	return m
}
