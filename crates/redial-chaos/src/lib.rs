//! A fault-injection TCP proxy for testing reconnect logic (work in progress).
