//! `cohort campaign preview`: render a campaign for a few customers without pushing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cohort_core::CustomerId;
use cohort_core::delivery::Eligibility;
use cohort_plugin_host::wire::Operation;

use cohort_engine::{Engine, Failpoint, Shared, SystemClock, member_ids, preview, templates};

#[derive(Debug, Subcommand)]
pub(crate) enum CampaignCommand {
    /// Render a campaign from the stored data, without pushing anything.
    ///
    /// Uses what the last run pulled; run `cohort run --dry-run` first on a new store.
    Preview(PreviewArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PreviewArgs {
    /// Config file or folder.
    #[arg(long, short, value_name = "PATH")]
    config: PathBuf,
    /// The workspace [default: the config's only workspace].
    #[arg(long, short, value_name = "ID")]
    workspace: Option<String>,
    /// The campaign.
    #[arg(long, value_name = "NAME")]
    campaign: String,
    /// Render for this customer (member or not) [default: the first members].
    #[arg(long, value_name = "ID")]
    customer: Option<String>,
    /// How many members to render without --customer.
    #[arg(long, default_value_t = 3)]
    limit: usize,
}

pub(crate) fn run(cmd: CampaignCommand) -> Result<ExitCode> {
    let CampaignCommand::Preview(args) = cmd;
    let config = super::load_config(&args.config)?;
    let workspaces = cohort_engine::workspaces(&config, args.workspace.as_deref())?;
    let [workspace] = workspaces[..] else {
        bail!("the config has several workspaces: choose one with --workspace");
    };
    let Some(campaign) = workspace.campaign(&args.campaign) else {
        let names: Vec<&str> = workspace
            .campaigns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        bail!(
            "workspace `{}` has no campaign `{}`{}",
            workspace.id,
            args.campaign,
            cohort_engine::hint(&args.campaign, &names, "campaigns")
        );
    };
    let (renderer, template_errors) = templates::renderer(workspace);
    if !template_errors.is_empty() {
        let shown: Vec<String> = template_errors.iter().map(ToString::to_string).collect();
        bail!("{}", shown.join("\n"));
    }
    super::runtime()?.block_on(async {
        let engine = Engine::open(&config, std::sync::Arc::new(SystemClock)).await?;
        let ws = engine.workspace(workspace).await?;
        let clock = engine.as_of(workspace);
        let wanted = templates::Wanted::by(&renderer, &templates::of_campaign(campaign));
        let mut errors = Vec::new();
        let computed = cohort_engine::compute(&ws, workspace, clock, wanted, &mut errors).await?;
        if computed.customers.is_empty() {
            bail!(
                "the store has no customers for workspace `{}` yet: run `cohort run --config {} --dry-run` first (it pulls without pushing)",
                workspace.id,
                args.config.display()
            );
        }
        let suppressed = computed.suppressed(&ws).await?;
        let failpoint = Failpoint::default();
        let shared = Shared {
            ws: &ws,
            workspace,
            computed: &computed,
            renderer: &renderer,
            suppressed: &suppressed,
            now: clock.now,
            dry_run: true,
            resync: false,
            run_id: 0,
            failpoint: &failpoint,
        };
        let members = member_ids(&computed, campaign);
        let ids: Vec<CustomerId> = match &args.customer {
            Some(id) => {
                // With `[identity]`, a record (`SOURCE:ID`) stands for its person.
                let person = computed.people.as_ref().and_then(|p| p.person(id));
                let id = person.map_or(id.as_str(), CustomerId::as_str);
                if computed.customer(id).is_none() {
                    bail!("no customer `{id}` in workspace `{}`", workspace.id);
                }
                vec![CustomerId::new(id)]
            }
            None => members.iter().take(args.limit).cloned().collect(),
        };
        println!(
            "campaign {} ({} mode, segments {}): {} members as of {}\n",
            campaign.name,
            campaign.mode.as_str(),
            campaign.segments.join(", "),
            members.len(),
            clock.now
        );
        for id in &ids {
            let p = preview(&shared, campaign, id)
                .with_context(|| format!("rendering campaign `{}`", campaign.name))?;
            let membership = match &p.segment {
                Some(s) => format!("in segment {s}"),
                None => "not a member".to_owned(),
            };
            let eligibility = match p.eligibility {
                Eligibility::Eligible => "may be contacted",
                Eligibility::NoConsent => "NOT contacted: no marketing consent",
                Eligibility::Suppressed => "NOT contacted: suppressed",
                Eligibility::NoAddress => "NOT contacted: no address",
                Eligibility::Unknown => "NOT contacted: unknown customer",
            };
            println!("── customer {} · {membership} · {eligibility}", id.as_str());
            print_operation(&p.operation);
            println!();
        }
        engine.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_operation(op: &Operation) {
    if let Some(m) = &op.message {
        if let Some(from) = &m.from {
            println!("From: {from}");
        }
        println!("To: {}", m.to.join(", "));
        for (name, value) in &m.headers {
            println!("{name}: {value}");
        }
        println!("Subject: {}", m.subject.as_deref().unwrap_or(""));
        if let Some(text) = &m.text {
            println!("\n{text}");
        }
        if let Some(html) = &m.html {
            println!("\n--- html ---\n{html}");
        }
    }
    if !op.payload.is_null() {
        println!(
            "{}",
            serde_json::to_string_pretty(&op.payload).unwrap_or_default()
        );
    }
}
