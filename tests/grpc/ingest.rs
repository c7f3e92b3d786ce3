//! `clipd ingest` and `clipd search` against a live server: a folder in, resumption, bad files
//! reported without stopping the rest, and hits printed.

use std::path::Path;
use std::process::{Command, Output};

use clipd::demo::eval::png;
use clipd::demo::shapes::Scene;
use clipd::grpc::pb;
use clipd::rng::SplitMix64;
use tempfile::TempDir;

use crate::support::*;

fn clipd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clipd"))
        .args(args)
        .output()
        .expect("run clipd")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// 20 pictures in two folders (file names say colour and shape), a truncated JPEG, a text file,
/// and a picture whose path is too long to be an id.
fn picture_folder() -> TempDir {
    let folder = scratch_dir("pictures");
    let dir = folder.path();
    let mut rng = SplitMix64::new(11);
    for n in 0..20 {
        let scene = Scene::random(&mut rng);
        let folder = dir.join(if n % 2 == 0 { "even" } else { "odd" });
        std::fs::create_dir_all(&folder).unwrap();
        let name = format!("{n:02}-{}-{}.png", scene.colour_name(), scene.shape.name());
        std::fs::write(folder.join(name), png(&scene, 72)).unwrap();
    }
    std::fs::write(dir.join("broken.jpg"), [0xff, 0xd8, 0xff, 0xe0, 0, 0x10]).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a picture").unwrap();
    let deep = (0..5).fold(dir.join("deep"), |d, i| d.join(format!("{i}").repeat(250)));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("x.png"), png(&Scene::random(&mut rng), 32)).unwrap();
    folder
}

fn ingest(addr: &str, dir: &Path) -> Output {
    let dir = dir.to_str().unwrap();
    clipd(&[
        "ingest",
        "--server",
        addr,
        "--collection",
        "photos",
        "--batch-size",
        "6",
        dir,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_adds_a_folder_resumes_and_reports_bad_files() {
    let mut s = settings("tiny-a");
    s.model.source = None;
    let server = TestServer::start(s).await;
    let addr = format!("http://{}", server.server.addr());
    let pictures = picture_folder();
    let dir = pictures.path();

    let first = ingest(&addr, dir);
    let out = stdout(&first);
    assert_eq!(first.status.code(), Some(1), "a file failed: {out}");
    assert!(out.contains("created collection \"photos\""), "{out}");
    assert!(
        out.contains("22 images found: 20 added, 0 already present, 2 failed (1 other files"),
        "{out}"
    );
    assert!(out.contains("failed: broken.jpg: "), "{out}");
    assert!(
        out.contains("it cannot be an id: the id is 1265 bytes"),
        "{out}"
    );

    let mut c = collections(&server).await;
    assert_eq!(info(&mut c, "photos").await.count, 20);

    // Resuming: what is there is skipped; a removed item is added again.
    let removed = "odd/01-";
    let ids: Vec<String> = std::fs::read_dir(dir.join("odd"))
        .unwrap()
        .map(|e| format!("odd/{}", e.unwrap().file_name().to_str().unwrap()))
        .filter(|id| id.starts_with(removed))
        .collect();
    c.delete(pb::DeleteRequest {
        collection: "photos".into(),
        ids: ids.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    std::fs::remove_file(dir.join("broken.jpg")).unwrap();
    std::fs::remove_dir_all(dir.join("deep")).unwrap();
    let again = ingest(&addr, dir);
    let out = stdout(&again);
    assert!(again.status.success(), "{out}");
    assert!(
        out.contains("20 images found: 1 added, 19 already present, 0 failed"),
        "{out}"
    );
    assert_eq!(info(&mut c, "photos").await.count, 20);
    let item = c
        .get_items(pb::GetItemsRequest {
            collection: "photos".into(),
            ids,
            with_vectors: false,
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .remove(0);
    assert_eq!(item.metadata["folder"], "odd");

    // The hits of `clipd search`, as JSON: asked for the colour and shape a file's name gives,
    // the best match is a picture of them.
    let (mut asked, mut right) = (0, 0);
    for file in std::fs::read_dir(dir.join("even")).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        let (_, described) = name.trim_end_matches(".png").split_once('-').unwrap();
        let searched = clipd(&[
            "search",
            "--server",
            &addr,
            "--collection",
            "photos",
            "--text",
            &format!("a {}", described.replace('-', " ")),
            "--top-k",
            "3",
            "--filter",
            "folder=even",
            "--json",
        ]);
        assert!(searched.status.success(), "{searched:?}");
        let hits: serde_json::Value = serde_json::from_slice(&searched.stdout).unwrap();
        let hits = hits.as_array().unwrap();
        assert_eq!(hits.len(), 3);
        for hit in hits {
            assert!(hit["id"].as_str().unwrap().starts_with("even/"), "{hit}");
            assert_eq!(hit["metadata"]["folder"], "even");
        }
        asked += 1;
        let top = hits[0]["id"].as_str().unwrap();
        right += usize::from(top.ends_with(&format!("-{described}.png")));
    }
    // The demo model names about 9 in 10 fresh pictures right; chance is far lower.
    assert_eq!(asked, 10);
    assert!(
        right >= 7,
        "{right} of {asked} searches found the picture named"
    );
    let table = clipd(&[
        "search",
        "--server",
        &addr,
        "--collection",
        "photos",
        "--id",
        &item.id,
    ]);
    let out = stdout(&table);
    assert!(table.status.success(), "{table:?}");
    assert_eq!(out.lines().count(), 10, "{out}");
    assert!(out.lines().all(|l| !l.contains(&item.id)), "{out}");

    let unknown = clipd(&[
        "search",
        "--server",
        &addr,
        "--collection",
        "nope",
        "--text",
        "x",
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("NotFound"));
}
