package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/teemate/platform/invoker/whisk"
)

// ErrIsBinding: the package is a binding, which holds no actions of its own.
var ErrIsBinding = errors.New("store: the package is a binding")

// NotEmptyError is DeletePackage's refusal of a package that still holds actions.
type NotEmptyError struct{ Actions int }

func (e *NotEmptyError) Error() string {
	return fmt.Sprintf("store: the package holds %d actions", e.Actions)
}

// PutPackage writes the package or binding document p. On create its version is p.Version, or
// whisk.DefaultVersion when empty; on overwrite p.Version when set (an explicit version, which
// OpenWhisk honours), otherwise the stored version with its patch number plus one. Either way it
// assigns a new revision and sets Updated, and returns the stored document. An existing package
// with overwrite false gives ErrConflict. p itself is not modified.
func (s *Store) PutPackage(ctx context.Context, p *whisk.Package, overwrite bool) (*whisk.Package, error) {
	if p == nil || !whisk.ValidEntityName(p.Namespace) || !whisk.ValidEntityName(p.Name) {
		return nil, errors.New("put package: a valid namespace and name are required")
	}
	docID := p.Path()
	out := *p
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var revN int64
		var deleted bool
		var old string
		err := tx.QueryRowContext(ctx, `SELECT rev_n, deleted, doc FROM packages WHERE doc_id = ?`, docID).Scan(&revN, &deleted, &old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read %s: %w", docID, err)
		}
		exists := err == nil && !deleted
		if exists && !overwrite {
			return ErrConflict
		}
		switch {
		case out.Version != "":
		case exists:
			var prev whisk.Package
			if err := json.Unmarshal([]byte(old), &prev); err != nil {
				return fmt.Errorf("decode stored %s: %w", docID, err)
			}
			out.Version = bumpPatch(prev.Version)
		default:
			out.Version = whisk.DefaultVersion
		}
		out.Revision = newRevision(revN + 1)
		out.Updated = s.now().UnixMilli()
		doc, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode %s: %w", docID, err)
		}
		public := out.Publish && out.Binding == nil
		res, err := tx.ExecContext(ctx,
			`UPDATE packages SET rev_n = ?, revision = ?, deleted = 0, updated = ?, public = ?, doc = ? WHERE doc_id = ?`,
			revN+1, out.Revision, out.Updated, public, string(doc), docID)
		if err != nil {
			return fmt.Errorf("update %s: %w", docID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO packages (doc_id, namespace, rev_n, revision, deleted, updated, public, doc) VALUES (?, ?, ?, ?, 0, ?, ?, ?)`,
				docID, out.Namespace, revN+1, out.Revision, out.Updated, public, string(doc)); err != nil {
				return fmt.Errorf("insert %s: %w", docID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("put package %s: %w", docID, err)
	}
	return &out, nil
}

// EnsurePackage creates package p unless ns/name exists (as a package or a binding), and reports
// whether it did. What exists is never changed, so an operator's edits survive every start.
func (s *Store) EnsurePackage(ctx context.Context, p *whisk.Package) (bool, error) {
	_, err := s.PutPackage(ctx, p, false)
	switch {
	case errors.Is(err, ErrConflict):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// GetPackage returns the package or binding ns/name, or ErrNotFound.
func (s *Store) GetPackage(ctx context.Context, ns, name string) (*whisk.Package, error) {
	return getPackage(ctx, s.r, ns+"/"+name)
}

// queryRower is what getPackage needs of *sql.DB and *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getPackage(ctx context.Context, q queryRower, docID string) (*whisk.Package, error) {
	var doc, rev string
	err := q.QueryRowContext(ctx, `SELECT doc, revision FROM packages WHERE doc_id = ? AND deleted = 0`, docID).Scan(&doc, &rev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("package %s: %w", docID, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("package %s: %w", docID, err)
	}
	return decodePackage(docID, doc, rev)
}

// DeletePackage removes the package or binding ns/name and returns what was deleted, or
// ErrNotFound. A package that still holds actions is refused with *NotEmptyError unless force,
// which deletes its actions with it (OpenWhisk's ?force=true); a binding holds none. The check
// and the deletes are one transaction, so an action created meanwhile is either counted or
// refused (PutAction checks its package in its own transaction).
func (s *Store) DeletePackage(ctx context.Context, ns, name string, force bool) (*whisk.Package, error) {
	docID := ns + "/" + name
	var out *whisk.Package
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if out, err = getPackage(ctx, tx, docID); err != nil {
			return err
		}
		var revN int64
		if err := tx.QueryRowContext(ctx, `SELECT rev_n FROM packages WHERE doc_id = ?`, docID).Scan(&revN); err != nil {
			return err
		}
		if out.Binding == nil {
			lo, hi := packageRange(docID)
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM actions WHERE doc_id >= ? AND doc_id < ? AND deleted = 0`, lo, hi).Scan(&n); err != nil {
				return fmt.Errorf("count its actions: %w", err)
			}
			if n > 0 && !force {
				return &NotEmptyError{Actions: n}
			}
			if n > 0 {
				if err := s.deleteActionsIn(ctx, tx, lo, hi); err != nil {
					return fmt.Errorf("delete its actions: %w", err)
				}
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE packages SET deleted = 1, rev_n = ?, revision = ?, updated = ? WHERE doc_id = ?`,
			revN+1, newRevision(revN+1), s.now().UnixMilli(), docID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete package %s: %w", docID, err)
	}
	return out, nil
}

// deleteActionsIn deletes the actions whose ids are in [lo, hi), each with a new revision as
// DeleteAction gives.
func (s *Store) deleteActionsIn(ctx context.Context, tx *sql.Tx, lo, hi string) error {
	rows, err := tx.QueryContext(ctx, `SELECT doc_id, rev_n FROM actions WHERE doc_id >= ? AND doc_id < ? AND deleted = 0`, lo, hi)
	if err != nil {
		return err
	}
	type row struct {
		id   string
		revN int64
	}
	var del []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.revN); err != nil {
			return errors.Join(err, rows.Close())
		}
		del = append(del, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, r := range del {
		if _, err := tx.ExecContext(ctx, `UPDATE actions SET deleted = 1, rev_n = ?, revision = ?, updated = ? WHERE doc_id = ?`,
			r.revN+1, newRevision(r.revN+1), s.now().UnixMilli(), r.id); err != nil {
			return err
		}
	}
	return nil
}

// packageRange bounds the document ids of the actions in package path ("ns/pkg"): every id
// "ns/pkg/<name>" sorts at or after "ns/pkg/" and before "ns/pkg0" ('0' follows '/'), and no other
// action's id does (names hold no slash). A range keeps the primary key index usable and needs no
// LIKE escaping of the '_' names may contain.
func packageRange(path string) (lo, hi string) { return path + "/", path + "0" }

// ListPackages lists the packages and bindings of namespace ns, most recently updated first;
// publicOnly lists only published packages (not bindings), what another namespace may see.
// limit <= 0 means no limit.
func (s *Store) ListPackages(ctx context.Context, ns string, publicOnly bool, limit, skip int) ([]*whisk.Package, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT doc_id, doc, revision FROM packages WHERE namespace = ? AND deleted = 0 AND (public = 1 OR ? = 0)
		 ORDER BY updated DESC, doc_id LIMIT ? OFFSET ?`, ns, publicOnly, limit, max(skip, 0))
	if err != nil {
		return nil, fmt.Errorf("list packages of %s: %w", ns, err)
	}
	defer rows.Close()
	out := []*whisk.Package{}
	for rows.Next() {
		var id, doc, rev string
		if err := rows.Scan(&id, &doc, &rev); err != nil {
			return nil, fmt.Errorf("list packages of %s: %w", ns, err)
		}
		p, err := decodePackage(id, doc, rev)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list packages of %s: %w", ns, err)
	}
	return out, nil
}

// CountPackages counts what ListPackages would list without a limit, less skip (never below 0).
func (s *Store) CountPackages(ctx context.Context, ns string, publicOnly bool, skip int) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM packages WHERE namespace = ? AND deleted = 0 AND (public = 1 OR ? = 0)`, ns, publicOnly).Scan(&n); err != nil {
		return 0, fmt.Errorf("count packages of %s: %w", ns, err)
	}
	return max(n-max(skip, 0), 0), nil
}

// ListPackageActions lists the actions of package path ("ns/pkg"), most recently updated first.
// limit <= 0 means no limit.
func (s *Store) ListPackageActions(ctx context.Context, path string, limit, skip int) ([]*whisk.Action, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	lo, hi := packageRange(path)
	rows, err := s.r.QueryContext(ctx,
		`SELECT doc_id, doc, revision FROM actions WHERE doc_id >= ? AND doc_id < ? AND deleted = 0
		 ORDER BY updated DESC, doc_id LIMIT ? OFFSET ?`, lo, hi, limit, max(skip, 0))
	if err != nil {
		return nil, fmt.Errorf("list actions of %s: %w", path, err)
	}
	defer rows.Close()
	out := []*whisk.Action{}
	for rows.Next() {
		var id, doc, rev string
		if err := rows.Scan(&id, &doc, &rev); err != nil {
			return nil, fmt.Errorf("list actions of %s: %w", path, err)
		}
		a, err := decodeAction(id, doc, rev)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list actions of %s: %w", path, err)
	}
	return out, nil
}

func decodePackage(docID, doc, rev string) (*whisk.Package, error) {
	var p whisk.Package
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return nil, fmt.Errorf("decode stored package %s: %w", docID, err)
	}
	p.Revision = rev
	return &p, nil
}
