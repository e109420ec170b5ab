package sealed

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/teemate/platform/invoker/attest"
)

// The wire constants of the formats in README.md. They are the same in trusted/sealed.js.
const (
	// Version is the version of the sealed code and the receipt, and of the first envelope and
	// sealed result (an X25519 reply key; the result sealed with HPKE), which enclaves still answer.
	Version = 1
	// EnvelopeVersion is the version of the envelope and sealed result SealParams makes: a 32-byte
	// AES-256 reply key inside the envelope, the result sealed with AES-256-GCM under it (no
	// public-key operation on the way back).
	EnvelopeVersion = 2
	// Suite names the HPKE suite: KEM / KDF / AEAD.
	Suite = "X25519-HKDF-SHA256/HKDF-SHA256/AES-256-GCM"

	// ParamsField is the only key of a sealed activation's parameters object.
	ParamsField = "__teemate_sealed"
	// ResultField is the only key of a sealed result (or of its "error" for an application error).
	ResultField = "__teemate_sealed_result"
	// CodeField is the only key of the JSON an action's sealed code is stored as.
	CodeField = "__teemate_sealed_code"

	// IntegrityPrefix starts the developer error of every envelope or sealed code the enclave refuses.
	IntegrityPrefix = "TeeMate sealed: integrity"

	// MaxSealedBytes bounds the ciphertext of an envelope (the enclave refuses a larger one). The
	// parameters of an OpenWhisk activation are at most 1 MiB, and this is the same bound.
	MaxSealedBytes = 1 << 20

	infoParams = "teemate-sealed-v1"
	infoResult = "teemate-result-v1"
	infoCode   = "teemate-code-v1"

	// replyIVBytes is a v2 sealed result's AES-GCM IV size (its tag is the usual 16 bytes).
	replyIVBytes = 12

	aadCode = "teemate-code-v1\n"
)

var (
	// ErrIntegrity: something sealed or signed does not open or verify (tampered, or not meant for
	// this key, activation or request).
	ErrIntegrity = errors.New("sealed: integrity")
	// ErrRefused: the enclave refused the envelope; the record's error says why.
	ErrRefused = errors.New("sealed: refused by the enclave")
	// ErrNotSealed: the record's result is not a sealed result (e.g. the activation timed out, or
	// the action is not sealed); the error carries the plaintext the record holds.
	ErrNotSealed = errors.New("sealed: the result is not sealed")
	// ErrMalformed: an input does not have the documented shape.
	ErrMalformed = errors.New("sealed: malformed")
)

// Envelope is the value of ParamsField.
type Envelope struct {
	V     int    `json:"v"`
	Suite string `json:"suite"`
	Kid   string `json:"kid"`
	Nonce string `json:"nonce"`
	Iat   int64  `json:"iat"`
	Enc   string `json:"enc"`
	Ct    string `json:"ct"`
}

// paramsPlaintext is what the envelope's ct holds.
type paramsPlaintext struct {
	Params json.RawMessage `json:"params"`
	Reply  string          `json:"reply"`
}

// SealedResult is the value of ResultField: v 2 has the IV of AES-256-GCM under the reply key,
// v 1 the HPKE encapsulated key.
type SealedResult struct {
	V       int     `json:"v"`
	Enc     string  `json:"enc,omitempty"`
	IV      string  `json:"iv,omitempty"`
	Ct      string  `json:"ct"`
	Receipt Receipt `json:"receipt"`
}

// resultPlaintext is what a sealed result's ct holds.
type resultPlaintext struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	Logs   []string        `json:"logs"`
}

// SealedCode is the value of CodeField.
type SealedCode struct {
	V   int    `json:"v"`
	Kid string `json:"kid"`
	Enc string `json:"enc"`
	Ct  string `json:"ct"`
}

// Opened is a sealed result opened by the client that sealed the parameters.
type Opened struct {
	// Result is the action's value (null for an application error).
	Result json.RawMessage
	// Error is the application error's value (null on success).
	Error json.RawMessage
	// Logs are the action's log lines, which the host never saw.
	Logs []string
	// Receipt is the enclave's receipt; OpenResult has verified it.
	Receipt Receipt
}

// FullActionName is the name an envelope binds: the fully qualified `/ns/[pkg/]name` that the enclave
// sees in __OW_ACTION_NAME. A name without a leading slash is taken relative to namespace.
func FullActionName(namespace, action string) string {
	if strings.HasPrefix(action, "/") {
		return action
	}
	return "/" + namespace + "/" + action
}

// SealParams seals params (a JSON object; nil means {}) for one invocation of action in namespace
// to the image key of ev, and returns the whole parameters object to send ({"__teemate_sealed":…})
// and the reply key that opens the result. ev must have been verified (attest.Verify) by the caller.
func SealParams(ev *attest.Evidence, namespace, action string, params json.RawMessage) (json.RawMessage, *ReplyKey, error) {
	keys, err := keysOf(ev)
	if err != nil {
		return nil, nil, err
	}
	if namespace == "" || action == "" {
		return nil, nil, fmt.Errorf("%w: namespace and action are required", ErrMalformed)
	}
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	if !isObject(params) {
		return nil, nil, fmt.Errorf("%w: parameters must be a JSON object", ErrMalformed)
	}
	// One read for the reply key and the nonce (crypto/rand does not fail on Linux).
	random := make([]byte, 32+16)
	if _, err := rand.Read(random); err != nil {
		return nil, nil, fmt.Errorf("sealed: reply key: %w", err)
	}
	secret, nonce := random[:32], random[32:]
	env := Envelope{V: EnvelopeVersion, Suite: Suite, Kid: keys.kid, Nonce: hex.EncodeToString(nonce),
		Iat: time.Now().UnixMilli()}
	action = FullActionName(namespace, action)
	enc, sender, err := paramsSender(keys.kem)
	if err != nil {
		return nil, nil, err
	}
	ct, err := sender.Seal(ParamsAAD(env.V, namespace, action, env.Nonce, env.Iat), appendParamsPlaintext(nil, params, secret))
	if err != nil {
		return nil, nil, fmt.Errorf("sealed: hpke seal: %w", err)
	}
	if len(ct) > MaxSealedBytes {
		return nil, nil, fmt.Errorf("%w: sealed parameters of %d bytes exceed %d", ErrMalformed, len(ct), MaxSealedBytes)
	}
	out := appendEnvelope(make([]byte, 0, 160+base64.StdEncoding.EncodedLen(len(ct))), env, enc, ct)
	sum := sha256.Sum256(ct)
	reply := &ReplyKey{secret: secret, Namespace: namespace, Action: action, Kid: keys.kid,
		Nonce: env.Nonce, Iat: env.Iat, InputSHA256: hex.EncodeToString(sum[:]),
		SigKey: keys.sig, IdentitySHA256: keys.identitySHA256}
	return out, reply, nil
}

// The two texts SealParams writes are built by appending rather than by encoding/json: its
// reflection is most of a sealing's CPU when it runs once in a while (cold), and every field
// here is either JSON already (params, checked by isObject) or ASCII that needs no escaping
// (the suite, hex, base64, integers, and the kid, which keysOf checked is its keys' hex).

// appendParamsPlaintext appends the envelope's plaintext, {"params":…,"reply":"<b64>"}.
func appendParamsPlaintext(b []byte, params json.RawMessage, reply []byte) []byte {
	b = append(b, `{"params":`...)
	b = append(b, params...)
	b = append(b, `,"reply":"`...)
	b = base64.StdEncoding.AppendEncode(b, reply)
	return append(b, `"}`...)
}

// appendEnvelope appends the parameters object {"__teemate_sealed":{…}} of env with enc and ct.
func appendEnvelope(b []byte, env Envelope, enc, ct []byte) []byte {
	b = append(b, `{"`+ParamsField+`":{"v":`...)
	b = strconv.AppendInt(b, int64(env.V), 10)
	b = append(b, `,"suite":"`...)
	b = append(b, env.Suite...)
	b = append(b, `","kid":"`...)
	b = append(b, env.Kid...)
	b = append(b, `","nonce":"`...)
	b = append(b, env.Nonce...)
	b = append(b, `","iat":`...)
	b = strconv.AppendInt(b, env.Iat, 10)
	b = append(b, `,"enc":"`...)
	b = base64.StdEncoding.AppendEncode(b, enc)
	b = append(b, `","ct":"`...)
	b = base64.StdEncoding.AppendEncode(b, ct)
	return append(b, `"}}`...)
}

// ParamsAAD is the additional data an envelope of the given version is sealed with: it binds the
// envelope to one action of one namespace and to its nonce and time, so it cannot be replayed
// elsewhere, and to its version, so that its v cannot be changed in transit.
func ParamsAAD(version int, namespace, action, nonce string, iat int64) []byte {
	b := make([]byte, 0, 64+len(namespace)+len(action)+len(nonce))
	b = strconv.AppendInt(append(b, "teemate-params-v"...), int64(version), 10)
	b = append(append(append(append(append(append(b, '\n'), namespace...), '\n'), action...), '\n'), nonce...)
	return strconv.AppendInt(append(b, '\n'), iat, 10)
}

// ResultAAD is the additional data a sealed result is sealed with (one activation, one envelope,
// the envelope's version).
func ResultAAD(version int, activationID, nonce string) []byte {
	b := make([]byte, 0, 48+len(activationID)+len(nonce))
	b = strconv.AppendInt(append(b, "teemate-result-v"...), int64(version), 10)
	return append(append(append(append(b, '\n'), activationID...), '\n'), nonce...)
}

// CodeAAD is the additional data sealed code is sealed with (one action of one namespace).
func CodeAAD(namespace, action string) []byte {
	return []byte(aadCode + namespace + "\n" + action)
}

// SealCode seals an action's code (the source, as the init's code field would carry it) to the image
// key of ev for action in namespace, and returns the string to store as the action's code.
func SealCode(ev *attest.Evidence, namespace, action string, code []byte) (string, error) {
	keys, err := keysOf(ev)
	if err != nil {
		return "", err
	}
	if namespace == "" || action == "" {
		return "", fmt.Errorf("%w: namespace and action are required", ErrMalformed)
	}
	enc, ct, err := seal(keys.kem, infoCode, CodeAAD(namespace, FullActionName(namespace, action)), code)
	if err != nil {
		return "", err
	}
	out, err := json.Marshal(map[string]SealedCode{CodeField: {V: Version, Kid: keys.kid,
		Enc: base64.StdEncoding.EncodeToString(enc), Ct: base64.StdEncoding.EncodeToString(ct)}})
	if err != nil {
		return "", fmt.Errorf("sealed: code: %w", err)
	}
	return string(out), nil
}

// IsSealed reports whether an activation's parameters object is an envelope.
func IsSealed(params json.RawMessage) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(params, &probe) != nil {
		return false
	}
	_, ok := probe[ParamsField]
	return ok
}

// IsSealedCode reports whether an action's code is sealed code.
func IsSealedCode(code string) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal([]byte(code), &probe) != nil {
		return false
	}
	_, ok := probe[CodeField]
	return ok
}

// OpenResult opens the result an activation record holds for the invocation reply was made for,
// and verifies its receipt against the evidence the parameters were sealed to. A record that holds
// the enclave's refusal gives ErrRefused; any other unsealed result gives ErrNotSealed.
func OpenResult(reply *ReplyKey, activationID string, recordResult json.RawMessage) (*Opened, error) {
	if reply == nil || (reply.key == nil && reply.secret == nil) {
		return nil, fmt.Errorf("%w: no reply key", ErrMalformed)
	}
	if activationID == "" {
		return nil, fmt.Errorf("%w: activation id is required", ErrMalformed)
	}
	sr, err := findSealedResult(recordResult)
	if err != nil {
		return nil, err
	}
	if want := reply.version(); sr.V != want {
		return nil, fmt.Errorf("%w: sealed result version %d for a v%d envelope", ErrMalformed, sr.V, want)
	}
	ct, err := base64.StdEncoding.DecodeString(sr.Ct)
	if err != nil {
		return nil, fmt.Errorf("%w: sealed result: %w", ErrMalformed, err)
	}
	aad := ResultAAD(sr.V, activationID, reply.Nonce)
	var pt []byte
	if sr.V == 1 {
		enc, err := base64.StdEncoding.DecodeString(sr.Enc)
		if err != nil {
			return nil, fmt.Errorf("%w: sealed result: %w", ErrMalformed, err)
		}
		pt, err = open(reply.key, infoResult, aad, enc, ct)
		if err != nil {
			return nil, err
		}
	} else {
		iv, err := base64.StdEncoding.DecodeString(sr.IV)
		if err != nil || len(iv) != replyIVBytes {
			return nil, fmt.Errorf("%w: sealed result: the IV is not %d bytes of base64", ErrMalformed, replyIVBytes)
		}
		pt, err = openSymmetric(reply.secret, iv, aad, ct)
		if err != nil {
			return nil, err
		}
	}
	var rp resultPlaintext
	if err := json.Unmarshal(pt, &rp); err != nil {
		return nil, fmt.Errorf("%w: sealed result plaintext: %w", ErrMalformed, err)
	}
	if sr.Receipt.ActivationID != activationID {
		return nil, fmt.Errorf("%w: receipt is for activation %q, not %q", ErrIntegrity, sr.Receipt.ActivationID, activationID)
	}
	if err := verifyReceipt(sr.Receipt, reply.Kid, reply.SigKey, reply.IdentitySHA256, reply, ct); err != nil {
		return nil, err
	}
	return &Opened{Result: nullIfEmpty(rp.Result), Error: nullIfEmpty(rp.Error), Logs: rp.Logs, Receipt: sr.Receipt}, nil
}

// findSealedResult takes the sealed result out of a record's result: {"__teemate_sealed_result":…}
// on success, {"error":{"__teemate_sealed_result":…}} for an application error.
func findSealedResult(recordResult json.RawMessage) (*SealedResult, error) {
	// One decode for both shapes (the error's value may be a string instead: a refusal, or any
	// unsealed error, which the second look reports).
	var top struct {
		Sealed *SealedResult   `json:"__teemate_sealed_result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(recordResult, &top); err != nil {
		return nil, fmt.Errorf("%w: record result: %w", ErrMalformed, err)
	}
	if top.Sealed != nil {
		return top.Sealed, nil
	}
	var inner struct {
		Sealed json.RawMessage `json:"__teemate_sealed_result"`
	}
	if len(top.Error) > 0 && json.Unmarshal(top.Error, &inner) == nil && len(inner.Sealed) > 0 {
		var sr SealedResult
		if err := json.Unmarshal(inner.Sealed, &sr); err != nil {
			return nil, fmt.Errorf("%w: sealed result: %w", ErrMalformed, err)
		}
		return &sr, nil
	}
	var msg string
	if len(top.Error) > 0 && json.Unmarshal(top.Error, &msg) == nil {
		if strings.HasPrefix(msg, IntegrityPrefix) {
			return nil, fmt.Errorf("%w: %s", ErrRefused, msg)
		}
		return nil, fmt.Errorf("%w: error %q", ErrNotSealed, msg)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotSealed, truncate(recordResult, 200))
}

func seal(recipient []byte, info string, aad, pt []byte) (enc, ct []byte, err error) {
	enc, sender, err := newSender(recipient, info)
	if err != nil {
		return nil, nil, err
	}
	if ct, err = sender.Seal(aad, pt); err != nil {
		return nil, nil, fmt.Errorf("sealed: hpke seal: %w", err)
	}
	return enc, ct, nil
}

// newSender sets up HPKE to recipient: a fresh ephemeral key and its X25519 with recipient, the
// costly half of sealing, which does not depend on the message.
func newSender(recipient []byte, info string) ([]byte, *hpke.Sender, error) {
	pub, err := ecdh.X25519().NewPublicKey(recipient)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: recipient key: %w", ErrMalformed, err)
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("sealed: hpke key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info))
	if err != nil {
		return nil, nil, fmt.Errorf("sealed: hpke: %w", err)
	}
	return enc, sender, nil
}

// spareSender is an envelope's HPKE sender set up ahead for an image key.
type spareSender struct {
	enc    []byte
	sender *hpke.Sender
}

// spares holds at most one spareSender per image key (by its raw X25519 key): a client that seals
// repeatedly (a service, the bench) finds the next envelope's ephemeral key and key schedule made
// in the background after the previous one, off its invocation's path; a one-shot client pays one
// set-up it does not use. Each spare is taken once (LoadAndDelete), so no two envelopes share an
// ephemeral key.
var spares sync.Map // string -> spareSender

// paramsSender returns the sender for an envelope to recipient (the spare when there is one) and
// starts making the next spare.
func paramsSender(recipient []byte) ([]byte, *hpke.Sender, error) {
	key := string(recipient)
	if v, ok := spares.LoadAndDelete(key); ok {
		sp := v.(spareSender)
		go prepareSpare(recipient)
		return sp.enc, sp.sender, nil
	}
	enc, sender, err := newSender(recipient, infoParams)
	if err != nil {
		return nil, nil, err
	}
	go prepareSpare(recipient)
	return enc, sender, nil
}

func prepareSpare(recipient []byte) {
	enc, sender, err := newSender(recipient, infoParams)
	if err != nil {
		return // the key was good a moment ago; the next envelope sets up its own
	}
	spares.LoadOrStore(string(recipient), spareSender{enc, sender})
}

func open(priv *ecdh.PrivateKey, info string, aad, enc, ct []byte) ([]byte, error) {
	k, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sealed: hpke key: %w", err)
	}
	r, err := hpke.NewRecipient(enc, k, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info))
	if err != nil {
		return nil, fmt.Errorf("%w: encapsulated key: %w", ErrIntegrity, err)
	}
	pt, err := r.Open(aad, ct)
	if err != nil {
		return nil, fmt.Errorf("%w: does not open: %w", ErrIntegrity, err)
	}
	return pt, nil
}

// openSymmetric opens a v2 sealed result: AES-256-GCM under the reply key, the tag after the
// ciphertext.
func openSymmetric(key, iv, aad, ct []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: reply key: %w", ErrMalformed, err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealed: aes-gcm: %w", err)
	}
	pt, err := gcm.Open(nil, iv, ct, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: does not open: %w", ErrIntegrity, err)
	}
	return pt, nil
}

// isObject reports whether raw is one JSON object (json.Valid: no reflection, which costs more
// than the check when it runs cold).
func isObject(raw json.RawMessage) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(raw)
}

func nullIfEmpty(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
