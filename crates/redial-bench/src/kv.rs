//! `key=value` arguments of the child roles.

use std::collections::HashMap;

use anyhow::{anyhow, Result};

/// Parsed `key=value` words.
pub struct Kv(HashMap<String, String>);

impl Kv {
    pub fn parse(words: &[String]) -> Kv {
        Kv(words
            .iter()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    pub fn str(&self, k: &str) -> Result<&str> {
        self.0
            .get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("missing {k}="))
    }

    pub fn num(&self, k: &str) -> Result<u64> {
        self.str(k)?.parse().map_err(|e| anyhow!("{k}=: {e}"))
    }

    /// A comma-separated list.
    pub fn list(&self, k: &str) -> Result<Vec<String>> {
        Ok(self.str(k)?.split(',').map(str::to_string).collect())
    }
}
