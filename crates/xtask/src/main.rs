//! `cargo xtask`: the light build (`local` alone), what `up`, `test` and `setup` need.
//! Tasks that speak to an AWS account are forwarded to `xtask-cloud` (see `xtask::main`).

fn main() -> std::process::ExitCode {
    xtask::main()
}
