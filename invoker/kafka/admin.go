package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/IBM/sarama"
)

// EnsureTopic creates topic with the given partition count and
// max.message.bytes, as OpenWhisk's invoker does for invoker{N} at startup.
// It is idempotent: if the topic exists (possibly auto-created by a producer
// with broker defaults), its max.message.bytes is set and its partitions
// are left alone. Replication factor is 1, OpenWhisk's default.
//
// sarama's admin calls take no context; ctx is checked before each call.
func EnsureTopic(ctx context.Context, cfg Config, topic string, partitions int32, maxMessageBytes int) error {
	if topic == "" {
		return errors.New("kafka: ensure topic: empty topic name")
	}
	if partitions < 1 {
		return fmt.Errorf("kafka: ensure topic %q: partitions must be >= 1, got %d", topic, partitions)
	}
	if maxMessageBytes < 1 {
		return fmt.Errorf("kafka: ensure topic %q: max.message.bytes must be >= 1, got %d", topic, maxMessageBytes)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafka: ensure topic %q: %w", topic, err)
	}
	admin, err := sarama.NewClusterAdmin(cfg.Brokers, NewSaramaConfig(cfg))
	if err != nil {
		return fmt.Errorf("kafka: ensure topic %q: connect admin to %v: %w", topic, cfg.Brokers, err)
	}
	defer admin.Close() //nolint:errcheck // closing a client after use; nothing to recover

	maxBytes := strconv.Itoa(maxMessageBytes)
	err = admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions:     partitions,
		ReplicationFactor: 1,
		ConfigEntries:     map[string]*string{"max.message.bytes": &maxBytes},
	}, false)
	if err == nil {
		return nil
	}
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		return fmt.Errorf("kafka: create topic %q: %w", topic, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafka: ensure topic %q: %w", topic, err)
	}
	err = admin.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"max.message.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &maxBytes},
	}, false)
	if err != nil {
		return fmt.Errorf("kafka: set max.message.bytes=%s on existing topic %q: %w", maxBytes, topic, err)
	}
	return nil
}
