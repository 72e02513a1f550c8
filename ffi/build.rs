//! Gives the shared library its SONAME, `libheadcount.so.0`: programs linked
//! against it record that name, so an installed `libheadcount.so.0` (with
//! the `libheadcount.so -> libheadcount.so.0` symlink that `scripts/install`
//! makes) can be replaced by any compatible 0.x build. The `0` is the ABI's
//! major version; it changes only when the C ABI breaks compatibility.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "freebsd" || os == "netbsd" || os == "openbsd" || os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libheadcount.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
