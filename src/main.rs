//! The `pdsim` binary: everything lives in [`pdsim::cli`].

fn main() -> std::process::ExitCode {
    pdsim::cli::main()
}
