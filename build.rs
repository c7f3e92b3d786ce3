//! Makes the clipd binaries find libtorch at run time without `LD_LIBRARY_PATH`, and keeps CUDA
//! linked when the CUDA libraries are installed.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys (links = "tch") exports the libtorch library folder it linked against.
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = PathBuf::from(lib);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if cuda_usable(&lib) {
        // Nothing in clipd calls into libtorch_cuda.so directly, so an `--as-needed` linker drops
        // it and CUDA is then silently unavailable (tch-rs #980): keep it.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        println!("cargo:rustc-cfg=clipd_cuda_linked");
    }
    println!("cargo:rustc-check-cfg=cfg(clipd_cuda_linked)");
}

/// libtorch_cuda.so ships in every torch wheel, but loads only when the CUDA libraries it needs
/// are installed too (the full `pip install torch`, or a CUDA build of libtorch).
fn cuda_usable(lib: &Path) -> bool {
    if !lib.join("libtorch_cuda.so").exists() {
        return false;
    }
    let mut dirs = vec![lib.to_path_buf()];
    // The wheel's layout: site-packages/torch/lib and site-packages/nvidia/<pkg>/lib.
    if let Some(site) = lib.parent().and_then(Path::parent) {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            dirs.extend(entries.flatten().map(|e| e.path().join("lib")));
        }
    }
    ["libcublas.so", "libcudnn.so"]
        .iter()
        .all(|prefix| dirs.iter().any(|dir| has_prefixed_file(dir, prefix)))
}

fn has_prefixed_file(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
    })
}
