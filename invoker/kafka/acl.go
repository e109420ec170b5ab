package kafka

import (
	"fmt"
	"strconv"
	"strings"
)

// Grant is one permission of a Kafka user, in the terms of Kafka's kafka-acls tool. The
// embedded broker enforces exactly these grants, and deploy/ lists the same ones for real
// brokers, so the two cannot drift apart.
type Grant struct {
	// Resource is "topic" or "group".
	Resource string
	// Name is the topic or group name, or its prefix when Prefixed.
	Name     string
	Prefixed bool
	// Operation is a Kafka ACL operation: Read, Write, Create, AlterConfigs.
	// Read and Write imply Describe.
	Operation string
}

// ControllerUser and InvokerUser name the Kafka users of the platform's daemons.
func ControllerUser(controller string) string { return "controller" + controller }

// InvokerUser is invoker n's Kafka user, e.g. "invoker0".
func InvokerUser(n int) string { return "invoker" + strconv.Itoa(n) }

// ControllerGrants is what controller `controller` needs: produce activations to every
// invoker{N} (creating the topic and setting its size limit, as it does before the first
// message), and consume its own completed{C} and the health topic in its own groups.
func ControllerGrants(controller string) []Grant {
	completed := CompletedTopic(controller)
	g := []Grant{
		{"topic", "invoker", true, "Write"},
		{"topic", "invoker", true, "Create"},
		{"topic", "invoker", true, "AlterConfigs"},
	}
	for _, t := range []string{completed, HealthTopic} {
		g = append(g, Grant{"topic", t, false, "Read"}, Grant{"topic", t, false, "Create"},
			Grant{"topic", t, false, "AlterConfigs"})
	}
	return append(g,
		Grant{"group", completed, false, "Read"},
		Grant{"group", HealthTopic + controller, false, "Read"})
}

// InvokerGrants is what invoker n needs: consume its own invoker{n} in its own group (and create
// the topic at startup, as OpenWhisk's invoker does), produce acks to any controller's
// completed{C} and pings to health. It may not write activations (not even to its own topic)
// nor read anyone's acks, pings or activations.
func InvokerGrants(n int) []Grant {
	topic := InvokerTopic(n)
	return []Grant{
		{"topic", topic, false, "Read"},
		{"topic", topic, false, "Create"},
		{"topic", topic, false, "AlterConfigs"},
		{"group", topic, false, "Read"},
		{"topic", "completed", true, "Write"},
		{"topic", "completed", true, "Create"},
		{"topic", HealthTopic, false, "Write"},
		{"topic", HealthTopic, false, "Create"},
	}
}

// KafkaACLsCommands renders grants as kafka-acls.sh invocations for user, for operators of real
// brokers (deploy/kafka/README.md shows them).
func KafkaACLsCommands(user string, grants []Grant) []string {
	var out []string
	for _, g := range grants {
		pattern := "literal"
		if g.Prefixed {
			pattern = "prefixed"
		}
		out = append(out, fmt.Sprintf("kafka-acls.sh --bootstrap-server $BROKER --command-config admin.properties --add --allow-principal User:%s --operation %s --%s %s --resource-pattern-type %s",
			user, g.Operation, g.Resource, g.Name, pattern))
	}
	return out
}

// String is the grant in kafka-acls words, for logs and test failures.
func (g Grant) String() string {
	p := ""
	if g.Prefixed {
		p = "*"
	}
	return strings.Join([]string{g.Operation, g.Resource, g.Name + p}, " ")
}
