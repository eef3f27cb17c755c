//! A bounded soak run of redial through the fault proxy.

fn main() {}
