//! The chart rules the kit's own chart meets, checked on a chart's rendered manifests.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cli::Cli;
use crate::report::{Report, Status};

const RENDER: &str = include_str!("render.py");

const CHECKS: [&str; 8] = [
    "chart.probes",
    "chart.grace-period",
    "chart.replicas",
    "chart.zone-spread",
    "chart.max-unavailable",
    "chart.pdb",
    "chart.security-context",
    "chart.resources",
];

/// Renders `dir` with the values files and checks the result.
pub async fn check(cli: &Cli, dir: &Path, report: &mut Report) {
    let objects = match render(cli, dir).await {
        Ok(objects) => objects,
        Err(error) => {
            report.set("chart.render", Status::Fail, error);
            for id in CHECKS {
                report.set(id, Status::Fail, "not checked: the chart did not render");
            }
            return;
        }
    };
    let Some(deployment) = objects.iter().find(|object| object["kind"] == "Deployment") else {
        report.set(
            "chart.render",
            Status::Fail,
            format!(
                "the chart renders {} objects but no Deployment; the rules apply to a Deployment",
                objects.len()
            ),
        );
        for id in CHECKS {
            report.set(id, Status::Fail, "not checked: no Deployment");
        }
        return;
    };
    let name = deployment["metadata"]["name"].as_str().unwrap_or("?");
    report.set(
        "chart.render",
        Status::Pass,
        format!("{} objects, Deployment {name}", objects.len()),
    );
    let rules = Rules {
        cli,
        objects: &objects,
        deployment,
    };
    report.result("chart.probes", rules.probes());
    report.result("chart.grace-period", rules.grace_period());
    report.result("chart.replicas", rules.replicas());
    report.result("chart.zone-spread", rules.zone_spread());
    report.result("chart.max-unavailable", rules.max_unavailable());
    report.result("chart.pdb", rules.pdb());
    report.result("chart.security-context", rules.security_context());
    report.result("chart.resources", rules.resources());
}

async fn render(cli: &Cli, dir: &Path) -> Result<Vec<Value>, String> {
    let mut command = tokio::process::Command::new(&cli.python);
    command.arg("-c").arg(RENDER).arg(dir).args(&cli.values);
    let output = command
        .output()
        .await
        .map_err(|error| format!("could not run {} to render the chart: {error}", cli.python))?;
    if !output.status.success() {
        return Err(format!(
            "the chart {} did not render: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("the renderer's output is not JSON: {error}"))
}

struct Rules<'a> {
    cli: &'a Cli,
    objects: &'a [Value],
    deployment: &'a Value,
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

impl Rules<'_> {
    fn pod(&self) -> &Value {
        &self.deployment["spec"]["template"]["spec"]
    }

    fn containers(&self) -> &[Value] {
        items(&self.pod()["containers"])
    }

    fn main_container(&self) -> Result<&Value, String> {
        self.containers()
            .first()
            .ok_or_else(|| "the Deployment has no container".to_owned())
    }

    /// A variable of the main container, from `env` or a ConfigMap in `envFrom`.
    fn env(&self, name: &str) -> Option<String> {
        let container = self.main_container().ok()?;
        if let Some(entry) = items(&container["env"])
            .iter()
            .find(|entry| entry["name"] == name)
        {
            return entry["value"].as_str().map(str::to_owned);
        }
        items(&container["envFrom"]).iter().find_map(|source| {
            let map = source["configMapRef"]["name"].as_str()?;
            self.objects
                .iter()
                .find(|object| object["kind"] == "ConfigMap" && object["metadata"]["name"] == map)
                .and_then(|object| object["data"][name].as_str().map(str::to_owned))
        })
    }

    fn probes(&self) -> Result<String, String> {
        let container = self.main_container()?;
        for (probe, want) in [
            ("livenessProbe", &self.cli.liveness_path),
            ("readinessProbe", &self.cli.readiness_path),
        ] {
            let path = container[probe]["httpGet"]["path"].as_str();
            if path != Some(want.as_str()) {
                return Err(format!(
                    "{probe} httpGet path is {path:?}; the rule wants an HTTP probe on {want} (--{}-path)",
                    if probe == "livenessProbe" {
                        "liveness"
                    } else {
                        "readiness"
                    }
                ));
            }
        }
        Ok(format!(
            "liveness {}, readiness {}",
            self.cli.liveness_path, self.cli.readiness_path
        ))
    }

    fn grace_period(&self) -> Result<String, String> {
        let grace = self.pod()["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        let grace = Duration::from_secs(grace);
        let seconds = |d: Duration| humantime::format_duration(d).to_string();
        let read = |name: &str| -> Result<Option<Duration>, String> {
            self.env(name)
                .map(|raw| {
                    humantime::parse_duration(&raw)
                        .map_err(|_| format!("{name} is {raw:?}, not a duration"))
                })
                .transpose()
        };
        let deadline = read("SHUTDOWN_GRACE_PERIOD")?;
        let delay = read("SHUTDOWN_DELAY")?;
        if let Some(deadline) = deadline
            && deadline > grace
        {
            return Err(format!(
                "SHUTDOWN_GRACE_PERIOD {} is longer than terminationGracePeriodSeconds {}: the service would be \
                 killed before its own deadline",
                seconds(deadline),
                seconds(grace)
            ));
        }
        let own_deadline = deadline.unwrap_or(grace);
        if let Some(delay) = delay
            && delay >= own_deadline
        {
            return Err(format!(
                "SHUTDOWN_DELAY {} leaves no time to drain before the deadline {}",
                seconds(delay),
                seconds(own_deadline)
            ));
        }
        if grace < self.cli.min_delay {
            return Err(format!(
                "terminationGracePeriodSeconds {} is shorter than --min-delay {}",
                seconds(grace),
                seconds(self.cli.min_delay)
            ));
        }
        Ok(format!(
            "terminationGracePeriodSeconds {}, SHUTDOWN_GRACE_PERIOD {}, SHUTDOWN_DELAY {}",
            seconds(grace),
            deadline.map_or("unset".to_owned(), seconds),
            delay.map_or("unset".to_owned(), seconds)
        ))
    }

    fn replicas(&self) -> Result<String, String> {
        let hpa_min = self
            .objects
            .iter()
            .find(|object| {
                object["kind"] == "HorizontalPodAutoscaler"
                    && object["spec"]["scaleTargetRef"]["name"]
                        == self.deployment["metadata"]["name"]
            })
            .map(|hpa| hpa["spec"]["minReplicas"].as_u64().unwrap_or(1));
        let replicas = match (self.deployment["spec"]["replicas"].as_u64(), hpa_min) {
            (_, Some(min)) => min,
            (Some(replicas), None) => replicas,
            (None, None) => 1,
        };
        if replicas >= 2 {
            Ok(format!("{replicas} replicas"))
        } else {
            Err(format!(
                "{replicas} replica(s); the rule wants at least 2, in different data centres"
            ))
        }
    }

    fn zone_spread(&self) -> Result<String, String> {
        const ZONE: &str = "topology.kubernetes.io/zone";
        let spread = items(&self.pod()["topologySpreadConstraints"])
            .iter()
            .any(|constraint| constraint["topologyKey"] == ZONE);
        let affinity = &self.pod()["affinity"]["podAntiAffinity"];
        let anti = [
            "requiredDuringSchedulingIgnoredDuringExecution",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ]
        .iter()
        .flat_map(|kind| items(&affinity[kind]))
        .any(|term| term["topologyKey"] == ZONE || term["podAffinityTerm"]["topologyKey"] == ZONE);
        if spread || anti {
            Ok(format!("pods spread over {ZONE}"))
        } else {
            Err(format!(
                "no topologySpreadConstraints or podAntiAffinity on {ZONE}; the rule wants instances in different \
                 data centres"
            ))
        }
    }

    fn max_unavailable(&self) -> Result<String, String> {
        let strategy = &self.deployment["spec"]["strategy"];
        let value = &strategy["rollingUpdate"]["maxUnavailable"];
        let zero = value == 0 || value == "0" || value == "0%";
        if strategy["type"] != "Recreate" && zero {
            Ok("RollingUpdate with maxUnavailable 0".to_owned())
        } else {
            Err(format!(
                "strategy {} maxUnavailable {value}; the rule wants no downtime: RollingUpdate with maxUnavailable: 0",
                strategy["type"]
                    .as_str()
                    .unwrap_or("RollingUpdate (default)")
            ))
        }
    }

    fn pdb(&self) -> Result<String, String> {
        let labels = &self.deployment["spec"]["template"]["metadata"]["labels"];
        let selects = |pdb: &&Value| {
            pdb["spec"]["selector"]["matchLabels"]
                .as_object()
                .is_some_and(|wanted| {
                    !wanted.is_empty() && wanted.iter().all(|(key, value)| &labels[key] == value)
                })
        };
        match self
            .objects
            .iter()
            .filter(|object| object["kind"] == "PodDisruptionBudget")
            .find(selects)
        {
            Some(pdb) => Ok(format!(
                "PodDisruptionBudget {}",
                pdb["metadata"]["name"].as_str().unwrap_or("?")
            )),
            None => Err(
                "no PodDisruptionBudget selects the Deployment's pods; the rule wants voluntary disruptions to keep \
                 an instance serving"
                    .to_owned(),
            ),
        }
    }

    fn security_context(&self) -> Result<String, String> {
        let pod = &self.pod()["securityContext"];
        for container in self.containers() {
            let name = container["name"].as_str().unwrap_or("?");
            let own = &container["securityContext"];
            let pick = |key: &str| {
                if own[key].is_null() {
                    &pod[key]
                } else {
                    &own[key]
                }
            };
            let non_root = pick("runAsNonRoot") == true
                || pick("runAsUser").as_u64().is_some_and(|uid| uid > 0);
            let problem = if !non_root {
                Some("neither runAsNonRoot: true nor a non-zero runAsUser")
            } else if own["allowPrivilegeEscalation"] != false {
                Some("allowPrivilegeEscalation is not false")
            } else if !items(&own["capabilities"]["drop"])
                .iter()
                .any(|cap| cap == "ALL")
            {
                Some("capabilities.drop does not hold ALL")
            } else if own["readOnlyRootFilesystem"] != true {
                Some("readOnlyRootFilesystem is not true")
            } else if own["privileged"] == true {
                Some("privileged is true")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(format!(
                    "container {name}: {problem}; the rules want a non-root, unprivileged container with a read-only \
                     root filesystem"
                ));
            }
        }
        Ok(
            "non-root, no privilege escalation, capabilities dropped, read-only root filesystem"
                .to_owned(),
        )
    }

    fn resources(&self) -> Result<String, String> {
        for container in self.containers() {
            let name = container["name"].as_str().unwrap_or("?");
            let resources = &container["resources"];
            for (kind, key) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "memory"),
            ] {
                if resources[kind][key].is_null() {
                    return Err(format!(
                        "container {name} has no resources.{kind}.{key}; the rule wants requests and limits so that \
                         the instances can be scheduled and scaled"
                    ));
                }
            }
        }
        Ok("cpu and memory requests, memory limits on every container".to_owned())
    }
}
