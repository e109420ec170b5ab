// Package metrics holds the invoker's Prometheus metrics: one registry per invoker (so several
// invokers can live in one process, as in standalone mode and tests) and a histogram for every phase
// of an activation. It runs on the untrusted host and records no parameters or results.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Phases of one activation, used as the "phase" label of PhaseSeconds. Executors report the
// sandbox and enclave phases; the pipeline reports fetch, wait and total.
const (
	PhaseFetch           = "fetch"          // action fetch (cache hit or REST call)
	PhaseMemoryWait      = "memory_wait"    // waiting for user memory
	PhaseSandboxCreate   = "sandbox_create" // fresh container created and started
	PhaseProxyReady      = "proxy_ready"    // action proxy in the sandbox started and taking the request
	PhaseAttach          = "attach"         // shim attached to the enclave (gate hello / teemate ATTACH)
	PhaseTCSAcquire      = "tcs_acquire"    // enclave thread taken
	PhaseInit            = "init"           // action initialised (code prepared)
	PhaseIsolateCreate   = "isolate_create" // new V8 isolate made for the run
	PhaseRun             = "run"            // the action's main
	PhaseIsolateTeardown = "isolate_teardown"
	PhaseSandboxTeardown = "sandbox_teardown" // container destroyed
	PhaseTotal           = "total"            // message parsed to slot-freeing ack sent
)

// Metrics is the invoker's set of collectors.
type Metrics struct {
	Registry     *prometheus.Registry
	Activations  *prometheus.CounterVec // by status: success, application_error, developer_error, whisk_error
	Malformed    prometheus.Counter
	Duplicates   prometheus.Counter
	Stale        prometheus.Counter
	Acks         *prometheus.CounterVec // by kind: result, completion, combined; and shrunk
	AckErrors    prometheus.Counter
	PhaseSeconds *prometheus.HistogramVec
	InFlight     prometheus.Gauge
	FetchCache   *prometheus.CounterVec // by result: hit, miss
	Enabled      prometheus.Gauge
	Pings        prometheus.Counter
}

// New creates and registers the invoker metrics, labelled with the invoker instance.
func New(instance string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := prometheus.Labels{"invoker": instance}
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "teemate", Subsystem: "invoker", Name: name, Help: help, ConstLabels: labels}
	}
	m := &Metrics{
		Registry:    reg,
		Activations: prometheus.NewCounterVec(prometheus.CounterOpts(f("activations_total", "Activations answered, by status.")), []string{"status"}),
		Malformed:   prometheus.NewCounter(prometheus.CounterOpts(f("malformed_messages_total", "Messages on the invoker topic that did not parse and were skipped."))),
		Duplicates:  prometheus.NewCounter(prometheus.CounterOpts(f("duplicate_activations_total", "Redelivered activations answered again without running."))),
		Stale:       prometheus.NewCounter(prometheus.CounterOpts(f("stale_activations_total", "Activations answered as stale without running."))),
		Acks:        prometheus.NewCounterVec(prometheus.CounterOpts(f("acks_total", "Acknowledgements sent, by kind.")), []string{"kind"}),
		AckErrors:   prometheus.NewCounter(prometheus.CounterOpts(f("ack_errors_total", "Acknowledgements that could not be sent."))),
		PhaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "teemate", Subsystem: "invoker", Name: "phase_seconds", ConstLabels: labels,
			Help:    "Duration of each phase of an activation.",
			Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1, 2, 4, 8, 16, 32, 64},
		}, []string{"phase"}),
		InFlight:   prometheus.NewGauge(prometheus.GaugeOpts(f("in_flight", "Activations taken from Kafka and not yet acknowledged."))),
		FetchCache: prometheus.NewCounterVec(prometheus.CounterOpts(f("action_cache_total", "Action fetches by cache result.")), []string{"result"}),
		Enabled:    prometheus.NewGauge(prometheus.GaugeOpts(f("enabled", "1 while the invoker takes work."))),
		Pings:      prometheus.NewCounter(prometheus.CounterOpts(f("pings_total", "Health pings sent."))),
	}
	reg.MustRegister(m.Activations, m.Malformed, m.Duplicates, m.Stale, m.Acks, m.AckErrors, m.PhaseSeconds,
		m.InFlight, m.FetchCache, m.Enabled, m.Pings)
	return m
}

// ObservePhase records one phase duration.
func (m *Metrics) ObservePhase(phase string, d time.Duration) {
	m.PhaseSeconds.WithLabelValues(phase).Observe(d.Seconds())
}
