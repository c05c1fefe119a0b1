package promtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// errExited is returned by a Client whose server, started by Start, has
// exited.
var errExited = errors.New("promtest: prometheus exited")

// Client queries a Prometheus server's HTTP API. Its methods may be called
// from any goroutine.
type Client struct {
	// URL is the server's base URL, as "http://127.0.0.1:9090".
	URL string

	exited  <-chan struct{} // closed when the server Start ran exits; nil if not ours
	exitErr error           // the server's exit, set before exited is closed
}

// Sample is one sample of an instant vector.
type Sample struct {
	// Metric holds the sample's labels, the metric name as "__name__" if
	// the query kept it.
	Metric map[string]string
	// Value is the sample's value.
	Value float64
}

// Point is one value of a range vector's series.
type Point struct {
	// Time is the evaluation time, to the millisecond.
	Time time.Time
	// Value is the series' value at Time.
	Value float64
}

// Series is one series of a range query's result.
type Series struct {
	// Metric holds the series' labels.
	Metric map[string]string
	// Points are the series' values, oldest first.
	Points []Point
}

// Get calls the API at path (as "/api/v1/query") with parameters q and
// decodes the "data" of a successful response into data.
func (c *Client) Get(path string, q url.Values, data any) error {
	select {
	case <-c.exited:
		return fmt.Errorf("%w: %v", errExited, c.exitErr)
	default:
	}
	resp, err := http.Get(c.URL + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s %s: %s: %s", path, q.Get("query"), r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, data)
}

// Query evaluates expr at time at (now if zero); the result must be an
// instant vector.
func (c *Client) Query(expr string, at time.Time) ([]Sample, error) {
	q := url.Values{"query": {expr}}
	if !at.IsZero() {
		q.Set("time", formatTime(at))
	}
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := c.Get("/api/v1/query", q, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: result type %s, want vector", expr, data.ResultType)
	}
	var out []Sample
	for _, r := range data.Result {
		v, err := parseValue(r.Value[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", expr, err)
		}
		out = append(out, Sample{r.Metric, v})
	}
	return out, nil
}

// Scalar evaluates expr, which must return one sample, at time at (now if
// zero).
func (c *Client) Scalar(expr string, at time.Time) (float64, error) {
	r, err := c.Query(expr, at)
	if err != nil {
		return 0, err
	}
	if len(r) != 1 {
		return 0, fmt.Errorf("%s: %d samples, want 1", expr, len(r))
	}
	return r[0].Value, nil
}

// QueryRange evaluates expr every step from start to end.
func (c *Client) QueryRange(expr string, start, end time.Time, step time.Duration) ([]Series, error) {
	q := url.Values{
		"query": {expr},
		"start": {formatTime(start)},
		"end":   {formatTime(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	if err := c.Get("/api/v1/query_range", q, &data); err != nil {
		return nil, err
	}
	var out []Series
	for _, r := range data.Result {
		s := Series{Metric: r.Metric}
		for _, p := range r.Values {
			ts, _ := p[0].(float64)
			v, err := parseValue(p[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", expr, err)
			}
			s.Points = append(s.Points, Point{time.UnixMilli(int64(math.Round(ts * 1000))), v})
		}
		out = append(out, s)
	}
	return out, nil
}

// formatTime formats t as the API's timestamps: Unix seconds, to the
// millisecond.
func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// parseValue parses a sample value, which the API sends as a string
// ("NaN" and "+Inf" included).
func parseValue(v any) (float64, error) {
	s, _ := v.(string)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("sample value %v: %w", v, err)
	}
	return f, nil
}
