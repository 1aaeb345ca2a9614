//! The checks of a running service: probes, logs, propagation and the shutdown sequence, over real HTTP and
//! real signals.
//!
//! One main run does everything but two shutdown variants, which need a fresh process each (a second SIGTERM,
//! requests that never finish). Without `--port` the three runs go side by side on free ports; with it, one
//! after the other on that port.

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use telemed_kit::telemetry::trace::b3::Sampling;

use crate::cli::Cli;
use crate::logs;
use crate::process::{Launch, Service, clip, describe};
use crate::propagation::{Inbound, Upstream, check_user_agent, random_hex};
use crate::report::{Report, Status};

/// How long one probe or request may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The time log lines may take to be written after the request that caused them (writers are asynchronous).
const LOG_WAIT: Duration = Duration::from_secs(2);
/// How long the in-flight request runs before SIGTERM. The checker cannot see a request reach a handler of
/// another process, so it gives the request this head start; the slow route takes about a second.
const IN_FLIGHT_HEAD_START: Duration = Duration::from_millis(300);

/// Builds the launch of the service for a port and extra environment variables.
pub type LaunchFn<'a> = dyn Fn(u16, &[(String, String)]) -> Launch + Sync + 'a;

/// What the checks of a service need.
pub struct Options<'a> {
    pub cli: &'a Cli,
    /// Builds the launch for a port and the extra environment.
    pub launch: &'a LaunchFn<'a>,
}

/// Runs every check of a service into `report`; the started main service is handed to `after_start` (the image
/// checks look at the running container there).
pub async fn check(
    options: &Options<'_>,
    report: &mut Report,
    after_start: impl AsyncFnOnce(&Launch, &mut Report),
) {
    let cli = options.cli;
    let upstream = Upstream::default();
    let mut extra_env = Vec::new();
    if let Some(name) = &cli.upstream_env {
        match upstream.start().await {
            Ok(url) => extra_env.push((name.clone(), url)),
            Err(error) => {
                for id in PROPAGATION {
                    report.set(
                        id,
                        Status::Fail,
                        format!("the checker could not serve the upstream: {error}"),
                    );
                }
            }
        }
    }
    let client = match Client::new(cli) {
        Ok(client) => client,
        Err(error) => {
            report.set("probes.readiness-up", Status::Fail, error);
            return;
        }
    };
    let ports = match cli.port {
        Some(port) => [port; 3],
        None => match free_ports() {
            Ok(ports) => ports,
            Err(error) => {
                report.set("probes.readiness-up", Status::Fail, error);
                return;
            }
        },
    };
    let main_launch = (options.launch)(ports[0], &extra_env);
    let main = main_run(
        cli,
        &client,
        &main_launch,
        ports[0],
        &upstream,
        report,
        after_start,
    );
    let second = side_run(
        cli,
        &client,
        (options.launch)(ports[1], &extra_env),
        ports[1],
        SideRun::SecondSigterm,
    );
    let stuck = side_run(
        cli,
        &client,
        (options.launch)(ports[2], &extra_env),
        ports[2],
        SideRun::StuckRequests,
    );
    let (second, stuck) = if cli.port.is_some() {
        main.await;
        (second.await, stuck.await)
    } else {
        let ((), second, stuck) = tokio::join!(main, second, stuck);
        (second, stuck)
    };
    report.result("shutdown.second-sigterm", second);
    report.result("shutdown.stuck-request", stuck);
}

const PROPAGATION: [&str; 5] = [
    "propagation.b3-multi",
    "propagation.b3-single",
    "propagation.forwarded-headers",
    "propagation.user-agent",
    "propagation.log-id",
];

fn free_ports() -> Result<[u16; 3], String> {
    // Held together so that the three differ; released right before the services bind them.
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("no free port: {error}"))?;
    let mut ports = [0; 3];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|error| format!("no free port: {error}"))?
            .port();
    }
    Ok(ports)
}

/// HTTP to the service: a new connection for every request (as a new client would open), the user's headers on
/// every request.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    headers: HeaderMap,
}

/// A request's outcome: the status, or why there was none.
type Answer = Result<u16, String>;

impl Client {
    fn new(cli: &Cli) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("the checker's HTTP client: {error}"))?;
        let headers = cli.headers.iter().cloned().collect();
        Ok(Self { http, headers })
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        extra: &[(String, String)],
        body: Option<&'static str>,
        timeout: Duration,
    ) -> Answer {
        let mut headers = self.headers.clone();
        for (name, value) in extra {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        let mut request = self
            .http
            .request(method, url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                Ok(status)
            }
            Err(error) if error.is_timeout() => Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
            Err(error) => Err(root_cause(&error)),
        }
    }

    async fn get(&self, port: u16, path: &str) -> Answer {
        self.send(
            http::Method::GET,
            &url(port, path),
            &[],
            None,
            REQUEST_TIMEOUT,
        )
        .await
    }
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// The innermost cause of an error: what went wrong on the wire, without the client's layers around it.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn answer_text(answer: &Answer) -> String {
    match answer {
        Ok(status) => status.to_string(),
        Err(error) => format!("no answer ({error})"),
    }
}

/// Starts the service and waits for readiness 200; the failure says what was seen.
async fn start_ready(
    cli: &Cli,
    client: &Client,
    launch: &Launch,
    port: u16,
) -> Result<(Service, Duration), (Option<Service>, String)> {
    let mut service = Service::start(launch).map_err(|error| (None, error))?;
    let started = Instant::now();
    let mut last = Err("not asked yet".to_owned());
    while started.elapsed() < cli.startup_timeout {
        if let Some(status) = service.try_status() {
            service.finish_output().await;
            let words = service.last_words();
            return Err((
                Some(service),
                format!(
                    "the service ended ({}) before readiness answered 200{words}",
                    describe(status)
                ),
            ));
        }
        last = client.get(port, &cli.readiness_path).await;
        if last == Ok(200) {
            return Ok((service, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.kill().await;
    let words = service.last_words();
    Err((
        Some(service),
        format!(
            "readiness {} got {} for {}, never 200; the rule wants 200 once the service is up{words}",
            cli.readiness_path,
            answer_text(&last),
            humantime::format_duration(cli.startup_timeout)
        ),
    ))
}

async fn main_run(
    cli: &Cli,
    client: &Client,
    launch: &Launch,
    port: u16,
    upstream: &Upstream,
    report: &mut Report,
    after_start: impl AsyncFnOnce(&Launch, &mut Report),
) {
    let mut service = match start_ready(cli, client, launch, port).await {
        Ok((service, took)) => {
            report.set(
                "probes.readiness-up",
                Status::Pass,
                format!(
                    "{} answered 200 after {} ms",
                    cli.readiness_path,
                    took.as_millis()
                ),
            );
            service
        }
        Err((service, error)) => {
            report.set("probes.readiness-up", Status::Fail, error.clone());
            let rest = format!(
                "not checked: the service never became ready ({})",
                clip(&error, 120)
            );
            for id in [
                "probes.liveness-up",
                "shutdown.readiness-503",
                "shutdown.liveness-200",
                "shutdown.serves-new-connections",
                "shutdown.exit-0",
                "logs.bad-request-alert",
            ] {
                report.set(id, Status::Fail, rest.clone());
            }
            if cli.slow_path.is_some() {
                report.set("shutdown.drains-slow-request", Status::Fail, rest.clone());
            }
            if cli.upstream_env.is_some() {
                for id in PROPAGATION {
                    report.set(id, Status::Fail, rest.clone());
                }
            }
            match service {
                Some(mut service) => {
                    service.kill().await;
                    check_output(&service, report);
                }
                None => {
                    for id in ["logs.model", "logs.no-secrets"] {
                        report.set(id, Status::Fail, rest.clone());
                    }
                }
            }
            return;
        }
    };
    after_start(launch, report).await;
    let liveness = client.get(port, &cli.liveness_path).await;
    report.result(
        "probes.liveness-up",
        if liveness == Ok(200) {
            Ok(format!("{} answered 200", cli.liveness_path))
        } else {
            Err(format!(
                "liveness {} got {} while readiness was 200; the rule wants 200 from a healthy process",
                cli.liveness_path,
                answer_text(&liveness)
            ))
        },
    );
    plant_secrets(cli, client, port).await;
    report.result(
        "logs.bad-request-alert",
        bad_request(cli, client, port, &service).await,
    );
    if cli.upstream_env.is_some() {
        propagation(cli, client, port, upstream, &service, report).await;
    }
    shutdown(cli, client, port, &mut service, report).await;
    check_output(&service, report);
}

fn check_output(service: &Service, report: &mut Report) {
    let lines = service.lines();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    report.result(
        "logs.model",
        logs::check_model(&lines, now)
            .map(|count| format!("{count} stdout lines, each in the model")),
    );
    report.result(
        "logs.no-secrets",
        logs::check_secrets(&lines)
            .map(|count| format!("none of the planted secrets in {count} output lines")),
    );
}

/// Requests carrying a CPR number in path, query and a header, a bearer token, a Basic credential and secret
/// query parameters; to an unknown route and to the routes the user named, so that they pass real handlers.
async fn plant_secrets(cli: &Cli, client: &Client, port: u16) {
    let query = logs::secret_query();
    let mut paths = vec![
        format!("/telemed-conform/patients/{}", logs::CPR_PLAIN),
        cli.readiness_path.clone(),
    ];
    paths.extend(cli.trigger.iter().cloned());
    for path in paths {
        let separator = if path.contains('?') { '&' } else { '?' };
        let target = url(port, &format!("{path}{separator}{query}"));
        for authorization in [
            format!("Bearer {}", logs::BEARER),
            format!("Basic {}", logs::BASIC),
        ] {
            let headers = [
                ("authorization".to_owned(), authorization),
                ("x-patient-id".to_owned(), logs::CPR_DASHED.to_owned()),
                ("x-b3-traceid".to_owned(), random_hex(32)),
                ("x-b3-spanid".to_owned(), random_hex(16)),
                ("x-b3-sampled".to_owned(), "1".to_owned()),
            ];
            let _ = client
                .send(http::Method::GET, &target, &headers, None, REQUEST_TIMEOUT)
                .await;
        }
    }
}

async fn bad_request(
    cli: &Cli,
    client: &Client,
    port: u16,
    service: &Service,
) -> Result<String, String> {
    let mark = service.mark();
    let path = &cli.bad_request_path;
    let answer = client
        .send(
            http::Method::POST,
            &url(port, path),
            &[],
            Some("{\"not json"),
            REQUEST_TIMEOUT,
        )
        .await;
    match answer {
        Ok(status) if (400..500).contains(&status) => {}
        other => {
            return Err(format!(
                "POST {path} with a broken JSON body answered {}; the rule wants bad input refused with 4xx and \
                 logged as an alert",
                answer_text(&other)
            ));
        }
    }
    let alert = service
        .wait_for_line(mark, LOG_WAIT, |line| {
            serde_json::from_str::<serde_json::Value>(&line.text)
                .is_ok_and(|value| value["type"] == "alert")
        })
        .await;
    if alert {
        Ok(format!(
            "POST {path} with a broken JSON body: {}, and an alert line",
            answer_text(&answer)
        ))
    } else {
        Err(format!(
            "POST {path} with a broken JSON body got {} but no line with \"type\":\"alert\" followed within \
             {} s; the rule wants errors and bad input found in the log",
            answer_text(&answer),
            LOG_WAIT.as_secs()
        ))
    }
}

async fn propagation(
    cli: &Cli,
    client: &Client,
    port: u16,
    upstream: &Upstream,
    service: &Service,
    report: &mut Report,
) {
    let Some(trigger) = &cli.trigger else { return };
    let mut first_call = None;
    for (id, single, sampling) in [
        ("propagation.b3-multi", false, Sampling::Accept),
        ("propagation.b3-single", true, Sampling::Deny),
    ] {
        let inbound = Inbound::new(single, sampling);
        let before = upstream.count();
        let answer = client
            .send(
                http::Method::GET,
                &url(port, trigger),
                &inbound.headers,
                None,
                REQUEST_TIMEOUT,
            )
            .await;
        let outcome = match upstream.find(&inbound.trace_id) {
            Some(headers) => {
                let b3 = inbound.check_b3(&headers);
                if first_call.is_none() {
                    first_call = Some((inbound, headers));
                }
                b3
            }
            None if upstream.count() > before => Err(format!(
                "GET {trigger} ({}) called the upstream without the inbound trace id {}; the rule wants B3 passed on",
                answer_text(&answer),
                inbound.trace_id
            )),
            None => Err(format!(
                "GET {trigger} got {} and made no call to the upstream given in {}",
                answer_text(&answer),
                cli.upstream_env.as_deref().unwrap_or_default()
            )),
        };
        report.result(id, outcome);
    }
    let Some((inbound, headers)) = first_call else {
        for id in [
            "propagation.forwarded-headers",
            "propagation.user-agent",
            "propagation.log-id",
        ] {
            report.set(
                id,
                Status::Fail,
                format!("not checked: GET {trigger} made no traced call to the upstream"),
            );
        }
        return;
    };
    report.result(
        "propagation.forwarded-headers",
        inbound.check_forwarded(&headers),
    );
    report.result("propagation.user-agent", check_user_agent(&headers));
    let traced = service
        .wait_for_line(0, LOG_WAIT, |line| {
            serde_json::from_str::<serde_json::Value>(&line.text)
                .is_ok_and(|value| value["id"] == inbound.trace_id.as_str())
        })
        .await;
    report.result(
        "propagation.log-id",
        if traced {
            Ok(format!("lines of GET {trigger} carry \"id\":\"{}\"", inbound.trace_id))
        } else {
            Err(format!(
                "no stdout line of GET {trigger} carries its trace id {} as \"id\"; the model wants the trace id \
                 (x-b3-traceid) in `id`",
                inbound.trace_id
            ))
        },
    );
}

/// SIGTERM with a request in flight: readiness, liveness and new connections watched side by side, then the
/// in-flight request's outcome and the exit.
async fn shutdown(
    cli: &Cli,
    client: &Client,
    port: u16,
    service: &mut Service,
    report: &mut Report,
) {
    let slow = cli.slow_path.as_ref().map(|path| {
        let (client, target, timeout) = (client.clone(), url(port, path), cli.grace_period);
        tokio::spawn(async move {
            client
                .send(http::Method::GET, &target, &[], None, timeout)
                .await
        })
    });
    if slow.is_some() {
        tokio::time::sleep(IN_FLIGHT_HEAD_START).await;
    }
    if let Err(error) = service.terminate().await {
        for id in [
            "shutdown.readiness-503",
            "shutdown.liveness-200",
            "shutdown.serves-new-connections",
            "shutdown.exit-0",
        ] {
            report.set(id, Status::Fail, error.clone());
        }
        service.kill().await;
        return;
    }
    let sigterm = Instant::now();
    let readiness = async {
        let limit = Duration::from_secs(1);
        let mut seen = Vec::new();
        loop {
            let answer = client.get(port, &cli.readiness_path).await;
            let at = sigterm.elapsed();
            if answer == Ok(503) {
                return if at <= limit {
                    Ok(format!("503 {} ms after SIGTERM", at.as_millis()))
                } else {
                    Err(format!(
                        "readiness turned 503 only {} ms after SIGTERM; the rule wants 503 within 1 s so that no new \
                         traffic is routed to a stopping instance",
                        at.as_millis()
                    ))
                };
            }
            seen.push(answer_text(&answer));
            if at > limit {
                seen.dedup();
                return Err(format!(
                    "readiness {} got {} in the first second after SIGTERM, never 503; the rule wants 503 \
                     within 1 s",
                    cli.readiness_path,
                    seen.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let serving = async {
        // Liveness on a new connection every 100 ms through --min-delay: any answer shows the listener accepts,
        // a 200 that the process still counts itself alive.
        let mut refused = None;
        let mut not_alive = None;
        let mut count = 0;
        loop {
            let at = sigterm.elapsed();
            if at > cli.min_delay {
                break;
            }
            let answer = client.get(port, &cli.liveness_path).await;
            count += 1;
            match &answer {
                Ok(200) => {}
                Ok(_) => {
                    not_alive.get_or_insert((at, answer_text(&answer)));
                }
                Err(_) => {
                    refused.get_or_insert((at, answer_text(&answer)));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (count, refused, not_alive)
    };
    let exit = async {
        // The grace period counts from SIGTERM.
        let status = service
            .wait_exit(cli.grace_period.saturating_sub(sigterm.elapsed()))
            .await;
        (status, sigterm.elapsed())
    };
    let (ready_503, (count, refused, not_alive), (status, ended)) =
        tokio::join!(readiness, serving, exit);
    report.result("shutdown.readiness-503", ready_503);
    let min_delay = humantime::format_duration(cli.min_delay);
    report.result(
        "shutdown.serves-new-connections",
        match refused.clone() {
            None => Ok(format!("{count} new connections answered in the {min_delay} after SIGTERM")),
            Some((at, what)) => Err(format!(
                "a new connection {} ms after SIGTERM got {what}; the rule wants new connections served for at least \
                 {min_delay} (--min-delay), while the mesh still routes to the instance",
                at.as_millis()
            )),
        },
    );
    report.result(
        "shutdown.liveness-200",
        match (not_alive, refused) {
            (None, None) => Ok(format!("liveness 200 throughout the {min_delay} after SIGTERM")),
            (Some((at, what)), _) | (None, Some((at, what))) => Err(format!(
                "liveness {} got {what} {} ms after SIGTERM; the rule wants liveness 200 while the process \
                 shuts down, or the platform restarts it mid-drain",
                cli.liveness_path,
                at.as_millis()
            )),
        },
    );
    match status {
        Some(status) if status.success() => report.set(
            "shutdown.exit-0",
            Status::Pass,
            format!("exit 0 {} ms after SIGTERM", ended.as_millis()),
        ),
        Some(status) => report.set(
            "shutdown.exit-0",
            Status::Fail,
            format!(
                "{} {} ms after SIGTERM; the rule wants a graceful exit 0 within the grace period{}",
                describe(status),
                ended.as_millis(),
                service.last_words()
            ),
        ),
        None => {
            service.kill().await;
            report.set(
                "shutdown.exit-0",
                Status::Fail,
                format!(
                    "still running {} after SIGTERM, killed with SIGKILL; the rule wants an exit within the grace period",
                    humantime::format_duration(cli.grace_period)
                ),
            );
        }
    }
    service.finish_output().await;
    if let Some(slow) = slow {
        let path = cli.slow_path.as_deref().unwrap_or_default();
        let answer = slow.await.unwrap_or_else(|error| Err(error.to_string()));
        report.result(
            "shutdown.drains-slow-request",
            match answer {
                Ok(status) if (200..300).contains(&status) => {
                    Ok(format!("GET {path} in flight at SIGTERM answered {status}"))
                }
                other => Err(format!(
                    "GET {path}, in flight at SIGTERM, got {}; the rule wants requests in flight completed before \
                     the exit",
                    answer_text(&other)
                )),
            },
        );
    }
}

#[derive(Clone, Copy)]
enum SideRun {
    SecondSigterm,
    StuckRequests,
}

/// A fresh process for a shutdown variant: must still end before the grace period.
async fn side_run(
    cli: &Cli,
    client: &Client,
    launch: Launch,
    port: u16,
    kind: SideRun,
) -> Result<String, String> {
    let (mut service, _) = start_ready(cli, client, &launch, port)
        .await
        .map_err(|(_, error)| format!("not checked: {error}"))?;
    // Held until the end of the run: connections that never complete their request.
    let mut stuck = Vec::new();
    if let SideRun::StuckRequests = kind {
        let path = cli.slow_path.as_deref().unwrap_or(&cli.liveness_path);
        let partial_headers = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Conform: ");
        let partial_body = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{\"a\":"
        );
        for request in [partial_headers, partial_body] {
            let mut stream = TcpStream::connect(("127.0.0.1", port))
                .map_err(|error| format!("could not open a connection: {error}"))?;
            stream
                .write_all(request.as_bytes())
                .map_err(|error| format!("could not send a partial request: {error}"))?;
            stuck.push(stream);
        }
        // The service must have read what was sent before SIGTERM, or the requests are not in progress yet.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = async {
        let terminate = service.terminate().await;
        let sigterm = Instant::now();
        if let SideRun::SecondSigterm = kind {
            // The second signal once the first is handled: readiness 503 shows the shutdown has begun.
            let deadline = sigterm + Duration::from_secs(1);
            while Instant::now() < deadline
                && client.get(port, &cli.readiness_path).await != Ok(503)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            service.terminate().await?;
        }
        terminate?;
        let status = service
            .wait_exit(cli.grace_period.saturating_sub(sigterm.elapsed()))
            .await;
        Ok::<_, String>((status, sigterm.elapsed()))
    }
    .await;
    let what = match kind {
        SideRun::SecondSigterm => "after a second SIGTERM",
        SideRun::StuckRequests => "with two requests that never finish",
    };
    let outcome = match answer {
        Err(error) => Err(error),
        Ok((Some(status), took)) => Ok(format!(
            "{} {} ms after SIGTERM {what}",
            describe(status),
            took.as_millis()
        )),
        Ok((None, _)) => Err(format!(
            "still running {} after SIGTERM {what}, killed with SIGKILL; the rule wants the process to end inside the \
             grace period whatever its requests do",
            humantime::format_duration(cli.grace_period)
        )),
    };
    service.kill().await;
    drop(stuck);
    outcome
}
