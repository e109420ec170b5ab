package alarms

import (
	"encoding/json"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestCronNext is the cron parser's table: 5 fields (minute first) and 6 (seconds first), steps,
// ranges, lists, names, descriptors, time zones, and what is refused.
func TestCronNext(t *testing.T) {
	from := utc("2024-05-01T10:07:30Z") // a Wednesday
	for _, tc := range []struct {
		expr, tz string
		want     string // "" = refused
	}{
		{"* * * * *", "", "2024-05-01T10:08:00Z"},
		{"0 * * * *", "", "2024-05-01T11:00:00Z"},
		{"0 */2 * * *", "", "2024-05-01T12:00:00Z"},
		{"0 9 8 * *", "", "2024-05-08T09:00:00Z"},
		{"15,45 10 * * *", "", "2024-05-01T10:15:00Z"},
		{"0 0 * * MON", "", "2024-05-06T00:00:00Z"},
		{"0 0 1 JAN *", "", "2025-01-01T00:00:00Z"},
		{"0 8-9 * * *", "", "2024-05-02T08:00:00Z"},
		{"*/30 * * * * *", "", "2024-05-01T10:08:00Z"},
		{"*/10 * * * * *", "", "2024-05-01T10:07:40Z"},
		{"5 7 10 * * *", "", "2024-05-02T10:07:05Z"},
		{"@hourly", "", "2024-05-01T11:00:00Z"},
		{"0 12 * * *", "Europe/Paris", "2024-05-02T10:00:00Z"}, // 12:00 CEST, tomorrow
		{"0 12 * * *", "Mars/Olympus", ""},
		{"* * * *", "", ""},
		{"* * * * * * *", "", ""},
		{"61 * * * *", "", ""},
		{"CRON_TZ=UTC * * * * *", "", ""},
		{"every minute", "", ""},
	} {
		s, err := ParseCron(tc.expr, tc.tz)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q (%s): accepted, want refused", tc.expr, tc.tz)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		if got := s.Next(from); !got.Equal(utc(tc.want)) {
			t.Errorf("%q (%s): next after %s = %s, want %s", tc.expr, tc.tz, from, got.UTC(), tc.want)
		}
	}
}

func raw(m map[string]any) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range m {
		b, _ := json.Marshal(v)
		out[k] = b
	}
	return out
}

// TestNewConfig checks the feeds' parameters with the alarms provider's texts.
func TestNewConfig(t *testing.T) {
	now := utc("2024-05-01T10:00:00Z")
	for _, tc := range []struct {
		feed    string
		params  map[string]any
		wantErr string
	}{
		{FeedAlarm, map[string]any{}, "alarms trigger feed is missing the cron parameter"},
		{FeedAlarm, map[string]any{"cron": "nope"}, "cron pattern 'nope' is not valid"},
		{FeedAlarm, map[string]any{"cron": "* * * * *", "timezone": "Nowhere/Land"}, "Invalid timezone."},
		{FeedAlarm, map[string]any{"cron": "* * * * *", "maxTriggers": 2, "stopDate": "2024-06-01T00:00:00Z"}, "maxTriggers is not allowed when the stopDate parameter is specified"},
		{FeedAlarm, map[string]any{"cron": "0 0 1 1 *", "stopDate": "2024-06-01T00:00:00Z"}, "the first scheduled trigger fire is not until after the stop date"},
		{FeedAlarm, map[string]any{"cron": "* * * * *", "startDate": "2024-01-01T00:00:00Z"}, "startDate parameter '2024-01-01T00:00:00Z' must be in the future"},
		{FeedAlarm, map[string]any{"cron": "* * * * *", "startDate": "2024-06-01T00:00:00Z", "stopDate": "2024-05-20T00:00:00Z"},
			"stopDate parameter '2024-05-20T00:00:00Z' must be greater than the startDate parameter '2024-06-01T00:00:00Z'"},
		{FeedAlarm, map[string]any{"cron": "* * * * *", "trigger_payload": 5}, "trigger_payload must be a JSON object or a string"},
		{FeedAlarm, map[string]any{"cron": "*/5 * * * * *", "trigger_payload": map[string]any{"a": 1}}, ""},
		{FeedInterval, map[string]any{}, "interval trigger feed is missing the minutes parameter"},
		{FeedInterval, map[string]any{"minutes": "x"}, "the minutes parameter must be an integer"},
		{FeedInterval, map[string]any{"minutes": 0}, "the minutes parameter must be an integer greater than zero"},
		{FeedInterval, map[string]any{"minutes": -2}, "the minutes parameter must be an integer greater than zero"},
		{FeedInterval, map[string]any{"minutes": 2, "maxTriggers": 3, "stopDate": "2024-06-01T00:00:00Z"}, "maxTriggers is not supported for the interval trigger feed"},
		{FeedInterval, map[string]any{"minutes": "2"}, ""},
		{FeedOnce, map[string]any{}, "alarms once trigger feed is missing the date parameter"},
		{FeedOnce, map[string]any{"date": "yesterday"}, "date parameter 'yesterday' is not a valid Date"},
		{FeedOnce, map[string]any{"date": now.Add(-time.Minute).UnixMilli()}, "date parameter '1714557540000' must be in the future"},
		{FeedOnce, map[string]any{"date": "2024-05-02T00:00:00Z", "deleteAfterFire": "maybe"}, "deleteAfterFire parameter must be one of [false, true, rules]."},
		{FeedOnce, map[string]any{"date": "2024-05-02T00:00:00Z", "deleteAfterFire": "Rules"}, ""},
	} {
		_, err := NewConfig(tc.feed, raw(tc.params), now)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s %v: %v", tc.feed, tc.params, err)
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("%s %v: error %v, want %q", tc.feed, tc.params, err, tc.wantErr)
		}
	}
	c, err := NewConfig(FeedAlarm, raw(map[string]any{"cron": "* * * * *", "trigger_payload": "hello"}), now)
	if err != nil || string(c.Payload) != `{"payload":"hello"}` {
		t.Errorf("string payload: %s %v", c.Payload, err)
	}
	c, err = NewConfig(FeedOnce, raw(map[string]any{"date": "2024-05-02T00:00:00Z", "deleteAfterFire": "Rules"}), now)
	if err != nil || c.DeleteAfterFire != "rules" || c.Date != utc("2024-05-02T00:00:00Z").UnixMilli() {
		t.Errorf("once: %+v %v", c, err)
	}
}

// TestNext checks the due times of each feed, with start and stop dates and maxTriggers.
func TestNext(t *testing.T) {
	now := utc("2024-05-01T10:00:00Z")
	ms := func(s string) int64 { return utc(s).UnixMilli() }
	for _, tc := range []struct {
		name  string
		c     Config
		after string
		fires int
		want  string // "" = none left
	}{
		{"interval default start", Config{Minutes: 2, StartDate: now.Add(intervalStartDelay).UnixMilli()}, "2024-05-01T10:00:00Z", 0, "2024-05-01T10:00:30Z"},
		{"interval at start", Config{Minutes: 2, StartDate: ms("2024-05-01T10:00:30Z")}, "2024-05-01T10:00:30Z", 1, "2024-05-01T10:02:30Z"},
		{"interval between", Config{Minutes: 2, StartDate: ms("2024-05-01T10:00:30Z")}, "2024-05-01T10:05:00Z", 3, "2024-05-01T10:06:30Z"},
		{"interval past stop", Config{Minutes: 2, StartDate: ms("2024-05-01T10:00:30Z"), StopDate: ms("2024-05-01T10:03:00Z")}, "2024-05-01T10:02:30Z", 2, ""},
		{"cron before start", Config{Cron: "0 * * * *", StartDate: ms("2024-05-01T12:00:00Z")}, "2024-05-01T10:00:00Z", 0, "2024-05-01T12:00:00Z"},
		{"cron after start", Config{Cron: "0 * * * *", StartDate: ms("2024-05-01T12:00:00Z")}, "2024-05-01T12:00:00Z", 1, "2024-05-01T13:00:00Z"},
		{"cron stop", Config{Cron: "0 * * * *", StopDate: ms("2024-05-01T12:30:00Z")}, "2024-05-01T12:00:00Z", 1, ""},
		{"cron max triggers left", Config{Cron: "0 * * * *", MaxTriggers: 2}, "2024-05-01T10:00:00Z", 1, "2024-05-01T11:00:00Z"},
		{"cron max triggers reached", Config{Cron: "0 * * * *", MaxTriggers: 2}, "2024-05-01T10:00:00Z", 2, ""},
		{"once ahead", Config{Date: ms("2024-05-01T11:00:00Z")}, "2024-05-01T10:00:00Z", 0, "2024-05-01T11:00:00Z"},
		{"once passed", Config{Date: ms("2024-05-01T11:00:00Z")}, "2024-05-01T11:00:00Z", 1, ""},
	} {
		got := tc.c.Next(utc(tc.after), tc.fires)
		switch {
		case tc.want == "" && !got.IsZero():
			t.Errorf("%s: next = %s, want none", tc.name, got.UTC())
		case tc.want != "" && !got.Equal(utc(tc.want)):
			t.Errorf("%s: next = %s, want %s", tc.name, got.UTC(), tc.want)
		}
	}
}

// TestUpdate checks UPDATE: only what is given changes, and something must be.
func TestUpdate(t *testing.T) {
	now := utc("2024-05-01T10:00:00Z")
	c, err := NewConfig(FeedAlarm, raw(map[string]any{"cron": "* * * * *", "trigger_payload": map[string]any{"a": 1}}), now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(FeedAlarm, raw(map[string]any{}), now); err == nil || err.Error() != "no updatable parameters were specified" {
		t.Fatalf("empty update: %v", err)
	}
	if _, err := c.Update(FeedAlarm, raw(map[string]any{"cron": "bad"}), now); err == nil {
		t.Fatal("bad cron accepted on update")
	}
	u, err := c.Update(FeedAlarm, raw(map[string]any{"cron": "0 * * * *"}), now)
	if err != nil || u.Cron != "0 * * * *" || string(u.Payload) != `{"a":1}` {
		t.Fatalf("update: %+v %v", u, err)
	}
}
