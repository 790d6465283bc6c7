//! `meshscope bench --check FILE`: the run's figures against recorded ones, so that ingest
//! cannot get slower without a failing command. The figures are ratios to the
//! decode-and-discard sink measured in the same sitting (meshscope's entries a second over
//! the sink's), not absolute rates: these machines are noisy, and a ratio cancels most of
//! the machine's own drift. A figure more than [`TOLERANCE`] below its recorded value
//! fails the check; a recorded figure the run did not measure fails it too.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How far below its recorded value a figure may fall: a tenth.
pub(super) const TOLERANCE: f64 = 0.10;

/// The recorded figures (`BENCHMARKS.json`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Recorded {
    /// Where the figures come from: build, machine, command and date.
    pub(super) source: String,
    /// meshscope's entries a second over the sink's on the simulated load, the median of
    /// the run's pairs.
    pub(super) simulated_ratio: Option<f64>,
    /// The same on the captured Envoy entries (`--captured`).
    pub(super) captured_ratio: Option<f64>,
}

/// One figure's outcome.
#[derive(Debug, PartialEq)]
pub(super) struct Verdict {
    pub(super) figure: &'static str,
    pub(super) recorded: f64,
    /// `None` when the run did not measure it.
    pub(super) measured: Option<f64>,
    pub(super) passed: bool,
}

impl Verdict {
    fn of(figure: &'static str, recorded: f64, measured: Option<f64>) -> Verdict {
        Verdict {
            figure,
            recorded,
            measured,
            passed: measured.is_some_and(|m| m >= recorded * (1.0 - TOLERANCE)),
        }
    }

    /// One line for the summary.
    pub(super) fn line(&self) -> String {
        match self.measured {
            Some(measured) => format!(
                "{} {}: {measured:.3} against {:.3} recorded ({:+.1}%)",
                if self.passed { "ok" } else { "WORSE" },
                self.figure,
                self.recorded,
                (measured / self.recorded - 1.0) * 100.0
            ),
            None => format!(
                "NOT MEASURED {}: {:.3} recorded; run with the flags that measure it",
                self.figure, self.recorded
            ),
        }
    }
}

/// Reads the recorded figures at `path`.
pub(super) fn load(path: &Path) -> Result<Recorded> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    Ok(serde_json::from_str(&text)?)
}

/// Each recorded figure against what the run measured.
pub(super) fn compare(
    recorded: &Recorded,
    simulated_ratio: Option<f64>,
    captured_ratio: Option<f64>,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if let Some(want) = recorded.simulated_ratio {
        verdicts.push(Verdict::of("simulated_ratio", want, simulated_ratio));
    }
    if let Some(want) = recorded.captured_ratio {
        verdicts.push(Verdict::of("captured_ratio", want, captured_ratio));
    }
    verdicts
}

/// Prints the verdicts and fails when any figure is worse or was not measured.
pub(super) fn conclude(verdicts: &[Verdict]) -> Result<()> {
    for verdict in verdicts {
        eprintln!("check: {}", verdict.line());
    }
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.passed)
        .map(|v| v.figure)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Child(format!(
            "bench --check: {} more than {:.0}% below the recorded figure, or not measured",
            failed.join(", "),
            TOLERANCE * 100.0
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recorded {
        Recorded {
            source: "test".into(),
            simulated_ratio: Some(0.80),
            captured_ratio: Some(0.50),
        }
    }

    #[test]
    fn a_figure_within_a_tenth_of_its_record_passes_and_one_past_it_fails() {
        // 0.80 recorded: a tenth below is 0.72; 0.721 is within it, 0.719 past it.
        let verdicts = compare(&recorded(), Some(0.721), Some(0.60));
        assert!(verdicts.iter().all(|v| v.passed), "{verdicts:?}");
        assert!(conclude(&verdicts).is_ok());
        let verdicts = compare(&recorded(), Some(0.719), Some(0.60));
        assert!(!verdicts[0].passed);
        assert!(verdicts[1].passed);
        assert!(verdicts[0].line().starts_with("WORSE simulated_ratio"));
        let error = conclude(&verdicts).unwrap_err().to_string();
        assert!(error.contains("simulated_ratio"), "{error}");
    }

    #[test]
    fn a_recorded_figure_the_run_did_not_measure_fails() {
        let verdicts = compare(&recorded(), Some(0.9), None);
        assert_eq!(verdicts[1].measured, None);
        assert!(!verdicts[1].passed);
        assert!(conclude(&verdicts).is_err());
    }

    #[test]
    fn the_recorded_file_of_the_repository_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.json");
        let recorded = load(&path).unwrap();
        assert!(recorded.simulated_ratio.is_some() && recorded.captured_ratio.is_some());
        assert!(!recorded.source.is_empty());
    }
}
