package gate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

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
