//! [`Alerts`]: the alert outbox, the same on both backends: a dedupe key makes one alert
//! however often or concurrently it is written, concurrent claimers never share an alert, and
//! every mark is fenced by the attempt that claimed it.

use std::time::Duration as StdDuration;

use promptq::store::{AlertKind, AlertStatus, Alerts, NewAlert};

use super::*;

const LEASE: StdDuration = StdDuration::from_secs(60);

fn alert(key: &str) -> NewAlert {
    NewAlert {
        dedupe_key: key.to_owned(),
        kind: AlertKind::Failures,
        batch_key: Some("2025-10-14".into()),
        message: format!("alert {key}"),
        details: serde_json::json!({"key": key}),
    }
}

pub(super) async fn alerts_are_created_once_per_key_even_concurrently<
    D: Backend + Alerts + Clone + 'static,
>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    let first = store
        .alert_insert(&alert("failures@a"), t0())
        .await
        .unwrap();
    assert!(first.is_some());
    let again = store
        .alert_insert(&alert("failures@a"), t0())
        .await
        .unwrap();
    assert_eq!(again, None, "a taken key creates nothing");

    // Eight writers of one key at once: one row.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.alert_insert(&alert("deadman@b"), t0()).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap().is_some());
    }
    assert_eq!(created, 1);
    let counts = store.alerts_count().await.unwrap();
    assert_eq!((counts.pending, counts.failed, counts.delivered), (2, 0, 0));
    let recent = store.alerts_recent(10).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].dedupe_key, "deadman@b", "newest first");
    assert_eq!(recent[1].details, serde_json::json!({"key": "failures@a"}));
    assert_eq!(recent[1].status, AlertStatus::Pending);
}

pub(super) async fn concurrent_alert_claimers_take_each_alert_once<
    D: Backend + Alerts + Clone + 'static,
>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    for i in 0..30 {
        store
            .alert_insert(&alert(&format!("k{i}")), t0())
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.alerts_claim(4, t0(), LEASE).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                for a in claimed {
                    assert_eq!(a.status, AlertStatus::Delivering);
                    assert_eq!(a.attempts, 1);
                    assert!(store.alert_delivered(a.id, a.attempts, t0()).await.unwrap());
                    mine.push(a.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        (all.len(), distinct.len()),
        (30, 30),
        "each alert claimed once"
    );
    assert_eq!(store.alerts_count().await.unwrap().delivered, 30);
}

pub(super) async fn alert_marks_are_fenced_by_attempt_and_leases_expire<D: Backend + Alerts>(
    db: &Db<D>,
) {
    let store = &db.store;
    let id = store
        .alert_insert(&alert("failures@c"), t0())
        .await
        .unwrap()
        .unwrap();
    // Not due before its time.
    assert!(
        store
            .alerts_claim(5, t0() - Duration::seconds(1), LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.alerts_claim(5, t0(), LEASE).await.unwrap();
    assert_eq!(first.len(), 1);
    // Held by its lease.
    assert!(store.alerts_claim(5, t0(), LEASE).await.unwrap().is_empty());
    // The attempt fails: back to pending, due later, with its error.
    let later = t0() + Duration::seconds(30);
    assert!(
        store
            .alert_retry(id, 1, later, "answered 500")
            .await
            .unwrap()
    );
    assert!(store.alerts_claim(5, t0(), LEASE).await.unwrap().is_empty());
    let second = store.alerts_claim(5, later, LEASE).await.unwrap();
    assert_eq!(second[0].attempts, 2);
    assert_eq!(second[0].last_error.as_deref(), Some("answered 500"));
    // Its deliverer dies: once the lease expires another claim takes it over, and the dead
    // attempt can no longer mark it.
    let after_lease = later + Duration::seconds(61);
    let third = store.alerts_claim(5, after_lease, LEASE).await.unwrap();
    assert_eq!(third[0].attempts, 3);
    assert!(!store.alert_delivered(id, 2, after_lease).await.unwrap());
    assert!(!store.alert_failed(id, 2, "stale").await.unwrap());
    assert!(store.alert_failed(id, 3, "answered 404").await.unwrap());
    let counts = store.alerts_count().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (0, 1));
    // Failed for good: never claimed again.
    let far = after_lease + Duration::days(1);
    assert!(store.alerts_claim(5, far, LEASE).await.unwrap().is_empty());
    let stored = &store.alerts_recent(1).await.unwrap()[0];
    assert_eq!(
        (stored.status, stored.last_error.as_deref()),
        (AlertStatus::Failed, Some("answered 404"))
    );
}
