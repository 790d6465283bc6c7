//! Collector settings, read from the `[collector]` table of the TOML config.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Apdex threshold T in milliseconds: satisfied under T, tolerating under 4T.
    pub apdex_threshold_ms: f64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            apdex_threshold_ms: 500.0,
        }
    }
}
