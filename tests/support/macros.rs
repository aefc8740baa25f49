//! `on_both!`: one scenario written once, run as two tests, on SQLite and on PostgreSQL.
//!
//! ```ignore
//! on_both!(a, b);                                // `async fn a(db: &TestDb)`, 4 runtime threads
//! on_both!(threads = 2; a);                      // a runtime of 2 worker threads
//! on_both!(owned; a);                            // `async fn a(db: TestDb)` (e.g. for a server)
//! on_both!(serial = crate::paced::SERIAL; a);    // holds this `tokio::sync::Mutex` throughout
//! ```
//!
//! Options come first, each ending in `;`, in any order. The tests are
//! `on_sqlite::NAME` and `on_postgres::NAME` in the invoking module, so
//! `cargo test --test it on_postgres` runs every PostgreSQL half. The PostgreSQL half
//! fails where no server can be had, saying how to get one, unless `PROMPTQ_SKIP_POSTGRES=1`
//! skips it (loudly).

#[allow(unused_macros)] // settings_env runs no scenario
macro_rules! on_both {
    // Options, folded into `[threads] [serial lock] [how db is passed]`.
    (@opts [$t:tt] $s:tt $p:tt threads = $n:tt; $($rest:tt)*) => {
        $crate::support::on_both!(@opts [$n] $s $p $($rest)*);
    };
    (@opts $t:tt [$($s:tt)*] $p:tt serial = $lock:path; $($rest:tt)*) => {
        $crate::support::on_both!(@opts $t [$lock] $p $($rest)*);
    };
    (@opts $t:tt $s:tt [$p:tt] owned; $($rest:tt)*) => {
        $crate::support::on_both!(@opts $t $s [owned] $($rest)*);
    };
    (@opts $t:tt $s:tt $p:tt $($name:ident),* $(,)?) => {
        mod on_sqlite {
            $( $crate::support::on_both!(@test sqlite $t $s $p $name); )*
        }
        mod on_postgres {
            $( $crate::support::on_both!(@test postgres $t $s $p $name); )*
        }
    };

    (@test $kind:ident [$t:tt] [$($lock:path)?] [$p:tt] $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = $t)]
        async fn $name() {
            $( let _one_at_a_time = $lock.lock().await; )?
            $crate::support::on_both!(@db $kind db);
            $crate::support::on_both!(@call $p $name db);
        }
    };
    (@db sqlite $db:ident) => {
        let $db = $crate::support::sqlite().await;
    };
    (@db postgres $db:ident) => {
        let Some($db) = $crate::support::postgres().await else { return };
    };
    (@call owned $name:ident $db:ident) => {
        super::$name($db).await
    };
    (@call borrowed $name:ident $db:ident) => {
        super::$name(&$db).await
    };

    ($($rest:tt)*) => {
        $crate::support::on_both!(@opts [4] [] [borrowed] $($rest)*);
    };
}

pub(crate) use on_both;
