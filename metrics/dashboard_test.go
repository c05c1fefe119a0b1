package metrics

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/labseed/labseed/gossip"
	"github.com/labseed/labseed/internal/promtest"
)

func TestDashboardIsCopied(t *testing.T) {
	a := Dashboard()
	a[0] = 'x'
	if b := Dashboard(); b[0] != '{' || bytes.Equal(a, b) {
		t.Fatal("Dashboard returned its embedded bytes, not a copy")
	}
}

func TestDashboardStructure(t *testing.T) {
	d := promtest.ParseDashboard(t, Dashboard())
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard without uid or title")
	}
	vars := map[string]promtest.Var{}
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
		if _, _, ok := v.LabelValues(); !ok || v.AllValue != ".*" || v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("%s variable = %+v, want label_values on ${datasource} with All as .*", name, v)
		}
	}

	ids := map[int]string{}
	titles := map[string]bool{} // the prometheus test tells panels by title
	varRE := regexp.MustCompile(`\$\{?([A-Za-z_]+)`)
	for _, p := range d.AllPanels() {
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
			if strings.Contains(promtest.ExpandVars(tg.Expr), "$") {
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
	d := promtest.ParseDashboard(t, Dashboard())
	var queries []string
	for _, tg := range d.Targets() {
		queries = append(queries, tg.Expr)
	}
	for _, v := range d.Templating.List {
		if metric, _, ok := v.LabelValues(); ok {
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
