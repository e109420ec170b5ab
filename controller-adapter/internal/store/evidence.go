package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// PutEvidence keeps doc as the latest evidence of image's enclave, replacing any earlier one (the
// latest wins: after a key rotation or transfer the evidence names the current key). doc is kept
// byte for byte, because clients name the evidence by its hash.
func (s *Store) PutEvidence(ctx context.Context, image string, doc []byte) error {
	if image == "" || len(image) > 256 {
		return fmt.Errorf("put evidence: image name must have 1 to 256 bytes")
	}
	if !utf8.Valid(doc) {
		// TEXT must round-trip exactly; JSON from an enclave is UTF-8.
		return fmt.Errorf("put evidence of %s: document is not UTF-8", image)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM evidence WHERE image = ?`, image); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO evidence (image, updated, doc) VALUES (?, ?, ?)`,
			image, s.now().UnixMilli(), string(doc)); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put evidence of %s: %w", image, err)
	}
	return nil
}

// GetEvidence returns the latest evidence published for image and when it was stored; ErrNotFound
// when no enclave of the image has published any.
func (s *Store) GetEvidence(ctx context.Context, image string) ([]byte, time.Time, error) {
	var doc string
	var updated int64
	err := s.r.QueryRowContext(ctx, `SELECT doc, updated FROM evidence WHERE image = ?`, image).Scan(&doc, &updated)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, time.Time{}, fmt.Errorf("evidence of %s: %w", image, ErrNotFound)
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("evidence of %s: %w", image, err)
	}
	return []byte(doc), time.UnixMilli(updated), nil
}
