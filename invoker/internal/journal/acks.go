package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// acksFormat is the first byte of an encoded ack list, so the layout can change later.
const acksFormat = 1

// encodeAcks lays out acks as the format byte, then per ack the topic and the value, each as a
// uvarint length and the bytes. The values are kept as they are (not JSON-escaped or base64): a
// redelivery resends them byte for byte.
func encodeAcks(acks []Ack) []byte {
	n := 1
	for _, a := range acks {
		n += 2*binary.MaxVarintLen64 + len(a.Topic) + len(a.Value)
	}
	out := make([]byte, 0, n)
	out = append(out, acksFormat)
	for _, a := range acks {
		out = binary.AppendUvarint(out, uint64(len(a.Topic)))
		out = append(out, a.Topic...)
		out = binary.AppendUvarint(out, uint64(len(a.Value)))
		out = append(out, a.Value...)
	}
	return out
}

var errBadAcks = errors.New("damaged ack list")

func decodeAcks(b []byte) ([]Ack, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", errBadAcks)
	}
	if b[0] != acksFormat {
		return nil, fmt.Errorf("%w: format %d", errBadAcks, b[0])
	}
	b = b[1:]
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: a length runs past the end", errBadAcks)
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, nil
	}
	var acks []Ack
	for len(b) > 0 {
		topic, err := next()
		if err != nil {
			return nil, err
		}
		value, err := next()
		if err != nil {
			return nil, err
		}
		acks = append(acks, Ack{Topic: string(topic), Value: append([]byte(nil), value...)})
	}
	return acks, nil
}
