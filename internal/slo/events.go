package slo

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// A ratio SLI's queries must count events over the window: the burn rates
// are ratios of them, and the minimum-events guard compares the total with
// a number of events. People write them in several shapes; eventsExpr
// brings each onto increase over {{.window}}, or refuses it saying why.

// windowSentinel stands for {{.window}} while an expression is parsed: no
// one writes this range.
const windowSentinel = 1234567 * time.Millisecond

// acceptedShapes ends every refusal of a query shape.
const acceptedShapes = "want increase(x_total[{{.window}}]), rate(x_total[5m]) (read as events over the window), " +
	"sums of those (sum, sum by, +, -, or), or a counter selector with counter: true"

// eventsExpr returns q as an expression of event counts over WindowVar.
//
// An expression holding WindowVar is the user's own window arithmetic and
// is kept, except that rate(x[{{.window}}]) becomes increase(x[{{.window}}]):
// the ratio is the same, and the total is then a number of events (a rate
// would compare requests per second with the minimum of events, so a
// service under 100 req/s would never page).
//
// Without WindowVar the query is read as OpenSLO tools write it, a series
// of events: rate(x[5m]) and increase(x[5m]) are counted over the window
// instead, a bare counter selector (counter: true) as increase over the
// window, under sum, sum by/without, +, - and or. A gauge, another
// aggregation or another function is refused: it is not a count.
func eventsExpr(q string, counter bool) (string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expandWindow(q, windowSentinel))
	if err != nil {
		return "", fmt.Errorf("%q: %v", q, err)
	}
	if strings.Contains(q, WindowVar) {
		var bad error
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			c, ok := n.(*parser.Call)
			if !ok || len(c.Args) != 1 {
				return nil
			}
			ms, ok := c.Args[0].(*parser.MatrixSelector)
			if !ok || ms.Range != windowSentinel {
				return nil
			}
			switch c.Func.Name {
			case "rate":
				c.Func = parser.Functions["increase"]
			case "irate", "idelta":
				bad = fmt.Errorf("%q: %s over the window is the last two samples only, not the window's events; use increase(...[%s])", q, c.Func.Name, WindowVar)
			}
			return nil
		})
		if bad != nil {
			return "", bad
		}
	} else {
		if e, err = toEvents(e, counter); err != nil {
			return "", fmt.Errorf("%q: %v; %s", q, err, acceptedShapes)
		}
	}
	if e.Type() != parser.ValueTypeVector {
		return "", fmt.Errorf("%q: must be an instant vector, not a %s", q, e.Type())
	}
	return strings.ReplaceAll(e.String(), promDuration(windowSentinel), WindowVar), nil
}

func toEvents(e parser.Expr, counter bool) (parser.Expr, error) {
	switch n := e.(type) {
	case *parser.ParenExpr:
		inner, err := toEvents(n.Expr, counter)
		n.Expr = inner
		return n, err
	case *parser.AggregateExpr:
		if n.Op != parser.SUM {
			return nil, fmt.Errorf("%s does not add events up (only sum does)", n.Op)
		}
		inner, err := toEvents(n.Expr, counter)
		n.Expr = inner
		return n, err
	case *parser.BinaryExpr:
		switch n.Op {
		case parser.ADD, parser.SUB, parser.LOR:
		default:
			return nil, fmt.Errorf("%q between queries is not a count of events (only +, - and or are)", n.Op)
		}
		l, err := toEvents(n.LHS, counter)
		if err != nil {
			return nil, err
		}
		r, err := toEvents(n.RHS, counter)
		if err != nil {
			return nil, err
		}
		n.LHS, n.RHS = l, r
		return n, nil
	case *parser.Call:
		switch n.Func.Name {
		case "rate", "increase":
			ms, ok := n.Args[0].(*parser.MatrixSelector)
			if !ok {
				return nil, fmt.Errorf("%s of a subquery is not a counter's events", n.Func.Name)
			}
			ms.Range = windowSentinel
			n.Func = parser.Functions["increase"]
			return n, nil
		}
		return nil, fmt.Errorf("%s() is not a count of events", n.Func.Name)
	case *parser.VectorSelector:
		if !counter {
			return nil, fmt.Errorf("the selector %s is read as a gauge, and a gauge is not a count of events (a counter: write increase(...[{{.window}}]), or counter: true in OpenSLO)", n)
		}
		return &parser.Call{
			Func: parser.Functions["increase"],
			Args: parser.Expressions{&parser.MatrixSelector{VectorSelector: n, Range: windowSentinel}},
		}, nil
	case *parser.NumberLiteral:
		return nil, fmt.Errorf("the number %s is not a count of events", n)
	}
	return nil, fmt.Errorf("%s is not a count of events", e)
}
