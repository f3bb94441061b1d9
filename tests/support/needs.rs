//! What a test needs from the machine (a tool, a Python package, the public sample), checked
//! before it runs: a test whose need is missing is reported **ignored** with the reason, so the
//! totals say it did not run, never passed.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

use libtest_mimic::{Failed, Trial};

/// One thing a test needs.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// A program that answers `program <probe>` with success; `package` says where it comes
    /// from.
    Tool {
        program: &'static str,
        probe: &'static str,
        package: &'static str,
    },
    /// A module python3 can import, from the PyPI `package`.
    Python {
        module: &'static str,
        package: &'static str,
    },
    /// The public fund-load sample (a file outside the repository).
    Sample,
}

/// Where the public sample is read from, when present.
pub const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/fund_load/input.txt"
);

impl Need {
    /// A program that answers `--version`, from `package`.
    pub const fn tool(program: &'static str, package: &'static str) -> Self {
        Self::Tool {
            program,
            probe: "--version",
            package,
        }
    }

    /// Why this need is not met, or `None` when it is.
    pub fn missing(self) -> Option<String> {
        match self {
            Self::Tool {
                program,
                probe,
                package,
            } => {
                let runs = Command::new(program)
                    .arg(probe)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!runs).then(|| format!("{program} is not installed ({package})"))
            }
            Self::Python { module, package } => {
                let imports = Command::new("python3")
                    .args(["-c", &format!("import {module}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!imports)
                    .then(|| format!("python3 cannot import {module} (pip install {package})"))
            }
            Self::Sample => (!Path::new(SAMPLE).exists())
                .then(|| format!("the public sample {SAMPLE} is absent")),
        }
    }
}

/// A trial that runs `test` when every need is met, and is reported ignored (the reason
/// printed once, before the run) when one is not.
pub fn trial(
    name: &str,
    needs: &[Need],
    test: impl FnOnce() -> Result<(), Failed> + Send + 'static,
) -> Trial {
    let trial = Trial::test(name, test);
    // A worker process of this test binary never runs the trials: nothing to check or say.
    if std::env::var_os(stream_kernel::control::env::ROLE).is_some() {
        return trial;
    }
    let reasons: Vec<String> = needs.iter().filter_map(|need| need.missing()).collect();
    if reasons.is_empty() {
        return trial;
    }
    println!("ignored {name}: {}", reasons.join("; "));
    trial.with_ignored_flag(true)
}

/// A trial of a test that signals failure by panicking (`assert!`), run like [`trial`].
pub fn panicking(name: &str, needs: &[Need], test: fn()) -> Trial {
    trial(name, needs, move || {
        test();
        Ok(())
    })
}

/// Runs `trials` as this test binary's tests (arguments as libtest takes them).
pub fn run(trials: Vec<Trial>) -> ! {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}
