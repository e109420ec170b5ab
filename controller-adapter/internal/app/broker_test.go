package app

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/invoker/kafka"
)

// TestEmbeddedBrokerPortTaken: when another program holds the configured port, the standalone's
// broker refuses to start with an error naming the port and the flag, instead of moving to another
// port that tools configured with the first one would not find.
func TestEmbeddedBrokerPortTaken(t *testing.T) {
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	port := strconv.Itoa(holder.Addr().(*net.TCPAddr).Port)

	emb, err := startEmbedded(t.TempDir(), holder.Addr().String(), zap.NewNop(), nil)
	if err == nil {
		emb.Close()
		t.Fatalf("started on the taken port %s (at %v)", port, emb.Addrs())
	}
	if !errors.Is(err, kafka.ErrAddrInUse) {
		t.Errorf("error %v does not wrap kafka.ErrAddrInUse", err)
	}
	for _, want := range []string{"port " + port + " on 127.0.0.1 is taken", "--embedded-kafka-addr 127.0.0.1:PORT", "--embedded-kafka-addr 127.0.0.1:0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestEmbeddedBrokerAnyPort: port 0 asks for any free port, and the one chosen is logged as a
// warning with the address (the tests and scripts that ask for it still start).
func TestEmbeddedBrokerAnyPort(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	emb, err := startEmbedded(t.TempDir(), "127.0.0.1:0", zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	said := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("port chosen at start").All()
	if len(said) != 1 {
		t.Fatalf("warnings %v, want one saying the chosen port", logs.All())
	}
	got, _ := said[0].ContextMap()["brokers"].([]any)
	if len(got) != 1 || got[0] != emb.Addrs()[0] || strings.HasSuffix(emb.Addrs()[0], ":0") {
		t.Fatalf("logged brokers %v, broker at %v", said[0].ContextMap()["brokers"], emb.Addrs())
	}
}
