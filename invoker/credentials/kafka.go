package credentials

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/teemate/platform/invoker/kafka"
)

// Environment variables a daemon reads its Kafka client settings from when no file is given.
// The environment of a process is readable only by its user and root (unlike its arguments).
const (
	EnvKafkaSASLFile      = "TEEMATE_KAFKA_SASL_FILE"
	EnvKafkaSASLUser      = "TEEMATE_KAFKA_SASL_USER"
	EnvKafkaSASLPassword  = "TEEMATE_KAFKA_SASL_PASSWORD"
	EnvKafkaSASLMechanism = "TEEMATE_KAFKA_SASL_MECHANISM"
	EnvKafkaTLS           = "TEEMATE_KAFKA_TLS"
	EnvKafkaTLSCA         = "TEEMATE_KAFKA_TLS_CA"
)

// KafkaOptions are a daemon's Kafka client flags. Empty fields fall back to the environment.
type KafkaOptions struct {
	// SASLFile holds the credentials (see ParseSASL); mode 0600.
	SASLFile string
	// TLS turns TLS on (SASL_SSL); CAFile adds a CA bundle to trust (PEM) instead of the system's.
	TLS    bool
	CAFile string
}

// KafkaClient resolves the SASL credentials and TLS settings of a daemon talking to real brokers:
// the flags first, then the environment. No credentials at all is not an error here (a broker
// that accepts anyone still works), but the caller should warn.
func KafkaClient(o KafkaOptions, getenv func(string) string) (kafka.SASL, *tls.Config, error) {
	if o.SASLFile == "" {
		o.SASLFile = getenv(EnvKafkaSASLFile)
	}
	var s kafka.SASL
	if o.SASLFile != "" {
		var err error
		if s, err = ReadSASLFile(o.SASLFile); err != nil {
			return kafka.SASL{}, nil, err
		}
	} else {
		s = kafka.SASL{User: getenv(EnvKafkaSASLUser), Password: getenv(EnvKafkaSASLPassword),
			Mechanism: getenv(EnvKafkaSASLMechanism)}
		if err := s.Validate(); err != nil {
			return kafka.SASL{}, nil, fmt.Errorf("%s/%s: %w", EnvKafkaSASLUser, EnvKafkaSASLPassword, err)
		}
	}
	if v := getenv(EnvKafkaTLS); !o.TLS && v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			// A mistyped value must not quietly mean "no TLS".
			return kafka.SASL{}, nil, fmt.Errorf("%s=%q: want true or false: %w", EnvKafkaTLS, v, err)
		}
		o.TLS = on
	}
	if o.CAFile == "" {
		o.CAFile = getenv(EnvKafkaTLSCA)
	}
	if !o.TLS && o.CAFile == "" {
		return s, nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return kafka.SASL{}, nil, fmt.Errorf("kafka TLS CA: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return kafka.SASL{}, nil, fmt.Errorf("kafka TLS CA %s: no PEM certificate in it", o.CAFile)
		}
	}
	return s, tc, nil
}

// ParseSASL reads the credentials file format, Java-properties style so the same file reads
// well next to a Kafka client.properties:
//
//	mechanism=SCRAM-SHA-512   (optional; SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN)
//	username=invoker0
//	password=...
//
// Blank lines and lines starting with # are ignored.
func ParseSASL(text string) (kafka.SASL, error) {
	var s kafka.SASL
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return kafka.SASL{}, fmt.Errorf("line %d: want key=value", i+1)
		}
		switch strings.TrimSpace(k) {
		case "mechanism":
			s.Mechanism = strings.TrimSpace(v)
		case "username":
			s.User = strings.TrimSpace(v)
		case "password":
			s.Password = strings.TrimSpace(v)
		default:
			return kafka.SASL{}, fmt.Errorf("line %d: unknown key %q (want mechanism, username, password)", i+1, k)
		}
	}
	if !s.Enabled() {
		return kafka.SASL{}, errors.New("no username")
	}
	if err := s.Validate(); err != nil {
		return kafka.SASL{}, err
	}
	return s, nil
}

// FormatSASL is ParseSASL's inverse.
func FormatSASL(s kafka.SASL) string {
	m := s.Mechanism
	if m == "" {
		m = kafka.MechanismSCRAMSHA512
	}
	return "mechanism=" + m + "\nusername=" + s.User + "\npassword=" + s.Password
}

// ReadSASLFile reads a credentials file (mode 0600, see ReadSecret).
func ReadSASLFile(path string) (kafka.SASL, error) {
	text, err := ReadSecret(path)
	if err != nil {
		return kafka.SASL{}, fmt.Errorf("kafka credentials: %w", err)
	}
	s, err := ParseSASL(text)
	if err != nil {
		return kafka.SASL{}, fmt.Errorf("kafka credentials %s: %w", path, err)
	}
	return s, nil
}

// KafkaUserFile is where the embedded broker keeps user's credentials under dir.
func KafkaUserFile(dir, user string) string { return filepath.Join(dir, user+".sasl") }

// KafkaUser returns user's SCRAM-SHA-512 credentials for the embedded broker from dir, making a
// random password on first start and reusing it after (the broker's data directory keeps the
// salted form, and clients started by hand find the file).
func KafkaUser(dir, user string) (kafka.SASL, error) {
	path := KafkaUserFile(dir, user)
	s, err := ReadSASLFile(path)
	if err == nil {
		if s.User != user {
			return kafka.SASL{}, fmt.Errorf("kafka credentials %s are for user %q, want %q", path, s.User, user)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return kafka.SASL{}, err
	}
	s = kafka.SASL{Mechanism: kafka.MechanismSCRAMSHA512, User: user, Password: RandomHex(24)}
	if err := WriteSecret(path, FormatSASL(s)); err != nil {
		return kafka.SASL{}, fmt.Errorf("kafka credentials: %w", err)
	}
	return s, nil
}
