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

// migrationTriggers is migration 5: triggers and rules keep the actions' revision semantics (a
// tombstone keeps the revision counter); schedules are the alarms feed's (schedules.go).
const migrationTriggers = `CREATE TABLE triggers (
		doc_id    TEXT NOT NULL PRIMARY KEY,
		namespace TEXT NOT NULL,
		rev_n     INTEGER NOT NULL,
		revision  TEXT NOT NULL,
		deleted   INTEGER NOT NULL,
		updated   INTEGER NOT NULL,
		doc       TEXT NOT NULL
	);
	CREATE INDEX triggers_list ON triggers(namespace, deleted, updated);
	CREATE TABLE rules (
		doc_id    TEXT NOT NULL PRIMARY KEY,
		namespace TEXT NOT NULL,
		rev_n     INTEGER NOT NULL,
		revision  TEXT NOT NULL,
		deleted   INTEGER NOT NULL,
		updated   INTEGER NOT NULL,
		doc       TEXT NOT NULL
	);
	CREATE INDEX rules_list ON rules(namespace, deleted, updated);
	CREATE TABLE schedules (
		trigger    TEXT NOT NULL PRIMARY KEY,
		namespace  TEXT NOT NULL,
		feed       TEXT NOT NULL,
		owner_uuid TEXT NOT NULL,
		config     TEXT NOT NULL,
		active     INTEGER NOT NULL,
		reason     TEXT NOT NULL,
		next_due   INTEGER NOT NULL,
		last_fired INTEGER NOT NULL,
		fires      INTEGER NOT NULL,
		created    INTEGER NOT NULL,
		updated    INTEGER NOT NULL
	);
	CREATE INDEX schedules_due ON schedules(active, next_due);`

// ErrTriggerNotFound: a rule names a trigger that does not exist.
var ErrTriggerNotFound = errors.New("store: the rule's trigger does not exist")

// docTable is one of the tables of revisioned documents written here: "triggers" or "rules"
// (constants, never user input, so they may be formatted into SQL).
type docTable string

const (
	tableTriggers docTable = "triggers"
	tableRules    docTable = "rules"
)

// readDoc reads the row of docID whether deleted or not: its revision counter, whether it is
// live, and its document. A missing row is revN 0, not live.
func (t docTable) readDoc(ctx context.Context, q queryRower, docID string) (revN int64, live bool, doc, rev string, err error) {
	var deleted bool
	err = q.QueryRowContext(ctx, fmt.Sprintf(`SELECT rev_n, deleted, doc, revision FROM %s WHERE doc_id = ?`, t), docID).
		Scan(&revN, &deleted, &doc, &rev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, "", "", nil
	case err != nil:
		return 0, false, "", "", fmt.Errorf("read %s: %w", docID, err)
	}
	return revN, !deleted, doc, rev, nil
}

// writeDoc stores doc as docID's next revision revN+1 with the given revision string.
func (t docTable) writeDoc(ctx context.Context, tx *sql.Tx, docID, ns string, revN int64, rev string, updated int64, doc []byte) error {
	res, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET rev_n = ?, revision = ?, deleted = 0, updated = ?, doc = ? WHERE doc_id = ?`, t),
		revN+1, rev, updated, string(doc), docID)
	if err != nil {
		return fmt.Errorf("update %s: %w", docID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO %s (doc_id, namespace, rev_n, revision, deleted, updated, doc) VALUES (?, ?, ?, ?, 0, ?, ?)`, t),
		docID, ns, revN+1, rev, updated, string(doc)); err != nil {
		return fmt.Errorf("insert %s: %w", docID, err)
	}
	return nil
}

// tombstone marks docID deleted with a new revision, keeping its counter.
func (t docTable) tombstone(ctx context.Context, tx *sql.Tx, docID string, revN, now int64) error {
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`UPDATE %s SET deleted = 1, rev_n = ?, revision = ?, updated = ? WHERE doc_id = ?`, t),
		revN+1, newRevision(revN+1), now, docID)
	if err != nil {
		return fmt.Errorf("delete %s: %w", docID, err)
	}
	return nil
}

// list returns the live documents of namespace ns, most recently updated first, as (id, doc,
// revision) triples; limit <= 0 means no limit.
func (t docTable) list(ctx context.Context, q *sql.DB, ns string, limit, skip int) ([][3]string, error) {
	if limit <= 0 {
		limit = math.MaxInt32
	}
	rows, err := q.QueryContext(ctx, fmt.Sprintf(`SELECT doc_id, doc, revision FROM %s WHERE namespace = ? AND deleted = 0
		 ORDER BY updated DESC, doc_id LIMIT ? OFFSET ?`, t), ns, limit, max(skip, 0))
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", t, ns, err)
	}
	defer rows.Close()
	var out [][3]string
	for rows.Next() {
		var r [3]string
		if err := rows.Scan(&r[0], &r[1], &r[2]); err != nil {
			return nil, fmt.Errorf("list %s of %s: %w", t, ns, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", t, ns, err)
	}
	return out, nil
}

// count counts the live documents of namespace ns, less skip (never below 0).
func (t docTable) count(ctx context.Context, q *sql.DB, ns string, skip int) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, fmt.Sprintf(`SELECT COUNT(*) FROM %s WHERE namespace = ? AND deleted = 0`, t), ns).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s of %s: %w", t, ns, err)
	}
	return max(n-max(skip, 0), 0), nil
}

// nextVersion is the version of a written document: explicit when set, else the stored one's
// patch plus one, else the default.
func nextVersion(explicit, stored string, exists bool) string {
	switch {
	case explicit != "":
		return explicit
	case exists:
		return bumpPatch(stored)
	}
	return whisk.DefaultVersion
}

// PutTrigger writes trigger t (create, or overwrite when overwrite is true; an existing one
// otherwise gives ErrConflict). Its version follows PutPackage's rule. The rules that name the
// trigger are the store's: an overwrite keeps the stored ones whatever t.Rules holds, and a create
// starts with none (rules left from a deleted trigger of the same name stay inactive until
// enabled, as in OpenWhisk). Returns the stored document.
func (s *Store) PutTrigger(ctx context.Context, t *whisk.Trigger, overwrite bool) (*whisk.Trigger, error) {
	if t == nil || !whisk.ValidEntityName(t.Namespace) || !whisk.ValidEntityName(t.Name) {
		return nil, errors.New("put trigger: a valid namespace and name are required")
	}
	docID := t.Path()
	out := *t
	out.Rules = nil
	err := s.tx(ctx, func(tx *sql.Tx) error {
		revN, live, old, _, err := tableTriggers.readDoc(ctx, tx, docID)
		if err != nil {
			return err
		}
		if live && !overwrite {
			return ErrConflict
		}
		var prev whisk.Trigger
		if live {
			if err := json.Unmarshal([]byte(old), &prev); err != nil {
				return fmt.Errorf("decode stored %s: %w", docID, err)
			}
			out.Rules = prev.Rules
		}
		out.Version = nextVersion(t.Version, prev.Version, live)
		out.Revision = newRevision(revN + 1)
		out.Updated = s.now().UnixMilli()
		doc, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode %s: %w", docID, err)
		}
		return tableTriggers.writeDoc(ctx, tx, docID, out.Namespace, revN, out.Revision, out.Updated, doc)
	})
	if err != nil {
		return nil, fmt.Errorf("put trigger %s: %w", docID, err)
	}
	return &out, nil
}

// GetTrigger returns trigger ns/name with its rules, or ErrNotFound.
func (s *Store) GetTrigger(ctx context.Context, ns, name string) (*whisk.Trigger, error) {
	t, err := getTrigger(ctx, s.r, ns+"/"+name)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func getTrigger(ctx context.Context, q queryRower, docID string) (*whisk.Trigger, error) {
	_, live, doc, rev, err := tableTriggers.readDoc(ctx, q, docID)
	switch {
	case err != nil:
		return nil, fmt.Errorf("trigger %s: %w", docID, err)
	case !live:
		return nil, fmt.Errorf("trigger %s: %w", docID, ErrNotFound)
	}
	return decodeTrigger(docID, doc, rev)
}

func decodeTrigger(docID, doc, rev string) (*whisk.Trigger, error) {
	var t whisk.Trigger
	if err := json.Unmarshal([]byte(doc), &t); err != nil {
		return nil, fmt.Errorf("decode stored trigger %s: %w", docID, err)
	}
	t.Revision = rev
	return &t, nil
}

// putTriggerRules writes t again with rules as its rule links (a new revision; its updated time
// and version stay, as OpenWhisk's rule operations leave them).
func (s *Store) putTriggerRules(ctx context.Context, tx *sql.Tx, t *whisk.Trigger, rules map[string]whisk.ReducedRule) error {
	docID := t.Path()
	revN, _, _, _, err := tableTriggers.readDoc(ctx, tx, docID)
	if err != nil {
		return err
	}
	c := *t
	c.Rules = rules
	doc, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode %s: %w", docID, err)
	}
	return tableTriggers.writeDoc(ctx, tx, docID, c.Namespace, revN, newRevision(revN+1), c.Updated, doc)
}

// DeleteTrigger removes trigger ns/name and returns what was deleted, or ErrNotFound. Rules that
// name it are left (OpenWhisk's behaviour): they read as inactive, fire nothing, and can be
// deleted, or enabled again once a trigger of that name exists.
func (s *Store) DeleteTrigger(ctx context.Context, ns, name string) (*whisk.Trigger, error) {
	docID := ns + "/" + name
	var out *whisk.Trigger
	err := s.tx(ctx, func(tx *sql.Tx) error {
		revN, live, doc, rev, err := tableTriggers.readDoc(ctx, tx, docID)
		switch {
		case err != nil:
			return err
		case !live:
			return ErrNotFound
		}
		if out, err = decodeTrigger(docID, doc, rev); err != nil {
			return err
		}
		return tableTriggers.tombstone(ctx, tx, docID, revN, s.now().UnixMilli())
	})
	if err != nil {
		return nil, fmt.Errorf("delete trigger %s: %w", docID, err)
	}
	return out, nil
}

// ListTriggers lists the triggers of namespace ns, most recently updated first; limit <= 0 means
// no limit.
func (s *Store) ListTriggers(ctx context.Context, ns string, limit, skip int) ([]*whisk.Trigger, error) {
	rows, err := tableTriggers.list(ctx, s.r, ns, limit, skip)
	if err != nil {
		return nil, err
	}
	out := make([]*whisk.Trigger, 0, len(rows))
	for _, r := range rows {
		t, err := decodeTrigger(r[0], r[1], r[2])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// CountTriggers counts what ListTriggers would list without a limit, less skip.
func (s *Store) CountTriggers(ctx context.Context, ns string, skip int) (int, error) {
	return tableTriggers.count(ctx, s.r, ns, skip)
}

// ruleStatus is the state trigger t keeps for rule ruleID; inactive when the trigger is missing
// (nil) or does not list the rule.
func ruleStatus(t *whisk.Trigger, ruleID string) string {
	if t == nil {
		return whisk.RuleInactive
	}
	if rr, ok := t.Rules[ruleID]; ok && rr.Status != "" {
		return rr.Status
	}
	return whisk.RuleInactive
}

// optionalTrigger reads a trigger, nil when it does not exist.
func optionalTrigger(ctx context.Context, q queryRower, docID string) (*whisk.Trigger, error) {
	t, err := getTrigger(ctx, q, docID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return t, err
}

// withRule returns a copy of the rule links of t with id set to rr (or removed when rr is nil).
func withRule(t *whisk.Trigger, id string, rr *whisk.ReducedRule) map[string]whisk.ReducedRule {
	out := make(map[string]whisk.ReducedRule, len(t.Rules)+1)
	for k, v := range t.Rules {
		if k != id {
			out[k] = v
		}
	}
	if rr != nil {
		out[id] = *rr
	}
	return out
}

// PutRule writes rule r (r.Trigger and r.Action resolved to full paths; the caller checked that
// the action exists and may be read). The trigger must exist (ErrTriggerNotFound). A new rule is
// active; an overwritten one keeps the state its old trigger gave it, and moves its link when it
// names another trigger. Rule and trigger links are written in one transaction. Returns the
// stored rule with its Status.
func (s *Store) PutRule(ctx context.Context, r *whisk.Rule, overwrite bool) (*whisk.Rule, error) {
	if r == nil || !whisk.ValidEntityName(r.Namespace) || !whisk.ValidEntityName(r.Name) {
		return nil, errors.New("put rule: a valid namespace and name are required")
	}
	docID := r.Path()
	out := *r
	err := s.tx(ctx, func(tx *sql.Tx) error {
		revN, live, old, _, err := tableRules.readDoc(ctx, tx, docID)
		if err != nil {
			return err
		}
		if live && !overwrite {
			return ErrConflict
		}
		status := whisk.RuleActive
		var prev whisk.Rule
		if live {
			if err := json.Unmarshal([]byte(old), &prev); err != nil {
				return fmt.Errorf("decode stored %s: %w", docID, err)
			}
			oldTrigger, err := optionalTrigger(ctx, tx, prev.Trigger.String())
			if err != nil {
				return err
			}
			status = ruleStatus(oldTrigger, docID)
			if oldTrigger != nil && prev.Trigger != r.Trigger {
				if err := s.putTriggerRules(ctx, tx, oldTrigger, withRule(oldTrigger, docID, nil)); err != nil {
					return err
				}
			}
		}
		trigger, err := optionalTrigger(ctx, tx, r.Trigger.String())
		switch {
		case err != nil:
			return err
		case trigger == nil:
			return ErrTriggerNotFound
		}
		if err := s.putTriggerRules(ctx, tx, trigger, withRule(trigger, docID, &whisk.ReducedRule{Action: r.Action, Status: status})); err != nil {
			return err
		}
		out.Status = ""
		out.Version = nextVersion(r.Version, prev.Version, live)
		out.Revision = newRevision(revN + 1)
		out.Updated = s.now().UnixMilli()
		doc, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode %s: %w", docID, err)
		}
		out.Status = status
		return tableRules.writeDoc(ctx, tx, docID, out.Namespace, revN, out.Revision, out.Updated, doc)
	})
	if err != nil {
		return nil, fmt.Errorf("put rule %s: %w", docID, err)
	}
	return &out, nil
}

// GetRule returns rule ns/name with its Status (inactive when its trigger is gone), or
// ErrNotFound.
func (s *Store) GetRule(ctx context.Context, ns, name string) (*whisk.Rule, error) {
	docID := ns + "/" + name
	r, err := getRule(ctx, s.r, docID)
	if err != nil {
		return nil, err
	}
	t, err := optionalTrigger(ctx, s.r, r.Trigger.String())
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", docID, err)
	}
	r.Status = ruleStatus(t, docID)
	return r, nil
}

func getRule(ctx context.Context, q queryRower, docID string) (*whisk.Rule, error) {
	_, live, doc, rev, err := tableRules.readDoc(ctx, q, docID)
	switch {
	case err != nil:
		return nil, fmt.Errorf("rule %s: %w", docID, err)
	case !live:
		return nil, fmt.Errorf("rule %s: %w", docID, ErrNotFound)
	}
	return decodeRule(docID, doc, rev)
}

func decodeRule(docID, doc, rev string) (*whisk.Rule, error) {
	var r whisk.Rule
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return nil, fmt.Errorf("decode stored rule %s: %w", docID, err)
	}
	r.Revision = rev
	return &r, nil
}

// SetRuleStatus enables (whisk.RuleActive) or disables (whisk.RuleInactive) rule ns/name by
// rewriting its link in its trigger, and reports whether the state changed. ErrNotFound when the
// rule does not exist, ErrTriggerNotFound when its trigger does not.
func (s *Store) SetRuleStatus(ctx context.Context, ns, name, status string) (bool, error) {
	if status != whisk.RuleActive && status != whisk.RuleInactive {
		return false, fmt.Errorf("set rule status: %q is not a rule state", status)
	}
	docID := ns + "/" + name
	changed := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		r, err := getRule(ctx, tx, docID)
		if err != nil {
			return err
		}
		t, err := optionalTrigger(ctx, tx, r.Trigger.String())
		switch {
		case err != nil:
			return err
		case t == nil:
			return ErrTriggerNotFound
		case ruleStatus(t, docID) == status:
			return nil
		}
		changed = true
		return s.putTriggerRules(ctx, tx, t, withRule(t, docID, &whisk.ReducedRule{Action: r.Action, Status: status}))
	})
	if err != nil {
		return false, fmt.Errorf("set rule %s %s: %w", docID, status, err)
	}
	return changed, nil
}

// DeleteRule removes rule ns/name and its link in its trigger, and returns what was deleted
// (Status inactive), or ErrNotFound. OpenWhisk deletes a rule whatever its state.
func (s *Store) DeleteRule(ctx context.Context, ns, name string) (*whisk.Rule, error) {
	docID := ns + "/" + name
	var out *whisk.Rule
	err := s.tx(ctx, func(tx *sql.Tx) error {
		revN, live, doc, rev, err := tableRules.readDoc(ctx, tx, docID)
		switch {
		case err != nil:
			return err
		case !live:
			return ErrNotFound
		}
		if out, err = decodeRule(docID, doc, rev); err != nil {
			return err
		}
		out.Status = whisk.RuleInactive
		t, err := optionalTrigger(ctx, tx, out.Trigger.String())
		if err != nil {
			return err
		}
		if t != nil {
			if _, ok := t.Rules[docID]; ok {
				if err := s.putTriggerRules(ctx, tx, t, withRule(t, docID, nil)); err != nil {
					return err
				}
			}
		}
		return tableRules.tombstone(ctx, tx, docID, revN, s.now().UnixMilli())
	})
	if err != nil {
		return nil, fmt.Errorf("delete rule %s: %w", docID, err)
	}
	return out, nil
}

// ListRules lists the rules of namespace ns with their states, most recently updated first;
// limit <= 0 means no limit.
func (s *Store) ListRules(ctx context.Context, ns string, limit, skip int) ([]*whisk.Rule, error) {
	rows, err := tableRules.list(ctx, s.r, ns, limit, skip)
	if err != nil {
		return nil, err
	}
	out := make([]*whisk.Rule, 0, len(rows))
	triggers := map[string]*whisk.Trigger{}
	for _, row := range rows {
		r, err := decodeRule(row[0], row[1], row[2])
		if err != nil {
			return nil, err
		}
		tid := r.Trigger.String()
		t, seen := triggers[tid]
		if !seen {
			if t, err = optionalTrigger(ctx, s.r, tid); err != nil {
				return nil, fmt.Errorf("list rules of %s: %w", ns, err)
			}
			triggers[tid] = t
		}
		r.Status = ruleStatus(t, r.Path())
		out = append(out, r)
	}
	return out, nil
}

// CountRules counts what ListRules would list without a limit, less skip.
func (s *Store) CountRules(ctx context.Context, ns string, skip int) (int, error) {
	return tableRules.count(ctx, s.r, ns, skip)
}
