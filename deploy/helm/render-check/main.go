// render-check renders a Helm chart the way `helm template` does, without helm (not packaged
// for Debian): Go's text/template with sprig's functions plus Helm's own include, tpl,
// required, toYaml and .Template, then the lint checks that matter here (Chart.yaml fields,
// every document valid YAML with apiVersion, kind and metadata.name). It prints the rendered
// manifests on stdout, `---` separated, for a schema validator to read.
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go run ./deploy/helm/render-check CHART [-f values.yaml] [--set-tls]
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "render-check:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 {
		return errors.New("usage: render-check CHART [-f VALUES.yaml]...")
	}
	chartDir := args[0]
	chart, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	for _, k := range []string{"apiVersion", "name", "version"} {
		if s, _ := chart[k].(string); s == "" {
			return fmt.Errorf("Chart.yaml: %s is missing", k)
		}
	}
	if chart["apiVersion"] != "v2" {
		return fmt.Errorf("Chart.yaml: apiVersion must be v2, is %v", chart["apiVersion"])
	}
	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for i := 1; i < len(args); i++ {
		if args[i] != "-f" || i+1 >= len(args) {
			return fmt.Errorf("unknown argument %q", args[i])
		}
		extra, err := readYAML(args[i+1])
		if err != nil {
			return err
		}
		values = merge(values, extra)
		i++
	}
	name, _ := chart["name"].(string)
	appVersion, _ := chart["appVersion"].(string)
	version, _ := chart["version"].(string)

	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYaml
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	// include and tpl need the template set itself, so they are bound after it exists.
	funcs["include"] = func(string, interface{}) (string, error) { return "", nil }
	funcs["tpl"] = func(string, interface{}) (string, error) { return "", nil }
	root.Funcs(funcs)
	funcs["include"] = func(n string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, n, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs)
	base := filepath.Join(name, "templates")
	var rendered []string
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		tname := filepath.Join(base, filepath.Base(f))
		if _, err := root.New(tname).Option("missingkey=zero").Parse(string(text)); err != nil {
			return err
		}
		rendered = append(rendered, tname)
	}
	release := map[string]interface{}{"Name": "relayguard", "Namespace": "default", "Service": "Helm"}
	chartData := map[string]interface{}{"Name": name, "Version": version, "AppVersion": appVersion}
	var out bytes.Buffer
	for _, tname := range rendered {
		b := filepath.Base(tname)
		if strings.HasPrefix(b, "_") {
			continue
		}
		data := map[string]interface{}{
			"Values":   values,
			"Chart":    chartData,
			"Release":  release,
			"Template": map[string]interface{}{"Name": tname, "BasePath": base},
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, data); err != nil {
			return err
		}
		if b == "NOTES.txt" {
			if strings.TrimSpace(buf.String()) == "" {
				return errors.New("NOTES.txt renders empty")
			}
			continue
		}
		if strings.TrimSpace(buf.String()) == "" {
			continue // a template switched off by its values, as helm drops it
		}
		if err := lint(tname, buf.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", tname, strings.TrimSpace(buf.String()))
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

// lint: the document parses as YAML and names itself as Kubernetes objects must.
func lint(tname string, doc []byte) error {
	var obj map[string]interface{}
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return fmt.Errorf("%s: not YAML: %v", tname, err)
	}
	for _, k := range []string{"apiVersion", "kind"} {
		if s, _ := obj[k].(string); s == "" {
			return fmt.Errorf("%s: %s is missing", tname, k)
		}
	}
	meta, _ := obj["metadata"].(map[string]interface{})
	if s, _ := meta["name"].(string); s == "" {
		return fmt.Errorf("%s: metadata.name is missing", tname)
	}
	return nil
}

func readYAML(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return m, nil
}

// merge: values from b override a, maps merged key by key (as helm's -f does).
func merge(a, b map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		am, aok := out[k].(map[string]interface{})
		bm, bok := v.(map[string]interface{})
		if aok && bok {
			out[k] = merge(am, bm)
		} else {
			out[k] = v
		}
	}
	return out
}

func toYaml(v interface{}) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}
