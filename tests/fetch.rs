//! `attnrec data fetch` against a local HTTP server on 127.0.0.1 serving zips built here (no real
//! network): download with MD5 check, unpack, idempotent re-runs, and every failure leaving
//! neither a zip nor a dataset folder behind.
use assert_cmd::Command;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(name)
}

/// A zip holding the ml-1m fixture under `ml-1m/` (deflated, as GroupLens' archives are), plus
/// a `__MACOSX/` entry that must be skipped; `extra` adds (name, bytes) entries.
fn archive(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    w.add_directory("ml-1m/", opts).unwrap();
    for f in ["ratings.dat", "movies.dat", "users.dat"] {
        w.start_file(format!("ml-1m/{f}"), opts).unwrap();
        w.write_all(&std::fs::read(fixture("ml-1m").join(f)).unwrap()).unwrap();
    }
    w.start_file("__MACOSX/ml-1m/._ratings.dat", opts).unwrap();
    w.write_all(b"junk").unwrap();
    for (name, bytes) in extra {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    attnrec::util::hex(&Md5::digest(bytes))
}

/// Serves `/good.zip` (the archive), `/short.zip` (announces more bytes than it sends) and 404
/// for anything else; counts requests.
fn serve(body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, len, payload): (&str, usize, &[u8]) = match path.as_str() {
                "/good.zip" => ("200 OK", body.len(), &body),
                "/short.zip" => ("200 OK", body.len(), &body[..body.len() / 2]),
                _ => ("404 Not Found", 0, b""),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(payload);
        }
    });
    (base, hits)
}

fn manifest(dir: &Path, url: &str, md5: Option<&str>) -> PathBuf {
    let md5 = md5.map(|m| format!("md5 = \"{m}\"\n")).unwrap_or_default();
    let text = format!("name = \"ml-1m\"\nformat = \"ml1m\"\nurl = \"{url}\"\n{md5}folder = \"ml-1m\"\nlicence = \"test\"\n");
    let path = dir.join(format!("m{}.toml", md5.len() + url.len()));
    std::fs::write(&path, text).unwrap();
    path
}

fn fetch(manifest: &Path, dir: &Path) -> std::process::Output {
    let mut cmd = Command::cargo_bin("attnrec").unwrap();
    cmd.args(["data", "fetch", "--quiet", "--manifest"]).arg(manifest).arg("--dir").arg(dir).output().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Only the given names are left in `dir`.
fn assert_holds(dir: &Path, names: &[&str]) {
    let mut got: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    got.sort();
    assert_eq!(got, names, "contents of {}", dir.display());
}

#[test]
fn fetch_downloads_verifies_unpacks_and_is_idempotent() {
    let zip = archive(&[]);
    let (base, hits) = serve(zip.clone());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let m = manifest(tmp.path(), &format!("{base}/good.zip"), Some(&md5_hex(&zip)));
    let out = fetch(&m, &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ml-1m: downloaded and unpacked"));
    assert_holds(&data, &["ml-1m", "ml-1m.zip"]);
    assert_holds(&data.join("ml-1m"), &["movies.dat", "ratings.dat", "users.dat"]);
    let ds = attnrec::data::Dataset::load(&data.join("ml-1m"), None).unwrap();
    assert_eq!(ds.ratings.height(), 20);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // Again: the folder is there, nothing is requested.
    let out = fetch(&m, &data);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("already present"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The folder removed, the verified zip kept: unpacked again without a download.
    std::fs::remove_dir_all(data.join("ml-1m")).unwrap();
    let out = fetch(&m, &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_holds(&data, &["ml-1m", "ml-1m.zip"]);
}

#[test]
fn a_manifest_without_md5_downloads_with_a_warning_that_gives_it() {
    let zip = archive(&[]);
    let (base, _) = serve(zip.clone());
    let tmp = tempfile::tempdir().unwrap();
    let out = fetch(&manifest(tmp.path(), &format!("{base}/good.zip"), None), &tmp.path().join("d"));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("has no md5") && err.contains(&md5_hex(&zip)), "{err}");
}

#[test]
fn failures_leave_nothing_behind() {
    let zip = archive(&[]);
    let (base, _) = serve(zip.clone());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cases = [
        (format!("{base}/good.zip"), "0".repeat(32), format!("MD5 mismatch: expected {}, got {}", "0".repeat(32), md5_hex(&zip))),
        (format!("{base}/missing.zip"), md5_hex(&zip), "404".to_string()),
        (format!("{base}/short.zip"), md5_hex(&zip), "download".to_string()),
        ("http://127.0.0.1:9/none.zip".to_string(), md5_hex(&zip), "http://127.0.0.1:9/none.zip: ".to_string()),
    ];
    for (url, md5, needle) in cases {
        let out = fetch(&manifest(tmp.path(), &url, Some(&md5)), &data);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1 && err.contains(&needle), "{url}: {err}");
        assert_holds(&data, &[]);
    }
}

#[test]
fn unsafe_or_wrong_archives_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // An entry that climbs out of the folder.
    let evil = archive(&[("ml-1m/../../evil.txt", b"x")]);
    let (base, _) = serve(evil.clone());
    let out = fetch(&manifest(tmp.path(), &format!("{base}/good.zip"), Some(&md5_hex(&evil))), &data);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("would unpack outside the folder"), "{}", stderr(&out));
    assert!(!tmp.path().join("evil.txt").exists() && !data.join("ml-1m").exists() && !data.join("ml-1m.partial").exists());
    // Not a zip at all.
    let (base, _) = serve(b"<html>not found</html>".to_vec());
    let m = manifest(tmp.path(), &format!("{base}/good.zip"), Some(&md5_hex(b"<html>not found</html>")));
    let out = fetch(&m, &tmp.path().join("d2"));
    assert!(stderr(&out).contains("not a readable zip archive"), "{}", stderr(&out));
    assert!(!tmp.path().join("d2/ml-1m").exists());
}
