//! The profiles: how many visitors, for how long, in what shape, and what makes the run fail.
//!
//! Every profile is a goose test plan (`users,duration;…`: a step to a user count, then a
//! hold at it) over the same journeys. Latency is measured with goose's coordinated-omission
//! mitigation on (`average`): a visitor is a closed loop (it waits for each answer), so when
//! the platform stalls, the requests it would have sent meanwhile are added to the adjusted
//! figures instead of silently not happening. `load` and `soak` also cap the arrival rate with
//! goose's throttle (requests per second over all visitors), more visitors than the rate needs
//! so that the throttle, not the visitors' patience, sets the offered load.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::slo::Errors;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Short and light; fails on any failed request or SLO breach (CI's gate).
    Smoke,
    /// A steady arrival rate for minutes; judged against the SLOs (error budget, latency).
    Load,
    /// Steps of visitors, doubling, to find the knee (where throughput stops following).
    Stress,
    /// A steady base, a sudden tenfold surge, back to the base: does it recover.
    Spike,
    /// A steady rate for an hour: leaks, growth, slow drift.
    Soak,
    /// Not shoppers: visitors fetching the gateway's `/livez` without thinking, to measure the
    /// generator itself against wrk on the same route (docs/performance.md).
    Trivial,
}

impl FromStr for Profile {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "smoke" => Self::Smoke,
            "load" => Self::Load,
            "stress" => Self::Stress,
            "spike" => Self::Spike,
            "soak" => Self::Soak,
            "trivial" => Self::Trivial,
            other => {
                bail!("unknown profile {other:?}: smoke, load, stress, spike, soak or trivial")
            }
        })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Smoke => "smoke",
            Self::Load => "load",
            Self::Stress => "stress",
            Self::Spike => "spike",
            Self::Soak => "soak",
            Self::Trivial => "trivial",
        })
    }
}

/// What the command line may change in a profile (the rest is the profile's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The peak number of visitors.
    pub users: Option<usize>,
    /// How long each hold lasts.
    pub hold: Option<Duration>,
    /// The arrival-rate cap, requests per second.
    pub rate: Option<usize>,
    /// The think time between two steps of a journey.
    pub think: Option<(Duration, Duration)>,
}

/// One step of a test plan: to `users`, over `over`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub users: usize,
    pub over: Duration,
}

/// A time the run holds a user count, from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hold {
    pub users: usize,
    pub from: Duration,
    pub to: Duration,
}

/// A profile made concrete.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub profile: Profile,
    pub steps: Vec<Step>,
    pub think: (Duration, Duration),
    /// goose's throttle: at most this many requests per second.
    pub throttle: Option<usize>,
    /// Which SLO rules judge the run: none for `stress` (it is meant to go past them).
    pub judged: Option<Errors>,
    /// Stop at the first rule broken (the smoke gate) or judge at the end only.
    pub stop_on_breach: bool,
    /// How often goose prints its running tables (the live progress display).
    pub progress_every: Duration,
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn step(users: usize, over: Duration) -> Step {
    Step { users, over }
}

/// Up to `users` over `ramp`, held for `hold`, down to none over `down`.
fn ramp_hold(users: usize, ramp: Duration, hold: Duration, down: Duration) -> Vec<Step> {
    vec![step(users, ramp), step(users, hold), step(0, down)]
}

impl Plan {
    pub fn new(profile: Profile, o: &Overrides) -> anyhow::Result<Self> {
        let think = |default| o.think.unwrap_or(default);
        let plan = match profile {
            // 9 visitors (4 browsers, 4 shoppers, 1 privacy) under 40 requests a second: below
            // the gateway's per-address limit (50/s), which every request of the generator
            // shares, so a smoke run needs no special platform.
            Profile::Smoke => {
                let users = o.users.unwrap_or(9);
                Self {
                    profile,
                    steps: ramp_hold(users, secs(3), o.hold.unwrap_or(secs(40)), secs(1)),
                    think: think((ms(200), ms(1000))),
                    throttle: Some(o.rate.unwrap_or(40)),
                    judged: Some(Errors::None),
                    stop_on_breach: true,
                    progress_every: secs(10),
                }
            }
            Profile::Load => {
                let users = o.users.unwrap_or(150);
                Self {
                    profile,
                    steps: ramp_hold(users, secs(30), o.hold.unwrap_or(secs(300)), secs(5)),
                    think: think((ms(500), ms(2000))),
                    throttle: Some(o.rate.unwrap_or(200)),
                    judged: Some(Errors::Budget),
                    stop_on_breach: false,
                    progress_every: secs(30),
                }
            }
            // Doubling steps up to `users` (default 320: 20, 40, 80, 160, 320).
            Profile::Stress => {
                let peak = o.users.unwrap_or(320);
                let hold = o.hold.unwrap_or(secs(60));
                let mut counts = vec![peak];
                while counts.len() < 5 && counts[counts.len() - 1] >= 2 {
                    let half = counts[counts.len() - 1] / 2;
                    counts.push(half);
                }
                counts.reverse();
                let mut steps = Vec::new();
                for users in counts {
                    steps.push(step(users, secs(10)));
                    steps.push(step(users, hold));
                }
                steps.push(step(0, secs(5)));
                Self {
                    profile,
                    steps,
                    think: think((ms(200), ms(1000))),
                    throttle: o.rate,
                    judged: None,
                    stop_on_breach: false,
                    progress_every: secs(30),
                }
            }
            Profile::Spike => {
                let peak = o.users.unwrap_or(200);
                let base = (peak / 10).max(1);
                let hold = o.hold.unwrap_or(secs(60));
                Self {
                    profile,
                    steps: vec![
                        step(base, secs(10)),
                        step(base, hold),
                        step(peak, secs(5)),
                        step(peak, hold),
                        step(base, secs(5)),
                        step(base, hold),
                        step(0, secs(5)),
                    ],
                    think: think((ms(500), ms(2000))),
                    throttle: o.rate,
                    judged: Some(Errors::Budget),
                    stop_on_breach: false,
                    progress_every: secs(30),
                }
            }
            Profile::Soak => {
                let users = o.users.unwrap_or(80);
                Self {
                    profile,
                    steps: ramp_hold(users, secs(30), o.hold.unwrap_or(secs(3600)), secs(5)),
                    think: think((ms(500), ms(2000))),
                    throttle: Some(o.rate.unwrap_or(100)),
                    judged: Some(Errors::Budget),
                    stop_on_breach: false,
                    progress_every: secs(60),
                }
            }
            Profile::Trivial => {
                let users = o.users.unwrap_or(32);
                Self {
                    profile,
                    steps: ramp_hold(users, secs(1), o.hold.unwrap_or(secs(20)), secs(1)),
                    think: think((Duration::ZERO, Duration::ZERO)),
                    throttle: o.rate,
                    judged: None,
                    stop_on_breach: false,
                    progress_every: secs(10),
                }
            }
        };
        if plan.steps.iter().all(|s| s.users == 0) {
            bail!("--users must be at least 1");
        }
        if plan.throttle == Some(0) {
            bail!("--rate must be at least 1 request per second");
        }
        if plan.think.0 > plan.think.1 {
            bail!("--think: the shortest think time is longer than the longest");
        }
        Ok(plan)
    }

    /// goose's `--test-plan` text.
    pub fn test_plan(&self) -> String {
        self.steps
            .iter()
            .map(|s| format!("{},{}s", s.users, s.over.as_secs().max(1)))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The holds at a nonzero user count, in order.
    pub fn holds(&self) -> Vec<Hold> {
        let mut holds = Vec::new();
        let mut at = Duration::ZERO;
        let mut users = 0;
        for s in &self.steps {
            let start = at;
            at += s.over.max(secs(1));
            if s.users == users && users > 0 {
                holds.push(Hold {
                    users,
                    from: start,
                    to: at,
                });
            }
            users = s.users;
        }
        holds
    }

    /// The whole run.
    pub fn duration(&self) -> Duration {
        self.steps.iter().map(|s| s.over.max(secs(1))).sum()
    }
}

/// `40s`, `5m`, `1h` or bare seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 40s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("{text:?} is not a duration such as 40s, 5m or 1h"),
    };
    if seconds == 0 {
        bail!("a duration must be at least 1s");
    }
    Ok(secs(seconds))
}

/// `200..1000` (milliseconds).
pub fn parse_think(text: &str) -> anyhow::Result<(Duration, Duration)> {
    let (min, max) = text
        .split_once("..")
        .with_context(|| format!("{text:?} is not a think time such as 200..1000 (ms)"))?;
    let parse = |t: &str| -> anyhow::Result<Duration> {
        Ok(ms(t.trim().parse().with_context(|| {
            format!("{text:?} is not a think time such as 200..1000 (ms)")
        })?))
    };
    Ok((parse(min)?, parse(max)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_named_as_the_command_line_writes_them() {
        for name in ["smoke", "load", "stress", "spike", "soak", "trivial"] {
            assert_eq!(
                name.parse::<Profile>().expect("test data").to_string(),
                name
            );
        }
        let error = "heavy"
            .parse::<Profile>()
            .expect_err("an error")
            .to_string();
        assert!(error.contains("smoke, load"), "{error}");
    }

    #[test]
    fn the_smoke_plan_stays_under_the_gateways_per_address_limit_and_stops_on_a_breach() {
        let plan = Plan::new(Profile::Smoke, &Overrides::default()).expect("test data");
        assert_eq!(plan.test_plan(), "9,3s;9,40s;0,1s");
        assert!(plan.throttle.expect("test data") < 50);
        assert_eq!(plan.judged, Some(Errors::None));
        assert!(plan.stop_on_breach);
        assert_eq!(
            plan.holds(),
            [Hold {
                users: 9,
                from: secs(3),
                to: secs(43)
            }]
        );
        assert_eq!(plan.duration(), secs(44));
    }

    #[test]
    fn stress_doubles_up_to_the_peak_and_is_not_judged() {
        let o = Overrides {
            users: Some(160),
            hold: Some(secs(30)),
            ..Overrides::default()
        };
        let plan = Plan::new(Profile::Stress, &o).expect("test data");
        let users: Vec<usize> = plan.holds().iter().map(|h| h.users).collect();
        assert_eq!(users, [10, 20, 40, 80, 160]);
        assert_eq!(plan.judged, None);
        assert!(plan.test_plan().starts_with("10,10s;10,30s;20,10s;20,30s;"));
    }

    #[test]
    fn spike_goes_tenfold_and_back() {
        let plan = Plan::new(Profile::Spike, &Overrides::default()).expect("test data");
        let users: Vec<usize> = plan.holds().iter().map(|h| h.users).collect();
        assert_eq!(users, [20, 200, 20]);
    }

    #[test]
    fn overrides_apply_and_nonsense_is_refused() {
        let o = Overrides {
            users: Some(3),
            hold: Some(secs(5)),
            rate: Some(7),
            think: Some((ms(1), ms(2))),
        };
        let plan = Plan::new(Profile::Load, &o).expect("test data");
        assert_eq!(plan.test_plan(), "3,30s;3,5s;0,5s");
        assert_eq!(plan.throttle, Some(7));
        assert_eq!(plan.think, (ms(1), ms(2)));
        let zero = Overrides {
            users: Some(0),
            ..Overrides::default()
        };
        assert!(Plan::new(Profile::Soak, &zero).is_err());
        let no_rate = Overrides {
            rate: Some(0),
            ..Overrides::default()
        };
        assert!(Plan::new(Profile::Smoke, &no_rate).is_err());
        let backwards = Overrides {
            think: Some((ms(5), ms(1))),
            ..Overrides::default()
        };
        assert!(Plan::new(Profile::Smoke, &backwards).is_err());
    }

    #[test]
    fn durations_and_think_times_parse_or_say_why_not() {
        assert_eq!(parse_duration("40s").expect("test data"), secs(40));
        assert_eq!(parse_duration("5m").expect("test data"), secs(300));
        assert_eq!(parse_duration("1h").expect("test data"), secs(3600));
        assert_eq!(parse_duration("12").expect("test data"), secs(12));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_think("200..1000").expect("test data"),
            (ms(200), ms(1000))
        );
        assert!(parse_think("200-1000").is_err());
    }
}
