//! A container image, run with podman the way the platform runs it: its own user, a read-only root filesystem
//! with a writable `/tmp`, every capability dropped, SIGTERM to PID 1.

use tokio::process::Command;

use crate::cli::Cli;
use crate::process::{Launch, clip};
use crate::propagation::random_hex;
use crate::report::{Report, Status, WARNING};

/// Shells the platform's distroless bases do not have.
const SHELLS: [&str; 4] = ["sh", "bash", "dash", "ash"];

/// Extra `podman run` arguments: `--podman-arg` and TELEMED_CONFORM_PODMAN_ARGS (split at whitespace), for
/// machines where podman needs them (ulimits in a sandbox, a network, a registry login).
pub fn extra_args(cli: &Cli) -> Vec<String> {
    let mut args = cli.podman_args.clone();
    if let Ok(more) = std::env::var("TELEMED_CONFORM_PODMAN_ARGS") {
        args.extend(more.split_whitespace().map(str::to_owned));
    }
    args
}

/// The `podman run` of the image on `port`. The host network lets the service reach the checker's upstream on
/// the loopback and be reached on its port without a port mapping.
pub fn launch(cli: &Cli, image: &str, port: u16, extra_env: &[(String, String)]) -> Launch {
    let name = format!("telemed-conform-{}", random_hex(12));
    let mut argv: Vec<String> = [
        "podman",
        "run",
        "--rm",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp:rw,size=64m,mode=1777",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--stop-timeout",
        "1",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let env = std::iter::once(("PORT".to_owned(), port.to_string()))
        .chain(cli.env.iter().cloned())
        .chain(extra_env.iter().cloned());
    for (key, value) in env {
        argv.push("--env".to_owned());
        argv.push(format!("{key}={value}"));
    }
    argv.extend(extra_args(cli));
    argv.push(image.to_owned());
    Launch {
        argv,
        env: Vec::new(),
        container: Some(name),
    }
}

async fn podman(args: &[&str]) -> Result<String, String> {
    let output = Command::new("podman")
        .args(args)
        .output()
        .await
        .map_err(|error| format!("could not run podman: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "podman {} failed: {}",
            args.join(" "),
            clip(String::from_utf8_lossy(&output.stderr).trim(), 300)
        ))
    }
}

/// The image's configured user: numeric and not root.
pub async fn check_user(image: &str, report: &mut Report) -> Result<(), String> {
    let user = podman(&["image", "inspect", "--format", "{{.Config.User}}", image]).await?;
    let uid = user.split(':').next().unwrap_or_default();
    let outcome = match uid.parse::<u32>() {
        Ok(0) => Err(format!(
            "USER {user:?} is root; the rule wants a non-root user"
        )),
        Ok(_) => Ok(format!("USER {user}")),
        Err(_) if user.is_empty() => {
            Err("no USER: the image runs as root; the rule wants a numeric non-root USER".into())
        }
        Err(_) => Err(format!(
            "USER {user:?} is a name; the platform's runAsNonRoot can only verify a numeric uid such as 10001"
        )),
    };
    report.result("image.user", outcome);
    Ok(())
}

/// With the container serving: what PID 1 is, and that it holds no capability.
pub async fn check_running(launch: &Launch, report: &mut Report) {
    let Some(name) = &launch.container else {
        return;
    };
    report.set(
        "image.read-only",
        Status::Pass,
        "readiness 200 with --read-only and only /tmp writable (a tmpfs)",
    );
    let outcome = match podman(&["top", name, "pid", "capeff", "comm", "args"]).await {
        Err(error) => {
            report.set("image.capabilities", Status::Fail, error.clone());
            report.set("image.pid1", Status::Fail, error);
            return;
        }
        Ok(table) => table,
    };
    let processes: Vec<Vec<&str>> = outcome
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    let capable: Vec<String> = processes
        .iter()
        .filter(|fields| fields.get(1).is_some_and(|caps| *caps != "none"))
        .map(|fields| fields.join(" "))
        .collect();
    report.result(
        "image.capabilities",
        if capable.is_empty() {
            Ok("serves with --cap-drop ALL; no process holds a capability".to_owned())
        } else {
            Err(format!(
                "processes with capabilities: {}; the rule wants none",
                capable.join("; ")
            ))
        },
    );
    let pid1 = processes.iter().find(|fields| fields.first() == Some(&"1"));
    report.result(
        "image.pid1",
        match pid1 {
            Some(fields) if fields.get(2).is_some_and(|comm| SHELLS.contains(comm)) => Err(format!(
                "PID 1 is the shell {:?}: SIGTERM stops there; the rule wants the service as PID 1 (exec-form \
                 ENTRYPOINT)",
                fields[3..].join(" ")
            )),
            Some(fields) => Ok(format!("PID 1 is {}", fields.get(3..).map(|args| args.join(" ")).unwrap_or_default())),
            None => Err(format!("podman top shows no PID 1: {}", clip(&outcome, 200))),
        },
    );
}

/// Whether the image has a shell: the platform's distroless bases have none, so one is a warning.
pub async fn check_no_shell(cli: &Cli, image: &str, report: &mut Report) {
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
    ];
    let extra = extra_args(cli);
    args.extend(extra.iter().map(String::as_str));
    args.extend([image, "-c", "exit 0"]);
    let detail = match podman(&args).await {
        Ok(_) => format!(
            "{WARNING}the image has /bin/sh; the platform's distroless bases have no shell (build on one, or drop it)"
        ),
        Err(_) => "no /bin/sh in the image".to_owned(),
    };
    report.set("image.no-shell", Status::Pass, detail);
}
