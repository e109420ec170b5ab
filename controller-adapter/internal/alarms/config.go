package alarms

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// The feeds of /whisk.system/alarms.
const (
	FeedAlarm    = "alarm"    // fire on a cron schedule
	FeedInterval = "interval" // fire every N minutes
	FeedOnce     = "once"     // fire once at a date
)

// Feeds lists the feed names in the order the package shows them.
var Feeds = []string{FeedAlarm, FeedInterval, FeedOnce}

// intervalStartDelay is when an interval without startDate first fires after it is created:
// the alarms provider's 30 seconds (its start date must lie in the future).
const intervalStartDelay = 30 * time.Second

// Config is a schedule's configuration, as stored (store.Schedule.Config) and as READ shows it.
// Dates are epoch milliseconds.
type Config struct {
	Cron            string          `json:"cron,omitempty"`
	Timezone        string          `json:"timezone,omitempty"`
	Minutes         int             `json:"minutes,omitempty"`
	Date            int64           `json:"date,omitempty"`
	DeleteAfterFire string          `json:"deleteAfterFire,omitempty"`
	StartDate       int64           `json:"startDate,omitempty"`
	StopDate        int64           `json:"stopDate,omitempty"`
	MaxTriggers     int             `json:"maxTriggers,omitempty"`
	Payload         json.RawMessage `json:"payload,omitempty"`
}

// Error is a client error in a feed request: its text is the feed action's error.
type Error string

func (e Error) Error() string { return string(e) }

// cronParser reads 5 fields (minute first) or 6 (seconds first, as the alarms provider's node
// cron does), and the @hourly-style descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a cron expression of 5 or 6 fields evaluated in timezone tz ("" is UTC, the
// alarms feed's default).
func ParseCron(expr, tz string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, Error(fmt.Sprintf("cron pattern '%s' is not valid", expr))
	}
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return nil, Error("Invalid timezone.")
	}
	s, err := cronParser.Parse("CRON_TZ=" + tz + " " + expr)
	if err != nil {
		return nil, Error(fmt.Sprintf("cron pattern '%s' is not valid", expr))
	}
	return s, nil
}

// params is a feed request's parameters by name.
type params map[string]json.RawMessage

func (p params) has(k string) bool {
	v, ok := p[k]
	return ok && len(bytes.TrimSpace(v)) > 0 && string(bytes.TrimSpace(v)) != "null" && string(bytes.TrimSpace(v)) != `""`
}

// str reads a string parameter (a number or boolean is taken as its text, as the Node feed does).
func (p params) str(k string) string {
	v := bytes.TrimSpace(p[k])
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// date reads a date: epoch milliseconds (a number, or a string of digits) or an ISO 8601 string.
func (p params) date(k string) (int64, error) {
	bad := Error(fmt.Sprintf("%s parameter '%s' is not a valid Date", k, p.str(k)))
	var n float64
	if json.Unmarshal(p[k], &n) == nil {
		if n != math.Trunc(n) {
			return 0, bad
		}
		return int64(n), nil
	}
	s := p.str(k)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UnixMilli(), nil
		}
	}
	return 0, bad
}

// futureDate reads date k and checks it lies after now (and after after, when not 0).
func (p params) futureDate(k string, now time.Time, after int64, afterName string) (int64, error) {
	d, err := p.date(k)
	if err != nil {
		return 0, err
	}
	if d <= now.UnixMilli() {
		return 0, Error(fmt.Sprintf("%s parameter '%s' must be in the future", k, p.str(k)))
	}
	if after != 0 && d <= after {
		return 0, Error(fmt.Sprintf("%s parameter '%s' must be greater than the %s parameter '%s'", k, p.str(k), afterName, p.str(afterName)))
	}
	return d, nil
}

// payload reads trigger_payload: an object as it is, a string s as {"payload": s}, as the provider
// does; absent is {}.
func (p params) payload() (json.RawMessage, error) {
	if !p.has("trigger_payload") {
		return json.RawMessage("{}"), nil
	}
	v := bytes.TrimSpace(p["trigger_payload"])
	switch v[0] {
	case '{':
		return v, nil
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, Error("trigger_payload is not valid JSON")
		}
		// A string holding a JSON object (wsk -p trigger_payload '{"a":1}' sends it parsed, other
		// clients as text) is that object.
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") && json.Valid([]byte(t)) {
			return json.RawMessage(t), nil
		}
		b, err := json.Marshal(map[string]string{"payload": s})
		if err != nil {
			return nil, fmt.Errorf("encode trigger_payload: %w", err)
		}
		return b, nil
	}
	return nil, Error("trigger_payload must be a JSON object or a string")
}

// positiveInt reads an integer parameter > 0, with the feed's texts.
func (p params) positiveInt(k string) (int, error) {
	s := p.str(k)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, Error(fmt.Sprintf("the %s parameter must be an integer", k))
	}
	if n <= 0 {
		return 0, Error(fmt.Sprintf("the %s parameter must be an integer greater than zero", k))
	}
	return n, nil
}

var deleteAfterFireValues = []string{"false", "true", "rules"}

// NewConfig validates a CREATE of feed with p at time now, with the alarms provider's rules and
// texts, and returns the configuration to store.
func NewConfig(feed string, p map[string]json.RawMessage, now time.Time) (Config, error) {
	ps := params(p)
	var c Config
	var err error
	if c.Payload, err = ps.payload(); err != nil {
		return Config{}, err
	}
	switch feed {
	case FeedOnce:
		if !ps.has("date") {
			return Config{}, Error("alarms once trigger feed is missing the date parameter")
		}
		if c.Date, err = ps.futureDate("date", now, 0, ""); err != nil {
			return Config{}, err
		}
		if ps.has("deleteAfterFire") {
			if c.DeleteAfterFire, err = deleteAfterFire(ps); err != nil {
				return Config{}, err
			}
		}
		return c, nil
	case FeedInterval:
		if !ps.has("minutes") {
			return Config{}, Error("interval trigger feed is missing the minutes parameter")
		}
		if c.Minutes, err = ps.positiveInt("minutes"); err != nil {
			return Config{}, err
		}
	case FeedAlarm:
		if !ps.has("cron") {
			return Config{}, Error("alarms trigger feed is missing the cron parameter")
		}
		c.Cron, c.Timezone = strings.TrimSpace(ps.str("cron")), ps.str("timezone")
		if _, err := ParseCron(c.Cron, c.Timezone); err != nil {
			return Config{}, err
		}
	default:
		return Config{}, fmt.Errorf("alarms: unknown feed %q", feed)
	}
	if ps.has("startDate") {
		if c.StartDate, err = ps.futureDate("startDate", now, 0, ""); err != nil {
			return Config{}, err
		}
	} else if feed == FeedInterval {
		c.StartDate = now.Add(intervalStartDelay).UnixMilli()
	}
	switch {
	case ps.has("maxTriggers") && ps.has("stopDate") && feed == FeedInterval:
		return Config{}, Error("maxTriggers is not supported for the interval trigger feed")
	case ps.has("maxTriggers") && ps.has("stopDate"):
		return Config{}, Error("maxTriggers is not allowed when the stopDate parameter is specified")
	case ps.has("stopDate"):
		if c.StopDate, err = ps.futureDate("stopDate", now, c.StartDate, "startDate"); err != nil {
			return Config{}, err
		}
		if c.Next(now, 0).IsZero() {
			return Config{}, Error("the first scheduled trigger fire is not until after the stop date")
		}
	case ps.has("maxTriggers") && feed == FeedAlarm:
		n, err := strconv.Atoi(strings.TrimSpace(ps.str("maxTriggers")))
		if err != nil {
			return Config{}, Error("the maxTriggers parameter must be an integer")
		}
		if n > 0 {
			c.MaxTriggers = n
		}
	}
	return c, nil
}

func deleteAfterFire(ps params) (string, error) {
	v := strings.ToLower(strings.TrimSpace(ps.str("deleteAfterFire")))
	for _, ok := range deleteAfterFireValues {
		if v == ok {
			return v, nil
		}
	}
	return "", Error("deleteAfterFire parameter must be one of [false, true, rules].")
}

// Update applies an UPDATE with p to c (a schedule of feed) at time now, with the provider's
// rules: only the fields given change, and at least one must be given.
func (c Config) Update(feed string, p map[string]json.RawMessage, now time.Time) (Config, error) {
	ps := params(p)
	out := c
	changed := false
	var err error
	if ps.has("trigger_payload") {
		if out.Payload, err = ps.payload(); err != nil {
			return Config{}, err
		}
		changed = true
	}
	switch feed {
	case FeedOnce:
		if ps.has("date") {
			if out.Date, err = ps.futureDate("date", now, 0, ""); err != nil {
				return Config{}, err
			}
			changed = true
		}
		if ps.has("deleteAfterFire") {
			if out.DeleteAfterFire, err = deleteAfterFire(ps); err != nil {
				return Config{}, err
			}
			changed = true
		}
	case FeedInterval:
		if ps.has("minutes") {
			if out.Minutes, err = ps.positiveInt("minutes"); err != nil {
				return Config{}, err
			}
			changed = true
		}
	case FeedAlarm:
		if ps.has("cron") || ps.has("timezone") {
			if ps.has("cron") {
				out.Cron = strings.TrimSpace(ps.str("cron"))
			}
			if ps.has("timezone") {
				out.Timezone = ps.str("timezone")
			}
			if _, err := ParseCron(out.Cron, out.Timezone); err != nil {
				return Config{}, err
			}
			changed = true
		}
	}
	if feed != FeedOnce {
		if ps.has("startDate") {
			if out.StartDate, err = ps.futureDate("startDate", now, 0, ""); err != nil {
				return Config{}, err
			}
			changed = true
		}
		if ps.has("stopDate") {
			if out.StopDate, err = ps.futureDate("stopDate", now, out.StartDate, "startDate"); err != nil {
				return Config{}, err
			}
			changed = true
		} else if ps.has("startDate") && out.StopDate != 0 && out.StartDate >= out.StopDate {
			return Config{}, Error(fmt.Sprintf("startDate parameter '%s' must be less than the stopDate parameter '%d'", ps.str("startDate"), out.StopDate))
		}
	}
	if !changed {
		return Config{}, Error("no updatable parameters were specified")
	}
	return out, nil
}

// Next is the first due time strictly after after, or zero when none is left (past the stop
// date, or the one date of a once schedule passed). fires is how many fires are done, for
// maxTriggers.
func (c Config) Next(after time.Time, fires int) time.Time {
	if c.MaxTriggers > 0 && fires >= c.MaxTriggers {
		return time.Time{}
	}
	var next time.Time
	switch {
	case c.Date != 0:
		if d := time.UnixMilli(c.Date); d.After(after) {
			return d
		}
		return time.Time{}
	case c.Minutes > 0:
		start := time.UnixMilli(c.StartDate)
		if start.After(after) {
			next = start
		} else {
			period := time.Duration(c.Minutes) * time.Minute
			n := after.Sub(start)/period + 1
			next = start.Add(n * period)
		}
	case c.Cron != "":
		s, err := ParseCron(c.Cron, c.Timezone)
		if err != nil {
			// Validated when stored; a stored schedule that no longer parses fires no more.
			return time.Time{}
		}
		from := after
		if start := time.UnixMilli(c.StartDate); c.StartDate != 0 && start.After(after) {
			// The first due time at or after the start date.
			from = start.Add(-time.Millisecond)
		}
		next = s.Next(from)
	default:
		return time.Time{}
	}
	if c.StopDate != 0 && next.After(time.UnixMilli(c.StopDate)) {
		return time.Time{}
	}
	return next
}
