//! The `vidbatch` binary: everything it does is [`vidbatch::cli::main`].

fn main() -> std::process::ExitCode {
    vidbatch::cli::main()
}
