package kafka

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
)

// scramClient is the client side of SCRAM (RFC 5802, no channel binding) for sarama, which asks
// the application for one (sarama.SCRAMClient). It is written here rather than pulled in as a
// dependency because it is small and the broker side (kfake, Kafka) is what the tests check it
// against.
type scramClient struct {
	newHash func() hash.Hash

	step        int
	user, pass  string
	clientNonce string
	clientFirst string // client-first-message-bare
	serverSig   []byte
	done        bool
}

// maxSCRAMIterations is the most PBKDF2 iterations the client agrees to run.
const maxSCRAMIterations = 1 << 16

func newSCRAMClient(mechanism string) func() sarama.SCRAMClient {
	h := sha512.New
	if mechanism == sarama.SASLTypeSCRAMSHA256 {
		h = sha256.New
	}
	return func() sarama.SCRAMClient { return &scramClient{newHash: h} }
}

// saslName escapes a user name as RFC 5802 asks (',' and '=' are separators).
func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	if authzID != "" {
		return errors.New("scram: authorization ids are not supported")
	}
	nonce := make([]byte, 24)
	if _, err := rand.Read(nonce); err != nil {
		return fmt.Errorf("scram: nonce: %w", err)
	}
	*s = scramClient{newHash: s.newHash, user: user, pass: pass,
		clientNonce: base64.RawStdEncoding.EncodeToString(nonce)}
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) {
	s.step++
	switch s.step {
	case 1:
		s.clientFirst = "n=" + saslName(s.user) + ",r=" + s.clientNonce
		return "n,," + s.clientFirst, nil
	case 2:
		return s.final(challenge)
	case 3:
		return "", s.verify(challenge)
	}
	return "", errors.New("scram: unexpected extra step")
}

func (s *scramClient) Done() bool { return s.done }

// attrs splits "k=v,k=v" (values may hold '=').
func attrs(msg string) map[byte]string {
	out := map[byte]string{}
	for _, p := range strings.Split(msg, ",") {
		if len(p) >= 2 && p[1] == '=' {
			out[p[0]] = p[2:]
		}
	}
	return out
}

func (s *scramClient) final(serverFirst string) (string, error) {
	a := attrs(serverFirst)
	if e, ok := a['e']; ok {
		return "", fmt.Errorf("scram: server refused: %s", e)
	}
	nonce, salt64, iterStr := a['r'], a['s'], a['i']
	if !strings.HasPrefix(nonce, s.clientNonce) || len(nonce) == len(s.clientNonce) {
		return "", errors.New("scram: server nonce does not extend the client's")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return "", fmt.Errorf("scram: salt: %w", err)
	}
	iter, err := strconv.Atoi(iterStr)
	// The cap keeps a hostile broker from making each connection burn seconds of CPU; Kafka
	// accepts 4096..16384.
	if err != nil || iter < 1 || iter > maxSCRAMIterations {
		return "", fmt.Errorf("scram: bad iteration count %q", iterStr)
	}
	salted, err := pbkdf2.Key(s.newHash, s.pass, salt, iter, s.newHash().Size())
	if err != nil {
		return "", fmt.Errorf("scram: derive key: %w", err)
	}
	clientKey := s.hmac(salted, "Client Key")
	h := s.newHash()
	h.Write(clientKey)
	storedKey := h.Sum(nil)
	withoutProof := "c=biws,r=" + nonce // biws = base64("n,,")
	authMsg := s.clientFirst + "," + serverFirst + "," + withoutProof
	sig := s.hmac(storedKey, authMsg)
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ sig[i]
	}
	s.serverSig = s.hmac(s.hmac(salted, "Server Key"), authMsg)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

// verify checks the server's signature: a broker that does not know the password cannot make it,
// so a man in the middle posing as the broker is caught here.
func (s *scramClient) verify(serverFinal string) error {
	a := attrs(serverFinal)
	if e, ok := a['e']; ok {
		return fmt.Errorf("scram: server refused: %s", e)
	}
	v, err := base64.StdEncoding.DecodeString(a['v'])
	if err != nil || subtle.ConstantTimeCompare(v, s.serverSig) != 1 {
		return errors.New("scram: the server's signature does not match")
	}
	s.done = true
	return nil
}

func (s *scramClient) hmac(key []byte, msg string) []byte {
	m := hmac.New(s.newHash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
