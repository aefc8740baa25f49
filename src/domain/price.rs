//! What an answer costs: a model's list price (`params.price`) applied to the answer's token
//! counts, at the provider's batch discount when the answer came through a Batch API.
//!
//! Pure arithmetic, no I/O. A provider that reports its own charge (OpenRouter's `usage.cost`)
//! is believed over this computation: it knows the discounts, routing and caching it applied.
//! Without a price, or without the token counts to apply it to, the cost is unknown (`None`),
//! never zero: a zero would read as "free" in every sum.

use super::NewResponse;

/// The batch discount when `params.price.batchDiscount` is not set: OpenAI's Batch API (and
/// the compatible ones) charge half the list price.
pub const DEFAULT_BATCH_DISCOUNT: f64 = 0.5;

/// How the reason of a model stopped by a daily budget begins.
pub const BUDGET_REACHED: &str = "daily budget reached";

/// A model's list price, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Per million prompt (input) tokens not served from the provider's cache.
    pub input: f64,
    /// Per million completion (output) tokens, reasoning tokens included (providers bill
    /// them as output and count them in `completion_tokens`).
    pub output: f64,
    /// Per million prompt tokens served from the provider's cache; `None` charges them at
    /// `input`.
    pub cached_input: Option<f64>,
    /// The share of the price taken off for an answer served through a Batch API, from 0
    /// (no discount) to 1 (free).
    pub batch_discount: f64,
}

/// Token counts an answer is charged for; `None` where the provider reported nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: Option<i64>,
    pub completion: Option<i64>,
    /// Of `prompt`, those served from the provider's cache.
    pub cached: Option<i64>,
}

impl Tokens {
    pub fn of(response: &NewResponse) -> Tokens {
        Tokens {
            prompt: response.prompt_tokens,
            completion: response.completion_tokens,
            cached: response.cached_tokens,
        }
    }
}

/// The cost in US dollars of an answer with `tokens` at `price`; with `via_batch`, at the
/// batch discount. `None` when the provider reported neither prompt nor completion tokens.
///
/// Cached tokens are part of the prompt tokens (OpenAI's `prompt_tokens_details`): they are
/// charged once, at `cachedInput`, and the rest of the prompt at `input`.
pub fn answer_cost(price: &Price, tokens: &Tokens, via_batch: bool) -> Option<f64> {
    if tokens.prompt.is_none() && tokens.completion.is_none() {
        return None;
    }
    let count = |n: Option<i64>| n.unwrap_or(0).max(0) as f64;
    Some(tokens_cost(
        price,
        count(tokens.prompt),
        count(tokens.cached),
        count(tokens.completion),
        via_batch,
    ))
}

/// The cost in US dollars of `prompt` tokens (of which `cached` from the cache) and
/// `completion` tokens at `price`; counts may be fractional (averages, for an estimate).
pub fn tokens_cost(
    price: &Price,
    prompt: f64,
    cached: f64,
    completion: f64,
    via_batch: bool,
) -> f64 {
    // A cache report larger than the prompt would make the uncached part negative.
    let cached = cached.clamp(0.0, prompt.max(0.0));
    let list = (prompt - cached) * price.input
        + cached * price.cached_input.unwrap_or(price.input)
        + completion.max(0.0) * price.output;
    let factor = if via_batch {
        1.0 - price.batch_discount
    } else {
        1.0
    };
    list * factor / 1_000_000.0
}

/// Fills in the cost of `response` from `price` when the provider reported none; a reported
/// cost is kept as it is.
pub fn settle_cost(response: &mut NewResponse, price: Option<&Price>, via_batch: bool) {
    if response.cost_usd.is_none() {
        response.cost_usd = price.and_then(|p| answer_cost(p, &Tokens::of(response), via_batch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: Price = Price {
        input: 2.0,
        output: 8.0,
        cached_input: Some(0.5),
        batch_discount: 0.5,
    };

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn cached_tokens_are_charged_once_at_the_cached_price() {
        let tokens = Tokens {
            prompt: Some(1_000),
            completion: Some(500),
            cached: Some(400),
        };
        // 600 × 2 + 400 × 0.5 + 500 × 8 = 5400 per million
        assert!(close(answer_cost(&PRICE, &tokens, false), 0.0054));
        assert!(close(answer_cost(&PRICE, &tokens, true), 0.0027));
        let no_cached_price = Price {
            cached_input: None,
            ..PRICE
        };
        // 1000 × 2 + 500 × 8
        assert!(close(answer_cost(&no_cached_price, &tokens, false), 0.006));
        let overreported = Tokens {
            cached: Some(5_000),
            ..tokens
        };
        assert!(close(answer_cost(&PRICE, &overreported, false), 0.0045));
    }

    #[test]
    fn no_tokens_is_an_unknown_cost_and_a_reported_cost_wins() {
        assert_eq!(answer_cost(&PRICE, &Tokens::default(), false), None);
        let mut reported = NewResponse {
            prompt_tokens: Some(10),
            cost_usd: Some(0.25),
            ..NewResponse::default()
        };
        settle_cost(&mut reported, Some(&PRICE), false);
        assert_eq!(reported.cost_usd, Some(0.25));
        let mut unpriced = NewResponse {
            prompt_tokens: Some(10),
            ..NewResponse::default()
        };
        settle_cost(&mut unpriced, None, false);
        assert_eq!(unpriced.cost_usd, None);
        settle_cost(&mut unpriced, Some(&PRICE), false);
        assert!(close(unpriced.cost_usd, 0.00002));
    }
}
