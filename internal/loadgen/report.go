package loadgen

import (
	"fmt"
	"sort"
	"strings"
)

// Markdown renders the results and checks as tables.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | server | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | client CPU µs/req | load avg after |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.Results {
		if x.OK == 0 {
			fmt.Fprintf(&b, "| %s | %s | – | – | – | – | – | **%d** | – | – | %s |\n", x.Scenario, x.Target, x.Failed, x.Note)
			continue
		}
		errs := "0"
		if x.Failed > 0 {
			errs = fmt.Sprintf("**%d**", x.Failed)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.3f | %.3f | %.1f | %s | %.0f | %.0f | %s |\n",
			x.Scenario, x.Target, x.RPS, x.P50us/1e3, x.P90us/1e3, x.P99us/1e3, x.MaxUs/1e3, errs,
			x.ServerCPUPerReq, x.ClientCPUPerReq, x.LoadAvgAfter)
	}
	b.WriteString("\n| target | wanted | measured | |\n|---|---|---|---|\n")
	for _, c := range r.Checks {
		verdict := "missed"
		switch {
		case c.Missing:
			verdict = "not measured"
		case c.Met:
			verdict = "met"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.Name, c.Target, c.Measured, verdict)
	}
	for _, x := range r.Results {
		if x.Exhausted {
			fmt.Fprintf(&b, "\nNote: %s ran out of pre-signed tokens after %.1f s; its rate is over that time.\n", x.Scenario, x.Seconds)
		}
	}
	var loud []string
	for _, x := range r.Results {
		if x.Failed > 0 {
			keys := make([]string, 0, len(x.Errors))
			for k := range x.Errors {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				loud = append(loud, fmt.Sprintf("- **%s: %d × %s** — %s", x.Scenario, x.Errors[k], k, x.ErrorSamples[k]))
			}
		}
	}
	if len(loud) > 0 {
		b.WriteString("\n**THIS RUN HAD ERRORS:**\n\n" + strings.Join(loud, "\n") + "\n")
	}
	return b.String()
}

// HasErrors reports whether any request failed.
func (r *Report) HasErrors() bool {
	for _, x := range r.Results {
		if x.Failed > 0 {
			return true
		}
	}
	return false
}
