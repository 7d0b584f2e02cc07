//! `palaver`: see `palaver --help`.

fn main() -> std::process::ExitCode {
    palaver_server::cli::main()
}
