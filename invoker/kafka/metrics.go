package kafka

import (
	"reflect"

	"github.com/rcrowley/go-metrics"
)

// discardMetrics is a go-metrics registry that keeps nothing: sarama's
// meters, counters and histograms registered in it are the library's no-op
// ones. sarama offers only the process-wide metrics.UseNilMetrics switch to
// turn them off; this keeps the choice to the clients this package makes.
type discardMetrics struct{}

var _ metrics.Registry = discardMetrics{}

func (discardMetrics) Each(func(string, any))            {}
func (discardMetrics) Get(string) any                    { return nil }
func (discardMetrics) GetAll() map[string]map[string]any { return nil }
func (discardMetrics) Register(string, any) error        { return nil }
func (discardMetrics) RunHealthchecks()                  {}
func (discardMetrics) Unregister(string)                 {}
func (discardMetrics) UnregisterAll()                    {}

// GetOrRegister answers the kinds sarama asks for (by value or by
// constructor) with their no-op forms. Another kind is built as the
// standard registry would and returned unregistered, so a caller always
// gets what it type-asserts.
func (discardMetrics) GetOrRegister(_ string, m any) any {
	switch m.(type) {
	case metrics.Meter, func() metrics.Meter:
		return metrics.NilMeter{}
	case metrics.Counter, func() metrics.Counter:
		return metrics.NilCounter{}
	case metrics.Histogram, func() metrics.Histogram:
		return metrics.NilHistogram{}
	}
	if v := reflect.ValueOf(m); v.Kind() == reflect.Func {
		return v.Call(nil)[0].Interface()
	}
	return m
}
