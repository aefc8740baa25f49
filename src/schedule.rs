//! Due-ness and batch keys from a cron expression (to be written).
