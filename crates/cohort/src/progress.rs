//! What `cohort run` shows while it runs.
//!
//! On a terminal: one spinner line per stage ("pulling orders from shop: 40,000 records"),
//! replaced by a one-line result when the stage ends. Piped or redirected: nothing but the
//! warnings, so that `cohort run > log` keeps the log to the summary. Warnings always go to
//! stderr, masked, above any spinner.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use cohort_engine::{Observer, Stage};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws progress on stderr when it is a terminal.
pub(crate) struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
    /// Several workspaces in one command: lines say which.
    tag_workspace: bool,
}

impl Terminal {
    /// Progress for a command over `workspaces` workspaces; drawn only on a terminal and when
    /// `wanted`.
    pub(crate) fn new(wanted: bool, workspaces: usize) -> Terminal {
        Terminal {
            bar: Mutex::new(None),
            visible: wanted && std::io::stderr().is_terminal(),
            tag_workspace: workspaces > 1,
        }
    }

    fn label(&self, workspace: &str, stage: &Stage) -> String {
        if self.tag_workspace {
            format!("[{workspace}] {stage}")
        } else {
            stage.to_string()
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        let mut guard = self
            .bar
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard);
    }
}

impl Observer for Terminal {
    fn stage(&self, workspace: &str, stage: &Stage) {
        if !self.visible {
            return;
        }
        let label = self.label(workspace, stage);
        self.with_bar(|slot| {
            if let Some(old) = slot.take() {
                old.finish_and_clear();
            }
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_prefix(label);
            bar.enable_steady_tick(Duration::from_millis(120));
            *slot = Some(bar);
        });
    }

    fn progress(&self, done: u64, total: Option<u64>) {
        if !self.visible {
            return;
        }
        self.with_bar(|slot| {
            if let Some(bar) = slot {
                bar.set_message(match total {
                    Some(t) => format!("{done}/{t}"),
                    None => format!("{done} records"),
                });
            }
        });
    }

    fn stage_done(&self, workspace: &str, stage: &Stage, summary: &str) {
        if !self.visible {
            return;
        }
        let label = self.label(workspace, stage);
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
        eprintln!("  {label}: {summary}");
    }

    fn warn(&self, workspace: &str, message: &str) {
        let line = if self.tag_workspace {
            format!("warning: [{workspace}] {message}")
        } else {
            format!("warning: {message}")
        };
        let line = cohort_config::mask::redact(&line).into_owned();
        self.with_bar(|slot| match slot {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        });
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
    }
}
