//! The deployment kits under deploy/ checked by the tools that would run them, so they cannot
//! rot: the systemd unit by `systemd-analyze verify` and `security --offline`, the Helm chart
//! rendered by deploy/helm/render-check (Go text/template + sprig, as `helm template` does)
//! and, with deploy/kubernetes/sidecar.yaml, validated against the Kubernetes OpenAPI schemas
//! (`kubernetes-validate --strict`, from PyPI; .ci/run installs it). Each validator is also
//! shown a broken copy, so a check that passes everything would fail here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit with ExecStart/ExecStartPre pointing at the binary under test, so `verify` also
/// checks that the command exists and is executable.
fn unit_under_test(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let unit = fs::read_to_string(repo("deploy/systemd/relayguard.service")).unwrap();
    let unit = unit.replace(
        "/usr/local/bin/relayguard",
        env!("CARGO_BIN_EXE_relayguard"),
    );
    let path = dir.join("relayguard.service");
    fs::write(&path, edit(unit)).unwrap();
    path
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path(), |u| u);
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        out.status.success(),
        "systemd-analyze verify:\n{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("relayguard.service"),
        "warnings about the unit:\n{}",
        text(&out)
    );

    // Exposure 0 (locked down) .. 10 (none). Debian's own sshd.service scores 9.6 on this
    // systemd; ours must stay in systemd's "OK" band.
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit));
    assert!(
        out.status.success(),
        "systemd-analyze security:\n{}",
        text(&out)
    );
    let report = text(&out);
    let level: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for relayguard.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(level <= 2.0, "exposure {level} above 2.0:\n{report}");
    for (setting, why) in [
        (
            "ExecReload=/bin/kill -HUP $MAINPID",
            "relayguard reloads on SIGHUP",
        ),
        ("KillSignal=SIGTERM", "SIGTERM drains"),
        (
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
            "only the low-port bind",
        ),
        ("SystemCallFilter=@system-service", "syscall allow-list"),
    ] {
        let u = fs::read_to_string(&unit).unwrap();
        assert!(u.contains(setting), "unit lacks {setting} ({why})");
    }
    // Stop timeout above the default drain_timeout (30s), so systemd never SIGKILLs a drain.
    let u = fs::read_to_string(&unit).unwrap();
    let stop: u64 = u
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=Ns");
    assert!(
        stop > 30,
        "TimeoutStopSec={stop}s is not above drain_timeout 30s"
    );

    // The checks bite: a misspelt directive and a missing binary are reported.
    let broken = unit_under_test(dir.path(), |u| {
        u.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
            .replace(env!("CARGO_BIN_EXE_relayguard"), "/nonexistent/relayguard")
    });
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&broken));
    let t = text(&out);
    assert!(
        t.contains("NoNewPrivilege") && t.contains("/nonexistent/relayguard"),
        "verify missed the broken unit:\n{t}"
    );
}

/// `go run deploy/helm/render-check` on the chart with `extra` values (a file), like `helm template`.
fn render_chart(values: Option<&Path>) -> Output {
    let gocache = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("go");
    cmd.current_dir(repo(""))
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", gocache.path())
        .args([
            "run",
            "./deploy/helm/render-check",
            "deploy/helm/relayguard",
        ]);
    if let Some(v) = values {
        cmd.arg("-f").arg(v);
    }
    let out = run(&mut cmd);
    drop(gocache);
    out
}

/// `kubernetes-validate --strict` on `file`: Ok with its report, or Err with it.
fn validate(file: &Path) -> Result<String, String> {
    let out = run(Command::new("kubernetes-validate")
        .args(["--strict", "--no-warn"])
        .arg(file));
    if out.status.success() {
        Ok(text(&out))
    } else {
        Err(text(&out))
    }
}

/// The relayguard.toml block of a ConfigMap, dedented.
fn config_block(manifest: &str) -> String {
    let mut lines = manifest
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("relayguard.toml: |"));
    lines.next().expect("a relayguard.toml: | block");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

#[test]
fn kubernetes_sidecar_and_helm_chart_render_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = repo("deploy/kubernetes/sidecar.yaml");
    let report = validate(&sidecar).unwrap_or_else(|e| panic!("sidecar.yaml invalid:\n{e}"));
    for object in [
        "configmap/relayguard",
        "secret/relayguard-tls",
        "deployment/relayguard",
        "service/relayguard",
    ] {
        assert!(
            report.contains(&format!("passed for resource {object}")),
            "{object} not validated:\n{report}"
        );
    }

    let out = render_chart(None);
    assert!(out.status.success(), "render-check:\n{}", text(&out));
    let rendered = String::from_utf8(out.stdout).unwrap();
    let file = dir.path().join("rendered.yaml");
    fs::write(&file, &rendered).unwrap();
    let report = validate(&file)
        .unwrap_or_else(|e| panic!("chart renders invalid objects:\n{e}\n{rendered}"));
    for object in [
        "configmap/relayguard",
        "deployment/relayguard",
        "service/relayguard",
    ] {
        assert!(
            report.contains(&format!("passed for resource {object}")),
            "{object} not rendered:\n{report}"
        );
    }
    // The defaults render the same relayguard config as the plain manifest, bar comments.
    let strip = |s: String| {
        s.lines()
            .map(|l| l.split(" #").next().unwrap_or("").trim_end())
            .filter(|l| !l.trim_start().starts_with('#') && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let plain = fs::read_to_string(&sidecar).unwrap();
    assert_eq!(strip(config_block(&rendered)), strip(config_block(&plain)));
    for same in [
        "terminationGracePeriodSeconds: 45",
        "externalTrafficPolicy: Local",
        "path: /readyz",
        "path: /healthz",
        "command: [\"/bin/sleep\", \"5\"]",
    ] {
        assert!(
            rendered.contains(same) && plain.contains(same),
            "{same} differs"
        );
    }

    // Optional Secret: only when asked, and then with the data given.
    assert!(!rendered.contains("kind: Secret"));
    let values = dir.path().join("tls.yaml");
    fs::write(&values, "tls:\n  create: true\n  crt: CRT\n  key: KEY\n").unwrap();
    let out = render_chart(Some(&values));
    assert!(out.status.success(), "render-check:\n{}", text(&out));
    let with_tls = String::from_utf8(out.stdout).unwrap();
    assert!(
        with_tls.contains("kind: Secret") && with_tls.contains("tls.crt: \"Q1JU\""),
        "{with_tls}"
    );
    // A grace period that would cut a drain short is refused at render time.
    fs::write(&values, "terminationGracePeriodSeconds: 30\n").unwrap();
    let out = render_chart(Some(&values));
    assert!(
        !out.status.success() && text(&out).contains("must exceed"),
        "{}",
        text(&out)
    );

    // The validator bites: an unknown field and a wrong type are reported.
    let broken = dir.path().join("broken.yaml");
    fs::write(
        &broken,
        plain
            .replace(
                "terminationGracePeriodSeconds: 45",
                "terminationGracePeriodSeconds: \"soon\"",
            )
            .replace(
                "readOnlyRootFilesystem: true",
                "readOnlyRootFilesystem: true\n            readOnlyRoot: true",
            ),
    )
    .unwrap();
    let e = validate(&broken).expect_err("broken manifest accepted");
    assert!(e.contains("readOnlyRoot") || e.contains("soon"), "{e}");
}

/// The image's Dockerfile keeps the shape docs/deploy and the kits rely on (no Docker engine
/// runs here; see the report in the commit that added it).
#[test]
fn dockerfile_builds_locked_release_and_runs_unprivileged() {
    let df = fs::read_to_string(repo("deploy/docker/Dockerfile")).unwrap();
    assert!(df.contains("cargo build --release --locked"));
    assert_eq!(df.matches("\nFROM ").count(), 2, "two stages");
    assert!(df.contains("USER relayguard"));
    assert!(df.contains("COPY deploy/relayguard.toml /etc/relayguard/relayguard.toml"));
    let ignore = fs::read_to_string(repo(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"));
    // Everything the build stage copies exists and is not ignored.
    for line in df
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(repo(src).exists(), "COPY {src}: missing");
            assert!(
                !ignore
                    .lines()
                    .any(|l| l.trim_end_matches('/') == src.trim_end_matches('/')),
                "{src} is in .dockerignore"
            );
        }
    }
}

/// `relayguard check-config` on `toml` with the TLS paths pointed at the repo's dev certificate.
fn check_config(dir: &Path, name: &str, toml: &str) -> Output {
    let toml = toml
        .replace(
            "/etc/relayguard/tls/tls.crt",
            &repo("certs/dev-cert.pem").display().to_string(),
        )
        .replace(
            "/etc/relayguard/tls/tls.key",
            &repo("certs/dev-key.pem").display().to_string(),
        );
    let path = dir.join(name);
    fs::write(&path, toml).unwrap();
    run(Command::new(env!("CARGO_BIN_EXE_relayguard"))
        .arg("--config")
        .arg(&path)
        .arg("check-config"))
}

#[test]
fn shipped_configs_pass_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let example = fs::read_to_string(repo("deploy/relayguard.toml")).unwrap();
    let out = check_config(dir.path(), "example.toml", &example);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 warning(s)"), "{}", text(&out));

    // The ConfigMap's config, probes' `[admin] http` included.
    let plain = fs::read_to_string(repo("deploy/kubernetes/sidecar.yaml")).unwrap();
    let cm = config_block(&plain);
    assert!(cm.contains("http = \"0.0.0.0:9025\""), "{cm}");
    let out = check_config(dir.path(), "configmap.toml", &cm);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("0 warning(s)"), "{}", text(&out));
}
