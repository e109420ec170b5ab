package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// Schedule is the alarms feed's registration of one trigger (controller-adapter/internal/alarms):
// which feed, its configuration, the key that registered it (the trigger fires as that key's
// namespace), and where it stands. NextDue is the next time to fire (zero: nothing left to fire);
// a fire is claimed by moving NextDue on in the store before the trigger fires (ClaimFire), so a
// due time fires at most once, whatever restarts or other controllers do.
type Schedule struct {
	Trigger   string // the trigger's document id, "ns/name"
	Namespace string
	Feed      string // alarm, interval or once
	OwnerUUID string
	Config    json.RawMessage
	Active    bool
	Reason    string // why it is not active, or what changed it last
	NextDue   time.Time
	LastFired time.Time
	Fires     int
	Created   time.Time
	Updated   time.Time
}

const scheduleColumns = `trigger, namespace, feed, owner_uuid, config, active, reason, next_due, last_fired, fires, created, updated`

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func timeOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

type scanner interface{ Scan(dest ...any) error }

func scanSchedule(r scanner) (*Schedule, error) {
	var s Schedule
	var cfg string
	var next, last, created, updated int64
	if err := r.Scan(&s.Trigger, &s.Namespace, &s.Feed, &s.OwnerUUID, &cfg, &s.Active, &s.Reason, &next, &last, &s.Fires, &created, &updated); err != nil {
		return nil, err
	}
	s.Config = json.RawMessage(cfg)
	s.NextDue, s.LastFired = timeOrZero(next), timeOrZero(last)
	s.Created, s.Updated = timeOrZero(created), timeOrZero(updated)
	return &s, nil
}

// PutSchedule registers sc, replacing any schedule of the same trigger (a trigger created again
// under the same name registers anew). Created and Updated are set here.
func (s *Store) PutSchedule(ctx context.Context, sc *Schedule) error {
	if sc == nil || sc.Trigger == "" || sc.Namespace == "" || sc.Feed == "" || !json.Valid(sc.Config) {
		return errors.New("put schedule: trigger, namespace, feed and a JSON config are required")
	}
	now := s.now().UnixMilli()
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM schedules WHERE trigger = ?`, sc.Trigger); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO schedules (`+scheduleColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			sc.Trigger, sc.Namespace, sc.Feed, sc.OwnerUUID, string(sc.Config), sc.Active, sc.Reason,
			msOrZero(sc.NextDue), msOrZero(sc.LastFired), sc.Fires, now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("put schedule %s: %w", sc.Trigger, err)
	}
	return nil
}

// GetSchedule returns the schedule of trigger ("ns/name"), or ErrNotFound.
func (s *Store) GetSchedule(ctx context.Context, trigger string) (*Schedule, error) {
	sc, err := scanSchedule(s.r.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE trigger = ?`, trigger))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("schedule %s: %w", trigger, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("schedule %s: %w", trigger, err)
	}
	return sc, nil
}

// UpdateSchedule applies change to the schedule of trigger in one write transaction (so a fire
// claimed meanwhile is either seen or made to fail its claim), or gives ErrNotFound. An error
// from change aborts the update and is returned as it is.
func (s *Store) UpdateSchedule(ctx context.Context, trigger string, change func(*Schedule) error) (*Schedule, error) {
	var out *Schedule
	err := s.tx(ctx, func(tx *sql.Tx) error {
		sc, err := scanSchedule(tx.QueryRowContext(ctx, `SELECT `+scheduleColumns+` FROM schedules WHERE trigger = ?`, trigger))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("schedule %s: %w", trigger, ErrNotFound)
		case err != nil:
			return fmt.Errorf("schedule %s: %w", trigger, err)
		}
		if err := change(sc); err != nil {
			return err
		}
		sc.Updated = s.now()
		if _, err := tx.ExecContext(ctx,
			`UPDATE schedules SET config = ?, active = ?, reason = ?, next_due = ?, updated = ? WHERE trigger = ?`,
			string(sc.Config), sc.Active, sc.Reason, msOrZero(sc.NextDue), sc.Updated.UnixMilli(), trigger); err != nil {
			return fmt.Errorf("update schedule %s: %w", trigger, err)
		}
		out = sc
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteSchedule removes the schedule of trigger, or gives ErrNotFound.
func (s *Store) DeleteSchedule(ctx context.Context, trigger string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM schedules WHERE trigger = ?`, trigger)
	if err != nil {
		return fmt.Errorf("delete schedule %s: %w", trigger, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("delete schedule %s: %w", trigger, errors.Join(ErrNotFound, err))
	}
	return nil
}

// DueSchedules lists the active schedules due at or before now, earliest first.
func (s *Store) DueSchedules(ctx context.Context, now time.Time) ([]*Schedule, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+scheduleColumns+` FROM schedules
		WHERE active = 1 AND next_due > 0 AND next_due <= ? ORDER BY next_due, trigger`, now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("due schedules: %w", err)
	}
	defer rows.Close()
	var out []*Schedule
	for rows.Next() {
		sc, err := scanSchedule(rows)
		if err != nil {
			return nil, fmt.Errorf("due schedules: %w", err)
		}
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due schedules: %w", err)
	}
	return out, nil
}

// NextDue is the earliest due time of the active schedules; ok false when none is due ever.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var ms sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MIN(next_due) FROM schedules WHERE active = 1 AND next_due > 0`).Scan(&ms); err != nil {
		return time.Time{}, false, fmt.Errorf("next due schedule: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(ms.Int64), true, nil
}

// ClaimFire claims the fire of trigger's schedule due at due: it moves the schedule on to next
// (zero: nothing left) and counts the fire, only if the schedule is still active and still due at
// due. It reports whether this caller won the claim; a loser must not fire. The claim commits
// durably before the fire, so a crash between the two loses that fire rather than repeating it.
func (s *Store) ClaimFire(ctx context.Context, trigger string, due, next, firedAt time.Time) (bool, error) {
	res, err := s.w.ExecContext(ctx,
		`UPDATE schedules SET next_due = ?, last_fired = ?, fires = fires + 1, updated = ?
		 WHERE trigger = ? AND active = 1 AND next_due = ?`,
		msOrZero(next), firedAt.UnixMilli(), s.now().UnixMilli(), trigger, due.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("claim fire of %s: %w", trigger, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim fire of %s: %w", trigger, err)
	}
	return n == 1, nil
}

// IdentityForUUID returns the identity of the namespace that key uuid belongs to, without the key
// (the store keeps only its hash) but with the namespace's limits, which throttle the fire and its
// rules' actions: what a scheduled fire runs as. ErrNotFound once the key is gone.
func (s *Store) IdentityForUUID(ctx context.Context, uuid string) (whisk.Identity, error) {
	var ns, subject, limits string
	err := s.r.QueryRowContext(ctx,
		`SELECT k.namespace, n.subject, n.limits FROM auth_keys k JOIN namespaces n ON n.name = k.namespace WHERE k.uuid = ?`, uuid).
		Scan(&ns, &subject, &limits)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return whisk.Identity{}, fmt.Errorf("key %s: %w", uuid, ErrNotFound)
	case err != nil:
		return whisk.Identity{}, fmt.Errorf("key %s: %w", uuid, err)
	}
	id := identity(subject, ns, uuid, "")
	id.Limits = identityLimits(limits)
	return id, nil
}
