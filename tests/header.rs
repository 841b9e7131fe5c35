//! `include/btm.h` must be exactly what cbindgen generates from the current
//! sources, with version macros taken from Cargo.toml. Set
//! `BTM_REGENERATE_HEADER=1` to rewrite it.
//!
//! (Not built for Windows: the header is one for every platform, checked
//! where the sources are, and the test reads them through their Unix path.)
#![cfg(unix)]

use std::path::PathBuf;

fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        "\n/** Version of the header (compare with btm_version() at run time). */\n\
         #define BTM_VERSION \"{v}\"\n#define BTM_VERSION_MAJOR {ma}\n#define BTM_VERSION_MINOR {mi}\n\
         #define BTM_VERSION_PATCH {pa}\n",
        v = env!("CARGO_PKG_VERSION"),
        ma = env!("CARGO_PKG_VERSION_MAJOR"),
        mi = env!("CARGO_PKG_VERSION_MINOR"),
        pa = env!("CARGO_PKG_VERSION_PATCH"),
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("utf-8 header")
}

#[test]
fn header_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/btm.h");
    let fresh = generate();
    if std::env::var_os("BTM_REGENERATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/btm.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/btm.h is stale: run `BTM_REGENERATE_HEADER=1 cargo test --test header` and commit it"
    );
}

#[test]
fn header_version_macros_match_cargo() {
    let header = generate();
    for (name, value) in [
        ("BTM_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("BTM_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("BTM_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(header.contains(&format!("#define {name} {value}\n")), "{name} must be {value}");
    }
    assert!(header.contains(&format!("#define BTM_VERSION \"{}\"", env!("CARGO_PKG_VERSION"))));
}
