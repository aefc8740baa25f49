//! The names a model's params may use, and the closest one to a name that is not among them.
//!
//! Checked where params are written (the API, the CLI, an import), never where a stored row is
//! read, so that a database written by another version keeps loading.

use serde_json::Value;

/// Every name a model's params may use. A provider's own request fields go under `extra`, so
/// that a typo here is refused instead of silently meaning nothing.
pub const KNOWN_PARAMS: [&str; 17] = [
    "temperature",
    "maxTokens",
    "seed",
    "extra",
    "endpoint",
    "baseUrl",
    "apiKeyEnv",
    "latencyMs",
    "latencyP99Ms",
    "failRate",
    "answers",
    "maxConcurrency",
    "rpm",
    "tpm",
    "price",
    "budgetUsdPerDay",
    "batch",
];

/// Refuses a param whose name promptq does not know, suggesting the closest known one. Called
/// where params are written, never where a row is read: a stored model with an old or unknown
/// param keeps loading and running.
pub fn check_param_names(params: &Value) -> Result<(), String> {
    let Value::Object(map) = params else {
        return Ok(());
    };
    let Some(unknown) = map.keys().find(|k| !KNOWN_PARAMS.contains(&k.as_str())) else {
        return Ok(());
    };
    let hint = match closest_param(unknown) {
        Some(known) => format!("did you mean `{known}`?"),
        None => format!("known params: {}", KNOWN_PARAMS.join(", ")),
    };
    Err(format!(
        "unknown param `{unknown}`; {hint} (a provider's own request fields go under `extra`)"
    ))
}

/// The known param nearest to `name` by edit distance, ignoring case, `_` and `-`
/// (`max_tokens` is `maxTokens`), if it is near enough to be the one meant.
fn closest_param(name: &str) -> Option<&'static str> {
    let fold = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = fold(name);
    KNOWN_PARAMS
        .iter()
        .map(|known| (levenshtein(&wanted, &fold(known)), *known))
        .filter(|(distance, known)| *distance <= (known.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Edits (insert, delete, substitute) between two short strings.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ModelSpec;
    use serde_json::{Map, json};

    #[test]
    fn unknown_param_names_are_refused_with_the_closest_one() {
        for (params, suggestion) in [
            (json!({"temprature": 0.2}), "did you mean `temperature`?"),
            (json!({"latncyMs": 5}), "did you mean `latencyMs`?"),
            (json!({"max_tokens": 5}), "did you mean `maxTokens`?"),
            (json!({"RPM": 5}), "did you mean `rpm`?"),
            (json!({"top_p": 0.9}), "known params: temperature,"),
        ] {
            let err = check_param_names(&params).expect_err(&params.to_string());
            assert!(err.contains(suggestion), "{err}");
            assert!(err.contains("go under `extra`"), "{err}");
        }
        let every: Map<String, Value> = KNOWN_PARAMS
            .iter()
            .map(|k| ((*k).to_owned(), json!(1)))
            .collect();
        assert_eq!(check_param_names(&Value::Object(every)), Ok(()));
        assert_eq!(check_param_names(&Value::Null), Ok(()));
        // Reading never refuses a name: a stored row with an unknown param still loads.
        assert!(ModelSpec::read(&json!({"temprature": 0.2})).check().is_ok());
    }
}
