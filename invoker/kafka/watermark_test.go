package kafka

import "testing"

func TestWatermark(t *testing.T) {
	type step struct {
		op     string // "deliver" or "done"
		offset int64
		ok     bool // expected return value
	}
	tests := []struct {
		name       string
		steps      []step
		wantCommit int64
		wantOK     bool
		wantOut    int
	}{
		{name: "nothing delivered", wantOK: false},
		{
			name:       "delivered, none done: commit the first",
			steps:      []step{{"deliver", 10, true}, {"deliver", 11, true}},
			wantCommit: 10, wantOK: true, wantOut: 2,
		},
		{
			name:       "all done in order",
			steps:      []step{{"deliver", 0, true}, {"deliver", 1, true}, {"done", 0, true}, {"done", 1, true}},
			wantCommit: 2, wantOK: true,
		},
		{
			name: "out of order with a hole: stop at the unfinished one",
			steps: []step{
				{"deliver", 0, true}, {"deliver", 1, true}, {"deliver", 2, true}, {"deliver", 3, true}, {"deliver", 4, true},
				{"done", 4, true}, {"done", 0, true}, {"done", 3, true}, {"done", 1, true},
			},
			wantCommit: 2, wantOK: true, wantOut: 1,
		},
		{
			name: "hole filled last: jump past everything",
			steps: []step{
				{"deliver", 0, true}, {"deliver", 1, true}, {"deliver", 2, true},
				{"done", 2, true}, {"done", 1, true}, {"done", 0, true},
			},
			wantCommit: 3, wantOK: true,
		},
		{
			name:       "offset gaps: commit one past the last delivered",
			steps:      []step{{"deliver", 5, true}, {"deliver", 9, true}, {"done", 9, true}, {"done", 5, true}},
			wantCommit: 10, wantOK: true,
		},
		{
			name:       "offset gaps: unfinished later record",
			steps:      []step{{"deliver", 5, true}, {"deliver", 9, true}, {"done", 5, true}},
			wantCommit: 9, wantOK: true, wantOut: 1,
		},
		{
			name:       "done twice is refused",
			steps:      []step{{"deliver", 0, true}, {"done", 0, true}, {"done", 0, false}},
			wantCommit: 1, wantOK: true,
		},
		{
			name:       "done of an undelivered offset is refused",
			steps:      []step{{"deliver", 3, true}, {"done", 2, false}, {"done", 4, false}},
			wantCommit: 3, wantOK: true, wantOut: 1,
		},
		{
			name:   "done before any delivery is refused",
			steps:  []step{{"done", 0, false}},
			wantOK: false,
		},
		{
			name:       "repeated or older delivery is refused",
			steps:      []step{{"deliver", 4, true}, {"deliver", 4, false}, {"deliver", 3, false}, {"done", 4, true}},
			wantCommit: 5, wantOK: true,
		},
		{
			name:   "negative offset is refused",
			steps:  []step{{"deliver", -2, false}},
			wantOK: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWatermark()
			for i, s := range tt.steps {
				var got bool
				switch s.op {
				case "deliver":
					got = w.deliver(s.offset)
				case "done":
					got = w.done(s.offset)
				default:
					t.Fatalf("bad op %q", s.op)
				}
				if got != s.ok {
					t.Fatalf("step %d %s(%d) = %v, want %v", i, s.op, s.offset, got, s.ok)
				}
			}
			c, ok := w.commit()
			if ok != tt.wantOK || (ok && c != tt.wantCommit) {
				t.Fatalf("commit() = %d, %v; want %d, %v", c, ok, tt.wantCommit, tt.wantOK)
			}
			if got := w.outstanding(); got != tt.wantOut {
				t.Fatalf("outstanding() = %d, want %d", got, tt.wantOut)
			}
		})
	}
}
