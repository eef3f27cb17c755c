//! Helpers shared by the integration tests that run against real servers.
#![allow(dead_code)]

pub mod servers;
