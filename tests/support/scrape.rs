//! `/metrics` and the other admin HTTP endpoints read the way an operator's tools read them:
//! curl for the request, the Prometheus project's OpenMetrics parser (Debian's
//! python3-prometheus-client) for the text.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use super::relayguard::Relayguard;

/// One HTTP GET with curl: status, `Content-Type`, body.
pub fn get(url: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "15",
            "-w",
            "\n%{http_code} %{content_type}",
            url,
        ])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, ctype) = tail.split_once(' ').unwrap_or((tail, ""));
    (code.parse().unwrap(), ctype.to_owned(), body.to_owned())
}

/// A scrape as the OpenMetrics parser read it: sample name and labels -> value, and every
/// family name with its type (families with no samples yet included).
pub struct Scrape {
    pub samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    pub families: BTreeMap<String, String>,
}

/// The parser is strict (it refuses what a Prometheus server would refuse to ingest as
/// OpenMetrics), so a scrape it reads is one a stock Prometheus can read.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {"samples": [], "families": {}}
for f in text_string_to_metric_families(sys.stdin.read()):
    out["families"][f.name] = f.type
    for s in f.samples:
        out["samples"].append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;

pub fn scrape(rg: &Relayguard) -> Scrape {
    let (code, ctype, body) = get(&rg.admin_url("/metrics"));
    assert_eq!(code, 200, "{body}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    // Debian's python3, where python3-prometheus-client is installed.
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the scrape: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut samples = BTreeMap::new();
    for s in parsed["samples"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = s[1]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        samples.insert(
            (s[0].as_str().unwrap().to_owned(), labels),
            s[2].as_f64().unwrap(),
        );
    }
    let families = parsed["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    Scrape { samples, families }
}

impl Scrape {
    /// A sample's value; 0 when the series does not exist yet (a counter not yet touched).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every series of `name` whose labels include `with`.
    pub fn series(
        &self,
        name: &str,
        with: &[(&str, &str)],
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|((_, l), v)| (l.clone(), *v))
            .collect()
    }
}

/// How much each named series moved between two scrapes.
pub fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}
