//! Links release builds of `promptq` so that less of the executable is resident in each process.
//!
//! A position-independent executable carries one relocation for every pointer in its data
//! (about 80,000 here), and the loader reads them all at every start: 1.3 MB of the file
//! resident in every promptq process. Packed (RELR), the same relocations take 27 KB; the
//! executable stays position-independent. glibc reads them since 2.36 and a binary linked so
//! refuses to start on an older one, so the flag is passed only to a native x86_64 build (linked
//! by rust-lld) on a machine whose own glibc is 2.36 or newer; anything else links as before.
//!
//! The kernel maps an executable's code 64 KB at a time around each first touch, so a worker
//! that runs 1.5 MB of functions scattered over 10 MB of code held 6.5 MB of it. The same
//! x86_64 builds hand rust-lld `build/symbol-order.txt` (written by
//! `docs/scripts/symbol-order.sh`): the functions a worker, a cron pass, `serve` and the bench
//! run, laid out side by side. Names the file has and the build does not (another toolchain,
//! a function renamed since) are skipped without a warning; the rest of the code keeps its
//! place. A build that names its own linker links as before.

use std::env;
use std::path::Path;
use std::process::Command;

/// The functions to lay out first, one symbol a line.
const SYMBOL_ORDER: &str = "build/symbol-order.txt";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={SYMBOL_ORDER}");
    // The migrations are read at compile time (`sqlx::migrate!`), and a build script that names
    // what it depends on turns off Cargo's rebuild on any change in the package: without this
    // line a new migration file left the previous build's migrations in place.
    println!("cargo::rerun-if-changed=migrations");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let target = var("TARGET");
    if var("PROFILE") != "release" || target != "x86_64-unknown-linux-gnu" || var("HOST") != target
    {
        return;
    }
    if glibc_at_least(2, 36) {
        println!("cargo::rustc-link-arg-bin=promptq=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(SYMBOL_ORDER);
    // `-Wl,` splits its argument at commas.
    if let Some(order) = order.to_str().filter(|path| !path.contains(','))
        && Path::new(order).is_file()
        && !linker_chosen(&var("RUSTC_LINKER"), &var("CARGO_ENCODED_RUSTFLAGS"))
    {
        println!("cargo::rustc-link-arg-bin=promptq=-Wl,--symbol-ordering-file={order}");
        println!("cargo::rustc-link-arg-bin=promptq=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the build names its own linker (a configured `linker`, `-fuse-ld`, a linker flavour
/// or features): the ordering file is an option of rust-lld's, which GNU ld does not know.
fn linker_chosen(rustc_linker: &str, encoded_rustflags: &str) -> bool {
    !rustc_linker.is_empty()
        || encoded_rustflags
            .split('\x1f')
            .any(|flag| ["fuse-ld", "linker"].iter().any(|word| flag.contains(word)))
}

/// This machine's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36"); false when it
/// cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(found_major), Some(found_minor)) => (found_major, found_minor) >= (major, minor),
        _ => false,
    }
}
