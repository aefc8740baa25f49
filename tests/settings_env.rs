//! In-process tests build their settings from arguments alone: a developer's environment
//! (`MAX_ATTEMPTS`, `DATABASE_URL`, `CRON_SECRET`, `OPENAI_API_KEY`, …) cannot change what
//! they see. Alone in its own binary because it sets variables of this process.

mod support;

#[test]
fn test_settings_ignore_the_developers_environment() {
    // SAFETY: the only test of this binary, and it sets the variables before any thread
    // that could read the environment is started.
    unsafe {
        std::env::set_var("MAX_ATTEMPTS", "1");
        std::env::set_var("DATABASE_URL", "postgres://developer@elsewhere/db");
        std::env::set_var("CRON_SECRET", "developer-secret");
        std::env::set_var("OPENAI_API_KEY", "sk-developer");
        std::env::set_var("WORKER_CONCURRENCY", "0");
    }
    let config = support::config("sqlite:test.db", &[]);
    assert_eq!(config.max_attempts, 3);
    assert_eq!(config.database_url, "sqlite:test.db");
    assert!(config.cron_secret.is_none());
    assert!(config.openai_api_key.is_none());
    assert_eq!(config.worker_concurrency, 16);
    let flagged = support::config("sqlite:test.db", &["--max-attempts", "5"]);
    assert_eq!(flagged.max_attempts, 5, "flags still count");
}
