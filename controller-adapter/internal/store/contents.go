package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// ContentTTL is how long an activation's content kept by reference outlives its publication when
// no record answers the activation: longer than the longest completion-ack timeout (a 5-minute
// action: max(5 min, 60 s) x 2 + 1 min = 11 min), so an activation still queued or running finds
// its content. An answered activation's content goes at once (PutActivation).
const ContentTTL = 15 * time.Minute

// PutContent keeps an activation's content, too large for a Kafka record, until the invoker
// stores the activation's record or ttl passes; the invoker reads it with GetContent. Contents
// past their time are deleted in the same transaction. Like records, it commits without waiting
// for the disk: it survives a crash of the process.
func (s *Store) PutContent(ctx context.Context, ns, id string, content []byte, ttl time.Duration) error {
	if ns == "" || !whisk.ValidActivationID(id) || len(content) == 0 || ttl <= 0 {
		return errors.New("put content: namespace, a 32-hex activation id, content and a ttl are required")
	}
	now := s.now()
	err := s.txRelaxed(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM activation_contents WHERE expires_ms < ? OR (namespace = ? AND activation_id = ?)`,
			now.UnixMilli(), ns, id); err != nil {
			return fmt.Errorf("replace: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO activation_contents (namespace, activation_id, expires_ms, content) VALUES (?, ?, ?, ?)`,
			ns, id, now.Add(ttl).UnixMilli(), content); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put content of %s/%s: %w", ns, id, err)
	}
	return nil
}

// GetContent returns the content kept for activation ns/id, or ErrNotFound when there is none
// (never kept, answered, or past its time).
func (s *Store) GetContent(ctx context.Context, ns, id string) ([]byte, error) {
	var b []byte
	err := s.r.QueryRowContext(ctx, `SELECT content FROM activation_contents WHERE namespace = ? AND activation_id = ? AND expires_ms >= ?`,
		ns, id, s.now().UnixMilli()).Scan(&b)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("content of %s/%s: %w", ns, id, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("content of %s/%s: %w", ns, id, err)
	}
	return b, nil
}

// DeleteContent drops the content kept for activation ns/id (a publication that failed); none is
// no error.
func (s *Store) DeleteContent(ctx context.Context, ns, id string) error {
	err := s.txRelaxed(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM activation_contents WHERE namespace = ? AND activation_id = ?`, ns, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete content of %s/%s: %w", ns, id, err)
	}
	return nil
}

// ExpireContents deletes the contents past their time and says how many; Open runs it, so a
// controller that stopped with contents kept does not keep them past their time.
func (s *Store) ExpireContents(ctx context.Context) (int64, error) {
	var n int64
	err := s.txRelaxed(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM activation_contents WHERE expires_ms < ?`, s.now().UnixMilli())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("expire contents: %w", err)
	}
	return n, nil
}
