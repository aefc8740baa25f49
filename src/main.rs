//! The `promptq` binary: parse the command line, set up logging, hand over to [`promptq::cli`].

use std::process::ExitCode;

use clap::Parser;
use promptq::cli::{Cli, Command};

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match runtime_for(&cli.command).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(promptq::cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            // One line: the error and its causes, never a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `serve` answers HTTP requests beside its pool, so it gets a thread per core: a slow report
/// or export must not hold up claims and finishes. Every other command runs on the thread that
/// started it. A worker's own work is small (some 25 µs of CPU a job, thousands of jobs a
/// second on one core), and one thread keeps its memory in one malloc arena, where memory the
/// start-up freed is reused by the pool: a worker draining 100 slots holds ~0.8 MB less.
fn runtime_for(command: &Command) -> tokio::runtime::Builder {
    match command {
        Command::Serve => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
}

/// glibc gives every thread that allocates under contention a heap of its own ("arena", up to
/// eight per core), and memory freed in one arena is not reused by another: with the runtime's
/// threads and one thread per SQLite connection, 1,000 calls in flight on SQLite held 50 MB
/// where two arenas hold 33 MB; the throughput cost measured was within the noise (0-4 %).
/// A user's own `MALLOC_ARENA_MAX` (or `GLIBC_TUNABLES`) still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cap_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return;
    }
    // SAFETY: mallopt only sets a parameter of the allocator, and this runs before the
    // process starts any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}

/// Logs to stderr; long-running commands log at info, one-shot commands only warnings, so
/// that progress bars and JSON output stay readable (and not sqlx's slow-statement warnings,
/// which a loaded disk sets off and which a one-shot command's user cannot act on; `serve`
/// and `worker` keep them). `RUST_LOG` overrides.
fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Serve | Command::Worker => "info",
        _ => "warn,sqlx::query=error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.settings.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
