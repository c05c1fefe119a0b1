package metrics

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/labseed/labseed/gossip"
)

// grafanaDashboard is the part of a Grafana dashboard the tests read.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []grafanaVar `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	Targets    []struct {
		Datasource *grafanaDatasource `json:"datasource"`
		Expr       string             `json:"expr"`
		RefID      string             `json:"refId"`
	} `json:"targets"`
	Panels  []grafanaPanel           `json:"panels"` // of a collapsed row
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaVar struct {
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Datasource *grafanaDatasource `json:"datasource"`
	Query      json.RawMessage    `json:"query"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
	AllValue string `json:"allValue"`
}

// dashTarget is one PromQL expression of the dashboard.
type dashTarget struct {
	Panel, RefID, Expr string
}

// parseDashboard decodes the embedded dashboard.
func parseDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	var d grafanaDashboard
	if err := json.Unmarshal(Dashboard(), &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	return d
}

// panels returns every panel, rows' nested panels included.
func (d grafanaDashboard) panels() []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// targets returns every expression of every panel.
func (d grafanaDashboard) targets() []dashTarget {
	var out []dashTarget
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			out = append(out, dashTarget{p.Title, tg.RefID, tg.Expr})
		}
	}
	return out
}

// labelValuesRE matches the query of a Grafana query variable.
var labelValuesRE = regexp.MustCompile(`^label_values\(([a-z_:]+), *([a-z_]+)\)$`)

// variableQuery returns the metric and label of a query variable's
// label_values(metric, label).
func (v grafanaVar) labelValues() (metric, label string, ok bool) {
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

// expandVars replaces the dashboard's variables in expr as Grafana would
// with every variable at its default (All for host and image).
func expandVars(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "5s",
		"$__interval", "1s",
		"$__range", "5m",
		"$port_rate", "100",
		"$host", ".*",
		"$image", ".*",
	).Replace(expr)
}

func TestDashboardIsCopied(t *testing.T) {
	a := Dashboard()
	a[0] = 'x'
	if b := Dashboard(); b[0] != '{' || bytes.Equal(a, b) {
		t.Fatal("Dashboard returned its embedded bytes, not a copy")
	}
}

func TestDashboardStructure(t *testing.T) {
	d := parseDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard without uid or title")
	}
	vars := map[string]grafanaVar{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("datasource variable = %+v, want a Prometheus datasource variable", v)
	}
	if v := vars["port_rate"]; v.Current.Value != "100" {
		t.Errorf("port_rate variable defaults to %v, want 100 (Mbit/s)", v.Current.Value)
	}
	for _, name := range []string{"host", "image"} {
		v := vars[name]
		if _, _, ok := v.labelValues(); !ok || v.AllValue != ".*" || v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("%s variable = %+v, want label_values on ${datasource} with All as .*", name, v)
		}
	}

	ids := map[int]string{}
	titles := map[string]bool{} // the prometheus test tells panels by title
	varRE := regexp.MustCompile(`\$\{?([A-Za-z_]+)`)
	for _, p := range d.panels() {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || titles[p.Title] {
			t.Errorf("panel %d: empty or repeated title %q", p.ID, p.Title)
		}
		titles[p.Title] = true
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: empty expression or missing or repeated refId %q", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s does not use the datasource variable", p.Title, tg.RefID)
			}
			for _, m := range varRE.FindAllStringSubmatch(tg.Expr, -1) {
				if _, ok := vars[m[1]]; !ok && !strings.HasPrefix(m[1], "__") {
					t.Errorf("panel %q query %s uses undefined variable $%s", p.Title, tg.RefID, m[1])
				}
			}
			if strings.Contains(expandVars(tg.Expr), "$") {
				t.Errorf("panel %q query %s: a variable the tests do not expand: %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
}

// TestDashboardMetricsExist checks that every labseed metric the dashboard
// queries is exported.
func TestDashboardMetricsExist(t *testing.T) {
	m, lab, _ := newTest(t, 0)
	lab.set(Snapshot{
		Hosts:  []Host{{Name: "ws01", State: "alive", Status: gossip.Status{StartedUnix: 1, UpdatedUnix: 2}}},
		Images: []Image{{Name: "lab1", Version: 1}},
	})
	exported := map[string]bool{}
	for name, samples := range gather(t, m.reg) {
		exported[name] = true
		if samples[0].metricType.String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				exported[name+suffix] = true
			}
		}
	}
	d := parseDashboard(t)
	var queries []string
	for _, tg := range d.targets() {
		queries = append(queries, tg.Expr)
	}
	for _, v := range d.Templating.List {
		if metric, _, ok := v.labelValues(); ok {
			queries = append(queries, metric)
		}
	}
	nameRE := regexp.MustCompile(`\blabseed_[a-z_]+`)
	for _, q := range queries {
		for _, name := range nameRE.FindAllString(q, -1) {
			if !exported[name] {
				t.Errorf("the dashboard queries %s, which is not exported: %s", name, q)
			}
		}
	}
}
