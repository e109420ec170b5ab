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
	// The journal (invoker/internal/journal) and the records outbox.
	JournalWrites       *prometheus.CounterVec // by op: start, finish, answer, delivered, postpone; and error
	OutboxDepth         prometheus.Gauge
	OutboxRetries       prometheus.Counter
	JournalRedeliveries prometheus.Counter
	Interrupted         prometheus.Counter
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
		JournalWrites: prometheus.NewCounterVec(prometheus.CounterOpts(f("journal_writes_total",
			"Writes to the activation journal, by operation; op=\"error\" counts the writes that failed.")), []string{"op"}),
		OutboxDepth: prometheus.NewGauge(prometheus.GaugeOpts(f("outbox_depth",
			"Activation records waiting in the journal's outbox for the activation store."))),
		OutboxRetries: prometheus.NewCounter(prometheus.CounterOpts(f("outbox_retries_total",
			"Deliveries of outbox records to the activation store that failed and were postponed."))),
		JournalRedeliveries: prometheus.NewCounter(prometheus.CounterOpts(f("journal_redeliveries_total",
			"Redelivered activations answered from the journal (answered or finished before), not run."))),
		Interrupted: prometheus.NewCounter(prometheus.CounterOpts(f("interrupted_activations_total",
			"Activations found started but not answered after a restart, answered as whisk errors and not run again."))),
	}
	reg.MustRegister(m.Activations, m.Malformed, m.Duplicates, m.Stale, m.Acks, m.AckErrors, m.PhaseSeconds,
		m.InFlight, m.FetchCache, m.Enabled, m.Pings,
		m.JournalWrites, m.OutboxDepth, m.OutboxRetries, m.JournalRedeliveries, m.Interrupted)
	return m
}

// ObservePhase records one phase duration.
func (m *Metrics) ObservePhase(phase string, d time.Duration) {
	m.PhaseSeconds.WithLabelValues(phase).Observe(d.Seconds())
}
