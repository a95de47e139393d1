//! `check-config`: load and compile the config, print every error as `file:line: why`.

use std::path::Path;
use std::process::ExitCode;

pub fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(path) {
        Ok(snapshot) => {
            println!(
                "{}: OK ({} listener(s))",
                path.display(),
                snapshot.listeners.len()
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
