package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/teemate/platform/invoker/whisk"
)

// maxParameterSize is OpenWhisk's limit on the parameters of an entity (whisk.parameter-size-limit),
// in its ByteSize form.
const maxParameterSize = "1 MB"

// rootInfo is GET /, OpenWhisk's controller info: the API paths, the system limits (throttles
// per namespace, action limits in ms and bytes) and the runtimes by family.
func (h *handler) rootInfo(c *gin.Context) {
	mb := func(n int) int64 { return int64(n) << 20 }
	runtimes := map[string][]map[string]any{}
	for _, r := range whisk.Runtimes {
		fam := whisk.ExecKind(r.Kind).Family()
		runtimes[fam] = append(runtimes[fam], map[string]any{
			"kind": r.Kind, "image": r.Image, "deprecated": false, "default": r.Default,
			"attached": true, "requireMain": false,
		})
	}
	t := h.throttle.sys
	writeJSON(c, http.StatusOK, map[string]any{
		"description": "OpenWhisk",
		"support":     map[string]string{"api-docs": "/api/v1/api-docs"},
		"api_paths":   []string{"/api/v1"},
		"limits": map[string]any{
			"actions_per_minute":          t.InvocationsPerMinute,
			"triggers_per_minute":         t.FiresPerMinute,
			"concurrent_actions":          t.ConcurrentInvocations,
			"sequence_length":             SequenceLimit,
			"default_min_action_duration": whisk.TimeoutMinMs,
			"default_max_action_duration": whisk.TimeoutMaxMs,
			"default_min_action_memory":   mb(whisk.MemoryMinMB),
			"default_max_action_memory":   mb(whisk.MemoryMaxMB),
			"default_min_action_logs":     mb(whisk.LogsMinMB),
			"default_max_action_logs":     mb(whisk.LogsMaxMB),
			"min_action_duration":         whisk.TimeoutMinMs,
			"max_action_duration":         whisk.TimeoutMaxMs,
			"min_action_memory":           mb(whisk.MemoryMinMB),
			"max_action_memory":           mb(whisk.MemoryMaxMB),
			"min_action_logs":             mb(whisk.LogsMinMB),
			"max_action_logs":             mb(whisk.LogsMaxMB),
		},
		"runtimes": runtimes,
	})
}

// namespaceLimitsView is GET .../limits: OpenWhisk's UserLimits with every field this platform
// applies filled in (the namespace's own value, else the system's), in its field order.
type namespaceLimitsView struct {
	InvocationsPerMinute  int    `json:"invocationsPerMinute"`
	ConcurrentInvocations int    `json:"concurrentInvocations"`
	FiresPerMinute        int    `json:"firesPerMinute"`
	MinActionMemory       int    `json:"minActionMemory"`
	MaxActionMemory       int    `json:"maxActionMemory"`
	MinActionLogs         int    `json:"minActionLogs"`
	MaxActionLogs         int    `json:"maxActionLogs"`
	MinActionTimeout      int    `json:"minActionTimeout"`
	MaxActionTimeout      int    `json:"maxActionTimeout"`
	MinActionConcurrency  int    `json:"minActionConcurrency"`
	MaxActionConcurrency  int    `json:"maxActionConcurrency"`
	MaxParameterSize      string `json:"maxParameterSize"`
	MaxActionInstances    int    `json:"maxActionInstances"`
}

// namespaceLimits is GET /namespaces/{ns}/limits (the caller's own namespace only).
func (h *handler) namespaceLimits(c *gin.Context, entity string) {
	switch {
	case c.Request.Method != http.MethodGet:
		h.fail(c, http.StatusMethodNotAllowed, "HTTP method not allowed, supported methods: GET")
		return
	case strings.Trim(entity, "/") != "":
		h.fail(c, http.StatusBadRequest, "Inner entity level routes for limits are not yet implemented.")
		return
	}
	l, err := h.throttle.limits(identityOf(c))
	if err != nil {
		h.internalError(c, "namespace limits", err)
		return
	}
	writeJSON(c, http.StatusOK, namespaceLimitsView{
		InvocationsPerMinute: l.InvocationsPerMinute, ConcurrentInvocations: l.ConcurrentInvocations, FiresPerMinute: l.FiresPerMinute,
		MinActionMemory: whisk.MemoryMinMB, MaxActionMemory: whisk.MemoryMaxMB,
		MinActionLogs: whisk.LogsMinMB, MaxActionLogs: whisk.LogsMaxMB,
		MinActionTimeout: whisk.TimeoutMinMs, MaxActionTimeout: whisk.TimeoutMaxMs,
		MinActionConcurrency: whisk.ConcurrencyMin, MaxActionConcurrency: whisk.ConcurrencyMax,
		MaxParameterSize:   maxParameterSize,
		MaxActionInstances: l.ConcurrentInvocations,
	})
}
