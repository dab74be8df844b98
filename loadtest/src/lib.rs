//! Comptoir's load generator: simulated shoppers through the gateway, on goose.
//!
//! `comptoir-loadtest --profile smoke|load|stress|spike|soak [options] [-- goose options]`
//! reads the demo catalogue, tops up its stock (with the inventory admin token, when given),
//! runs the profile's plan of the journeys (`journeys`), judged by the SLOs of
//! `nixos/monitoring/slo.toml` (`slo`), and leaves in its run directory goose's HTML and JSON
//! reports, the request log, the plots and a summary (`report`). It exits non-zero when an
//! SLO rule fails, so the smoke profile is a CI gate. See loadtest/README.md.

pub mod journeys;
pub mod profile;
pub mod report;
pub mod slo;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use goose::prelude::*;
use serde_json::{Value, json};

use crate::journeys::{Catalogue, OUTCOMES};
use crate::profile::{Overrides, Plan, Profile};
use crate::slo::SloFile;

pub const USAGE: &str = "\
usage: comptoir-loadtest --profile smoke|load|stress|spike|soak|trivial [options] [-- goose options]

  --host URL                   the gateway (default http://127.0.0.1:8000)
  --slo FILE                   the SLOs (default nixos/monitoring/slo.toml of this checkout)
  --out DIR                    the run directory (default ~/.cache/comptoir/loadtest/PROFILE-TIME)
  --users N                    peak visitors (the profile's by default)
  --hold DURATION              each hold of the plan: 40s, 5m, 1h
  --rate N                     at most N requests per second (goose's throttle)
  --think MIN..MAX             think time between two steps, milliseconds
  --inventory-token-file FILE  top the demo stock up first (inventory's admin token)

After `--`, goose's own options (goose's --help lists them), e.g. --threshold, --timeout.";

/// The command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub profile: Profile,
    pub host: String,
    pub slo: PathBuf,
    pub out: Option<PathBuf>,
    pub overrides: Overrides,
    pub inventory_token_file: Option<PathBuf>,
    pub goose: Vec<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut profile = None;
        let mut options = Self {
            profile: Profile::Smoke,
            host: "http://127.0.0.1:8000".to_owned(),
            slo: Path::new(env!("CARGO_MANIFEST_DIR")).join("../nixos/monitoring/slo.toml"),
            out: None,
            overrides: Overrides::default(),
            inventory_token_file: None,
            goose: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--" {
                options.goose = it.by_ref().cloned().collect();
                break;
            }
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            let o = &mut options.overrides;
            match flag.as_str() {
                "--profile" => profile = Some(value()?.parse()?),
                "--host" => options.host = value()?.trim_end_matches('/').to_owned(),
                "--slo" => options.slo = value()?.into(),
                "--out" => options.out = Some(value()?.into()),
                "--users" => {
                    o.users = Some(value()?.parse().context("--users needs a number")?);
                }
                "--hold" => o.hold = Some(profile::parse_duration(&value()?)?),
                "--rate" => o.rate = Some(value()?.parse().context("--rate needs a number")?),
                "--think" => o.think = Some(profile::parse_think(&value()?)?),
                "--inventory-token-file" => options.inventory_token_file = Some(value()?.into()),
                other => bail!("unknown option {other}"),
            }
        }
        options.profile = profile.context("--profile is required")?;
        if !options.host.starts_with("http://") && !options.host.starts_with("https://") {
            bail!("--host must be an http:// or https:// URL");
        }
        Ok(options)
    }
}

/// Runs the load test; `Ok(false)` when an SLO rule failed.
pub async fn run(options: Options) -> anyhow::Result<bool> {
    let plan = Plan::new(options.profile, &options.overrides)?;
    let rules = match plan.judged {
        Some(errors) => SloFile::read(&options.slo)?.rules(journeys::REQUESTS, errors)?,
        None => Vec::new(),
    };
    let out = match &options.out {
        Some(dir) => dir.clone(),
        None => default_out(options.profile)?,
    };
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the run directory {}", out.display()))?;

    let scenarios = if plan.profile == Profile::Trivial {
        vec![journeys::trivial_scenario()?]
    } else {
        let http = reqwest_goose::Client::new();
        let catalogue = read_catalogue(&http, &options.host).await?;
        if let Some(file) = &options.inventory_token_file {
            top_up(&http, &options.host, file, &catalogue.products).await?;
        }
        println!(
            "comptoir-loadtest: {} products, {} categories",
            catalogue.products.len(),
            catalogue.categories.len()
        );
        journeys::use_catalogue(catalogue)?;
        journeys::scenarios(plan.think)?
    };
    println!(
        "comptoir-loadtest: profile {}, plan {}, think {:?}..{:?}, throttle {}; results in {}",
        plan.profile,
        plan.test_plan(),
        plan.think.0,
        plan.think.1,
        plan.throttle
            .map_or("none".to_owned(), |r| format!("{r} requests/s")),
        out.display()
    );

    let log = out.join("requests.json");
    let path = |name: &str| out.join(name).display().to_string();
    let mut args = vec![
        "--report-file".to_owned(),
        path("report.html"),
        "--report-file".to_owned(),
        path("report.json"),
        "--report-graph-data".to_owned(),
        "--request-log".to_owned(),
        log.display().to_string(),
    ];
    args.extend(options.goose.iter().cloned());
    let config = goose::config::GooseConfiguration::parse_args_default(&args)?;
    let mut attack = *GooseAttack::initialize_with_config(config)?
        .set_default(GooseDefault::Host, options.host.as_str())?
        .set_default(GooseDefault::TestPlan, plan.test_plan().as_str())?
        .set_default(
            GooseDefault::CoordinatedOmissionMitigation,
            GooseCoordinatedOmissionMitigation::Average,
        )?
        .set_default(
            GooseDefault::RunningMetrics,
            plan.progress_every.as_secs() as usize,
        )?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoThresholdAbort, !plan.stop_on_breach)?;
    if let Some(rate) = plan.throttle {
        attack = *attack.set_default(GooseDefault::ThrottleRequests, rate)?;
    }
    for rule in &rules {
        attack = *attack.set_default(GooseDefault::Threshold, rule.threshold.as_str())?;
    }
    for scenario in scenarios {
        attack = attack.register_scenario(scenario);
    }

    let (metrics, passed) = match attack.execute().await {
        Ok(metrics) => (metrics, true),
        Err(GooseError::ThresholdsFailed { metrics, .. }) => ((*metrics).clone(), false),
        Err(error) => return Err(error).context("goose could not run the load test"),
    };
    let failed_transactions: usize = metrics
        .transactions
        .iter()
        .flatten()
        .map(|t| t.fail_count)
        .sum();

    let records = report::read_log(&log)?;
    let analysis = report::analyse(&records, &plan.holds(), report::window_for(plan.duration()));
    let plots = report::plot(&analysis, &out)?;
    let thresholds: Vec<Value> = metrics
        .thresholds
        .iter()
        .map(|t| json!({ "rule": t.rule, "observed": t.observed, "passed": t.passed }))
        .collect();
    let outcomes = json!({
        "orders_confirmed": OUTCOMES.orders_confirmed.load(Ordering::Relaxed),
        "orders_cancelled": OUTCOMES.orders_cancelled.load(Ordering::Relaxed),
        "exports_ready": OUTCOMES.exports_ready.load(Ordering::Relaxed),
        "erasures_complete": OUTCOMES.erasures_complete.load(Ordering::Relaxed),
        "failed_transactions": failed_transactions,
    });
    // A journey's own failures (an order cancelled, an export failed or never ready) mark
    // its last request failed, so the error-rate rule judges them. Failed transactions are
    // reported, not judged: goose cancels the requests in flight when the plan ends.
    let summary = json!({
        "profile": plan.profile.to_string(),
        // When goose started (UTC): the request log's `elapsed` counts from it.
        "started_at": metrics.history.first().map(|h| h.timestamp),
        "plan": plan.test_plan(),
        "throttle": plan.throttle,
        "coordinated_omission_mitigation": "average",
        "passed": passed,
        "thresholds": thresholds,
        "outcomes": outcomes,
        "analysis": analysis,
        "plots": plots,
    });
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    let mut text = format!(
        "# Load test: profile {} — {}\n\nPlan `{}`; results in {}\n\n{}",
        plan.profile,
        if passed { "PASSED" } else { "FAILED" },
        plan.test_plan(),
        out.display(),
        report::tables(&analysis)
    );
    text += &format!("\nJourneys: {outcomes}\n");
    if !thresholds.is_empty() {
        text += "\n| SLO rule | observed | result |\n|---|---|---|\n";
        for t in &metrics.thresholds {
            text += &format!(
                "| `{}` | {} | {} |\n",
                t.rule,
                t.observed,
                if t.passed { "pass" } else { "FAIL" }
            );
        }
    }
    text += &format!(
        "\nFiles: report.html, report.json (goose), requests.json, summary.json, {}\n",
        plots.join(", ")
    );
    std::fs::write(out.join("summary.md"), &text)?;
    println!("\n{text}");
    Ok(passed)
}

fn default_out(profile: Profile) -> anyhow::Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    Ok(cache
        .join("comptoir/loadtest")
        .join(format!("{profile}-{stamp}")))
}

/// Sends what `request` builds, again after the wait a 429 or 503 asks for (`Retry-After`):
/// the setup shares the gateway's per-address limit with everything else on this machine.
async fn patiently(
    request: impl Fn() -> reqwest_goose::RequestBuilder,
    what: &str,
) -> anyhow::Result<reqwest_goose::Response> {
    for _ in 0..30 {
        let response = request()
            .send()
            .await
            .with_context(|| format!("cannot reach {what}: is the platform up (dev/up)?"))?;
        let status = response.status().as_u16();
        if status != 429 && status != 503 {
            return Ok(response);
        }
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u64);
        tokio::time::sleep(Duration::from_secs(wait.clamp(1, 10))).await;
    }
    bail!("{what} kept answering 429 or 503")
}

async fn get_json(http: &reqwest_goose::Client, url: &str) -> anyhow::Result<Value> {
    let response = patiently(|| http.get(url), url).await?;
    let status = response.status();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(response.json().await?)
}

/// The active products (every page), the categories, and words of the names to search.
async fn read_catalogue(http: &reqwest_goose::Client, host: &str) -> anyhow::Result<Catalogue> {
    let mut products = Vec::new();
    let mut terms = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        let page = get_json(http, &format!("{host}/v1/products?limit=100&offset={at}")).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            if let Some(id) = item["id"].as_str() {
                products.push(id.to_owned());
            }
            let name = item["name"].as_str().unwrap_or_default().to_lowercase();
            for word in name.split(|c: char| !c.is_alphabetic()) {
                if word.chars().count() >= 4 && !terms.iter().any(|t| t == word) {
                    terms.push(word.to_owned());
                }
            }
        }
        offset = page["next_offset"].as_i64();
    }
    let categories = get_json(http, &format!("{host}/v1/categories"))
        .await?
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["slug"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Catalogue {
        products,
        categories,
        terms,
    })
}

/// Brings every product's available stock up to `FLOOR`, so checkouts never run out.
async fn top_up(
    http: &reqwest_goose::Client,
    host: &str,
    token_file: &Path,
    products: &[String],
) -> anyhow::Result<()> {
    const FLOOR: i64 = 100_000;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read {}", token_file.display()))?;
    for id in products {
        let stock = get_json(http, &format!("{host}/v1/stock/{id}")).await?;
        let available = stock["available"].as_i64().unwrap_or(0);
        if available >= FLOOR {
            continue;
        }
        let url = format!("{host}/v1/admin/stock/{id}/adjustments");
        let body = json!({ "delta": FLOOR - available, "reason": "load test top-up" });
        let response = patiently(
            || http.post(&url).bearer_auth(token.trim()).json(&body),
            &url,
        )
        .await?;
        let status = response.status();
        if !status.is_success() {
            bail!("topping up {id} was answered {status}: is the token inventory's admin token?");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_command_line_is_read_and_goose_gets_what_follows_the_separator() {
        let o = Options::parse(&args(
            "--profile load --host http://gw:8000/ --users 12 --hold 2m --rate 30 \
             --think 100..300 --inventory-token-file /t -- --timeout 5",
        ))
        .expect("test data");
        assert_eq!(o.profile, Profile::Load);
        assert_eq!(o.host, "http://gw:8000");
        assert_eq!(o.overrides.users, Some(12));
        assert_eq!(o.overrides.hold, Some(Duration::from_secs(120)));
        assert_eq!(o.overrides.rate, Some(30));
        assert_eq!(o.inventory_token_file, Some(PathBuf::from("/t")));
        assert_eq!(o.goose, ["--timeout", "5"]);
        assert!(o.slo.ends_with("nixos/monitoring/slo.toml"));
    }

    #[test]
    fn a_bad_command_line_says_what_is_wrong() {
        let error = |text: &str| {
            Options::parse(&args(text))
                .expect_err("an error")
                .to_string()
        };
        assert!(error("--users 3").contains("--profile is required"));
        assert!(error("--profile smoke --users").contains("--users needs a value"));
        assert!(error("--profile smoke --users many").contains("--users needs a number"));
        assert!(error("--profile smoke --colour red").contains("unknown option --colour"));
        assert!(error("--profile smoke --host gw:8000").contains("http://"));
        assert!(error("--profile big").contains("unknown profile"));
    }

    #[test]
    fn goose_accepts_every_rule_the_slo_file_gives() {
        let file = SloFile::read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../nixos/monitoring/slo.toml"),
        )
        .expect("test data");
        for errors in [slo::Errors::None, slo::Errors::Budget] {
            let mut attack =
                GooseAttack::initialize_with_config(goose::config::GooseConfiguration::default())
                    .expect("test data");
            for rule in file.rules(journeys::REQUESTS, errors).expect("test data") {
                attack = *attack
                    .set_default(GooseDefault::Threshold, rule.threshold.as_str())
                    .unwrap_or_else(|e| panic!("goose refuses {}: {e:?}", rule.threshold));
            }
        }
    }
}
