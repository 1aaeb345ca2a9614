//! The documentation is checked against the code, so that it cannot drift:
//! - `docs/configuration.md` lists exactly the variables the kit reads, with their real defaults and, for each,
//!   an error exactly as the kit reports it;
//! - `docs/requirements.md` has one row per platform requirement, and every test or file it names exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use telemed_kit::ConfigError;
use telemed_kit::ServiceSettings;
use telemed_kit::auth::AuthSettings;
use telemed_kit::cache::CacheSettings;
use telemed_kit::config::Env;
use telemed_kit::kvstore::KvStoreSettings;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The cells of every row of every Markdown table on `page` whose header's first cell is `first_header`.
fn table_rows(page: &str, first_header: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in page.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|cell| cell.trim().to_owned())
            .collect();
        if cells[0] == first_header {
            in_table = true;
        } else if in_table && !cells[0].starts_with("---") {
            rows.push(cells);
        }
    }
    rows
}

/// The text between the first pair of backticks in `cell`, if the cell is exactly that.
fn code(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?
        .strip_suffix('`')
        .filter(|inner| !inner.contains('`'))
}

// --- configuration ---------------------------------------------------------------------------------------------

/// One row of a variable table in docs/configuration.md.
#[derive(Debug)]
struct Variable {
    name: String,
    /// The default when it is written as one literal value (`8080`, `10s`), else `None` (prose).
    default: Option<String>,
    /// The documented error line.
    error: String,
}

fn documented_variables() -> Vec<Variable> {
    table_rows(&read("docs/configuration.md"), "variable")
        .into_iter()
        .map(|cells| {
            assert_eq!(cells.len(), 4, "a variable row has 4 cells: {cells:?}");
            let name = code(&cells[0])
                .unwrap_or_else(|| panic!("the first cell is the `VARIABLE`: {cells:?}"))
                .to_owned();
            let error = code(&cells[3])
                .unwrap_or_else(|| panic!("{name}: the last cell is one `error line`"))
                .to_owned();
            Variable {
                name,
                default: code(&cells[1]).map(str::to_owned),
                error,
            }
        })
        .collect()
}

fn documented_build_variables() -> BTreeSet<String> {
    table_rows(&read("docs/configuration.md"), "build variable")
        .iter()
        .map(|cells| code(&cells[0]).unwrap().to_owned())
        .collect()
}

/// The valid values the readers need that have no default.
const KVSTORE_URL: (&str, &str) = ("KVSTORE_URL", "https://kvstore.example");
const AUTH_ISSUER: (&str, &str) = ("AUTH_ISSUER", "https://saml.example/auth/realms/ehealth");

/// Runs every reader of the kit's configuration over `env`, as a service that uses every part of the kit does at
/// startup; returns everything read, as text, or the first error.
fn read_all(env: &Env) -> Result<String, ConfigError> {
    let settings = ServiceSettings::from_env(env, telemed_kit::service_info!())?;
    let kvstore = KvStoreSettings::from_env(env, &settings.service)?;
    let cache = CacheSettings::from_env(env)?;
    let auth = AuthSettings::from_env(env)?;
    Ok(format!("{settings:?} {kvstore:?} {cache:?} {auth:?}"))
}

fn read_pairs(pairs: &[(&str, &str)]) -> Result<String, ConfigError> {
    read_all(&Env::from_pairs(pairs.iter().copied()))
}

#[test]
fn configuration_page_lists_exactly_the_variables_the_kit_reads() {
    let env = Env::from_pairs([KVSTORE_URL, AUTH_ISSUER]);
    read_all(&env).unwrap();
    let read: BTreeSet<String> = env.names_read().into_iter().collect();
    let documented: BTreeSet<String> = documented_variables().into_iter().map(|v| v.name).collect();
    assert!(
        read.contains("PORT") && read.contains("KVSTORE_URL"),
        "the readers ran: {read:?}"
    );
    let undocumented: Vec<_> = read.difference(&documented).collect();
    let not_read: Vec<_> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty() && not_read.is_empty(),
        "docs/configuration.md is out of date: read but not listed {undocumented:?}, listed but not read {not_read:?}"
    );
}

/// The variable names in string literals passed to `Env`'s readers, `std::env::var` and `option_env!`/`env!`
/// anywhere in the kit's source outside its unit tests: a second net for a reader that `read_all` does not call.
fn variables_in_source() -> BTreeSet<String> {
    const CALLS: [&str; 11] = [
        ".raw(",
        ".parse_with(",
        ".parse_or(",
        ".duration_or(",
        ".bool_or(",
        ".required(",
        ".port(",
        ".port_or(",
        "env::var(",
        "option_env!(",
        "env!(",
    ];
    let mut names = BTreeSet::new();
    let mut pending = vec![root().join("crates/telemed-kit/src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .split("#[cfg(test)]\nmod tests {")
                .next()
                .unwrap_or_default();
            for call in CALLS {
                for (at, _) in code.match_indices(call) {
                    let rest = code[at + call.len()..].trim_start();
                    let Some(literal) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let name: String = literal
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    let whole = literal[name.len()..].starts_with('"');
                    if whole && !name.is_empty() && !name.starts_with("CARGO_") {
                        names.insert(name);
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_variable_named_in_the_kit_source_is_documented() {
    let in_source = variables_in_source();
    assert!(
        in_source.contains("SHUTDOWN_DELAY") && in_source.contains("LOG_LEVEL"),
        "the scan finds the kit's reads: {in_source:?}"
    );
    let runtime: BTreeSet<String> = documented_variables().into_iter().map(|v| v.name).collect();
    let build = documented_build_variables();
    let documented: BTreeSet<String> = runtime.union(&build).cloned().collect();
    let missing: Vec<_> = in_source.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "named in the kit's source but not in docs/configuration.md: {missing:?}"
    );
    let stale: Vec<_> = build.difference(&in_source).collect();
    assert!(
        stale.is_empty(),
        "build variables the kit no longer reads: {stale:?}"
    );
}

#[test]
fn documented_defaults_are_the_real_defaults() {
    let unset = read_pairs(&[KVSTORE_URL, AUTH_ISSUER]).unwrap();
    let mut checked = 0;
    for variable in documented_variables() {
        let Some(default) = &variable.default else {
            continue;
        };
        let set = read_pairs(&[KVSTORE_URL, AUTH_ISSUER, (&variable.name, default)])
            .unwrap_or_else(|error| panic!("{}={default:?} is rejected: {error}", variable.name));
        assert_eq!(
            set, unset,
            "{}: the documented default {default:?} is not the default",
            variable.name
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} literal defaults found");
}

#[test]
fn documented_errors_are_the_errors_the_kit_reports() {
    for variable in documented_variables() {
        let name = variable.name.as_str();
        // Every other variable valid: unset, or the one required value.
        let mut pairs: Vec<(&str, &str)> = vec![KVSTORE_URL, AUTH_ISSUER];
        pairs.retain(|(other, _)| *other != name);
        if !variable
            .error
            .starts_with(&format!("{name} is not set: expected "))
        {
            let value = variable
                .error
                .strip_prefix(&format!("{name}=\""))
                .and_then(|rest| rest.split_once("\": expected "))
                .map(|(value, _)| value)
                .unwrap_or_else(|| {
                    panic!("{name}: the error reads `{name}=\"value\": expected ...`")
                });
            pairs.push((name, value));
        }
        let error =
            read_pairs(&pairs).expect_err(&format!("{name}: the documented bad value is accepted"));
        assert_eq!(error.variable(), name);
        assert_eq!(
            error.to_string(),
            variable.error,
            "{name}: the documented error is not the real one"
        );
    }
}

// --- requirement traceability ----------------------------------------------------------------------------------

/// A backticked reference in the matrix that names a file of the repository: `path/to/file` or
/// `path/to/file::test_name`. Other code spans (`/healthz`, `USER_AGENT`, `https://...`) are not references.
fn file_reference(span: &str) -> Option<(&str, Option<&str>)> {
    let (path, name) = match span.split_once("::") {
        Some((path, name)) => (path, Some(name)),
        None => (span, None),
    };
    let path_like = path.contains('/')
        && !path.starts_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'));
    let name_like = name.is_none_or(|name| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    (path_like && name_like).then_some((path, name))
}

fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Whether `source` defines the function `name`: a Rust `fn name(` or a Python `def name(`.
fn defines(source: &str, name: &str) -> bool {
    source.contains(&format!("fn {name}(")) || source.contains(&format!("def {name}("))
}

/// Whether `source` defines `name` as a test: a Rust `fn name(` under `#[test]` or `#[tokio::test]` (among the
/// attributes and comments right above it), or a pytest `def test_...(`. A helper of the same name is no test.
fn defines_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(at, line)| {
        let line = line.trim_start();
        let rust = ["fn ", "pub fn ", "async fn ", "pub async fn "]
            .iter()
            .any(|prefix| line.starts_with(&format!("{prefix}{name}(")));
        if rust {
            return lines[..at]
                .iter()
                .rev()
                .map(|line| line.trim())
                .take_while(|line| line.starts_with("#[") || line.starts_with("//"))
                .any(|line| line == "#[test]" || line.starts_with("#[tokio::test"));
        }
        name.starts_with("test_")
            && (line.starts_with(&format!("def {name}("))
                || line.starts_with(&format!("async def {name}(")))
    })
}

#[test]
fn requirements_matrix_names_only_what_exists() {
    let rows = table_rows(&read("docs/requirements.md"), "id");
    let ids: Vec<&str> = rows.iter().map(|cells| cells[0].as_str()).collect();
    let expected: Vec<String> = (1..=19).map(|n| format!("R{n}")).collect();
    assert_eq!(ids, expected, "one row per requirement, in order");

    let mut problems = Vec::new();
    for cells in &rows {
        assert_eq!(
            cells.len(),
            4,
            "{}: id, requirement, where met, proven by",
            cells[0]
        );
        let mut tests = 0;
        for (column, cell) in cells.iter().enumerate().skip(2) {
            for (path, name) in code_spans(cell).into_iter().filter_map(file_reference) {
                if !root().join(path).exists() {
                    problems.push(format!("{}: `{path}` does not exist", cells[0]));
                    continue;
                }
                let Some(name) = name else { continue };
                let source = std::fs::read_to_string(root().join(path)).unwrap_or_default();
                if column == 3 && !defines_test(&source, name) {
                    problems.push(format!("{}: {path} defines no test `{name}`", cells[0]));
                } else if !defines(&source, name) {
                    problems.push(format!("{}: {path} defines no `{name}`", cells[0]));
                }
                tests += usize::from(column == 3);
            }
        }
        if cells[3].contains("TODO") {
            problems.push(format!(
                "{}: marked TODO: a requirement the kit does not prove yet fails the build",
                cells[0]
            ));
        } else if tests == 0 {
            problems.push(format!("{}: names no test (`path::test`)", cells[0]));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/requirements.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_matrix_reference_to_a_missing_test_is_caught() {
    let lifecycle = read("crates/kit-testbed/tests/lifecycle.rs");
    assert!(defines(
        &lifecycle,
        "sigterm_is_handled_when_the_service_is_pid_1"
    ));
    assert!(
        !defines(&lifecycle, "sigterm_is_handled"),
        "a prefix of a test name is not the test"
    );
    assert!(defines_test(
        &lifecycle,
        "sigterm_is_handled_when_the_service_is_pid_1"
    ));
    assert!(
        !defines_test(&lifecycle, "start") && defines(&lifecycle, "start"),
        "a helper is not a test"
    );
    let tokio =
        "#[tokio::test(flavor = \"multi_thread\")]\n/// Why.\nasync fn serves() {}\nfn helper() {}";
    assert!(defines_test(tokio, "serves") && !defines_test(tokio, "helper"));
    let python =
        "def helper():\n    pass\n\n\nclass TestX:\n    def test_it(self):\n        pass\n";
    assert!(defines_test(python, "test_it") && !defines_test(python, "helper"));
    assert_eq!(
        file_reference("tests/chart/test_render.py::test_deployment_defaults"),
        Some((
            "tests/chart/test_render.py",
            Some("test_deployment_defaults")
        ))
    );
    for not_a_file in [
        "/healthz",
        "https://kvstore.example",
        "USER_AGENT",
        "image.digest",
    ] {
        assert_eq!(file_reference(not_a_file), None, "{not_a_file}");
    }
}

// --- adopting the kit step by step -------------------------------------------------------------------------------

/// The ```diff blocks of `page`, each as its text.
fn diff_blocks(page: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = page.lines();
    while lines.by_ref().any(|line| line == "```diff") {
        let block: Vec<&str> = lines.by_ref().take_while(|line| *line != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

/// `diff -u` of two files of `dir`, labelled with their paths there, as the page shows it.
fn unified_diff(dir: &Path, old: &str, new: &str) -> String {
    let output = std::process::Command::new("diff")
        .args(["-u", "--label", old, "--label", new, old, new])
        .current_dir(dir)
        .output()
        .expect("diff (diffutils) runs");
    // 1: the files differ, which each step does; 0 would be a step that changes nothing, 2 an error.
    assert_eq!(
        output.status.code(),
        Some(1),
        "diff {old} {new}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("the example is UTF-8")
        .trim_end()
        .to_owned()
}

#[test]
fn adopting_page_shows_each_step_as_the_diff_from_the_one_before() {
    let example = root().join("examples/existing-service");
    let steps = [
        "steps/0-before.rs",
        "steps/1-probes-and-shutdown.rs",
        "steps/2-logs-and-telemetry.rs",
        "src/main.rs",
    ];
    let shown = diff_blocks(&read("docs/adopting.md"));
    let expected: Vec<String> = steps
        .windows(2)
        .map(|pair| unified_diff(&example, pair[0], pair[1]))
        .collect();
    assert_eq!(shown.len(), expected.len(), "one diff per step");
    for (shown, expected) in shown.iter().zip(&expected) {
        let header = expected.lines().take(2).collect::<Vec<_>>().join(" ");
        assert!(
            shown == expected,
            "docs/adopting.md shows an outdated diff for {header}; the current one is:\n{expected}"
        );
    }
}

#[test]
fn every_page_is_compiled_as_doctests() {
    // lib.rs includes each page as the doc comment of an item that exists only under `cargo test --doc`, so that
    // its Rust blocks compile and run; a page left out would drift unnoticed.
    let lib = read("crates/telemed-kit/src/lib.rs");
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    assert!(pages.len() > 10, "{pages:?}");
    let missing: Vec<_> = pages
        .iter()
        .filter(|page| !lib.contains(&format!("#[doc = include_str!(\"../../../{page}\")]")))
        .collect();
    assert!(
        missing.is_empty(),
        "pages lib.rs does not compile as doctests: {missing:?}"
    );
}
