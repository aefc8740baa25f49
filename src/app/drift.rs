//! The text half of drift: loads the two batches' answers and compares them per prompt ×
//! model (see `insights::drift`); the report adds each tracker's terms added and dropped.

use std::collections::BTreeMap;

use super::{App, AppResult};
use crate::insights::drift::{self, RunText, TextDrift};
use crate::store::ResponseFilter;

impl App {
    /// The text similarity of two batches' answers per prompt × model. Reads only these two
    /// batches, a page at a time, so its cost does not grow with the history.
    pub(super) async fn text_drift(
        &self,
        now: &str,
        before: &str,
    ) -> AppResult<BTreeMap<(i64, i64), TextDrift>> {
        let load = async |key: &str| -> AppResult<Vec<(i64, i64, String)>> {
            let mut export = self.export_responses(ResponseFilter {
                batch_key: Some(key.to_owned()),
                ..Default::default()
            });
            let mut out = Vec::new();
            while let Some(page) = export.next_page().await? {
                out.extend(page.into_iter().map(|r| (r.prompt_id, r.model_id, r.text)));
            }
            Ok(out)
        };
        let (now, before) = (load(now).await?, load(before).await?);
        Ok(drift::text_drift(&runs(&now), &runs(&before)))
    }
}

fn runs(rows: &[(i64, i64, String)]) -> Vec<RunText<'_>> {
    rows.iter()
        .map(|(prompt_id, model_id, text)| RunText {
            prompt_id: *prompt_id,
            model_id: *model_id,
            text,
        })
        .collect()
}
