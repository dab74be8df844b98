//! The service level objectives, read from the file the alert rules are generated from
//! (`nixos/monitoring/slo.toml`, written once), turned into goose thresholds for the requests
//! the journeys make.
//!
//! Only the gateway's objectives apply: the generator talks to the gateway, as shoppers do. A
//! latency objective `{method, route, threshold_seconds, objective}` becomes one rule per
//! journey request of that method whose path template the route matches:
//! `p99<250ms for GET /v1/products/{id}` (the percentile is the objective). The availability
//! objective becomes an error-rate rule over every request; the smoke profile is stricter and
//! allows no failed request at all.

use std::path::Path;

use anyhow::{Context, bail};
use regex::Regex;
use serde::Deserialize;

use crate::journeys::Request;

/// The file as written.
#[derive(Debug, Deserialize)]
pub struct SloFile {
    #[serde(rename = "slo", default)]
    pub objectives: Vec<Objective>,
}

/// One `[[slo]]` entry (the fields the generator reads; the rest is for the rule generator).
#[derive(Debug, Deserialize)]
pub struct Objective {
    pub name: String,
    pub kind: String,
    pub service: String,
    pub method: Option<String>,
    pub route: Option<String>,
    pub threshold_seconds: Option<f64>,
    pub objective: f64,
}

/// How failed requests are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// Not one failed request (the smoke profile).
    None,
    /// No more than the availability objective's error budget.
    Budget,
}

/// One goose threshold and the objective it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub slo: String,
    pub threshold: String,
}

impl SloFile {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the SLO file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the SLO file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: Self = toml::from_str(text)?;
        if file.objectives.is_empty() {
            bail!("no [[slo]] entries");
        }
        Ok(file)
    }

    /// The thresholds for `requests`; every latency objective of the gateway must match at
    /// least one of them (an objective no journey exercises would pass unseen).
    pub fn rules(&self, requests: &[Request], errors: Errors) -> anyhow::Result<Vec<Rule>> {
        let mut rules = Vec::new();
        for slo in self.objectives.iter().filter(|s| s.service == "gateway") {
            if !(0.0 < slo.objective && slo.objective < 1.0) {
                bail!(
                    "{}: objective {} is not between 0 and 1",
                    slo.name,
                    slo.objective
                );
            }
            match slo.kind.as_str() {
                "availability" => {
                    let threshold = match errors {
                        Errors::None => "error-rate<=0%".to_owned(),
                        Errors::Budget => {
                            format!("error-rate<={}%", round((1.0 - slo.objective) * 100.0))
                        }
                    };
                    rules.push(Rule {
                        slo: slo.name.clone(),
                        threshold,
                    });
                }
                "latency" => rules.extend(latency_rules(slo, requests)?),
                other => bail!("{}: unknown kind {other:?}", slo.name),
            }
        }
        Ok(rules)
    }
}

fn latency_rules(slo: &Objective, requests: &[Request]) -> anyhow::Result<Vec<Rule>> {
    let (Some(method), Some(route), Some(seconds)) =
        (&slo.method, &slo.route, slo.threshold_seconds)
    else {
        bail!(
            "{}: a latency objective needs method, route and threshold_seconds",
            slo.name
        );
    };
    let route = Regex::new(&format!("^(?:{route})$"))
        .with_context(|| format!("{}: route is not a regular expression", slo.name))?;
    let percentile = round(slo.objective * 100.0);
    let millis = round(seconds * 1000.0);
    let rules: Vec<Rule> = requests
        .iter()
        .filter(|r| r.method == method && route.is_match(r.path()))
        .map(|r| Rule {
            slo: slo.name.clone(),
            threshold: format!("p{percentile}<={millis}ms for {} {}", r.method, r.name),
        })
        .collect();
    if rules.is_empty() {
        bail!(
            "{}: no journey request is {method} {route}; add one to loadtest/src/journeys.rs",
            slo.name
        );
    }
    Ok(rules)
}

/// A number as goose's rules write it: no trailing zeros, at most 4 decimals.
fn round(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journeys::REQUESTS;

    const FILE: &str = r#"
window = "30d"
[[slo]]
name = "gateway-availability"
what = "…"
kind = "availability"
service = "gateway"
objective = 0.999

[[slo]]
name = "gateway-read-latency"
what = "…"
kind = "latency"
service = "gateway"
method = "GET"
route = "/v1/(products|categories)(/.*)?"
threshold_seconds = 0.25
objective = 0.99

[[slo]]
name = "identity-internal"
what = "not the gateway's: ignored"
kind = "latency"
service = "identity"
method = "GET"
route = "/nowhere"
threshold_seconds = 1
objective = 0.9
"#;

    #[test]
    fn the_repository_file_gives_a_rule_to_every_objective() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nixos/monitoring/slo.toml");
        let file = SloFile::read(&path).expect("nixos/monitoring/slo.toml");
        let rules = file.rules(REQUESTS, Errors::Budget).expect("rules");
        for slo in file.objectives.iter().filter(|s| s.service == "gateway") {
            assert!(
                rules.iter().any(|r| r.slo == slo.name),
                "{} has no rule",
                slo.name
            );
        }
        assert!(
            rules
                .iter()
                .any(|r| r.threshold == "p99<=500ms for POST /v1/sessions"),
            "{rules:?}"
        );
        assert!(
            rules
                .iter()
                .any(|r| r.threshold == "p99<=250ms for POST /v1/orders"),
            "{rules:?}"
        );
    }

    #[test]
    fn a_latency_objective_covers_every_matching_request_and_no_other() {
        let rules = SloFile::parse(FILE)
            .expect("test data")
            .rules(REQUESTS, Errors::Budget)
            .expect("test data");
        let latency: Vec<&str> = rules
            .iter()
            .filter(|r| r.slo == "gateway-read-latency")
            .map(|r| r.threshold.as_str())
            .collect();
        assert!(latency.contains(&"p99<=250ms for GET /v1/products"));
        assert!(latency.contains(&"p99<=250ms for GET /v1/products/{id}"));
        assert!(latency.contains(&"p99<=250ms for GET /v1/products?q"));
        assert!(latency.contains(&"p99<=250ms for GET /v1/categories"));
        assert!(
            !latency.iter().any(|t| t.contains("/v1/cart")),
            "{latency:?}"
        );
        assert!(!rules.iter().any(|r| r.slo == "identity-internal"));
    }

    #[test]
    fn availability_is_the_error_budget_or_nothing() {
        let file = SloFile::parse(FILE).expect("test data");
        let budget = file.rules(REQUESTS, Errors::Budget).expect("test data");
        assert_eq!(budget[0].threshold, "error-rate<=0.1%");
        let none = file.rules(REQUESTS, Errors::None).expect("test data");
        assert_eq!(none[0].threshold, "error-rate<=0%");
    }

    #[test]
    fn an_objective_no_journey_exercises_is_refused() {
        let text = FILE.replace("/v1/(products|categories)(/.*)?", "/v1/nothing");
        let error = SloFile::parse(&text)
            .expect("test data")
            .rules(REQUESTS, Errors::Budget)
            .expect_err("an error");
        assert!(error.to_string().contains("no journey request"), "{error}");
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        assert!(SloFile::parse("window = \"30d\"").is_err());
        let bad = FILE.replace("objective = 0.999", "objective = 99.9");
        let error = SloFile::parse(&bad)
            .expect("test data")
            .rules(REQUESTS, Errors::Budget)
            .expect_err("an error");
        assert!(error.to_string().contains("between 0 and 1"), "{error}");
        let bad = FILE.replace("kind = \"availability\"", "kind = \"durability\"");
        assert!(
            SloFile::parse(&bad)
                .expect("test data")
                .rules(REQUESTS, Errors::Budget)
                .is_err()
        );
    }

    #[test]
    fn numbers_are_written_as_goose_reads_them() {
        assert_eq!(round(99.0), "99");
        assert_eq!(round(0.1), "0.1");
        assert_eq!(round(99.9), "99.9");
        assert_eq!(round(250.0), "250");
    }
}
