//! The plan against simulated providers, in virtual time: each test runs in microseconds of
//! real time however many virtual seconds it covers.

use std::collections::HashMap;

use super::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// How a simulated provider behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Good,
    /// Sends bytes that fail verification from this offset on.
    CorruptFrom(u64),
    /// Refuses connections (the node is gone).
    Gone,
    /// Never answers a connection.
    Silent,
    /// Stops sending (connection alive) once a request reaches this offset.
    StallsAt(u64),
    /// States this size in its answers.
    StatesSize(u64),
}

#[derive(Debug, Clone, Copy)]
struct SimProvider {
    /// Bytes per virtual millisecond.
    speed: u64,
    behaviour: Behaviour,
}

#[derive(Debug)]
struct SimRequest {
    provider: ProviderKey,
    range: Range<u64>,
    /// The size the request was made for.
    size: u64,
    at: u64,
}

/// A world of providers that carries out the plan's actions.
struct World {
    plan: FetchPlan,
    start: Instant,
    now: Instant,
    size: u64,
    providers: HashMap<ProviderKey, SimProvider>,
    /// What a lookup answers, by lookup number (the last entry repeats).
    answers: Vec<Vec<ProviderKey>>,
    lookups: Vec<(Duration, bool)>,
    pending_probes: Vec<(Instant, ProviderKey, bool)>,
    requests: HashMap<RequestId, SimRequest>,
    gets: Vec<(ProviderKey, Range<u64>)>,
    penalties: Vec<(ProviderKey, Failure)>,
    rewards: Vec<ProviderKey>,
    /// Bytes verified so far, to check that nothing verified is asked for again.
    verified: Vec<Range<u64>>,
    served: HashMap<ProviderKey, u64>,
    max_in_flight: usize,
}

const CONNECT: Duration = Duration::from_millis(2);

fn key(n: u8) -> ProviderKey {
    [n; 32]
}

fn config() -> PlanConfig {
    PlanConfig {
        max_providers: 4,
        range_bytes: 4 * MIB,
        stall_timeout: Duration::from_secs(3),
        find_timeout: Duration::from_secs(5),
    }
}

impl World {
    fn new(size: u64, hint: SizeHint, present: Vec<Range<u64>>, first_wanted: u64) -> Self {
        let start = Instant::now();
        Self {
            plan: FetchPlan::new(config(), hint, present.clone(), first_wanted, start),
            start,
            now: start,
            size,
            providers: HashMap::new(),
            answers: vec![Vec::new()],
            lookups: Vec::new(),
            pending_probes: Vec::new(),
            requests: HashMap::new(),
            gets: Vec::new(),
            penalties: Vec::new(),
            rewards: Vec::new(),
            verified: present,
            served: HashMap::new(),
            max_in_flight: 0,
        }
    }

    fn provider(mut self, n: u8, speed: u64, behaviour: Behaviour) -> Self {
        self.providers
            .insert(key(n), SimProvider { speed, behaviour });
        self
    }

    fn answers(mut self, answers: Vec<Vec<u8>>) -> Self {
        self.answers = answers
            .into_iter()
            .map(|a| a.into_iter().map(key).collect())
            .collect();
        self
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn is_verified(&self, range: &Range<u64>) -> bool {
        self.verified
            .iter()
            .any(|v| v.start < range.end && range.start < v.end)
    }

    /// Carries out every pending action.
    fn act(&mut self) {
        while let Some(action) = self.plan.poll_action() {
            match action {
                Action::Lookup { refresh } => {
                    let n = self.lookups.len().min(self.answers.len() - 1);
                    self.lookups.push((self.elapsed(), refresh));
                    let found = self.answers[n].clone();
                    if !found.is_empty() {
                        self.plan.handle(Event::Providers(found), self.now);
                    }
                    self.plan.handle(Event::LookupDone, self.now);
                }
                Action::Probe {
                    provider,
                    prove_size,
                } => {
                    if self.providers[&provider].behaviour != Behaviour::Silent {
                        self.pending_probes
                            .push((self.now + CONNECT, provider, prove_size));
                    }
                }
                Action::Get {
                    request,
                    provider,
                    range,
                    size,
                } => {
                    assert!(
                        !self.is_verified(&range),
                        "{range:?} asked for again though verified bytes lie in it"
                    );
                    self.gets.push((provider, range.clone()));
                    let at = range.start;
                    self.requests.insert(
                        request,
                        SimRequest {
                            provider,
                            range,
                            size,
                            at,
                        },
                    );
                    let in_flight = self
                        .requests
                        .values()
                        .filter(|r| r.provider == provider)
                        .count();
                    self.max_in_flight = self.max_in_flight.max(in_flight);
                }
                Action::Cancel { request } => {
                    self.requests.remove(&request);
                }
                Action::Penalise {
                    provider, failure, ..
                } => self.penalties.push((provider, failure)),
                Action::Reward { provider } => self.rewards.push(provider),
            }
        }
    }

    /// One virtual millisecond.
    fn tick(&mut self) {
        self.now += Duration::from_millis(1);
        let due: Vec<(Instant, ProviderKey, bool)> = self
            .pending_probes
            .iter()
            .filter(|(at, _, _)| *at <= self.now)
            .copied()
            .collect();
        self.pending_probes.retain(|(at, _, _)| *at > self.now);
        for (_, provider, prove_size) in due {
            // A size proof is cryptographic: even a lying provider can only prove the truth.
            let event = if self.providers[&provider].behaviour == Behaviour::Gone {
                Event::ProbeFailed {
                    provider,
                    failure: Failure::Unreachable,
                    detail: "connection refused".into(),
                }
            } else if prove_size {
                Event::SizeProven {
                    provider,
                    size: self.size,
                }
            } else {
                Event::Connected { provider }
            };
            self.plan.handle(event, self.now);
            self.act();
        }
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            let Some(r) = self.requests.get_mut(&id) else {
                continue;
            };
            let sim = self.providers[&r.provider];
            let stated = match sim.behaviour {
                Behaviour::StatesSize(stated) => stated,
                _ => self.size,
            };
            let event = match sim.behaviour {
                _ if stated != r.size => Some(Event::SizeDisagrees {
                    request: id,
                    stated,
                }),
                Behaviour::StallsAt(at) if r.at >= at => None,
                _ => {
                    let next = (r.at + sim.speed).min(r.range.end);
                    match sim.behaviour {
                        Behaviour::CorruptFrom(bad) if next > bad => {
                            let good = (bad / CHUNK_GROUP * CHUNK_GROUP).max(r.at);
                            *self.served.entry(r.provider).or_default() += good - r.at;
                            r.at = good;
                            Some(Event::RequestFailed {
                                request: id,
                                failure: Failure::Corrupt,
                                detail: format!("leaf hash mismatch at {good}"),
                            })
                        }
                        _ => {
                            let next = match sim.behaviour {
                                Behaviour::StallsAt(at) => next.min(at.max(r.at)),
                                _ => next,
                            };
                            *self.served.entry(r.provider).or_default() += next - r.at;
                            r.at = next;
                            if next == r.range.end {
                                Some(Event::RequestDone { request: id })
                            } else {
                                Some(Event::Progress {
                                    request: id,
                                    verified_to: next,
                                })
                            }
                        }
                    }
                }
            };
            let (start, at) = (r.range.start, r.at);
            if at > start {
                self.verified.push(start..at);
            }
            if matches!(
                event,
                Some(
                    Event::RequestDone { .. }
                        | Event::RequestFailed { .. }
                        | Event::SizeDisagrees { .. }
                )
            ) {
                self.requests.remove(&id);
            }
            if let Some(event) = event {
                self.plan.handle(event, self.now);
                self.act();
            }
        }
        if self.plan.poll_timeout().is_some_and(|t| t <= self.now) {
            self.plan.handle_timeout(self.now);
            self.act();
        }
    }

    /// Runs until the plan ends, at most `limit` of virtual time.
    fn run(mut self, limit: Duration) -> (Outcome, Self) {
        self.act();
        while self.plan.outcome().is_none() {
            assert!(self.elapsed() < limit, "no outcome after {limit:?}");
            self.tick();
        }
        (self.plan.outcome().cloned().expect("outcome"), self)
    }

    fn penalised(&self, n: u8) -> Vec<Failure> {
        self.penalties
            .iter()
            .filter(|(k, _)| *k == key(n))
            .map(|(_, f)| *f)
            .collect()
    }
}

#[test]
fn several_providers_one_slow_one_corrupt_one_gone() {
    let size = 32 * MIB;
    let world = World::new(size, SizeHint::Unknown, Vec::new(), 0)
        .provider(1, 64 * KIB, Behaviour::Good)
        .provider(2, 2 * KIB, Behaviour::Good)
        .provider(3, 64 * KIB, Behaviour::CorruptFrom(MIB + 100))
        .provider(4, 64 * KIB, Behaviour::Gone)
        .answers(vec![vec![1, 2, 3, 4]]);
    let (outcome, world) = world.run(Duration::from_secs(60));
    assert_eq!(outcome, Outcome::Complete { size });
    assert_eq!(world.penalised(3), vec![Failure::Corrupt]);
    assert_eq!(world.penalised(4), vec![Failure::Unreachable]);
    assert!(world.penalised(1).is_empty());
    assert!(
        world.penalised(2).is_empty(),
        "slow but never stalled: no penalty"
    );
    assert!(world.rewards.contains(&key(1)));
    // The fast provider carries the blob; the endgame keeps the slow one from holding up
    // the end: well under the slow provider's own pace (4 MiB at 2 KiB/ms is 2 s a range).
    assert!(
        world.elapsed() < Duration::from_millis(900),
        "took {:?}",
        world.elapsed()
    );
    assert!(world.served[&key(1)] > world.served[&key(2)] * 4);
}

#[test]
fn a_stalled_range_fails_over_from_its_last_verified_byte() {
    let size = 8 * MIB;
    let stall_at = 1536 * KIB;
    let world = World::new(size, SizeHint::Unknown, Vec::new(), 0)
        .provider(1, 64 * KIB, Behaviour::StallsAt(stall_at))
        .answers(vec![vec![1], vec![2]])
        .provider(2, 64 * KIB, Behaviour::Good);
    let (outcome, world) = world.run(Duration::from_secs(60));
    assert_eq!(outcome, Outcome::Complete { size });
    assert_eq!(world.penalised(1), vec![Failure::Stalled]);
    // Provider 2 came from a second lookup that skipped the cache, and resumed where
    // provider 1's verified bytes ended.
    assert_eq!(world.lookups.len(), 2);
    assert!(world.lookups[1].1, "the second lookup is a refresh");
    let resumed: Vec<&Range<u64>> = world
        .gets
        .iter()
        .filter(|(p, _)| *p == key(2))
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        resumed.first().map(|r| r.start),
        Some(stall_at),
        "gets: {:?}",
        world.gets
    );
    // Given up at the stall timeout, not later.
    let stalled_after = stall_at / (64 * KIB);
    assert!(world.elapsed() < Duration::from_millis(stalled_after + 3000 + 1000));
}

#[test]
fn a_hash_nobody_has_is_not_found_after_the_find_timeout() {
    let world = World::new(MIB, SizeHint::Unknown, Vec::new(), 0);
    let (outcome, world) = world.run(Duration::from_secs(60));
    let Outcome::NotFound { waited } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(waited, config().find_timeout);
    // Asked again every LOOKUP_RETRY, never in a busy loop.
    let expected = (config().find_timeout.as_millis() / LOOKUP_RETRY.as_millis()) as usize;
    assert!(
        (expected..=expected + 1).contains(&world.lookups.len()),
        "{} lookups",
        world.lookups.len()
    );
    assert!(world.gets.is_empty());
}

#[test]
fn providers_that_all_fail_end_in_providers_failed() {
    let world = World::new(4 * MIB, SizeHint::Unknown, Vec::new(), 0)
        .provider(1, 64 * KIB, Behaviour::CorruptFrom(0))
        .provider(2, 64 * KIB, Behaviour::Gone)
        .answers(vec![vec![1, 2]]);
    let (outcome, world) = world.run(Duration::from_secs(60));
    assert!(
        matches!(outcome, Outcome::ProvidersFailed { tried: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(world.penalised(1), vec![Failure::Corrupt]);
    assert_eq!(world.penalised(2), vec![Failure::Unreachable]);
}

#[test]
fn present_bytes_are_never_fetched_and_the_readers_start_comes_first() {
    let size = 12 * MIB;
    let present = vec![0..2 * MIB, 8 * MIB..9 * MIB];
    let wanted = 5 * MIB + 100;
    let world = World::new(size, SizeHint::Unknown, present, wanted)
        .provider(1, 64 * KIB, Behaviour::Good)
        .answers(vec![vec![1]]);
    let (outcome, world) = world.run(Duration::from_secs(60));
    assert_eq!(outcome, Outcome::Complete { size });
    assert_eq!(
        world.gets[0].1.start,
        5 * MIB,
        "first range starts at the reader's group"
    );
    let fetched: u64 = world.gets.iter().map(|(_, r)| r.end - r.start).sum();
    assert_eq!(fetched, size - 3 * MIB);
}

#[test]
fn a_claimed_size_skips_the_proof_and_a_wrong_claim_is_caught() {
    let size = 2 * MIB;
    let world = World::new(size, SizeHint::Claimed(size), Vec::new(), 0)
        .provider(1, 64 * KIB, Behaviour::Good)
        .answers(vec![vec![1]]);
    let (outcome, world) = world.run(Duration::from_secs(10));
    assert_eq!(outcome, Outcome::Complete { size });
    // Connect (2 ms) then bytes at once: no size round trip.
    assert_eq!(world.gets.len(), 1);

    // A manifest claiming the wrong size: the honest provider states the real one, the
    // plan has it proven, and ends with WrongSize without blaming the provider.
    let world = World::new(size, SizeHint::Claimed(size + 10), Vec::new(), 0)
        .provider(1, 64 * KIB, Behaviour::StatesSize(size))
        .answers(vec![vec![1]]);
    let (outcome, world) = world.run(Duration::from_secs(10));
    assert_eq!(
        outcome,
        Outcome::WrongSize {
            claimed: size + 10,
            proven: size
        }
    );
    assert!(world.penalties.is_empty(), "{:?}", world.penalties);
}

#[test]
fn a_provider_stating_another_size_than_the_proven_one_is_corrupt() {
    let size = 6 * MIB;
    let world = World::new(size, SizeHint::Unknown, Vec::new(), 0)
        .provider(1, 64 * KIB, Behaviour::StatesSize(size + 1))
        .provider(2, 64 * KIB, Behaviour::Good)
        .answers(vec![vec![1, 2]]);
    let (outcome, world) = world.run(Duration::from_secs(10));
    assert_eq!(outcome, Outcome::Complete { size });
    assert_eq!(world.penalised(1), vec![Failure::Corrupt]);
}

#[test]
fn at_most_max_providers_are_used_and_spares_replace_failures() {
    let size = 16 * MIB;
    let mut world = World::new(size, SizeHint::Unknown, Vec::new(), 0);
    for n in 1..=6 {
        let behaviour = if n <= 3 {
            Behaviour::Silent
        } else {
            Behaviour::Good
        };
        world = world.provider(n, KIB, behaviour);
    }
    let world = world.answers(vec![vec![1, 2, 3, 4, 5, 6]]);
    let (outcome, world) = world.run(Duration::from_secs(60));
    assert_eq!(outcome, Outcome::Complete { size });
    let users: HashSet<ProviderKey> = world.gets.iter().map(|(p, _)| *p).collect();
    assert_eq!(users, [key(4), key(5), key(6)].into_iter().collect());
    assert_eq!(world.penalties.len(), 3);
}

#[test]
fn one_provider_gets_one_request_and_several_share_the_blob() {
    let size = 64 * MIB;
    let world = World::new(size, SizeHint::Unknown, Vec::new(), 0)
        .provider(1, 256 * KIB, Behaviour::Good)
        .answers(vec![vec![1]]);
    let (outcome, world) = world.run(Duration::from_secs(60));
    assert_eq!(outcome, Outcome::Complete { size });
    assert_eq!(
        world.gets,
        vec![(key(1), 0..size)],
        "one request, as a plain download"
    );

    let mut world = World::new(size, SizeHint::Unknown, Vec::new(), 0);
    for n in 1..=4 {
        world = world.provider(n, 64 * KIB, Behaviour::Good);
    }
    let (outcome, world) = world
        .answers(vec![vec![1, 2, 3, 4]])
        .run(Duration::from_secs(60));
    assert_eq!(outcome, Outcome::Complete { size });
    for n in 1..=4 {
        let served = world.served[&key(n)];
        assert!(
            served >= size / 8 && served <= size / 2,
            "provider {n} served {served} of {size}"
        );
    }
    assert!(world.max_in_flight <= PIPELINE);
}

#[test]
#[allow(clippy::single_range_in_vec_init)]
fn missing_ranges_follow_the_grid_and_holes() {
    let plan = FetchPlan::new(
        config(),
        SizeHint::Claimed(10 * MIB),
        vec![MIB..3 * MIB],
        0,
        Instant::now(),
    );
    let queue: Vec<Range<u64>> = plan.queue.iter().cloned().collect();
    // No provider yet: every missing range is queued.
    assert_eq!(
        queue,
        vec![
            0..MIB,
            3 * MIB..4 * MIB,
            4 * MIB..8 * MIB,
            8 * MIB..10 * MIB
        ]
    );
    assert_eq!(complement(&[0..5], 5), Vec::<Range<u64>>::new());
    assert_eq!(complement(&[2..3], 5), vec![0..2, 3..5]);
}

#[test]
fn banned_providers_only_end_the_fetch_after_one_fresh_lookup() {
    let mut plan = FetchPlan::new(config(), SizeHint::Unknown, Vec::new(), 0, Instant::now());
    let start = Instant::now();
    assert_eq!(plan.poll_action(), Some(Action::Lookup { refresh: false }));
    let excluded = || Event::Excluded {
        count: 1,
        detail: "banned: served bytes that failed verification".into(),
    };
    plan.handle(excluded(), start);
    plan.handle(Event::LookupDone, start);
    assert!(
        plan.outcome().is_none(),
        "the cache may be stale: ask the DHT"
    );
    let retry = plan.poll_timeout().expect("a retry");
    plan.handle_timeout(retry);
    assert_eq!(plan.poll_action(), Some(Action::Lookup { refresh: true }));
    plan.handle(excluded(), retry);
    plan.handle(Event::LookupDone, retry);
    assert!(
        matches!(plan.outcome(), Some(Outcome::ProvidersFailed { last, .. }) if last.contains("banned")),
        "{:?}",
        plan.outcome()
    );
    assert!(
        retry - start < Duration::from_secs(1),
        "no wait for the find timeout"
    );
}
