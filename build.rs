//! Bakes the libtorch library folder into every binary and test binary as an rpath, so that
//! `target/*/attnrec` runs without LD_LIBRARY_PATH. torch-sys (`links = "tch"`) exports the folder
//! to direct dependents as DEP_TCH_LIBTORCH_LIB.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
            // rustc links with --as-needed, which drops libtorch_cuda; the binary loads it on demand
            // for `--device cuda` from this folder.
            println!("cargo:rustc-env=ATTNREC_LIBTORCH_LIB={lib}");
        }
        Err(_) => {
            println!("cargo:warning=DEP_TCH_LIBTORCH_LIB is not set: binaries will need LD_LIBRARY_PATH");
            println!("cargo:rustc-env=ATTNREC_LIBTORCH_LIB=");
        }
    }
}
