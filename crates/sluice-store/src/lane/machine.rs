//! [`Lane`]'s transitions: one method per event, each pushing the actions
//! it decides.

use std::time::Instant;

use sluice_record::Ulid;

use super::{
    Action, Cycle, Event, Fanout, Kind, Lane, LaneConfig, Lease, Phase, Stop, View, Written,
    others, pick, too_few_stores,
};
use crate::placement;

impl Lane {
    /// A lane that starts its first cycle at `now`.
    pub fn new(config: LaneConfig, now: Instant) -> Lane {
        Lane {
            config,
            phase: Phase::Idle { until: now },
            cycle: None,
            waiting: Default::default(),
            next_token: 0,
            stopped: None,
        }
    }

    /// The lane's configuration.
    pub fn config(&self) -> &LaneConfig {
        &self.config
    }

    /// When the lane wants an [`Event::Wake`]: the end of its pause or the
    /// earliest deadline of a request; `None` while it only waits for
    /// replies without a deadline (never, as every request has one).
    pub fn wake_at(&self) -> Option<Instant> {
        let pause = match self.phase {
            Phase::Idle { until } => Some(until),
            _ => None,
        };
        let deadline = self.waiting.values().map(|(at, _)| *at).min();
        match (pause, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why the lane lends nothing now, or why its last cycle ended early;
    /// `None` once a cycle starts.
    pub fn stopped(&self) -> Option<Stop> {
        self.stopped
    }

    /// A cycle is under way: segments may be lent to this lane.
    pub fn busy(&self) -> bool {
        self.cycle.is_some()
    }

    /// Take `event` at `now`, seeing the cluster as `view`; returns what to
    /// send or do. `rng` picks the ingester of a new cycle.
    pub fn step(
        &mut self,
        now: Instant,
        event: Event,
        view: &View,
        rng: &mut impl rand::Rng,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.take(now, event, view, rng, &mut out);
        out
    }

    fn take(
        &mut self,
        now: Instant,
        event: Event,
        view: &View,
        rng: &mut impl rand::Rng,
        out: &mut Vec<Action>,
    ) {
        match event {
            Event::Wake => {
                let lapsed: Vec<(u64, Kind)> = self
                    .waiting
                    .iter()
                    .filter(|(_, (at, _))| *at <= now)
                    .map(|(token, (_, kind))| (*token, *kind))
                    .collect();
                for (token, kind) in lapsed {
                    let why = "no answer before the deadline".to_string();
                    let event = match kind {
                        Kind::Next => Event::Next {
                            token,
                            result: Err(why),
                        },
                        Kind::Download => Event::Download {
                            token,
                            result: Err(why),
                        },
                        Kind::Write => Event::Write {
                            token,
                            result: Err(why),
                        },
                        Kind::Replica => Event::Replica {
                            token,
                            result: Err(why),
                        },
                        Kind::Commit => Event::Commit {
                            token,
                            result: Err(why),
                        },
                    };
                    self.take(now, event, view, rng, out);
                }
                if let Phase::Idle { until } = self.phase
                    && until <= now
                {
                    self.begin(now, view, rng, out);
                }
            }
            Event::Next { token, result } => {
                if self.waiting.remove(&token).is_some() {
                    self.on_next(now, result, out);
                }
            }
            Event::Download { token, result } => {
                if self.waiting.remove(&token).is_some() {
                    self.on_download(now, result, out);
                }
            }
            Event::Write { token, result } => {
                if self.waiting.remove(&token).is_some() {
                    self.on_write(now, result, view, out);
                }
            }
            Event::Replica { token, result } => {
                if self.waiting.remove(&token).is_some() {
                    self.on_replica(now, token, result, view, out);
                }
            }
            Event::Commit { token, .. } => {
                // A failed commit leaves the segment lent; its lease
                // expires and another cycle consumes it again (a harmless
                // duplicate), so the lane goes on either way.
                if self.waiting.remove(&token).is_some() {
                    self.commit_next(now, out);
                }
            }
        }
    }

    fn request(&mut self, now: Instant, kind: Kind) -> u64 {
        self.next_token += 1;
        let timeout = match kind {
            Kind::Replica => self.config.replica_timeout,
            _ => self.config.request_timeout,
        };
        self.waiting.insert(self.next_token, (now + timeout, kind));
        self.next_token
    }

    /// The gate, then pick an ingester and lend from it.
    fn begin(
        &mut self,
        now: Instant,
        view: &View,
        rng: &mut impl rand::Rng,
        out: &mut Vec<Action>,
    ) {
        let pause = Phase::Idle {
            until: now + self.config.idle_pause,
        };
        if view.disk_full {
            self.stopped = Some(Stop::DiskFull);
            self.phase = pause;
            return;
        }
        if too_few_stores(view.targets.len(), self.config.rf) {
            self.stopped = Some(Stop::TooFewStores);
            self.phase = pause;
            return;
        }
        let Some(picked) = pick(&view.ingesters, rng) else {
            self.phase = pause;
            return;
        };
        self.stopped = None;
        let ingester = picked.base.clone();
        self.cycle = Some(Cycle {
            ingester: ingester.clone(),
            inputs: Vec::new(),
            lease: Lease::new(),
        });
        self.lend(now, out);
    }

    fn lend(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(cycle) = &self.cycle else { return };
        let ingester = cycle.ingester.clone();
        let token = self.request(now, Kind::Next);
        self.phase = Phase::Lending;
        out.push(Action::Next { token, ingester });
    }

    fn on_next(
        &mut self,
        now: Instant,
        result: Result<Option<(Ulid, std::time::Duration)>, String>,
        out: &mut Vec<Action>,
    ) {
        let Some(cycle) = &mut self.cycle else { return };
        match result {
            Ok(Some((id, length))) => {
                cycle.lease.lent(length, now);
                let ingester = cycle.ingester.clone();
                let token = self.request(now, Kind::Download);
                self.phase = Phase::Downloading { id };
                out.push(Action::Download {
                    token,
                    ingester,
                    id,
                });
            }
            Ok(None) if cycle.inputs.is_empty() => {
                self.cycle = None;
                self.phase = Phase::Idle {
                    until: now + self.config.idle_pause,
                };
            }
            Ok(None) => self.gathered(now, out),
            Err(_) => self.give_back(now, Stop::Failed, out),
        }
    }

    fn on_download(&mut self, now: Instant, result: Result<(), String>, out: &mut Vec<Action>) {
        let Phase::Downloading { id } = self.phase else {
            return;
        };
        let Some(cycle) = &mut self.cycle else { return };
        match result {
            Ok(()) => {
                cycle.inputs.push(id);
                if cycle.inputs.len() < self.config.max_gather_segments
                    && !cycle.lease.past_quarter(now)
                {
                    self.lend(now, out);
                } else {
                    self.gathered(now, out);
                }
            }
            Err(_) => {
                out.push(Action::GiveBack {
                    ingester: cycle.ingester.clone(),
                    id,
                });
                out.push(Action::Release { inputs: vec![id] });
                self.give_back(now, Stop::Failed, out);
            }
        }
    }

    /// Gathering ended: write, unless the lease is half gone.
    fn gathered(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(cycle) = &self.cycle else { return };
        if cycle.lease.past_half(now) {
            self.give_back(now, Stop::LeaseLapsed, out);
            return;
        }
        let inputs = cycle.inputs.clone();
        let token = self.request(now, Kind::Write);
        self.phase = Phase::Writing;
        out.push(Action::Write { token, inputs });
    }

    fn on_write(
        &mut self,
        now: Instant,
        result: Result<Vec<Written>, String>,
        view: &View,
        out: &mut Vec<Action>,
    ) {
        match result {
            Err(_) => self.give_back(now, Stop::Failed, out),
            Ok(segments) if others(self.config.rf) == 0 || segments.is_empty() => {
                self.phase = Phase::Committing {
                    holders: Default::default(),
                    at: 0,
                };
                self.commit_next(now, out);
            }
            Ok(segments) => self.replicate(now, segments, 0, Default::default(), view, out),
        }
    }

    /// Start the fanout of segment `at`.
    fn replicate(
        &mut self,
        now: Instant,
        segments: Vec<Written>,
        at: usize,
        holders: std::collections::BTreeMap<Ulid, Vec<String>>,
        view: &View,
        out: &mut Vec<Action>,
    ) {
        let name = segments[at].name.clone();
        let ranked = placement::rank(&name, &view.targets)
            .into_iter()
            .cloned()
            .collect();
        let (fanout, first) = Fanout::start(ranked, others(self.config.rf));
        let mut sent = std::collections::BTreeMap::new();
        for target in first {
            let token = self.request(now, Kind::Replica);
            sent.insert(token, target.clone());
            out.push(Action::Replicate {
                token,
                segment: name.clone(),
                target,
            });
        }
        self.phase = Phase::Replicating {
            segments,
            at,
            fanout,
            sent,
            holders,
        };
        self.replica_settled(now, view, out);
    }

    fn on_replica(
        &mut self,
        now: Instant,
        token: u64,
        result: Result<(), String>,
        view: &View,
        out: &mut Vec<Action>,
    ) {
        let Phase::Replicating {
            segments,
            at,
            fanout,
            sent,
            ..
        } = &mut self.phase
        else {
            return;
        };
        let Some(target) = sent.remove(&token) else {
            return;
        };
        match result {
            Ok(()) => fanout.succeeded(target),
            Err(_) => {
                if let Some(next) = fanout.failed() {
                    let segment = segments[*at].name.clone();
                    self.next_token += 1;
                    let token = self.next_token;
                    self.waiting
                        .insert(token, (now + self.config.replica_timeout, Kind::Replica));
                    sent.insert(token, next.clone());
                    out.push(Action::Replicate {
                        token,
                        segment,
                        target: next,
                    });
                }
            }
        }
        self.replica_settled(now, view, out);
    }

    /// When the fanout of the current segment has finished: the next
    /// segment, the commits, or give everything back.
    fn replica_settled(&mut self, now: Instant, view: &View, out: &mut Vec<Action>) {
        let Phase::Replicating { fanout, .. } = &self.phase else {
            return;
        };
        if !fanout.finished() {
            return;
        }
        let phase = std::mem::replace(&mut self.phase, Phase::Writing);
        let Phase::Replicating {
            segments,
            at,
            fanout,
            mut holders,
            ..
        } = phase
        else {
            return;
        };
        match fanout.outcome() {
            Ok(targets) => {
                let mut names = vec![self.config.self_id.clone()];
                names.extend(targets.into_iter().map(|t| t.id));
                for id in &segments[at].inputs {
                    holders.insert(*id, names.clone());
                }
                if at + 1 < segments.len() {
                    self.replicate(now, segments, at + 1, holders, view, out);
                } else {
                    self.phase = Phase::Committing { holders, at: 0 };
                    self.commit_next(now, out);
                }
            }
            Err(_) => self.give_back(now, Stop::TooFewReplicas, out),
        }
    }

    /// Commit the next input, one at a time as the async lane does; after
    /// the last, the cycle is done and the lane lends again at once.
    fn commit_next(&mut self, now: Instant, out: &mut Vec<Action>) {
        let (Phase::Committing { holders, at }, Some(cycle)) = (&mut self.phase, &self.cycle)
        else {
            return;
        };
        let Some(&id) = cycle.inputs.get(*at) else {
            out.push(Action::Release {
                inputs: cycle.inputs.clone(),
            });
            self.cycle = None;
            self.phase = Phase::Idle { until: now };
            return;
        };
        *at += 1;
        let replicas = holders.get(&id).cloned().unwrap_or_default();
        let ingester = cycle.ingester.clone();
        let token = self.request(now, Kind::Commit);
        out.push(Action::Commit {
            token,
            ingester,
            id,
            replicas,
        });
    }

    /// End the cycle early: every input goes back to its ingester, and the
    /// lane pauses.
    fn give_back(&mut self, now: Instant, why: Stop, out: &mut Vec<Action>) {
        if let Some(cycle) = self.cycle.take() {
            for id in &cycle.inputs {
                out.push(Action::GiveBack {
                    ingester: cycle.ingester.clone(),
                    id: *id,
                });
            }
            out.push(Action::Release {
                inputs: cycle.inputs,
            });
        }
        self.waiting.clear();
        self.stopped = Some(why);
        self.phase = Phase::Idle {
            until: now + self.config.retry_backoff,
        };
    }
}

impl LaneConfig {
    /// The async lane's defaults for everything but the store's id and RF.
    pub fn defaults(self_id: &str, rf: u32) -> LaneConfig {
        LaneConfig {
            self_id: self_id.to_string(),
            rf,
            max_gather_segments: crate::consumer::MAX_GATHER_SEGMENTS,
            request_timeout: std::time::Duration::from_secs(120),
            replica_timeout: crate::replicate::REPLICA_TIMEOUT,
            idle_pause: std::time::Duration::from_millis(100),
            retry_backoff: crate::consumer::RETRY_BACKOFF,
        }
    }
}
