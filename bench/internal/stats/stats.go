package stats

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
)

// ErrEmpty is returned when a statistic of no values is asked for.
var ErrEmpty = errors.New("stats: no values")

// Percentile returns the p-th percentile (0..100) of xs by linear interpolation between the closest
// ranks (the definition numpy and SeBS use by default), so that p50 of an even count is the mean of
// the two middle values. xs need not be sorted and is not modified.
func Percentile(xs []float64, p float64) (float64, error) {
	if len(xs) == 0 {
		return 0, ErrEmpty
	}
	if math.IsNaN(p) || p < 0 || p > 100 {
		return 0, errors.New("stats: percentile outside [0, 100]")
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return sortedPercentile(s, p), nil
}

func sortedPercentile(s []float64, p float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	frac := rank - float64(lo)
	return s[lo] + (s[hi]-s[lo])*frac
}

// GeoMean is the geometric mean of positive values: the right way to average ratios and times that
// differ by orders of magnitude across functions. Non-positive values are an error, not skipped,
// because skipping would silently flatter a model with failures.
func GeoMean(xs []float64) (float64, error) {
	if len(xs) == 0 {
		return 0, ErrEmpty
	}
	sum := 0.0
	for _, x := range xs {
		if !(x > 0) || math.IsInf(x, 0) {
			return 0, errors.New("stats: geometric mean needs finite positive values")
		}
		sum += math.Log(x)
	}
	return math.Exp(sum / float64(len(xs))), nil
}

// Summary describes a set of samples (milliseconds for latencies).
type Summary struct {
	N     int     `json:"n"`
	Mean  float64 `json:"mean"`
	Stdev float64 `json:"stdev"`
	CV    float64 `json:"cv"`
	Min   float64 `json:"min"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Summarize computes a Summary; the standard deviation is the sample (n-1) one.
func Summarize(xs []float64) (Summary, error) {
	if len(xs) == 0 {
		return Summary{}, ErrEmpty
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	mean := sum / float64(len(s))
	sd := 0.0
	if len(s) > 1 {
		for _, x := range s {
			sd += (x - mean) * (x - mean)
		}
		sd = math.Sqrt(sd / float64(len(s)-1))
	}
	cv := 0.0
	if mean != 0 {
		cv = sd / mean
	}
	return Summary{N: len(s), Mean: mean, Stdev: sd, CV: cv, Min: s[0], Max: s[len(s)-1],
		P50: sortedPercentile(s, 50), P90: sortedPercentile(s, 90), P95: sortedPercentile(s, 95),
		P99: sortedPercentile(s, 99)}, nil
}

// Ratio returns a/b, or 0 when either is not positive (a ratio that cannot be formed is reported as
// 0 and flagged by the caller rather than as Inf or NaN, which JSON cannot carry).
func Ratio(a, b float64) float64 {
	if !(a > 0) || !(b > 0) {
		return 0
	}
	return a / b
}

// MedianCI is a bootstrap confidence interval of the median of xs at level (e.g. 0.95): the
// median of iters resamples with replacement, and the interval between their (1-level)/2 and
// (1+level)/2 percentiles. The resampling is seeded by seed, so one data set gives one
// interval. It says whether a median difference is told apart from zero (or from a goal) on a
// noisy machine; the median alone does not.
func MedianCI(xs []float64, level float64, iters int, seed uint64) (lo, hi float64, err error) {
	if len(xs) == 0 {
		return 0, 0, ErrEmpty
	}
	if !(level > 0 && level < 1) || iters < 1 {
		return 0, 0, errors.New("stats: confidence level outside (0, 1) or no resamples")
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sample := make([]float64, len(xs))
	medians := make([]float64, iters)
	for i := range medians {
		for j := range sample {
			sample[j] = xs[r.IntN(len(xs))]
		}
		sort.Float64s(sample)
		medians[i] = sortedPercentile(sample, 50)
	}
	sort.Float64s(medians)
	return sortedPercentile(medians, 100*(1-level)/2), sortedPercentile(medians, 100*(1+level)/2), nil
}
