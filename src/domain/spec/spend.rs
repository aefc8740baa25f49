//! A model's money params read: its price (`params.price`) and its daily budget
//! (`params.budgetUsdPerDay`).
//!
//! Strict, and naming the field: a price that silently meant something else would misstate
//! every cost and let a budget be overspent. They fail apart from the call, so that a stored
//! model whose price cannot be read still runs (its answers' cost unknown).

use serde_json::{Map, Value};

use crate::domain::price::{DEFAULT_BATCH_DISCOUNT, Price};

/// What a model's answers cost and how much it may spend a day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub price: Option<Price>,
    /// US dollars a day; calls stop for the day once the model's answers cost this much.
    pub budget_usd_per_day: Option<f64>,
}

/// Reads `price` and `budgetUsdPerDay` from a model's params.
pub(super) fn read_spend(map: &Map<String, Value>) -> Result<Spend, String> {
    let price = match map.get("price") {
        None | Some(Value::Null) => None,
        Some(Value::Object(price)) => Some(read_price(price)?),
        Some(other) => {
            return Err(format!(
                "params.price must be an object like {{\"input\": 2.5, \"output\": 10}} \
                 (USD per million tokens), not {other}"
            ));
        }
    };
    let budget_usd_per_day = dollars(map.get("budgetUsdPerDay"), "budgetUsdPerDay")?;
    Ok(Spend {
        price,
        budget_usd_per_day,
    })
}

const PRICE_FIELDS: [&str; 4] = ["input", "output", "cachedInput", "batchDiscount"];

fn read_price(price: &Map<String, Value>) -> Result<Price, String> {
    if let Some(unknown) = price.keys().find(|k| !PRICE_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "params.price.{unknown} is not a price field; known: {}",
            PRICE_FIELDS.join(", ")
        ));
    }
    let required = |field: &str| {
        dollars(price.get(field), &format!("price.{field}"))?
            .ok_or_else(|| format!("params.price.{field} is missing (USD per million tokens)"))
    };
    let input = required("input")?;
    let output = required("output")?;
    let cached_input = dollars(price.get("cachedInput"), "price.cachedInput")?;
    let batch_discount = dollars(price.get("batchDiscount"), "price.batchDiscount")?
        .unwrap_or(DEFAULT_BATCH_DISCOUNT);
    if batch_discount > 1.0 {
        return Err(format!(
            "params.price.batchDiscount is the share taken off (0.5 = half price), between 0 \
             and 1, not {batch_discount}"
        ));
    }
    Ok(Price {
        input,
        output,
        cached_input,
        batch_discount,
    })
}

/// A non-negative finite number (written as a number or a numeric string), or none.
fn dollars(value: Option<&Value>, field: &str) -> Result<Option<f64>, String> {
    let number = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match number {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
        _ => Err(format!(
            "params.{field} must be a number of at least 0, not {}",
            value.map_or_else(String::new, Value::to_string)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(params: Value) -> Result<Spend, String> {
        read_spend(params.as_object().expect("an object"))
    }

    #[test]
    fn reads_a_price_and_a_budget() {
        let spend = read(json!({
            "price": {"input": 2.5, "output": "10", "cachedInput": 1.25},
            "budgetUsdPerDay": 3
        }))
        .unwrap();
        let price = spend.price.unwrap();
        assert_eq!((price.input, price.output), (2.5, 10.0));
        assert_eq!(price.cached_input, Some(1.25));
        assert_eq!(price.batch_discount, DEFAULT_BATCH_DISCOUNT);
        assert_eq!(spend.budget_usd_per_day, Some(3.0));
        assert_eq!(read(json!({})), Ok(Spend::default()));
    }

    #[test]
    fn bad_prices_are_refused_with_the_field_named() {
        for (params, field) in [
            (json!({"price": 3}), "params.price must be an object"),
            (
                json!({"price": {"output": 1}}),
                "params.price.input is missing",
            ),
            (
                json!({"price": {"input": -1, "output": 1}}),
                "params.price.input",
            ),
            (
                json!({"price": {"input": "x", "output": 1}}),
                "params.price.input",
            ),
            (
                json!({"price": {"input": 1, "output": [1]}}),
                "params.price.output",
            ),
            (
                json!({"price": {"input": 1, "output": 1, "cachedInput": -0.5}}),
                "params.price.cachedInput",
            ),
            (
                json!({"price": {"input": 1, "output": 1, "batchDiscount": 2}}),
                "params.price.batchDiscount",
            ),
            (
                json!({"price": {"input": 1, "output": 1, "cached": 1}}),
                "params.price.cached is not a price field",
            ),
            (json!({"budgetUsdPerDay": -5}), "params.budgetUsdPerDay"),
            (json!({"budgetUsdPerDay": "lots"}), "params.budgetUsdPerDay"),
        ] {
            let err = read(params.clone()).expect_err(&params.to_string());
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
