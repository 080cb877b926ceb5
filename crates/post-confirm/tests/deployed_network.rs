//! The product's claim with real packets (`testkit::netns::claim`): the real sign-up function,
//! in each AZ's private subnet, registers a user through a real NAT (one address per AZ) and a
//! real appending proxy; a valid signature from elsewhere on the internet, every
//! `X-Forwarded-For` forgery, a third address, and every way around the proxy are refused, with
//! nothing stored. Needs root (CI runs as root); fails with what is missing otherwise.

#[test]
fn the_claim_holds_in_the_network_as_deployed() {
    let dir = testkit::stack::work_dir("network").expect("a work folder");
    let api = testkit::stack::built_binary("api").expect("the api builds");
    let function = testkit::stack::built_binary("post-confirm").expect("post-confirm builds");
    let checks = testkit::netns::claim::run(&api, &function, &dir).expect("the deployed network");
    let report: Vec<String> = checks.iter().map(ToString::to_string).collect();
    println!("{}", report.join("\n"));
    assert!(
        checks.len() >= 18 && checks.iter().all(|c| c.ok),
        "the claim does not hold (logs in {}):\n{}",
        dir.display(),
        report.join("\n")
    );
    std::fs::remove_dir_all(&dir).ok();
}
