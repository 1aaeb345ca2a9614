//! `telemed-conform`: checks any service, in any language, against the eHealth Infrastructure's container rules
//! (R1 to R19 of docs/requirements.md) from the outside: a process it starts, a container image, a Helm chart.
//! See docs/conformance.md.

#![forbid(unsafe_code)]

mod chart;
mod cli;
mod image;
mod logs;
mod process;
mod propagation;
mod report;
mod service;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Format};
use crate::process::Launch;
use crate::report::Report;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(usage) = validate(&cli) {
        eprintln!("telemed-conform: {usage}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("telemed-conform: could not start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let report = runtime.block_on(run(&cli));
    let output = match cli.format {
        Format::Text => report.text(),
        Format::Json => report.json() + "\n",
        Format::Junit => report.junit(),
    };
    print!("{output}");
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn validate(cli: &Cli) -> Result<(), String> {
    if cli.command.is_empty() && cli.image.is_none() && cli.chart.is_none() {
        return Err("nothing to check: give `-- COMMAND [ARGS...]`, `--image IMAGE` or `--chart DIR` (see --help)".into());
    }
    if let Some(chart) = &cli.chart
        && !chart.join("Chart.yaml").is_file()
    {
        return Err(format!(
            "--chart {}: no Chart.yaml there; expected a Helm chart directory",
            chart.display()
        ));
    }
    if let Some(missing) = cli.values.iter().find(|file| !file.is_file()) {
        return Err(format!(
            "--values {}: no such file; expected a Helm values file",
            missing.display()
        ));
    }
    if cli.min_delay >= cli.grace_period {
        return Err(format!(
            "--min-delay {} is not shorter than --grace-period {}; expected the delay to fit in the grace period",
            humantime::format_duration(cli.min_delay),
            humantime::format_duration(cli.grace_period)
        ));
    }
    Ok(())
}

/// What each check needs, for the skips of checks whose input was not given.
fn needs(id: &str) -> &'static str {
    match id {
        "shutdown.drains-slow-request" => "skipped: no --slow-path given",
        id if id.starts_with("propagation.") => "skipped: no --upstream-env and --trigger given",
        id if id.starts_with("image.") => "skipped: no --image given",
        id if id.starts_with("chart.") => "skipped: no --chart given",
        _ => "skipped: no service given (-- COMMAND or --image)",
    }
}

async fn run(cli: &Cli) -> Report {
    let mut report = Report::new(needs);
    if let Some(dir) = &cli.chart {
        chart::check(cli, dir, &mut report).await;
    }
    if !cli.command.is_empty() {
        let launch = |port: u16, extra: &[(String, String)]| Launch {
            argv: cli.command.clone(),
            env: std::iter::once(("PORT".to_owned(), port.to_string()))
                .chain(cli.env.iter().cloned())
                .chain(extra.iter().cloned())
                .collect(),
            container: None,
        };
        let options = service::Options {
            cli,
            launch: &launch,
        };
        service::check(&options, &mut report, async |_: &Launch, _: &mut Report| {}).await;
    } else if let Some(image) = &cli.image {
        if let Err(error) = image::check_user(image, &mut report).await {
            for id in report::CATALOG
                .iter()
                .map(|(id, _, _)| *id)
                .filter(|id| !id.starts_with("chart."))
            {
                report.set(id, report::Status::Fail, format!("not checked: {error}"));
            }
            return report;
        }
        let launch = |port: u16, extra: &[(String, String)]| image::launch(cli, image, port, extra);
        let options = service::Options {
            cli,
            launch: &launch,
        };
        let not_up = "the container never became ready (see probes.readiness-up)";
        for id in ["image.read-only", "image.capabilities", "image.pid1"] {
            report.set(id, report::Status::Fail, not_up);
        }
        service::check(
            &options,
            &mut report,
            async |launch: &Launch, report: &mut Report| {
                image::check_running(launch, report).await;
            },
        )
        .await;
        image::check_no_shell(cli, image, &mut report).await;
    }
    report
}
