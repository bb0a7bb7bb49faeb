//! How important a pod is to a service, from what the agent knows now.
//!
//! The score combines four inputs (docs/kubernetes.md):
//! - readiness: a pod that is not ready receives no traffic from the service: score 0;
//! - redundancy: 1 / (ready endpoints): a single replica is the whole service;
//! - traffic share: the pod's share of the bytes all the service's pods moved recently (a
//!   one-minute half-life); without observed traffic, an even split is assumed;
//! - fan-in: workloads seen calling the service; a service many others depend on weighs more.
//!
//! `base = max(redundancy, share)`, `score = base * (0.8 + 0.2 * callers / (callers + 1))`.
//! A lone replica scores 0.8 (critical) with no callers seen and approaches 1 as callers
//! grow; one of three evenly loaded replicas scores about 0.27-0.33 (medium).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nightjar_core::Importance;

use crate::store::ObjectKey;

/// What the score is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImportanceInputs {
    pub ready: bool,
    pub ready_endpoints: usize,
    /// The pod's share of the service's recent bytes; `None` when none were seen.
    pub traffic_share: Option<f64>,
    /// Distinct workloads seen calling the service recently.
    pub callers: usize,
}

pub fn level(score: f64) -> &'static str {
    if score >= 0.75 {
        "critical"
    } else if score >= 0.5 {
        "high"
    } else if score >= 0.25 {
        "medium"
    } else {
        "low"
    }
}

/// The score and its explanation.
pub fn importance(inputs: ImportanceInputs) -> Importance {
    if !inputs.ready {
        return Importance {
            score: 0.0,
            level: "low",
            reason: format!(
                "not ready: receives no traffic ({} other ready endpoints)",
                inputs.ready_endpoints
            ),
        };
    }
    let endpoints = inputs.ready_endpoints.max(1);
    let redundancy = 1.0 / endpoints as f64;
    let (share, observed) = match inputs.traffic_share {
        Some(share) => (share.clamp(0.0, 1.0), true),
        None => (redundancy, false),
    };
    let base = redundancy.max(share);
    let callers = inputs.callers as f64;
    let score = base * (0.8 + 0.2 * callers / (callers + 1.0));
    let score = (score * 1000.0).round() / 1000.0;
    Importance {
        score,
        level: level(score),
        reason: format!(
            "1 of {endpoints} ready endpoints; {:.0}% of its traffic ({}); {} calling workloads",
            share * 100.0,
            if observed { "observed" } else { "assumed even" },
            inputs.callers
        ),
    }
}

/// Recent bytes per pod, decaying with a half-life, so a share reflects current traffic.
#[derive(Debug)]
pub struct TrafficShares {
    half_life: Duration,
    /// pod uid -> (decayed bytes, as of)
    pods: HashMap<Arc<str>, (f64, Duration)>,
    capacity: usize,
}

impl TrafficShares {
    pub fn new(half_life: Duration, capacity: usize) -> Self {
        Self {
            half_life,
            pods: HashMap::new(),
            capacity,
        }
    }

    fn decayed(&self, value: f64, since: Duration, now: Duration) -> f64 {
        let age = now.saturating_sub(since).as_secs_f64();
        value * 0.5f64.powf(age / self.half_life.as_secs_f64())
    }

    pub fn add(&mut self, pod: &Arc<str>, bytes: u64, now: Duration) {
        if !self.pods.contains_key(pod) && self.pods.len() >= self.capacity {
            // Forget the quietest pod: bounded, and the least informative loss.
            let quietest = self
                .pods
                .iter()
                .map(|(k, (v, at))| (k.clone(), self.decayed(*v, *at, now)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| k);
            if let Some(k) = quietest {
                self.pods.remove(&k);
            }
        }
        let current = self
            .pods
            .get(pod)
            .map(|(v, at)| self.decayed(*v, *at, now))
            .unwrap_or(0.0);
        self.pods.insert(pod.clone(), (current + bytes as f64, now));
    }

    /// Recent bytes of one pod.
    pub fn bytes(&self, pod: &str, now: Duration) -> f64 {
        self.pods
            .get(pod)
            .map(|(v, at)| self.decayed(*v, *at, now))
            .unwrap_or(0.0)
    }

    /// The pod's share among `members` (itself included); `None` when they moved nothing.
    pub fn share(&self, pod: &str, members: &[Arc<str>], now: Duration) -> Option<f64> {
        let total: f64 = members.iter().map(|m| self.bytes(m, now)).sum();
        (total > 1.0).then(|| self.bytes(pod, now) / total)
    }
}

/// Which workloads call which service: the service map's fan-in, bounded and forgetting
/// callers not seen for a while.
#[derive(Debug)]
pub struct Callers {
    /// (service namespace, service name) -> caller workload -> last seen
    edges: HashMap<ObjectKey, HashMap<String, Duration>>,
    window: Duration,
    capacity: usize,
    size: usize,
}

impl Callers {
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            edges: HashMap::new(),
            window,
            capacity,
            size: 0,
        }
    }

    pub fn record(&mut self, service: ObjectKey, caller: String, now: Duration) {
        if self.size >= self.capacity {
            self.expire(now);
            if self.size >= self.capacity {
                return;
            }
        }
        let callers = self.edges.entry(service).or_default();
        if callers.insert(caller, now).is_none() {
            self.size += 1;
        }
    }

    pub fn count(&self, service: &ObjectKey, now: Duration) -> usize {
        self.edges.get(service).map_or(0, |callers| {
            callers
                .values()
                .filter(|at| now.saturating_sub(**at) < self.window)
                .count()
        })
    }

    /// Every edge seen within the window: (caller workload, service).
    pub fn edges(&self, now: Duration) -> Vec<(String, ObjectKey)> {
        let mut out = Vec::new();
        for (service, callers) in &self.edges {
            for (caller, at) in callers {
                if now.saturating_sub(*at) < self.window {
                    out.push((caller.clone(), service.clone()));
                }
            }
        }
        out.sort();
        out
    }

    fn expire(&mut self, now: Duration) {
        let window = self.window;
        let mut size = 0;
        for callers in self.edges.values_mut() {
            callers.retain(|_, at| now.saturating_sub(*at) < window);
            size += callers.len();
        }
        self.edges.retain(|_, c| !c.is_empty());
        self.size = size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(ready_endpoints: usize, share: Option<f64>, callers: usize) -> ImportanceInputs {
        ImportanceInputs {
            ready: true,
            ready_endpoints,
            traffic_share: share,
            callers,
        }
    }

    #[test]
    fn a_lone_replica_is_critical_and_one_of_three_is_medium() {
        let lone = importance(inputs(1, None, 0));
        assert_eq!((lone.score, lone.level), (0.8, "critical"));
        let lone_called = importance(inputs(1, None, 3));
        assert_eq!(lone_called.score, 0.95);
        let one_of_three = importance(inputs(3, None, 0));
        assert_eq!((one_of_three.score, one_of_three.level), (0.267, "medium"));
        assert!(
            one_of_three.reason.contains("1 of 3 ready endpoints"),
            "{}",
            one_of_three.reason
        );
        assert!(one_of_three.reason.contains("assumed even"));
    }

    #[test]
    fn a_replica_carrying_most_traffic_matters_more() {
        let hot = importance(inputs(3, Some(0.9), 1));
        assert_eq!(hot.level, "critical");
        assert!(
            hot.reason.contains("90% of its traffic (observed)"),
            "{}",
            hot.reason
        );
        let cold = importance(inputs(3, Some(0.05), 1));
        assert_eq!(cold.level, "medium");
    }

    #[test]
    fn a_pod_that_is_not_ready_scores_zero() {
        let mut i = inputs(1, Some(1.0), 5);
        i.ready = false;
        let score = importance(i);
        assert_eq!((score.score, score.level), (0.0, "low"));
        assert!(score.reason.starts_with("not ready"));
    }

    #[test]
    fn traffic_shares_decay() {
        let mut t = TrafficShares::new(Duration::from_secs(60), 10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        t.add(&a, 1000, Duration::ZERO);
        t.add(&b, 1000, Duration::from_secs(60));
        let members = [a.clone(), b.clone()];
        // a's bytes are one half-life older: 500 against 1000.
        let share = t.share("a", &members, Duration::from_secs(60)).unwrap();
        assert!((share - 1.0 / 3.0).abs() < 1e-9, "{share}");
        assert_eq!(t.share("x", &[Arc::from("x")], Duration::ZERO), None);
    }

    #[test]
    fn callers_are_counted_within_a_window_and_bounded() {
        let svc = (Arc::from("ns"), Arc::from("api"));
        let mut c = Callers::new(Duration::from_secs(600), 2);
        c.record(svc.clone(), "Deployment/web".into(), Duration::ZERO);
        c.record(svc.clone(), "Deployment/web".into(), Duration::from_secs(1));
        c.record(svc.clone(), "CronJob/report".into(), Duration::from_secs(2));
        c.record(
            svc.clone(),
            "Deployment/third".into(),
            Duration::from_secs(3),
        );
        assert_eq!(
            c.count(&svc, Duration::from_secs(10)),
            2,
            "bounded at 2 edges"
        );
        assert_eq!(
            c.count(&svc, Duration::from_secs(700)),
            0,
            "forgotten after the window"
        );
    }
}
