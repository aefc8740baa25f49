//! The worker registry: counts, and (PostgreSQL) the jobs of a worker whose session died.

use super::*;
use promptq::store::workers::{NewWorker, WorkerTotals, Workers};
use promptq::store::{Jobs, Queue};

fn worker(concurrency: usize) -> NewWorker {
    NewWorker {
        host: "test-host".to_owned(),
        pid: 4242,
        concurrency,
    }
}

pub(super) async fn workers_register_report_and_stop<D: Backend>(db: &Db<D>) {
    let store = db.store.clone();
    let now = t0();
    let a = store.worker_register(&worker(10), now).await.unwrap();
    let b = store.worker_register(&worker(5), now).await.unwrap();
    assert_ne!(a, b);
    assert_eq!(store.worker_beat(a, 7, 12, now).await.unwrap(), a);
    let within = std::time::Duration::from_secs(30);
    let live = store.workers_live(now, within).await.unwrap();
    assert_eq!(live.iter().map(|w| w.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(
        (live[0].running, live[0].held, live[0].concurrency),
        (7, 12, 10)
    );
    assert_eq!(live[0].host, "test-host");
    assert_eq!(
        WorkerTotals::of(&live),
        WorkerTotals {
            live: 2,
            slots: 15,
            running: 7,
            waiting_for_slot: 5
        }
    );
    // One not heard from for longer than `within` is not listed; a stopped one neither.
    let later = now + Duration::seconds(20);
    store.worker_beat(a, 1, 1, later).await.unwrap();
    let live = store
        .workers_live(later + Duration::seconds(15), within)
        .await
        .unwrap();
    assert_eq!(live.iter().map(|w| w.id).collect::<Vec<_>>(), vec![a]);
    store.worker_stop(a, later).await.unwrap();
    assert!(
        store
            .workers_live(later + Duration::seconds(15), within)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(super) async fn claims_carry_their_worker_and_live_workers_keep_their_jobs<D: Backend>(
    db: &Db<D>,
) {
    let store = db.store.clone();
    seeded(&store, 1, 4, 1).await;
    let me = store.worker_register(&worker(4), t0()).await.unwrap();
    let lease = std::time::Duration::from_secs(30);
    let claimed = store
        .jobs_claim_except(ClaimSize::exactly(4), t0(), lease, &[], Some(me))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    // A live worker (this one) is never taken for a dead one, however often anyone looks.
    for _ in 0..3 {
        assert!(store.jobs_rescue_orphaned(t0()).await.unwrap().is_empty());
    }
    let still = store
        .jobs_list(
            &JobFilter {
                status: Some(JobStatus::Processing),
                ..JobFilter::default()
            },
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(still.len(), 4);
}

/// PostgreSQL: a worker registered through another connection pool, whose session then ends
/// without a word (as a killed process's does), has its jobs handed back at once; a worker
/// with no lock (behind a pooler) and jobs claimed by no worker are left to their lease.
/// Rescue passes, 50 ms apart, until one hands jobs back (at most 5 s): the server frees a
/// dead session's worker lock a moment after the session ends.
async fn rescue_once_the_lock_is_free(store: &PostgresStore) -> Vec<promptq::store::Rescued> {
    for _ in 0..100 {
        let rescued = store.jobs_rescue_orphaned(t0()).await.unwrap();
        if !rescued.is_empty() {
            return rescued;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Vec::new()
}

pub(super) async fn dead_workers_jobs_come_back_at_once(db: &Db<PostgresStore>) {
    let store = db.store.clone();
    seeded(&store, 1, 6, 1).await;
    let lease = std::time::Duration::from_secs(3600);
    let survivor = store.worker_register(&worker(2), t0()).await.unwrap();
    let mine = store
        .jobs_claim_except(ClaimSize::exactly(2), t0(), lease, &[], Some(survivor))
        .await
        .unwrap();
    let anonymous = store.jobs_claim(1, t0(), lease).await.unwrap();

    let doomed_store = reopen(db).await;
    let doomed = doomed_store
        .worker_register(&worker(3), t0())
        .await
        .unwrap();
    let theirs = doomed_store
        .jobs_claim_except(ClaimSize::exactly(3), t0(), lease, &[], Some(doomed))
        .await
        .unwrap();
    assert_eq!((mine.len(), anonymous.len(), theirs.len()), (2, 1, 3));
    assert!(store.jobs_rescue_orphaned(t0()).await.unwrap().is_empty());

    // The process dies: its connections go, and the server lets go of its lock.
    drop(doomed_store);
    // The server notices the closed socket a moment after it closed.
    let rescued = rescue_once_the_lock_is_free(&store).await;
    let mut ids: Vec<i64> = rescued.iter().map(|r| r.job_id).collect();
    ids.sort_unstable();
    let mut expected: Vec<i64> = theirs.iter().map(|c| c.job.id).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "exactly the dead worker's jobs come back");
    assert!(rescued.iter().all(|r| r.status == JobStatus::Queued));
    let job = store.job_get(expected[0]).await.unwrap().unwrap();
    assert!(job.error_message.unwrap().contains("process died"));
    // Once: it is marked stopped, and no one hands its (requeued) jobs back again.
    assert!(store.jobs_rescue_orphaned(t0()).await.unwrap().is_empty());
    let live = store
        .workers_live(t0(), std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        live.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![survivor]
    );
}

/// Ends the session holding `worker`'s lock, as a server restart, an idle timeout or a
/// network cut would, and returns the ended backend's pid.
async fn end_lock_session(store: &PostgresStore, worker: i64) -> i32 {
    // In the select list, so that only the rows the filter keeps are ended.
    let ended: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND objid = $1 AND granted AND objsubid = 2
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(worker)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(ended.len(), 1, "one session held the worker's lock");
    assert!(ended[0].1, "the session was ended");
    ended[0].0
}

/// The backend that holds `worker`'s lock now, if one does.
async fn lock_holder(store: &PostgresStore, worker: i64) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
         WHERE locktype = 'advisory' AND objid = $1 AND granted AND objsubid = 2
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(worker)
    .fetch_optional(store.pool())
    .await
    .unwrap()
}

/// A worker (on the test's store) holding two claimed jobs, and another worker on a store of
/// its own (another process) to judge it: the store, the worker, the judge's store and id.
async fn a_worker_and_a_judge(db: &Db<PostgresStore>) -> (PostgresStore, i64, PostgresStore, i64) {
    let store = db.store.clone();
    seeded(&store, 1, 2, 1).await;
    let lease = std::time::Duration::from_secs(3600);
    let first = store.worker_register(&worker(2), t0()).await.unwrap();
    let claimed = store
        .jobs_claim_except(ClaimSize::exactly(2), t0(), lease, &[], Some(first))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let judge_store = reopen(db).await;
    let judge = judge_store.worker_register(&worker(1), t0()).await.unwrap();
    (store, first, judge_store, judge)
}

/// PostgreSQL: a worker whose lock session the server ended while the process lives takes
/// its lock back at its next report and keeps its id and its jobs; no other worker (nor
/// itself, while others may still be taking theirs back) hands them back meanwhile.
pub(super) async fn a_worker_that_lost_its_session_takes_its_lock_back(db: &Db<PostgresStore>) {
    let (store, first, judge_store, _) = a_worker_and_a_judge(db).await;

    let old = end_lock_session(&store, first).await;
    let mut holder = None;
    for _ in 0..100 {
        assert_eq!(store.worker_beat(first, 0, 2, t0()).await.unwrap(), first);
        holder = lock_holder(&store, first).await.filter(|pid| *pid != old);
        if holder.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        holder.is_some(),
        "the lock was taken back under the same id"
    );
    assert!(
        judge_store
            .jobs_rescue_orphaned(t0())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.jobs_rescue_orphaned(t0()).await.unwrap().is_empty());
    let live = store
        .workers_live(t0(), std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert!(live.iter().any(|w| w.id == first && w.holds_lock));
}

/// PostgreSQL: a worker whose session ended and whose free lock another worker found first
/// has had its jobs handed back: at its next report it goes on under a new id with a new lock.
pub(super) async fn a_worker_judged_dead_meanwhile_registers_again(db: &Db<PostgresStore>) {
    let (store, first, judge_store, judge) = a_worker_and_a_judge(db).await;

    end_lock_session(&store, first).await;
    // The server frees the ended session's lock as its backend exits, a moment later.
    let rescued = rescue_once_the_lock_is_free(&judge_store).await;
    assert_eq!(rescued.len(), 2, "the claims came back");
    let second = store.worker_beat(first, 0, 2, t0()).await.unwrap();
    assert_ne!(second, first, "a new id once the old one was judged dead");
    let live = store
        .workers_live(t0(), std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        live.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![judge, second]
    );
    assert!(live.iter().all(|w| w.holds_lock));
    assert!(
        judge_store
            .jobs_rescue_orphaned(t0())
            .await
            .unwrap()
            .is_empty()
    );
}

/// SQLite: the processes sharing the file share this machine. A worker of this host that has
/// stopped reporting and whose process is gone has its jobs handed back; a silent worker whose
/// process lives, one of another host, and one that reported lately keep theirs.
pub(super) async fn dead_workers_jobs_come_back_at_once_on_one_machine(db: &Db<SqliteStore>) {
    let store = db.store.clone();
    seeded(&store, 1, 9, 1).await;
    let lease = std::time::Duration::from_secs(3600);
    let here = NewWorker::this_process(3);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let alive = store.worker_register(&here, t0()).await.unwrap();
    let dead = store
        .worker_register(
            &NewWorker {
                pid: gone_pid,
                ..here.clone()
            },
            t0(),
        )
        .await
        .unwrap();
    let elsewhere = store
        .worker_register(
            &NewWorker {
                host: format!("{}-elsewhere", here.host),
                pid: gone_pid,
                concurrency: 3,
            },
            t0(),
        )
        .await
        .unwrap();
    let mut held = Vec::new();
    for worker in [alive, dead, elsewhere] {
        let claimed = store
            .jobs_claim_except(ClaimSize::exactly(3), t0(), lease, &[], Some(worker))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 3);
        held.push(claimed);
    }
    // Silent for two seconds only: not yet looked for.
    let soon = t0() + Duration::seconds(2);
    assert!(store.jobs_rescue_orphaned(soon).await.unwrap().is_empty());

    let later = t0() + Duration::seconds(10);
    let rescued = store.jobs_rescue_orphaned(later).await.unwrap();
    let mut ids: Vec<i64> = rescued.iter().map(|r| r.job_id).collect();
    ids.sort_unstable();
    let mut expected: Vec<i64> = held[1].iter().map(|c| c.job.id).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected, "exactly the dead worker's jobs come back");
    assert!(rescued.iter().all(|r| r.status == JobStatus::Queued));
    let job = store.job_get(expected[0]).await.unwrap().unwrap();
    assert!(job.error_message.unwrap().contains("process died"));
    assert!(store.jobs_rescue_orphaned(later).await.unwrap().is_empty());
    let live = store
        .workers_live(later, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        live.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![alive, elsewhere]
    );
}

/// On SQLite a worker whose process was seen by this one at registration (same PID namespace,
/// same user) is known dead the moment its process ends, silent or not; one whose process this
/// one cannot see for certain (here: recorded in another namespace) still waits until it has
/// been silent for a while.
pub(super) async fn an_ended_process_is_known_at_once_on_one_machine(db: &Db<SqliteStore>) {
    let store = db.store.clone();
    seeded(&store, 1, 6, 1).await;
    let lease = std::time::Duration::from_secs(3600);
    let here = NewWorker::this_process(3);
    let mut children = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let worker = store
            .worker_register(
                &NewWorker {
                    pid: child.id(),
                    ..here.clone()
                },
                t0(),
            )
            .await
            .unwrap();
        children.push(child);
        workers.push(worker);
    }
    let sql = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let marked: Vec<Option<String>> = sqlx::query_scalar("SELECT process FROM workers ORDER BY id")
        .fetch_all(&sql)
        .await
        .unwrap();
    assert!(marked.iter().all(Option::is_some), "{marked:?}");
    sqlx::query("UPDATE workers SET process = 'pid:[1] ' || substr(process, instr(process, ' ') + 1) WHERE id = ?1")
        .bind(workers[1])
        .execute(&sql)
        .await
        .unwrap();
    sql.close().await;
    let mut held = Vec::new();
    for &worker in &workers {
        let claimed = store
            .jobs_claim_except(ClaimSize::exactly(3), t0(), lease, &[], Some(worker))
            .await
            .unwrap();
        assert_eq!(claimed.len(), 3);
        let mut ids: Vec<i64> = claimed.iter().map(|c| c.job.id).collect();
        ids.sort_unstable();
        held.push(ids);
    }
    assert!(store.jobs_rescue_orphaned(t0()).await.unwrap().is_empty());

    for child in &mut children {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let soon = t0() + Duration::seconds(1);
    assert_eq!(
        orphans_rescued_at(&store, soon).await,
        held[0],
        "the ended process's jobs, at once"
    );

    let later = t0() + Duration::seconds(10);
    assert_eq!(
        orphans_rescued_at(&store, later).await,
        held[1],
        "the other once it has been silent"
    );
}

/// The ids of the jobs a rescue of dead workers' jobs at `at` hands back, in order.
async fn orphans_rescued_at(store: &SqliteStore, at: chrono::DateTime<chrono::Utc>) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .jobs_rescue_orphaned(at)
        .await
        .unwrap()
        .iter()
        .map(|r| r.job_id)
        .collect();
    ids.sort_unstable();
    ids
}
