package gate

import (
	"bytes"
	"testing"
)

// The same vector is checked on the owner's side (enclave-runtime/test/gateauth.test.js): the
// invoker and the runtime must compute the same token.
func TestTokenVector(t *testing.T) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	const want = "ea91b3d8a7720ac71820876394ef384a6fc8359c493f5e7e9a785bd3e727ae7e"
	if got := Token(key, "0123456789abcdef0123456789abcdef", "guest"); got != want {
		t.Fatalf("Token = %s, want %s", got, want)
	}
	if Token(key, "a", "b") == Token(key, "a", "c") || Token(key, "a", "b") == Token(append([]byte{1}, key[1:]...), "a", "b") {
		t.Fatal("tokens of different activations or keys are equal")
	}
}

func TestNewKey(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != KeySize || bytes.Equal(a, b) {
		t.Fatalf("keys %x and %x", a, b)
	}
}
