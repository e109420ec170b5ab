package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// PutActivation stores an activation record: the invoker's, with its logs, or the controller's own
// for a sequence or composition. Each id has one writer (see the package documentation), so a
// second write for the same namespace and activation id is the same activation written again (a
// retried request, or an activation Kafka delivered twice) and replaces the first: one record per
// id, never two. The activation's content, if it went by reference (PutContent), is deleted in the
// same transaction.
func (s *Store) PutActivation(ctx context.Context, a *whisk.WhiskActivation) error {
	if a == nil || a.Namespace == "" || !whisk.ValidActivationID(a.ActivationID) {
		return errors.New("put activation: namespace and a 32-hex activation id are required")
	}
	doc, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("put activation %s: encode: %w", a.DocID(), err)
	}
	start := int64(0)
	if !a.Start.IsZero() {
		start = a.Start.UnixMilli()
	}
	err = s.txRelaxed(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM activations WHERE namespace = ? AND activation_id = ?`, a.Namespace, a.ActivationID); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO activations (namespace, activation_id, entity, start_ms, doc) VALUES (?, ?, ?, ?, ?)`,
			a.Namespace, a.ActivationID, entityOf(a), start, string(doc)); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		// A stored record is an answered activation: content that went by reference is done with.
		if _, err := tx.ExecContext(ctx, `DELETE FROM activation_contents WHERE namespace = ? AND activation_id = ?`, a.Namespace, a.ActivationID); err != nil {
			return fmt.Errorf("drop its content: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put activation %s: %w", a.DocID(), err)
	}
	return nil
}

// entityOf is the action's name within its namespace ("name" or
// "pkg/name"), taken from the path annotation ("ns[/pkg]/name"), which is
// what the activation list's name filter matches.
func entityOf(a *whisk.WhiskActivation) string {
	if p, ok := a.Annotations.GetString(whisk.AnnotationPath); ok {
		if _, rest, found := strings.Cut(p, "/"); found && rest != "" {
			return rest
		}
	}
	return a.Name
}

// GetActivation returns the activation ns/id, or ErrNotFound.
func (s *Store) GetActivation(ctx context.Context, ns, id string) (*whisk.WhiskActivation, error) {
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT doc FROM activations WHERE namespace = ? AND activation_id = ?`, ns, id).Scan(&doc)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("activation %s/%s: %w", ns, id, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("activation %s/%s: %w", ns, id, err)
	}
	var a whisk.WhiskActivation
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		return nil, fmt.Errorf("decode stored activation %s/%s: %w", ns, id, err)
	}
	return &a, nil
}

// ActivationFilter selects activations for ListActivations. Name is an
// action name ("name" or "pkg/name"), empty for all; Since and Upto bound
// the start time (inclusive; zero means unbounded); Limit <= 0 means no
// limit.
type ActivationFilter struct {
	Name  string
	Since time.Time
	Upto  time.Time
	Limit int
	Skip  int
}

// filterSQL is the WHERE clause and arguments for f within namespace ns.
func filterSQL(ns string, f ActivationFilter) (string, []any) {
	where := []string{"namespace = ?"}
	args := []any{ns}
	if f.Name != "" {
		where = append(where, "entity = ?")
		args = append(args, f.Name)
	}
	if !f.Since.IsZero() {
		where = append(where, "start_ms >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Upto.IsZero() {
		where = append(where, "start_ms <= ?")
		args = append(args, f.Upto.UnixMilli())
	}
	return strings.Join(where, " AND "), args
}

// CountActivations counts the activations of ns matching f (Limit and Skip
// are ignored).
func (s *Store) CountActivations(ctx context.Context, ns string, f ActivationFilter) (int64, error) {
	where, args := filterSQL(ns, f)
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM activations WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count activations of %s: %w", ns, err)
	}
	return n, nil
}

// ListActivations lists the activations of namespace ns matching f, newest
// first.
func (s *Store) ListActivations(ctx context.Context, ns string, f ActivationFilter) ([]*whisk.WhiskActivation, error) {
	where, args := filterSQL(ns, f)
	limit, skip := f.Limit, f.Skip
	if limit <= 0 {
		limit = math.MaxInt32
	}
	if skip < 0 {
		skip = 0
	}
	args = append(args, limit, skip)
	q := `SELECT doc FROM activations WHERE ` + where +
		` ORDER BY start_ms DESC, activation_id DESC LIMIT ? OFFSET ?`
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list activations of %s: %w", ns, err)
	}
	defer rows.Close()
	out := []*whisk.WhiskActivation{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list activations of %s: %w", ns, err)
		}
		var a whisk.WhiskActivation
		if err := json.Unmarshal([]byte(doc), &a); err != nil {
			return nil, fmt.Errorf("list activations of %s: decode: %w", ns, err)
		}
		out = append(out, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list activations of %s: %w", ns, err)
	}
	return out, nil
}
