package svg

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"math"
)

// palette is colour-blind friendly (Okabe-Ito), cycled when there are more series.
var palette = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999", "#000000"}

const (
	width      = 900.0
	height     = 420.0
	left       = 70.0
	right      = 190.0 // legend column
	top        = 40.0
	bottom     = 80.0
	plotWidth  = width - left - right
	plotHeight = height - top - bottom
)

// ErrShape is returned when values do not match the labels.
var ErrShape = errors.New("svg: values do not match the labels")

// GroupedBars draws one group per entry of groups with one bar per series; values[g][s] is the bar of
// series s in group g. Negative and non-finite values are errors.
func GroupedBars(title, yLabel string, groups, series []string, values [][]float64) ([]byte, error) {
	if err := check(groups, series, values); err != nil {
		return nil, err
	}
	max := 0.0
	for _, row := range values {
		for _, v := range row {
			max = math.Max(max, v)
		}
	}
	c := newCanvas(title, yLabel, max)
	gw := plotWidth / float64(len(groups))
	bw := gw * 0.8 / float64(max1(len(series)))
	for g, label := range groups {
		x0 := left + float64(g)*gw + gw*0.1
		for s, v := range values[g] {
			h := c.scale(v)
			c.rect(x0+float64(s)*bw, top+plotHeight-h, bw*0.95, h, palette[s%len(palette)],
				fmt.Sprintf("%s / %s: %.4g", label, series[s], v))
		}
		c.xLabel(left+float64(g)*gw+gw/2, label)
	}
	c.legend(series)
	return c.finish(), nil
}

// StackedBars draws one bar per entry of bars, stacked from segments; values[b][s] is the height of
// segment s in bar b.
func StackedBars(title, yLabel string, bars, segments []string, values [][]float64) ([]byte, error) {
	if err := check(bars, segments, values); err != nil {
		return nil, err
	}
	max := 0.0
	for _, row := range values {
		sum := 0.0
		for _, v := range row {
			sum += v
		}
		max = math.Max(max, sum)
	}
	c := newCanvas(title, yLabel, max)
	bw := plotWidth / float64(len(bars))
	for b, label := range bars {
		x := left + float64(b)*bw + bw*0.15
		y := top + plotHeight
		for s, v := range values[b] {
			h := c.scale(v)
			y -= h
			c.rect(x, y, bw*0.7, h, palette[s%len(palette)], fmt.Sprintf("%s / %s: %.4g", label, segments[s], v))
		}
		c.xLabel(left+float64(b)*bw+bw/2, label)
	}
	c.legend(segments)
	return c.finish(), nil
}

func check(rows, cols []string, values [][]float64) error {
	if len(rows) == 0 || len(cols) == 0 || len(values) != len(rows) {
		return fmt.Errorf("%w: %d rows of values for %d labels", ErrShape, len(values), len(rows))
	}
	for i, row := range values {
		if len(row) != len(cols) {
			return fmt.Errorf("%w: row %q has %d values for %d series", ErrShape, rows[i], len(row), len(cols))
		}
		for _, v := range row {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("svg: value %v of %q is not a finite non-negative number", v, rows[i])
			}
		}
	}
	return nil
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

type canvas struct {
	b    bytes.Buffer
	top  float64 // axis maximum
	step float64
}

func newCanvas(title, yLabel string, max float64) *canvas {
	c := &canvas{}
	c.step = niceStep(max / 5)
	c.top = math.Ceil(max/c.step) * c.step
	if c.top == 0 {
		c.top = c.step
	}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&c.b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&c.b, `<text x="%.1f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(title))
	fmt.Fprintf(&c.b, `<text transform="translate(16,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+plotHeight/2, esc(yLabel))
	for v := 0.0; v <= c.top+c.step/2; v += c.step {
		y := top + plotHeight - c.scale(v)
		fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, left+plotWidth, y)
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, esc(fmt.Sprintf("%g", roundTo(v, c.step))))
	}
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top+plotHeight, left+plotWidth, top+plotHeight)
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top, left, top+plotHeight)
	return c
}

func (c *canvas) scale(v float64) float64 { return v / c.top * plotHeight }

func (c *canvas) rect(x, y, w, h float64, fill, tip string) {
	fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n", x, y, w, h, fill, esc(tip))
}

func (c *canvas) xLabel(x float64, label string) {
	fmt.Fprintf(&c.b, `<text transform="translate(%.1f,%.1f) rotate(30)" text-anchor="start">%s</text>`+"\n", x-4, top+plotHeight+14, esc(label))
}

func (c *canvas) legend(names []string) {
	x := left + plotWidth + 20
	for i, n := range names {
		y := top + float64(i)*18
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, y, palette[i%len(palette)])
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+18, y+10, esc(n))
	}
}

func (c *canvas) finish() []byte {
	c.b.WriteString("</svg>\n")
	return c.b.Bytes()
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// roundTo removes floating-point noise from tick labels.
func roundTo(v, step float64) float64 {
	d := math.Pow(10, math.Max(0, -math.Floor(math.Log10(step))+1))
	return math.Round(v*d) / d
}

func esc(s string) string { return html.EscapeString(s) }
