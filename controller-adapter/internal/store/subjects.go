package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/teemate/platform/invoker/whisk"
)

// Rights every key holds: OpenWhisk's default entitlements for a namespace
// owner.
var defaultRights = []string{"READ", "PUT", "DELETE", "ACTIVATE"}

// EnsureNamespace creates namespace name (subject = name) if it does not
// exist and makes sure uuid:key is one of its keys. It is idempotent, so it
// can seed the well-known guest and whisk.system credentials at every start.
func (s *Store) EnsureNamespace(ctx context.Context, name, uuid, key string) error {
	if !whisk.ValidEntityName(name) {
		return fmt.Errorf("ensure namespace %q: name is not a valid entity name", name)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO namespaces (name, subject) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM namespaces WHERE name = ?)`,
			name, name, name); err != nil {
			return fmt.Errorf("ensure namespace %s: %w", name, err)
		}
		return addKey(ctx, tx, name, uuid, key)
	})
}

// AddKey adds uuid:key to an existing namespace. A uuid already bound to
// another namespace, or to this one with another key, is an error.
func (s *Store) AddKey(ctx context.Context, namespace, uuid, key string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM namespaces WHERE name = ?`, namespace).Scan(&n); err != nil {
			return fmt.Errorf("add key to %s: %w", namespace, err)
		}
		if n == 0 {
			return fmt.Errorf("add key to %s: %w", namespace, ErrNotFound)
		}
		return addKey(ctx, tx, namespace, uuid, key)
	})
}

func addKey(ctx context.Context, tx *sql.Tx, namespace, uuid, key string) error {
	if uuid == "" || key == "" {
		return fmt.Errorf("add key to %s: uuid and key must not be empty", namespace)
	}
	var ns, stored string
	err := tx.QueryRowContext(ctx, `SELECT namespace, secret FROM auth_keys WHERE uuid = ?`, uuid).Scan(&ns, &stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO auth_keys (uuid, secret, namespace) VALUES (?, ?, ?)`, uuid, hashKey(key), namespace); err != nil {
			return fmt.Errorf("add key to %s: %w", namespace, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("add key to %s: %w", namespace, err)
	case ns != namespace || !keyMatches(stored, key):
		return fmt.Errorf("add key to %s: uuid %s is already bound to another namespace or key: %w", namespace, uuid, ErrConflict)
	}
	return nil
}

// Authenticate returns the identity owning uuid:key, or ErrUnauthorized. The store keeps only a
// salted hash of each key, so the identity's key is the one the caller just proved it holds.
func (s *Store) Authenticate(ctx context.Context, uuid, key string) (whisk.Identity, error) {
	gen, cached := s.generation()
	row, hit := s.cache.auth.at(uuid, gen)
	if !cached || !hit {
		err := s.r.QueryRowContext(ctx,
			`SELECT k.namespace, n.subject, k.secret, n.limits FROM auth_keys k JOIN namespaces n ON n.name = k.namespace WHERE k.uuid = ?`,
			uuid).Scan(&row.namespace, &row.subject, &row.hash, &row.limit)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Hash anyway, so an unknown uuid takes as long as a wrong key.
			keyMatches(dummyHash, key)
			return whisk.Identity{}, ErrUnauthorized
		case err != nil:
			return whisk.Identity{}, fmt.Errorf("authenticate: %w", err)
		}
		if cached {
			s.cache.auth.put(uuid, gen, row)
		}
	}
	if !keyMatches(row.hash, key) {
		return whisk.Identity{}, ErrUnauthorized
	}
	id := identity(row.subject, row.namespace, uuid, key)
	id.Limits = identityLimits(row.limit)
	return id, nil
}

// IdentityForNamespace returns the identity of the namespace's owner (its first key): web actions
// run as their owner. The store cannot give the owner's key back (it keeps a hash), so the
// identity has none: an activation for it carries no key. ErrNotFound if the namespace does not
// exist or has no key.
func (s *Store) IdentityForNamespace(ctx context.Context, namespace string) (whisk.Identity, error) {
	var subject, uuid, limits string
	err := s.r.QueryRowContext(ctx,
		`SELECT n.subject, k.uuid, n.limits FROM namespaces n JOIN auth_keys k ON k.namespace = n.name
		 WHERE n.name = ? ORDER BY k.rowid LIMIT 1`, namespace).Scan(&subject, &uuid, &limits)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return whisk.Identity{}, fmt.Errorf("namespace %s: %w", namespace, ErrNotFound)
	case err != nil:
		return whisk.Identity{}, fmt.Errorf("namespace %s: %w", namespace, err)
	}
	id := identity(subject, namespace, uuid, "")
	id.Limits = identityLimits(limits)
	return id, nil
}

// ListNamespaces lists the namespaces the identity may use: its own.
func (s *Store) ListNamespaces(ctx context.Context, id whisk.Identity) ([]string, error) {
	rows, err := s.r.QueryContext(ctx,
		`SELECT DISTINCT k.namespace FROM auth_keys k JOIN namespaces n ON n.name = k.namespace
		 WHERE n.subject = ? ORDER BY k.namespace`, id.Subject)
	out, err := scanStrings(rows, err)
	if err != nil {
		return nil, fmt.Errorf("list namespaces of %s: %w", id.Subject, err)
	}
	return out, nil
}

// AllNamespaces lists every namespace, for the operator's `namespace list`.
func (s *Store) AllNamespaces(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM namespaces ORDER BY name`)
	out, err := scanStrings(rows, err)
	if err != nil {
		return nil, fmt.Errorf("list all namespaces: %w", err)
	}
	return out, nil
}

// scanStrings reads a one-column result of strings; err is the query's error.
func scanStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// identity builds a subject's identity; an empty key leaves AuthKey empty.
func identity(subject, namespace, uuid, key string) whisk.Identity {
	id := whisk.Identity{
		Subject:   subject,
		Namespace: whisk.Namespace{Name: namespace, UUID: uuid},
		Rights:    append([]string(nil), defaultRights...),
	}
	if key != "" {
		id.AuthKey = whisk.AuthKey{APIKey: uuid + ":" + key}
	}
	return id
}
