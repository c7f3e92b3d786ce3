//! Generates the gRPC code (clipd's, and a client for Milvus') and clipd's descriptor set (for
//! reflection) from proto/, makes the clipd binaries find libtorch at run time without
//! `LD_LIBRARY_PATH`, and keeps CUDA linked when the CUDA libraries are installed.

use std::path::{Path, PathBuf};

use prost::Message;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    compile_protos();
    compile_milvus_protos();
    link_libtorch();
}

/// protox compiles the protos in Rust: no protoc needed on the build machine.
fn compile_protos() {
    const PROTO: &str = "proto/clipd/v1/clipd.proto";
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([PROTO], ["proto"]).unwrap_or_else(|e| panic!("{PROTO}: {e}"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("clipd_descriptor.bin"), fds.encode_to_vec())
        .expect("write the descriptor set");
    tonic_prost_build::configure()
        // Encoded images are handed to the decoder without a copy.
        .bytes(".clipd.v1.Input.image")
        .bytes(".clipd.v1.Item.image")
        .bytes(".clipd.v1.SearchRequest.image")
        .compile_fds(fds)
        .expect("generate the gRPC code");
}

/// The client for Milvus' MilvusService, from Milvus' own protos (vendored in proto/milvus; see
/// its README.md): the modules `milvus.proto.{common,schema,feder,msg,milvus}`, included by
/// src/index/milvus/pb.rs. Their descriptors are not written out: reflection serves only clipd's.
fn compile_milvus_protos() {
    // The Milvus protos import one another by bare file name ("common.proto"), so proto/milvus
    // is their include root. milvus.proto imports every other file vendored there.
    const ROOT: &str = "proto/milvus";
    const PROTO: &str = "milvus.proto";
    println!("cargo:rerun-if-changed={ROOT}");
    let fds = protox::compile([PROTO], [ROOT]).unwrap_or_else(|e| panic!("{ROOT}/{PROTO}: {e}"));
    tonic_prost_build::configure()
        // clipd only calls Milvus.
        .build_server(false)
        // MilvusService has an RPC named `Connect`, whose client method would clash with the
        // `connect()` constructor tonic generates with its transport: the client is made with
        // `MilvusServiceClient::new(channel)` over a `tonic::transport::Channel` instead.
        .build_transport(false)
        .compile_fds(fds)
        .expect("generate the Milvus gRPC client");
}

fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rustc-check-cfg=cfg(clipd_cuda_linked)");
    // torch-sys (links = "tch") exports the libtorch library folder it linked against.
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    // .libtorch is a link into the virtualenv: resolve it, or the wheel's sibling folders (where
    // the CUDA libraries live) are looked for beside the link instead.
    let lib = std::fs::canonicalize(&lib).unwrap_or_else(|_| PathBuf::from(&lib));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let nvidia = lib
        .parent()
        .and_then(Path::parent)
        .map(|site| site.join("nvidia"));
    // Installing the CUDA libraries later must relink.
    println!(
        "cargo:rerun-if-changed={}",
        lib.join("libtorch_cuda.so").display()
    );
    if let Some(nvidia) = &nvidia {
        println!("cargo:rerun-if-changed={}", nvidia.display());
    }
    if cuda_usable(&lib, nvidia.as_deref()) {
        // Nothing in clipd calls into libtorch_cuda.so directly, so an `--as-needed` linker drops
        // it and CUDA is then silently unavailable (tch-rs #980): keep it.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        println!("cargo:rustc-cfg=clipd_cuda_linked");
    }
}

/// libtorch_cuda.so ships in every torch wheel, but loads only when the CUDA libraries it needs
/// are installed too (the full `pip install torch`, or a CUDA build of libtorch). scripts/setup.sh
/// applies the same rule.
fn cuda_usable(lib: &Path, nvidia: Option<&Path>) -> bool {
    if !lib.join("libtorch_cuda.so").exists() {
        return false;
    }
    // The wheel's layout: site-packages/torch/lib and site-packages/nvidia/<pkg>/lib; a libtorch
    // distribution keeps everything in lib/.
    let mut dirs = vec![lib.to_path_buf()];
    if let Some(Ok(entries)) = nvidia.map(std::fs::read_dir) {
        dirs.extend(entries.flatten().map(|e| e.path().join("lib")));
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
