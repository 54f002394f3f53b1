//! Choosing what a run covers: which workspaces, and which sources and campaigns of a job.

use cohort_config::{Campaign, Config, Source, Workspace};

use crate::error::{EngineError, Result};

/// The job a run executes: which sources to pull and which campaigns to push.
#[derive(Debug, Clone)]
pub struct JobPlan<'c> {
    /// The job's name (`run` for a whole-workspace run).
    pub name: String,
    /// Sources to pull, in config order.
    pub sources: Vec<&'c Source>,
    /// Campaigns to push, in config order.
    pub campaigns: Vec<&'c Campaign>,
}

/// The job `name` of `workspace`, or, without a name, the whole workspace: every source and
/// every campaign (the job called `run`).
pub fn job_plan<'c>(workspace: &'c Workspace, name: Option<&str>) -> Result<JobPlan<'c>> {
    let Some(name) = name else {
        return Ok(JobPlan {
            name: "run".to_owned(),
            sources: workspace.sources.iter().collect(),
            campaigns: workspace.campaigns.iter().collect(),
        });
    };
    let Some(job) = workspace.job(name) else {
        let known: Vec<&str> = workspace.jobs.iter().map(|j| j.name.as_str()).collect();
        return Err(EngineError::config(format!(
            "workspace `{}` has no job `{name}`{}",
            workspace.id,
            hint(name, &known, "jobs")
        )));
    };
    let sources = match &job.sources {
        None => workspace.sources.iter().collect(),
        Some(names) => names.iter().filter_map(|n| workspace.source(n)).collect(),
    };
    let campaigns = match &job.campaigns {
        None => workspace.campaigns.iter().collect(),
        Some(names) => names.iter().filter_map(|n| workspace.campaign(n)).collect(),
    };
    Ok(JobPlan {
        name: job.name.clone(),
        sources,
        campaigns,
    })
}

/// The workspaces a command is about: the one named, or every one.
pub fn workspaces<'c>(config: &'c Config, id: Option<&str>) -> Result<Vec<&'c Workspace>> {
    match id {
        None if config.workspaces.is_empty() => {
            Err(EngineError::config("the config defines no [workspace]"))
        }
        None => Ok(config.workspaces.iter().collect()),
        Some(id) => match config.workspace(id) {
            Some(w) => Ok(vec![w]),
            None => {
                let ids: Vec<&str> = config.workspaces.iter().map(|w| w.id.as_str()).collect();
                Err(EngineError::config(format!(
                    "no workspace `{id}` in the config{}",
                    hint(id, &ids, "workspaces")
                )))
            }
        },
    }
}

/// What to add to "no such NAME": the nearest name, or those that exist (`what`, plural).
pub fn hint(name: &str, known: &[&str], what: &str) -> String {
    match cohort_config::did_you_mean(name, known.iter().copied()) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if known.is_empty() => format!(" (it defines no {what})"),
        None => format!(" ({what}: {})", known.join(", ")),
    }
}
