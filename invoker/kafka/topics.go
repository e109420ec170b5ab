package kafka

import "strconv"

// HealthTopic carries the invokers' PingMessages to every controller.
const HealthTopic = "health"

// MaxMessageBytes is OpenWhisk's default limit for activation and completion
// messages: whisk.activation.payload.max (1 MiB = 1048576 B) plus the serdes
// overhead (6068 B). OpenWhisk applies it as the topic's max.message.bytes and
// as the producer's max.request.size.
const MaxMessageBytes = 1048576 + 6068

// InvokerTopic is the topic an invoker with instance number n consumes
// ActivationMessages from, e.g. "invoker0". OpenWhisk also uses it as the
// consumer group name.
func InvokerTopic(n int) string { return "invoker" + strconv.Itoa(n) }

// CompletedTopic is the topic controller `controller` (its instance id as a
// string, e.g. "0") reads completion acks from, e.g. "completed0".
func CompletedTopic(controller string) string { return "completed" + controller }
