package kafka

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// securedBroker starts the embedded broker the way the platform does: controller 0 and invokers 0
// and 1 are its only users, each with its grants.
func securedBroker(t *testing.T) (*Embedded, map[string]SASL) {
	t.Helper()
	users := map[string]SASL{}
	var eu []EmbeddedUser
	add := func(name string, grants []Grant) {
		s := SASL{User: name, Password: "pw-" + name}
		users[name] = s
		eu = append(eu, EmbeddedUser{SASL: s, Grants: grants})
	}
	add(ControllerUser("0"), ControllerGrants("0"))
	add(InvokerUser(0), InvokerGrants(0))
	add(InvokerUser(1), InvokerGrants(1))
	return startBroker(t, EmbeddedOptions{Users: eu}), users
}

// rawConfig is a bare sarama client (an attacker's tool would be no kinder) that gives up fast.
func rawConfig(s SASL) *sarama.Config {
	sc := NewSaramaConfig(Config{SASL: s})
	sc.Metadata.Retry.Max = 0
	sc.Net.DialTimeout = 2 * time.Second
	sc.Net.ReadTimeout = 2 * time.Second
	sc.Producer.Retry.Max = 0
	sc.Metadata.AllowAutoTopicCreation = false
	return sc
}

// produce writes one record with a bare sync producer.
func produce(e *Embedded, s SASL, topic string) error {
	p, err := sarama.NewSyncProducer(e.Addrs(), rawConfig(s))
	if err != nil {
		return err
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(`{"forged":true}`)})
	return err
}

// readOne reads the first record of partition 0 of topic without a group (what an eavesdropper
// does) and returns its value.
func readOne(e *Embedded, s SASL, topic string) (string, error) {
	c, err := sarama.NewConsumer(e.Addrs(), rawConfig(s))
	if err != nil {
		return "", err
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return "", err
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return string(m.Value), nil
	case err := <-pc.Errors():
		return "", err
	case <-time.After(3 * time.Second):
		return "", errors.New("no record and no error")
	}
}

func TestEmbeddedBrokerRefusesClientsWithoutCredentials(t *testing.T) {
	e, users := securedBroker(t)
	ctrl := users[ControllerUser("0")]
	if err := EnsureTopic(context.Background(), Config{Brokers: e.Addrs(), SASL: ctrl}, "invoker0", 1, MaxMessageBytes); err != nil {
		t.Fatalf("controller creates invoker0: %v", err)
	}
	if err := produce(e, ctrl, "invoker0"); err != nil {
		t.Fatalf("controller produces to invoker0: %v", err)
	}
	for name, s := range map[string]SASL{
		"no credentials":  {},
		"wrong password":  {User: ctrl.User, Password: "guess"},
		"unknown user":    {User: "admin", Password: "admin"},
		"wrong mechanism": {User: ctrl.User, Password: ctrl.Password, Mechanism: MechanismPlain},
	} {
		t.Run(name, func(t *testing.T) {
			if v, err := readOne(e, s, "invoker0"); err == nil {
				t.Errorf("read invoker0 %s: got %q, want a refusal", name, v)
			}
			if err := produce(e, s, "completed0"); err == nil {
				t.Errorf("produced a forged ack on completed0 %s", name)
			}
		})
	}
}

func TestEmbeddedBrokerACLs(t *testing.T) {
	e, users := securedBroker(t)
	ctrl, inv0, inv1 := users[ControllerUser("0")], users[InvokerUser(0)], users[InvokerUser(1)]
	ctx := context.Background()
	for _, topic := range []string{"invoker0", "invoker1", "completed0", HealthTopic} {
		if err := EnsureTopic(ctx, Config{Brokers: e.Addrs(), SASL: ctrl}, topic, 1, MaxMessageBytes); err != nil {
			t.Fatalf("controller ensures %s: %v", topic, err)
		}
	}
	for _, topic := range []string{"invoker0", "invoker1"} {
		if err := produce(e, ctrl, topic); err != nil {
			t.Fatalf("controller produces to %s: %v", topic, err)
		}
	}
	// What each daemon needs works.
	if err := EnsureTopic(ctx, Config{Brokers: e.Addrs(), SASL: inv0}, "invoker0", 1, MaxMessageBytes); err != nil {
		t.Errorf("invoker0 ensures its own topic: %v", err)
	}
	if _, err := readOne(e, inv0, "invoker0"); err != nil {
		t.Errorf("invoker0 reads invoker0: %v", err)
	}
	for _, topic := range []string{"completed0", HealthTopic} {
		if err := produce(e, inv0, topic); err != nil {
			t.Errorf("invoker0 produces to %s: %v", topic, err)
		}
	}
	if _, err := readOne(e, ctrl, "completed0"); err != nil {
		t.Errorf("controller reads completed0: %v", err)
	}
	// A group member of its own group, through this package's consumer.
	cons := newConsumer(t, Config{Brokers: e.Addrs(), SASL: inv0}, "invoker0", "invoker0", ConsumerOptions{})
	receive(t, cons, 1)

	// What it must not do is refused.
	if v, err := readOne(e, inv1, "invoker0"); err == nil {
		t.Errorf("invoker1 read invoker0: %q", v)
	}
	for _, topic := range []string{"invoker0", "invoker1"} {
		if err := produce(e, inv0, topic); err == nil {
			t.Errorf("invoker0 produced an activation to %s", topic)
		}
	}
	for _, topic := range []string{"completed0", HealthTopic} {
		if v, err := readOne(e, inv0, topic); err == nil {
			t.Errorf("invoker0 read %s: %q", topic, v)
		}
	}
	if err := produce(e, ctrl, "completed0"); err == nil {
		t.Error("controller produced an ack to its own completed0")
	}
}

// TestDeployReadmeListsTheGrants keeps deploy/kafka/README.md's kafka-acls commands for real
// brokers identical to what the embedded broker enforces.
func TestDeployReadmeListsTheGrants(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kafka/README.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	want = append(want, KafkaACLsCommands(ControllerUser("0"), ControllerGrants("0"))...)
	want = append(want, KafkaACLsCommands(InvokerUser(0), InvokerGrants(0))...)
	for _, line := range want {
		if !strings.Contains(string(b), line+"\n") {
			t.Errorf("deploy/kafka/README.md lacks:\n%s", line)
		}
	}
}

// TestEmbeddedBrokerAuthSurvivesRestarts: a data directory written without users (an older
// release), then a restart with users, then one with a regenerated password: each time exactly the
// configured users and grants apply, and the records survive.
func TestEmbeddedBrokerAuthSurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	open := func(users []EmbeddedUser) *Embedded {
		e, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Users: users})
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		return e
	}
	e := open(nil)
	if err := EnsureTopic(context.Background(), Config{Brokers: e.Addrs()}, "invoker0", 1, MaxMessageBytes); err != nil {
		t.Fatal(err)
	}
	if err := produce(e, SASL{}, "invoker0"); err != nil {
		t.Fatalf("old release produces: %v", err)
	}
	e.Close()

	inv := SASL{User: InvokerUser(0), Password: "first"}
	users := func(s SASL) []EmbeddedUser {
		return []EmbeddedUser{{SASL: s, Grants: InvokerGrants(0)}}
	}
	e = open(users(inv))
	if v, err := readOne(e, inv, "invoker0"); err != nil || v != `{"forged":true}` {
		t.Fatalf("after the upgrade invoker0 reads its topic: %q %v", v, err)
	}
	if _, err := readOne(e, SASL{}, "invoker0"); err == nil {
		t.Fatal("after the upgrade an anonymous client reads invoker0")
	}
	if err := produce(e, inv, "invoker0"); err == nil {
		t.Fatal("after the upgrade invoker0 writes to invoker0")
	}
	e.Close()

	inv2 := SASL{User: InvokerUser(0), Password: "second"}
	e = open(users(inv2))
	defer e.Close()
	if _, err := readOne(e, inv2, "invoker0"); err != nil {
		t.Fatalf("with the new password: %v", err)
	}
	if _, err := readOne(e, inv, "invoker0"); err == nil {
		t.Fatal("the old password still works")
	}
	if err := produce(e, inv2, "invoker0"); err == nil {
		t.Fatal("after a restart invoker0 writes to invoker0")
	}
}
