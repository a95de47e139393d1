//! Process entry: parse the command line, dispatch, turn errors into exit codes.

fn main() -> std::process::ExitCode {
    relayguard::cli::main()
}
