//! Fault injection for rollback tests: `MCR_FAULT=<phase>[,<phase>...]`
//! makes each named phase of an update fail, on either side.

/// `MCR_FAULT=<phase>` makes that phase fail, for rollback tests.
pub fn fault(phase: &str) -> bool {
    std::env::var("MCR_FAULT").is_ok_and(|v| v.split(',').any(|p| p == phase))
}
