//! The dev build of the deployables: one set of arguments for `up`, the local Lambda runs and
//! the tests, so all of them link the same dependency builds.

/// The deployables `up` runs and the tests start.
pub const DEV_BUILD: [&str; 2] = ["api", "post-confirm"];

/// `cargo build` arguments for the dev build of `binaries` (each its package's binary of the
/// same name). `--workspace` resolves features over every member, as `cargo test --workspace`
/// does, so the binaries link the very dependency builds the tests' build made, and `up`
/// shares them with the tests: a build of `-p api` alone enables fewer features and compiled
/// a second copy of a quarter of the tree (0.4 GB and about a minute per package set). cargo
/// leaves dev-dependencies out of a build's feature resolution; the features only they enable,
/// testkit enables too (its Cargo.toml), and xtask's tidy test `dev_builds_reuse_the_tests_units`
/// keeps the two one set. The price: the WAF SDK, which `rotate-secret` and `xtask` link
/// through `shared-auth`, is compiled by a first `up` too.
pub fn dev_build_args<'a>(binaries: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["build", "--workspace"];
    for binary in binaries {
        args.extend(["--bin", binary]);
    }
    args
}
