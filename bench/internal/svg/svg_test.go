package svg

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

// wellFormed parses the whole document and counts elements by name.
func wellFormed(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	counts := map[string]int{}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return counts
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
		}
	}
}

func TestGroupedBars(t *testing.T) {
	doc, err := GroupedBars("Throughput <C=8>", "req/s", []string{"f1", "f&2"}, []string{"teemate", "strawman"},
		[][]float64{{10, 2}, {30, 0}})
	if err != nil {
		t.Fatal(err)
	}
	c := wellFormed(t, doc)
	// background + 4 bars + 2 legend swatches
	if c["rect"] != 7 || c["svg"] != 1 {
		t.Fatalf("element counts %v", c)
	}
	s := string(doc)
	if !strings.Contains(s, "Throughput &lt;C=8&gt;") || !strings.Contains(s, "f&amp;2") {
		t.Fatal("labels not escaped")
	}
	if !strings.Contains(s, "f1 / teemate: 10") {
		t.Fatal("bar tooltip missing")
	}
}

func TestStackedBars(t *testing.T) {
	doc, err := StackedBars("Breakdown", "ms", []string{"teemate", "strawman"}, []string{"sandbox", "run"},
		[][]float64{{1, 2}, {30, 3}})
	if err != nil {
		t.Fatal(err)
	}
	c := wellFormed(t, doc)
	if c["rect"] != 1+4+2 {
		t.Fatalf("element counts %v", c)
	}
	// The tallest stack (33) sets the axis: the top tick is 35 with a step of 5... or 40 with 10.
	if !strings.Contains(string(doc), ">40<") && !strings.Contains(string(doc), ">35<") {
		t.Fatalf("axis does not cover the tallest stack:\n%s", doc)
	}
}

func TestBadShapes(t *testing.T) {
	cases := []struct {
		rows, cols []string
		vals       [][]float64
	}{
		{nil, []string{"a"}, nil},
		{[]string{"a"}, []string{"x", "y"}, [][]float64{{1}}},
		{[]string{"a", "b"}, []string{"x"}, [][]float64{{1}}},
		{[]string{"a"}, []string{"x"}, [][]float64{{-1}}},
	}
	for i, c := range cases {
		if _, err := GroupedBars("t", "y", c.rows, c.cols, c.vals); err == nil {
			t.Errorf("case %d accepted", i)
		}
		if _, err := StackedBars("t", "y", c.rows, c.cols, c.vals); err == nil {
			t.Errorf("case %d accepted (stacked)", i)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{0.7, 1}, {1.3, 2}, {3, 5}, {7, 10}, {120, 200}, {0, 1}} {
		if got := niceStep(c.in); got != c.want {
			t.Errorf("niceStep(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
