//! The pace a model's provider allows, learned from its answers, per process.
//!
//! Two sources, best first:
//! - **the request budget a provider reports** on its successful answers
//!   (`x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`): calls spend it, and once
//!   it is spent the model waits for its window to end, i.e. the reported reset or, when the
//!   provider names none (LiteLLM's proxy), one window after the first call of the current
//!   window. The remaining count is read less the calls still in flight, which it may not have
//!   counted yet. When such a wait ends, one call goes first: the provider's window may end
//!   later than the one guessed here (a window counted by the calendar minute counts a call
//!   sent just before the minute in the next one), and a refused probe waits a second, then
//!   two, and so on, where a burst of calls would have drawn a burst of 429s.
//! - **the rate a provider accepted before it refused**, when it says nothing at all (no
//!   budget on its answers, no wait on its 429): after such a 429 the model's calls are spaced
//!   at the rate it accepted over the last minute (measured over the part of that minute in
//!   which it answered, so a burst counts as the burst it was), each further silent 429 to a
//!   call sent after the last doubling doubles the spacing (calls refused together are one
//!   refusal), and each success narrows it a little (AIMD). A 429 that names its wait is
//!   left to that wait. A model with a configured `rpm` keeps its `rpm` instead.
//!
//! The learned token count per call feeds the `tpm` reservation's estimate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::ModelId;
use crate::providers::RateLimitHint;

/// The window a budget with no reported reset is assumed to last.
const WINDOW: Duration = Duration::from_secs(60);
/// How many calls a reported remaining count is taken to overstate at first: some providers
/// count it before the call (LiteLLM's proxy, which also admits one fewer than its limit).
/// Raised by each 429 that came while the budget still read as open.
const OVERSTATED: i64 = 2;
/// While one call probes a window after a hold, the others try again this much later.
const PROBE_RETRY: Duration = Duration::from_millis(250);
/// A window's successes are counted in this many buckets of [`BUCKET`].
const BUCKETS: usize = 30;
const BUCKET: Duration = Duration::from_secs(2);

/// One model's learned pace.
#[derive(Default)]
struct ModelPace {
    /// Calls admitted and not yet finished.
    in_flight: i64,
    /// Calls the provider still takes in its window: its last report, less calls sent since.
    budget: Option<i64>,
    last_remaining: Option<u64>,
    /// The budget's size (`x-ratelimit-limit-requests`) and the calls sent in this window:
    /// a remaining count that lags behind calls in flight cannot overspend it.
    limit: Option<i64>,
    sent_in_window: i64,
    /// How many calls the reported remaining count overstates what is left (see [`OVERSTATED`]).
    overstated: Option<i64>,
    /// The first call of the current window here (the window began at or before it).
    window_start: Option<Instant>,
    /// When the provider reported how long until the budget is full again.
    reset_at: Option<Instant>,
    /// No call before this: the budget is spent.
    hold_until: Option<Instant>,
    /// A hold ended and no answer has said the new window is open: one call at a time.
    probing: bool,
    /// How long the last refused probe waited; doubled at each refusal.
    probe_wait: Option<Duration>,
    /// AIMD spacing, once the provider refused without saying why.
    spacing: Option<Duration>,
    /// When the spacing last doubled: refusals of calls sent before then are the same event.
    slowed_at: Option<Instant>,
    next_slot: Option<Instant>,
    /// Successes of the last minute, per two seconds.
    accepted: [u32; BUCKETS],
    accepted_second: u64,
    /// Tokens a call of this model has used (moving average).
    tokens_per_call: Option<f64>,
}

impl ModelPace {
    fn forget_window(&mut self) {
        self.budget = None;
        self.last_remaining = None;
        self.window_start = None;
        self.reset_at = None;
        self.hold_until = None;
        self.sent_in_window = 0;
    }

    /// Whether the window's budget is spent. The cap on calls sent counts from the first call
    /// seen here, not from the provider's window start, so it would cost a model spaced at a
    /// configured `rpm` a few seconds per window: such a model (`capped` false) goes by the
    /// remaining count only.
    fn spent(&self, capped: bool) -> bool {
        let overstated = self.overstated.unwrap_or(OVERSTATED);
        self.budget.is_some_and(|b| b <= 0)
            || (capped
                && self
                    .limit
                    .is_some_and(|limit| self.sent_in_window >= limit - overstated))
    }

    fn count_success(&mut self, second: u64) {
        self.roll(second);
        self.accepted[(second % BUCKETS as u64) as usize] += 1;
    }

    fn accepted_last_window(&mut self, second: u64) -> u32 {
        self.roll(second);
        self.accepted.iter().sum()
    }

    /// How long, of the last window, the provider has been answering: from the oldest bucket
    /// with a success to now, at least one bucket.
    fn answering_span(&mut self, second: u64) -> Duration {
        self.roll(second);
        let buckets = (0..BUCKETS as u64)
            .rev()
            .find(|back| {
                self.accepted[((second + BUCKETS as u64 - back) % BUCKETS as u64) as usize] > 0
            })
            .map_or(1, |back| back + 1);
        BUCKET * buckets as u32
    }

    /// Clears the buckets of the seconds that passed since the last count.
    fn roll(&mut self, second: u64) {
        let passed = second.saturating_sub(self.accepted_second);
        for s in 1..=passed.min(BUCKETS as u64) {
            self.accepted[((self.accepted_second + s) % BUCKETS as u64) as usize] = 0;
        }
        self.accepted_second = self.accepted_second.max(second);
    }
}

type Models = Arc<Mutex<HashMap<ModelId, ModelPace>>>;

/// What the provider answered, as far as pacing goes.
pub enum Answer<'a> {
    Accepted(Option<&'a RateLimitHint>),
    /// A 429; `told` when it named its wait (`Retry-After`, a reset), which then governs.
    Refused {
        told: bool,
    },
}

/// The learned pace of every model of this process.
pub struct Pace {
    models: Models,
    epoch: Instant,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            models: Arc::default(),
            epoch: Instant::now(),
        }
    }
}

/// A call admitted by the pace; counted in flight until dropped.
pub struct Ticket {
    models: Models,
    model: ModelId,
}

impl Ticket {
    /// The call was not made after all: its share of the budget is given back.
    pub fn cancel(self) {
        if let Some(pace) = lock(&self.models).get_mut(&self.model) {
            pace.sent_in_window -= 1;
            if let Some(budget) = &mut pace.budget {
                *budget += 1;
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(pace) = lock(&self.models).get_mut(&self.model) {
            pace.in_flight -= 1;
        }
    }
}

impl Pace {
    /// Admits a call of `model` now or after at most `max_wait` (the ticket and that wait),
    /// or says when to try again. `spaced` is false for a model with a configured `rpm`.
    pub fn try_start(
        &self,
        model: ModelId,
        now: Instant,
        max_wait: Duration,
        spaced: bool,
    ) -> Result<(Ticket, Duration), Instant> {
        let mut models = lock(&self.models);
        let pace = models.entry(model).or_default();
        if let Some(until) = pace.hold_until {
            if until > now {
                return Err(until);
            }
            pace.forget_window();
            pace.probing = true;
        }
        if pace.probing && pace.in_flight > 0 {
            return Err(now + PROBE_RETRY);
        }
        if pace.spent(spaced) {
            let end = pace
                .reset_at
                .or_else(|| pace.window_start.map(|start| start + WINDOW))
                .unwrap_or(now + WINDOW);
            if end > now {
                pace.hold_until = Some(end);
                return Err(end);
            }
            pace.forget_window();
        }
        let mut start = now;
        if spaced && let Some(spacing) = pace.spacing {
            let slot = pace.next_slot.map_or(now, |slot| slot.max(now));
            if slot - now > max_wait {
                return Err(slot - max_wait / 2);
            }
            pace.next_slot = Some(slot + spacing);
            start = slot;
        }
        if let Some(budget) = &mut pace.budget {
            *budget -= 1;
        }
        pace.window_start.get_or_insert(start);
        pace.in_flight += 1;
        pace.sent_in_window += 1;
        drop(models);
        Ok((
            Ticket {
                models: self.models.clone(),
                model,
            },
            start - now,
        ))
    }

    /// Learns from one answer of `model` to a call sent at `sent_at` (its ticket still held).
    pub fn answered(&self, model: ModelId, answer: Answer<'_>, sent_at: Instant, now: Instant) {
        let second = now.saturating_duration_since(self.epoch).as_secs() / 2;
        let mut models = lock(&self.models);
        let pace = models.entry(model).or_default();
        match answer {
            Answer::Accepted(hint) => {
                pace.count_success(second);
                if let Some(spacing) = pace.spacing {
                    // Additive increase: about a tenth faster per window of successes.
                    let per_window = (WINDOW.as_secs_f64() / spacing.as_secs_f64()).max(1.0);
                    pace.spacing = Some(spacing.mul_f64(1.0 - 0.1 / per_window));
                }
                pace.probing = false;
                pace.probe_wait = None;
                let Some(remaining) = hint.and_then(|h| h.remaining_requests) else {
                    return;
                };
                if pace.last_remaining.is_some_and(|last| remaining > last) {
                    // The budget grew back: a new window began before this call.
                    pace.window_start = Some(now);
                    pace.sent_in_window = pace.in_flight;
                }
                if let Some(limit) = hint.and_then(|h| h.limit_requests) {
                    pace.limit = Some(i64::try_from(limit).unwrap_or(i64::MAX));
                }
                pace.last_remaining = Some(remaining);
                let others = (pace.in_flight - 1).max(0);
                let overstated = *pace.overstated.get_or_insert(OVERSTATED);
                pace.budget = Some(
                    i64::try_from(remaining)
                        .unwrap_or(i64::MAX)
                        .saturating_sub(others + overstated),
                );
                pace.reset_at = hint
                    .and_then(|h| h.reset_requests)
                    .and_then(|reset| now.checked_add(reset.min(WINDOW * 60)));
            }
            Answer::Refused { told } => {
                if pace.probing {
                    // The window held for had not ended there yet: try again shortly.
                    let wait = pace
                        .probe_wait
                        .map_or(PROBE_RETRY * 4, |w| (w * 2).min(WINDOW));
                    pace.probe_wait = Some(wait);
                    pace.hold_until = Some(now + wait);
                    return;
                }
                if pace.last_remaining.is_some() {
                    // The provider keeps a budget: it is spent, and if it read as open, the
                    // reported count says more than is left.
                    if !pace.spent(true) {
                        let overstated = pace.overstated.get_or_insert(OVERSTATED);
                        *overstated = (*overstated + 1).min(100);
                    }
                    pace.budget = Some(0);
                    return;
                }
                if told {
                    // The provider named its wait; the pause it sets is the pace.
                    return;
                }
                // Multiplicative decrease, once per refusal: calls that were on their way
                // when the spacing last doubled were sent at the old pace.
                if pace.slowed_at.is_some_and(|at| sent_at < at) {
                    return;
                }
                pace.slowed_at = Some(now);
                // No faster than the provider has been accepting.
                let accepted = pace.accepted_last_window(second).max(1);
                let floor = pace.answering_span(second) / accepted;
                let spacing = pace.spacing.map_or(floor, |s| (s * 2).max(floor));
                pace.spacing = Some(spacing.min(WINDOW));
                pace.next_slot = Some(now + spacing);
            }
        }
    }

    /// Tokens a call of `model` has used, on average, if it has been seen.
    pub fn tokens_per_call(&self, model: ModelId) -> Option<u64> {
        lock(&self.models)
            .get(&model)
            .and_then(|pace| pace.tokens_per_call)
            .map(|tokens| tokens.ceil() as u64)
    }

    pub fn learn_tokens(&self, model: ModelId, tokens: u64) {
        let mut models = lock(&self.models);
        let average = &mut models.entry(model).or_default().tokens_per_call;
        let tokens = tokens as f64;
        *average = Some(average.map_or(tokens, |a| a * 0.7 + tokens * 0.3));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(remaining: u64) -> RateLimitHint {
        RateLimitHint {
            remaining_requests: Some(remaining),
            limit_requests: Some(30),
            ..RateLimitHint::default()
        }
    }

    #[test]
    fn a_spent_budget_holds_until_a_window_after_its_first_call() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let wait = Duration::from_secs(2);
        spend_a_window(&pace, t0);
        let held = pace
            .try_start(1, t0, wait, true)
            .err()
            .expect("budget spent");
        assert_eq!(held, t0 + WINDOW);
        assert!(pace.try_start(1, t0 + WINDOW, wait, true).is_ok());
    }

    /// Spends a budget of 2 calls at `t0` (reported remaining 2 + overstatement), so that the
    /// model is held until a window after `t0`.
    fn spend_a_window(pace: &Pace, t0: Instant) {
        let wait = Duration::from_secs(2);
        let (first, _) = pace.try_start(1, t0, wait, true).unwrap();
        pace.answered(
            1,
            Answer::Accepted(Some(&hint(1 + OVERSTATED as u64))),
            t0,
            t0,
        );
        drop(first);
        let (second, _) = pace.try_start(1, t0, wait, true).unwrap();
        drop(second);
        assert!(pace.try_start(1, t0, wait, true).is_err(), "budget spent");
    }

    #[test]
    fn after_a_hold_one_call_probes_the_new_window_before_the_others_go() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let wait = Duration::from_secs(2);
        spend_a_window(&pace, t0);
        let end = t0 + WINDOW;
        let (probe, _) = pace.try_start(1, end, wait, true).expect("the probe goes");
        let later = pace
            .try_start(1, end, wait, true)
            .err()
            .expect("one at a time");
        assert_eq!(later, end + PROBE_RETRY);
        // The provider answers with a fresh budget: the others go at once.
        pace.answered(1, Answer::Accepted(Some(&hint(29))), end, end);
        drop(probe);
        let ten: Vec<_> = (0..10)
            .map(|_| pace.try_start(1, end, wait, true).expect("window open"))
            .collect();
        assert_eq!(ten.len(), 10);
    }

    #[test]
    fn a_refused_probe_waits_a_second_then_twice_as_long() {
        let pace = Pace::default();
        let t0 = Instant::now();
        let wait = Duration::from_secs(2);
        spend_a_window(&pace, t0);
        let end = t0 + WINDOW;
        let (probe, _) = pace.try_start(1, end, wait, true).unwrap();
        pace.answered(1, Answer::Refused { told: false }, end, end);
        drop(probe);
        let again = pace.try_start(1, end, wait, true).err().expect("held");
        assert_eq!(again, end + Duration::from_secs(1));
        let (probe, _) = pace.try_start(1, again, wait, true).expect("probe again");
        pace.answered(1, Answer::Refused { told: false }, again, again);
        drop(probe);
        let third = pace.try_start(1, again, wait, true).err().expect("held");
        assert_eq!(third, again + Duration::from_secs(2));
        // No spacing was learned from the refusals: the budget explains them.
        assert!(pace.try_start(1, third, wait, true).is_ok());
        pace.answered(1, Answer::Accepted(Some(&hint(29))), third, third);
        let at = pace.try_start(1, third, wait, true).expect("window open");
        assert_eq!(at.1, Duration::ZERO);
    }

    #[test]
    fn a_silent_refusal_spaces_calls_at_the_rate_accepted() {
        let pace = Pace::default();
        let t0 = pace.epoch + Duration::from_secs(20);
        // 30 successes spread over the 10 s before the refusal: 3 a second.
        for i in 0..30u64 {
            let at = t0 - Duration::from_millis(10_000 - i * 333);
            let (ticket, _) = pace.try_start(1, at, Duration::ZERO, true).unwrap();
            pace.answered(1, Answer::Accepted(None), at, at);
            drop(ticket);
        }
        let (ticket, _) = pace.try_start(1, t0, Duration::ZERO, true).unwrap();
        pace.answered(1, Answer::Refused { told: false }, t0, t0);
        drop(ticket);
        let spacing = |pace: &Pace| {
            let first = pace
                .try_start(1, t0, Duration::from_secs(600), true)
                .unwrap()
                .1;
            let second = pace
                .try_start(1, t0, Duration::from_secs(600), true)
                .unwrap()
                .1;
            second - first
        };
        let once = spacing(&pace);
        assert!(
            once >= Duration::from_millis(330) && once <= Duration::from_millis(400),
            "{once:?}"
        );
        // A second silent refusal doubles it.
        pace.answered(1, Answer::Refused { told: false }, t0, t0);
        assert!(spacing(&pace) >= once * 2, "{:?}", spacing(&pace));
    }

    #[test]
    fn refusals_of_calls_sent_together_slow_the_pace_once() {
        let pace = Pace::default();
        let t0 = pace.epoch + Duration::from_secs(20);
        let sent = t0 - Duration::from_millis(500);
        let tickets: Vec<_> = (0..16)
            .map(|_| pace.try_start(1, sent, Duration::ZERO, true).unwrap())
            .collect();
        for (i, ticket) in tickets.into_iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            pace.answered(1, Answer::Refused { told: false }, sent, at);
            drop(ticket);
        }
        // One refusal with nothing accepted: the floor, one bucket (2 s), not 2 s × 2^15.
        let spacing = lock(&pace.models).get(&1).and_then(|p| p.spacing);
        assert_eq!(spacing, Some(BUCKET));
    }

    #[test]
    fn a_refusal_that_names_its_wait_leaves_the_spacing_alone() {
        let pace = Pace::default();
        let t0 = pace.epoch + Duration::from_secs(5);
        let (ticket, _) = pace.try_start(1, t0, Duration::ZERO, true).unwrap();
        pace.answered(1, Answer::Refused { told: true }, t0, t0);
        drop(ticket);
        assert!(pace.try_start(1, t0, Duration::ZERO, true).is_ok());
        assert!(pace.try_start(1, t0, Duration::ZERO, true).is_ok());
    }
}
