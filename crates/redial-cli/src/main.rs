//! The `redial` command.

fn main() {}
