//! Gives the shared library its versioned soname (`libbtm.so.0`), so hosts
//! link against the ABI major version rather than a file name.
fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "android" || target_os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbtm.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
