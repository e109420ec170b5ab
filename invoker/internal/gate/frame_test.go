package gate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
)

func TestFrameRoundTripAndLimits(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, map[string]string{"type": "ping"}, wire.MaxOtherFrame); err != nil {
		t.Fatal(err)
	}
	body, err := ReadFrame(&buf, wire.MaxOtherFrame)
	if err != nil || string(body) != `{"type":"ping"}` {
		t.Fatalf("body %q err %v", body, err)
	}
	big := map[string]string{"type": "run", "x": string(make([]byte, 100))}
	if err := WriteFrame(&buf, big, 50); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversize write: %v", err)
	}
	tests := map[string][]byte{
		"zero length":    {0, 0, 0, 0},
		"over limit":     binary.BigEndian.AppendUint32(nil, wire.MaxOtherFrame+1),
		"truncated body": append(binary.BigEndian.AppendUint32(nil, 10), '{'),
		"short header":   {0, 1},
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadFrame(bytes.NewReader(in), wire.MaxOtherFrame); err == nil {
				t.Fatal("bad frame accepted")
			}
		})
	}
}

// Ping against a scripted owner: a pong, an error reply, a wrong reply, and an owner that never
// answers before the deadline.
func TestPing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply any // nil: never answer
		want  string
	}{
		{"pong", map[string]any{"type": "pong", "slots": 3, "free": 2}, ""},
		{"error", map[string]string{"type": "error", "class": "internal", "message": "down"}, "gate internal error: down"},
		{"wrong type", map[string]string{"type": "welcome"}, `gate replied "welcome", expected "pong"`},
		{"silent", nil, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "gp")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "g.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if _, err := ReadFrame(c, wire.MaxOtherFrame); err != nil || tc.reply == nil {
					_, _ = io.Copy(io.Discard, c) // hold the connection until the client gives up
					return
				}
				if err := WriteFrame(c, tc.reply, wire.MaxOtherFrame); err != nil {
					t.Error(err)
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			p, err := Ping(ctx, sock)
			if tc.want == "" {
				if err != nil || p.Slots != 3 || p.Free != 2 {
					t.Fatalf("%+v %v", p, err)
				}
				return
			}
			// A silent owner ends at the connection's deadline, which is the context's.
			if tc.want == "timeout" && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)) {
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
