//! Links release builds of `promptq` with packed relative relocations where the loader reads them.
//!
//! A position-independent executable carries one relocation for every pointer in its data
//! (about 80,000 here), and the loader reads them all at every start: 1.3 MB of the file
//! resident in every promptq process. Packed (RELR), the same relocations take 27 KB; the
//! executable stays position-independent. glibc reads them since 2.36 and a binary linked so
//! refuses to start on an older one, so the flag is passed only to a native x86_64 build (linked
//! by rust-lld) on a machine whose own glibc is 2.36 or newer; anything else links as before.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let target = var("TARGET");
    if var("PROFILE") == "release"
        && target == "x86_64-unknown-linux-gnu"
        && var("HOST") == target
        && glibc_at_least(2, 36)
    {
        println!("cargo::rustc-link-arg-bin=promptq=-Wl,-z,pack-relative-relocs");
    }
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
