package promtest

import (
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Dashboard is the part of a Grafana dashboard's JSON model the tests
// read.
type Dashboard struct {
	// UID and Title identify the dashboard in Grafana.
	UID   string `json:"uid"`
	Title string `json:"title"`
	// Panels are the top-level panels and rows.
	Panels []Panel `json:"panels"`
	// Templating holds the dashboard's variables.
	Templating struct {
		List []Var `json:"list"`
	} `json:"templating"`
}

// Panel is a panel of a dashboard, or a row.
type Panel struct {
	// ID is unique in the dashboard.
	ID int `json:"id"`
	// Type is the visualization ("timeseries", "stat", ...), "row" for a
	// row.
	Type  string `json:"type"`
	Title string `json:"title"`
	// Datasource is the panel's data source, nil if it has none.
	Datasource *Datasource `json:"datasource"`
	// Targets are the panel's queries.
	Targets []struct {
		Datasource *Datasource `json:"datasource"`
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
	} `json:"targets"`
	// Panels are the panels of a collapsed row.
	Panels []Panel `json:"panels"`
	// GridPos is the panel's place on the dashboard's 24-column grid.
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
}

// Datasource is a panel's, query's or variable's data source.
type Datasource struct {
	// Type is the data source's plugin, "prometheus" say.
	Type string `json:"type"`
	// UID names the data source, or a variable holding it
	// ("${datasource}").
	UID string `json:"uid"`
}

// Var is a template variable of a dashboard.
type Var struct {
	// Name is the variable's name, used as $name in queries.
	Name string `json:"name"`
	// Type is "query", "datasource", "custom", ...
	Type string `json:"type"`
	// Datasource is what a query variable queries.
	Datasource *Datasource `json:"datasource"`
	// Query is a string or an object, depending on Type.
	Query json.RawMessage `json:"query"`
	// Current holds the variable's default.
	Current struct {
		Value any `json:"value"`
	} `json:"current"`
	// AllValue is the value of the "All" choice, "" if it has none.
	AllValue string `json:"allValue"`
}

// Target is one PromQL expression of a dashboard: query RefID of the panel
// titled Panel.
type Target struct {
	Panel, RefID, Expr string
}

// ParseDashboard decodes a dashboard's JSON model (as metrics.Dashboard
// returns it), failing the test if it cannot.
func ParseDashboard(t testing.TB, b []byte) Dashboard {
	t.Helper()
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return d
}

// AllPanels returns every panel, rows and their nested panels included, in
// the order of the JSON model.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Targets returns every expression of every panel, rows' panels included.
func (d Dashboard) Targets() []Target {
	var out []Target
	for _, p := range d.AllPanels() {
		for _, tg := range p.Targets {
			out = append(out, Target{p.Title, tg.RefID, tg.Expr})
		}
	}
	return out
}

// labelValuesRE matches the query of a Grafana query variable.
var labelValuesRE = regexp.MustCompile(`^label_values\(([a-z_:]+), *([a-z_]+)\)$`)

// LabelValues returns the metric and label of a query variable whose query
// is label_values(metric, label); ok is false for any other variable.
func (v Var) LabelValues() (metric, label string, ok bool) {
	var q struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &q) != nil {
		return "", "", false
	}
	m := labelValuesRE.FindStringSubmatch(q.Query)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// ExpandVars replaces the labseed dashboard's variables in expr as Grafana
// would with every variable at its default (All for host and image) and a
// 1 s scrape interval: $__rate_interval 5s, $__interval 1s, $__range 5m,
// $port_rate 100 (Mbit/s), $host and $image ".*".
func ExpandVars(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "5s",
		"$__interval", "1s",
		"$__range", "5m",
		"$port_rate", "100",
		"$host", ".*",
		"$image", ".*",
	).Replace(expr)
}

// At names a moment a dashboard is evaluated at.
type At struct {
	Name string
	Time time.Time
}

// EvalTargets evaluates every target of the dashboard (variables expanded
// with ExpandVars) at each moment and checks what a working dashboard
// shows: every query succeeds and returns data, no value is negative, and
// each target has a finite value at one of the moments at least (after a
// run, rates are 0 and shares of rates 0/0). It returns the results by
// "panel/refId@name".
func EvalTargets(t testing.TB, c *Client, targets []Target, at ...At) map[string][]Sample {
	t.Helper()
	results := map[string][]Sample{}
	for _, tg := range targets {
		expr := ExpandVars(tg.Expr)
		finite := false
		for _, a := range at {
			r, err := c.Query(expr, a.Time)
			if err != nil {
				t.Errorf("%s/%s at %s: %s: %v", tg.Panel, tg.RefID, a.Name, expr, err)
				continue
			}
			if len(r) == 0 {
				t.Errorf("%s/%s at %s: no data: %s", tg.Panel, tg.RefID, a.Name, expr)
			}
			for _, s := range r {
				if s.Value < 0 {
					t.Errorf("%s/%s at %s: negative value %v%v: %s", tg.Panel, tg.RefID, a.Name, s.Value, s.Metric, expr)
				}
				finite = finite || !math.IsNaN(s.Value) && !math.IsInf(s.Value, 0)
			}
			results[tg.Panel+"/"+tg.RefID+"@"+a.Name] = r
		}
		if !finite {
			t.Errorf("%s/%s: no finite value at either time: %s", tg.Panel, tg.RefID, expr)
		}
	}
	return results
}
