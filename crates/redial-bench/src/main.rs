//! Benchmarks of redial side by side with its peers.

fn main() {}
