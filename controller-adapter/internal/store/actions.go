package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/teemate/platform/invoker/whisk"
)

// PutAction writes the action document a (a.Namespace is "ns" or "ns/pkg"). An action of a
// package needs the package: ErrNotFound without it, ErrIsBinding when it is a binding.
// Its version is a.Version when set (an explicit version, which OpenWhisk honours), otherwise
// whisk.DefaultVersion on create and the stored version with its patch number plus one on
// overwrite, as OpenWhisk does on every update.
// Either way it assigns a new revision "N-<hex>" and sets Updated, and
// returns the stored document. An existing action with overwrite false
// gives ErrConflict. a itself is not modified.
func (s *Store) PutAction(ctx context.Context, a *whisk.Action, overwrite bool) (*whisk.Action, error) {
	if a == nil || a.Name == "" || a.Namespace == "" {
		return nil, errors.New("put action: namespace and name are required")
	}
	docID := a.Namespace + "/" + a.Name
	root, pkg, inPackage := strings.Cut(a.Namespace, "/")
	out := *a
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if inPackage {
			// In the same transaction as the write, so a concurrent DeletePackage either sees
			// this action or makes this write fail.
			p, err := getPackage(ctx, tx, root+"/"+pkg)
			switch {
			case err != nil:
				return err
			case p.Binding != nil:
				return ErrIsBinding
			}
		}
		var revN int64
		var deleted bool
		var old string
		err := tx.QueryRowContext(ctx, `SELECT rev_n, deleted, doc FROM actions WHERE doc_id = ?`, docID).Scan(&revN, &deleted, &old)
		exists := err == nil && !deleted
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("read %s: %w", docID, err)
		}
		if exists && !overwrite {
			return ErrConflict
		}
		switch {
		case out.Version != "":
		case exists:
			var prev whisk.Action
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
		res, err := tx.ExecContext(ctx,
			`UPDATE actions SET rev_n = ?, revision = ?, deleted = 0, updated = ?, doc = ? WHERE doc_id = ?`,
			revN+1, out.Revision, out.Updated, string(doc), docID)
		if err != nil {
			return fmt.Errorf("update %s: %w", docID, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO actions (doc_id, root_ns, rev_n, revision, deleted, updated, doc) VALUES (?, ?, ?, ?, 0, ?, ?)`,
				docID, root, revN+1, out.Revision, out.Updated, string(doc)); err != nil {
				return fmt.Errorf("insert %s: %w", docID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("put action %s: %w", docID, err)
	}
	return &out, nil
}

// GetAction returns the action ns/pkgAndName ("name" or "pkg/name") with its
// current revision, or ErrNotFound.
func (s *Store) GetAction(ctx context.Context, ns, pkgAndName string) (*whisk.Action, error) {
	docID := ns + "/" + pkgAndName
	gen, cached := s.generation()
	row, hit := s.cache.actions.at(docID, gen)
	if !cached || !hit {
		err := s.r.QueryRowContext(ctx, `SELECT doc, revision FROM actions WHERE doc_id = ? AND deleted = 0`, docID).Scan(&row.doc, &row.rev)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("action %s: %w", docID, ErrNotFound)
		case err != nil:
			return nil, fmt.Errorf("action %s: %w", docID, err)
		}
		if cached && len(row.doc) <= cacheMaxDoc {
			s.cache.actions.put(docID, gen, row)
		}
	}
	// Decoded on every read: each caller gets an action of its own to change.
	return decodeAction(docID, row.doc, row.rev)
}

// DeleteAction removes the action and returns what was deleted, or
// ErrNotFound. The revision counter is kept (a tombstone, as in CouchDB), so
// a recreated action continues the sequence.
func (s *Store) DeleteAction(ctx context.Context, ns, pkgAndName string) (*whisk.Action, error) {
	docID := ns + "/" + pkgAndName
	var out *whisk.Action
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var doc, rev string
		var revN int64
		err := tx.QueryRowContext(ctx, `SELECT doc, revision, rev_n FROM actions WHERE doc_id = ? AND deleted = 0`, docID).Scan(&doc, &rev, &revN)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		}
		if out, err = decodeAction(docID, doc, rev); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE actions SET deleted = 1, rev_n = ?, revision = ?, updated = ? WHERE doc_id = ?`,
			revN+1, newRevision(revN+1), s.now().UnixMilli(), docID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delete action %s: %w", docID, err)
	}
	return out, nil
}

// ListActions lists the actions of namespace ns (all packages), most
// recently updated first. limit <= 0 means no limit.
func (s *Store) ListActions(ctx context.Context, ns string, limit, skip int) ([]*whisk.Action, error) {
	if limit <= 0 {
		limit = math.MaxInt32 // portable "no limit"
	}
	if skip < 0 {
		skip = 0
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT doc_id, doc, revision FROM actions WHERE root_ns = ? AND deleted = 0
		 ORDER BY updated DESC, doc_id LIMIT ? OFFSET ?`, ns, limit, skip)
	if err != nil {
		return nil, fmt.Errorf("list actions of %s: %w", ns, err)
	}
	defer rows.Close()
	out := []*whisk.Action{}
	for rows.Next() {
		var id, doc, rev string
		if err := rows.Scan(&id, &doc, &rev); err != nil {
			return nil, fmt.Errorf("list actions of %s: %w", ns, err)
		}
		a, err := decodeAction(id, doc, rev)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list actions of %s: %w", ns, err)
	}
	return out, nil
}

func decodeAction(docID, doc, rev string) (*whisk.Action, error) {
	var a whisk.Action
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		return nil, fmt.Errorf("decode stored action %s: %w", docID, err)
	}
	a.Revision = rev
	return &a, nil
}

// newRevision is "<n>-<32 hex>", CouchDB's revision shape.
func newRevision(n int64) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	return strconv.FormatInt(n, 10) + "-" + hex.EncodeToString(b[:])
}

// bumpPatch returns the semantic version with the patch number plus one
// ("0.0.9" -> "0.0.10"); an unreadable version restarts at the default.
func bumpPatch(v string) string {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return whisk.DefaultVersion
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return whisk.DefaultVersion
		}
		nums[i] = n
	}
	return fmt.Sprintf("%d.%d.%d", nums[0], nums[1], nums[2]+1)
}

// CountActions is how many actions ListActions(ns, 0, skip) would list (?count=true): those of
// namespace ns and of its packages, less the skipped.
func (s *Store) CountActions(ctx context.Context, ns string, skip int) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM actions WHERE root_ns = ? AND deleted = 0`, ns).Scan(&n); err != nil {
		return 0, fmt.Errorf("count actions of %s: %w", ns, err)
	}
	return max(n-max(skip, 0), 0), nil
}

// CountPackageActions is how many actions ListPackageActions(path, 0, skip) would list.
func (s *Store) CountPackageActions(ctx context.Context, path string, skip int) (int, error) {
	lo, hi := packageRange(path)
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM actions WHERE doc_id >= ? AND doc_id < ? AND deleted = 0`, lo, hi).Scan(&n); err != nil {
		return 0, fmt.Errorf("count actions of %s: %w", path, err)
	}
	return max(n-max(skip, 0), 0), nil
}
