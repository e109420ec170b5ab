package lograte

import (
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultInterval is how long repeats of a message are counted before their summary is logged.
const DefaultInterval = 10 * time.Second

// Limiter rate-limits messages by their text. Its methods are safe for concurrent use; the zero
// value is not usable, call New.
type Limiter struct {
	log      *zap.Logger
	interval time.Duration

	mu   sync.Mutex
	open map[string]*window // messages inside an interval, by text
}

// window is one message's current interval: repeats counted since it opened, with the fields of
// the latest one.
type window struct {
	level    zapcore.Level
	repeats  int
	last     []zap.Field
	opened   time.Time
	timer    *time.Timer
	finished bool
}

// New returns a limiter logging to log; interval <= 0 takes DefaultInterval.
func New(log *zap.Logger, interval time.Duration) *Limiter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Limiter{log: log, interval: interval, open: map[string]*window{}}
}

// Warn logs msg at warning level, or counts it when msg was already logged within the interval.
func (l *Limiter) Warn(msg string, fields ...zap.Field) { l.write(zapcore.WarnLevel, msg, fields) }

// Error is Warn at error level.
func (l *Limiter) Error(msg string, fields ...zap.Field) { l.write(zapcore.ErrorLevel, msg, fields) }

func (l *Limiter) write(level zapcore.Level, msg string, fields []zap.Field) {
	l.mu.Lock()
	if w := l.open[msg]; w != nil {
		w.repeats++
		w.last = fields
		l.mu.Unlock()
		return
	}
	w := &window{level: level, opened: time.Now()}
	w.timer = time.AfterFunc(l.interval, func() { l.tick(msg, w) })
	l.open[msg] = w
	l.mu.Unlock()
	l.log.Log(level, msg, fields...)
}

// tick ends w's interval: it logs the summary of its repeats and opens the next interval, or,
// when there were none, forgets msg so that its next occurrence is logged in full.
func (l *Limiter) tick(msg string, w *window) {
	l.mu.Lock()
	if w.finished {
		l.mu.Unlock()
		return
	}
	n, fields, since := w.repeats, w.last, time.Since(w.opened)
	if n == 0 {
		w.finished = true
		delete(l.open, msg)
	} else {
		w.repeats, w.last, w.opened = 0, nil, time.Now()
		w.timer.Reset(l.interval)
	}
	l.mu.Unlock()
	l.summary(w.level, msg, n, since, fields)
}

func (l *Limiter) summary(level zapcore.Level, msg string, n int, since time.Duration, fields []zap.Field) {
	if n == 0 {
		return
	}
	text := fmt.Sprintf("%s: %d more in the last %s", msg, n, since.Round(time.Second))
	// The latest repeat's fields come along: they tell what is still happening.
	l.log.Log(level, text, append([]zap.Field{zap.Int("repeats", n)}, fields...)...)
}

// Flush logs the summaries of every open interval now and closes them, so that the next
// occurrence of each message is logged in full. Call it at shutdown: the last interval's count is
// not lost.
func (l *Limiter) Flush() {
	l.mu.Lock()
	type pending struct {
		msg    string
		w      *window
		n      int
		since  time.Duration
		fields []zap.Field
	}
	var out []pending
	for msg, w := range l.open {
		w.timer.Stop()
		w.finished = true
		out = append(out, pending{msg, w, w.repeats, time.Since(w.opened), w.last})
	}
	clear(l.open)
	l.mu.Unlock()
	for _, p := range out {
		l.summary(p.w.level, p.msg, p.n, p.since, p.fields)
	}
}
