//! Process entry: parse the command line, start tracing, dispatch, map errors to exit codes.

fn main() -> std::process::ExitCode {
    eprintln!("relayguard: not yet runnable");
    std::process::ExitCode::FAILURE
}
