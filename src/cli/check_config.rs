//! `check-config`: load and compile the config, print every error as `file:line: why`, and
//! every setting that is valid but surely not what the admin meant, with its fix.

use std::path::Path;
use std::process::ExitCode;

pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(path) {
        Ok(snapshot) => {
            // Opening a backend connects nothing, so this only checks the specs.
            if let Err(errors) = snapshot.open_tables(None) {
                for e in &errors {
                    println!("{}: {e}", path.display());
                }
                return Ok(ExitCode::from(2));
            }
            let mut warnings: Vec<String> = Vec::new();
            for l in &snapshot.listeners {
                for w in l.policy.warnings().iter().chain(&l.tls_warnings) {
                    let text = format!(
                        "{}:{}: warning: `{}`: {} (fix: {})",
                        w.file, w.line, w.parameter, w.message, w.fix
                    );
                    if !warnings.contains(&text) {
                        warnings.push(text);
                    }
                }
            }
            for w in &warnings {
                println!("{w}");
            }
            println!(
                "{}: OK ({} listener(s), {} warning(s))",
                path.display(),
                snapshot.listeners.len(),
                warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            Ok(ExitCode::from(2))
        }
    }
}
