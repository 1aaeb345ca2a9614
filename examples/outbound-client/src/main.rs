//! Run with: `FHIR_URL=https://fhir.inttest.ehealth.sundhed.dk cargo run -p example-outbound-client`
//!
//! `GET /patients/{id}` reads `{FHIR_URL}/Patient/{id}` through the kit's [`Client`], which adds what the
//! platform asks of every call to the infrastructure, taken from the inbound request that caused it:
//! - the trace context as B3 and as `traceparent`/`tracestate`, and `x-request-id`, `x-ot-span-context` and
//!   `x-audit-restriction-levels` (R16);
//! - `User-Agent`: `<service>/<version>`, or `USER_AGENT` such as `CGI-CC360-COPD/1.0.3` (R17);
//! - the caller's `Authorization: Bearer ...`, because the handler asks for it with `relay_authorization()`
//!   (R15): the infrastructure decides what the caller may see, so the caller's own token goes along.
//!   Relaying is never the default; a service's own token would go in with `.bearer(token)` instead.
//!
//! An unreachable upstream answers 502 and a slow one 504, as `application/problem+json`.

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use telemed_kit::Service;
use telemed_kit::config::Env;
use telemed_kit::http::{Client, ClientError, Problem};

#[derive(Clone)]
struct Upstream {
    client: Client,
    fhir_url: Arc<str>,
}

/// A FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`. Checked before the call, so that an id can never change
/// the upstream path.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

async fn patient(
    State(upstream): State<Upstream>,
    Path(id): Path<String>,
) -> Result<Response, ClientError> {
    if !valid_id(&id) {
        return Ok(Problem::new(StatusCode::BAD_REQUEST)
            .detail("a patient id is 1 to 64 of A-Z a-z 0-9 - .")
            .into_response());
    }
    let response = upstream
        .client
        .get(&format!("{}/Patient/{id}", upstream.fhir_url))
        .relay_authorization()
        .send()
        .await?;
    // The upstream's answer is passed on as it is: its status (401, 403 and 404 included) and its body.
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let body = response.bytes().await.map_err(ClientError::from_reqwest)?;
    let mut answer = (status, body).into_response();
    if let Some(content_type) = content_type {
        answer
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(answer)
}

#[tokio::main]
async fn main() -> ExitCode {
    let service =
        Service::from_env(telemed_kit::service_info!()).unwrap_or_else(|error| error.exit());
    let fhir_url = Env::process()
        .required(
            "FHIR_URL",
            "an http(s) base URL such as https://fhir.example",
            |raw| {
                (raw.starts_with("https://") || raw.starts_with("http://"))
                    .then(|| raw.trim_end_matches('/').into())
            },
        )
        .unwrap_or_else(|error| error.exit());
    let upstream = Upstream {
        client: service.client(),
        fhir_url,
    };
    let app = Router::new()
        .route("/patients/{id}", get(patient))
        .with_state(upstream);
    service.run(app).await
}
