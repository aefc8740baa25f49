//! Whether a mention rate changed between two batches by more than sampling noise.
//!
//! The rate is k of N runs in each batch. The test is two-sided at the 5 % level: a pooled
//! two-proportion z-test when every expected cell of the 2×2 table (mentioned / not, per batch)
//! is at least 5, where its normal approximation holds; else Fisher's exact test, which is
//! exact for any N (two-sided: the sum of the probabilities of every table with the same
//! margins that is no more likely than the one observed). See docs/insights.md.

use serde::Serialize;

/// The level below which a change counts as significant.
pub const ALPHA: f64 = 0.05;

/// Which test decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Test {
    ZTest,
    Fisher,
}

/// The outcome of comparing k1/n1 (before) with k2/n2 (now).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub p_value: f64,
    pub test: Test,
    pub significant: bool,
}

/// Compares two proportions; `None` when a batch has no runs (nothing to compare).
pub fn compare(k1: u64, n1: u64, k2: u64, n2: u64) -> Option<Verdict> {
    if n1 == 0 || n2 == 0 || k1 > n1 || k2 > n2 {
        return None;
    }
    let (n1f, n2f, mentioned) = (n1 as f64, n2 as f64, (k1 + k2) as f64);
    let total = n1f + n2f;
    let missed = total - mentioned;
    let smallest_expected = n1f.min(n2f) * mentioned.min(missed) / total;
    let (p_value, test) = if smallest_expected >= 5.0 {
        (z_test(k1 as f64, n1f, k2 as f64, n2f), Test::ZTest)
    } else {
        (fisher(k1, n1, k2, n2), Test::Fisher)
    };
    let p_value = p_value.clamp(0.0, 1.0);
    Some(Verdict {
        p_value,
        test,
        significant: p_value < ALPHA,
    })
}

fn z_test(k1: f64, n1: f64, k2: f64, n2: f64) -> f64 {
    let pooled = (k1 + k2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return 1.0;
    }
    let z = (k2 / n2 - k1 / n1) / se;
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The complementary error function (W. H. Press et al., Numerical Recipes, `erfcc`:
/// fractional error below 1.2e-7 everywhere), for x ≥ 0.
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t * poly.exp()
}

fn fisher(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    let total = (n1 + n2) as usize;
    // ln(i!) for i = 0..=total.
    let mut ln_fact = vec![0.0f64; total + 1];
    for i in 1..=total {
        ln_fact[i] = ln_fact[i - 1] + (i as f64).ln();
    }
    let ln_choose =
        |n: u64, k: u64| ln_fact[n as usize] - ln_fact[k as usize] - ln_fact[(n - k) as usize];
    let mentioned = k1 + k2;
    let ln_all = ln_choose(n1 + n2, mentioned);
    let p = |x: u64| (ln_choose(n1, x) + ln_choose(n2, mentioned - x) - ln_all).exp();
    let observed = p(k1);
    let low = mentioned.saturating_sub(n2);
    let high = n1.min(mentioned);
    (low..=high)
        .map(p)
        .filter(|&px| px <= observed * (1.0 + 1e-7))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn z_test_on_known_answers() {
        // Values computed independently (Python: math.erfc on the pooled z).
        let v = compare(45, 100, 60, 100).unwrap();
        assert_eq!(v.test, Test::ZTest);
        assert!(close(v.p_value, 0.033672), "{v:?}");
        assert!(v.significant);
        let v = compare(50, 100, 55, 100).unwrap();
        assert!(close(v.p_value, 0.478950) && !v.significant, "{v:?}");
        let v = compare(20, 40, 30, 40).unwrap();
        assert!(close(v.p_value, 0.020921) && v.significant, "{v:?}");
    }

    #[test]
    fn fisher_for_small_samples() {
        // Fisher's lady tasting tea: 3 of 4 against 1 of 4, p = 0.4857 (two-sided).
        let v = compare(3, 4, 1, 4).unwrap();
        assert_eq!(v.test, Test::Fisher);
        assert!(close(v.p_value, 0.485714) && !v.significant, "{v:?}");
        let v = compare(0, 10, 7, 10).unwrap();
        assert!(close(v.p_value, 0.003096) && v.significant, "{v:?}");
        let v = compare(2, 10, 6, 10).unwrap();
        assert!(close(v.p_value, 0.169802) && !v.significant, "{v:?}");
    }

    #[test]
    fn no_change_and_degenerate_inputs() {
        let v = compare(5, 5, 5, 5).unwrap();
        assert!(close(v.p_value, 1.0) && !v.significant);
        assert!(compare(0, 0, 1, 5).is_none());
        assert!(compare(6, 5, 1, 5).is_none());
        let v = compare(0, 1000, 0, 1000).unwrap();
        assert!(!v.significant);
    }
}
