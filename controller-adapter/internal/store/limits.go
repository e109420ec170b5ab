package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Limits are a namespace's own throttles, the part of OpenWhisk's UserLimits (the subject
// document's "limits", carried in every Identity) that this platform applies. A nil field takes
// the system's value (the controller-adapter's flags, OpenWhisk's 60, 30 and 60 by default). 0 is
// a limit too: OpenWhisk then refuses every invocation (or fire) of the namespace.
type Limits struct {
	InvocationsPerMinute  *int `json:"invocationsPerMinute,omitempty"`
	ConcurrentInvocations *int `json:"concurrentInvocations,omitempty"`
	FiresPerMinute        *int `json:"firesPerMinute,omitempty"`
}

// LimitsChange is one change of a namespace's limits (SetLimits): Set fields get the value,
// Reset fields go back to the system's, fields in neither keep theirs.
type LimitsChange struct {
	Set   Limits
	Reset struct{ InvocationsPerMinute, ConcurrentInvocations, FiresPerMinute bool }
}

// ParseLimits reads the limits of an Identity (whisk.Identity.Limits, or the stored column). An
// empty or null value has no overrides. Fields of UserLimits this platform does not apply are
// ignored; a negative limit is an error.
func ParseLimits(raw json.RawMessage) (Limits, error) {
	var l Limits
	if len(raw) == 0 || string(raw) == "null" {
		return l, nil
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return Limits{}, fmt.Errorf("namespace limits: %w", err)
	}
	for _, v := range []*int{l.InvocationsPerMinute, l.ConcurrentInvocations, l.FiresPerMinute} {
		if v != nil && *v < 0 {
			return Limits{}, fmt.Errorf("namespace limits: %d is negative", *v)
		}
	}
	return l, nil
}

// GetLimits returns namespace's own limits; ErrNotFound if the namespace does not exist.
func (s *Store) GetLimits(ctx context.Context, namespace string) (Limits, error) {
	var raw string
	err := s.r.QueryRowContext(ctx, `SELECT limits FROM namespaces WHERE name = ?`, namespace).Scan(&raw)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Limits{}, fmt.Errorf("limits of %s: %w", namespace, ErrNotFound)
	case err != nil:
		return Limits{}, fmt.Errorf("limits of %s: %w", namespace, err)
	}
	return ParseLimits(json.RawMessage(raw))
}

// SetLimits applies change to namespace's limits and returns them. The next authentication of
// one of its keys carries them, so a running controller applies them at the namespace's next
// request. ErrNotFound if the namespace does not exist.
func (s *Store) SetLimits(ctx context.Context, namespace string, change LimitsChange) (Limits, error) {
	for _, v := range []*int{change.Set.InvocationsPerMinute, change.Set.ConcurrentInvocations, change.Set.FiresPerMinute} {
		if v != nil && *v < 0 {
			return Limits{}, fmt.Errorf("set limits of %s: %d is negative", namespace, *v)
		}
	}
	var out Limits
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var raw string
		err := tx.QueryRowContext(ctx, `SELECT limits FROM namespaces WHERE name = ?`, namespace).Scan(&raw)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return err
		}
		if out, err = ParseLimits(json.RawMessage(raw)); err != nil {
			return err
		}
		for _, f := range []struct {
			dst   **int
			set   *int
			reset bool
		}{
			{&out.InvocationsPerMinute, change.Set.InvocationsPerMinute, change.Reset.InvocationsPerMinute},
			{&out.ConcurrentInvocations, change.Set.ConcurrentInvocations, change.Reset.ConcurrentInvocations},
			{&out.FiresPerMinute, change.Set.FiresPerMinute, change.Reset.FiresPerMinute},
		} {
			switch {
			case f.set != nil:
				v := *f.set
				*f.dst = &v
			case f.reset:
				*f.dst = nil
			}
		}
		doc, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE namespaces SET limits = ? WHERE name = ?`, string(doc), namespace)
		return err
	})
	if err != nil {
		return Limits{}, fmt.Errorf("set limits of %s: %w", namespace, err)
	}
	return out, nil
}

// identityLimits is the stored limits column as an Identity carries it: nil without overrides
// (the Identity then writes "limits":{}, as OpenWhisk's standard user does).
func identityLimits(raw string) json.RawMessage {
	if raw == "" || raw == "{}" {
		return nil
	}
	return json.RawMessage(raw)
}
