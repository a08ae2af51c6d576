//! Dataset manifests and `attnrec data fetch`.
//!
//! A manifest (datasets/NAME.toml, compiled into the binary; or any file given with `--manifest`)
//! names a dataset's official archive, its MD5 where one is published, the folder the archive
//! unpacks to and the layout inside. Fetching is all or nothing:
//! 1. the archive is streamed to `NAME.zip.partial` while its MD5 is computed, and renamed to
//!    `NAME.zip` only when the MD5 matches (a mismatch removes the download and stops);
//! 2. the archive's folder is unpacked into `NAME.partial/`, checked to hold the manifest's layout,
//!    and renamed to `NAME/`.
//!
//! Running it again finds `NAME/` (or a verified `NAME.zip`) and does no network work.
use super::Format;
use crate::error::{Error, Result};
use crate::util::partial_path;
use md5::{Digest, Md5};
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// One dataset's archive and layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub format: Format,
    pub url: String,
    /// Lower-case hex MD5 of the archive, where the publisher gives one.
    pub md5: Option<String>,
    /// The folder inside the archive that holds the dataset files.
    pub folder: String,
    pub licence: String,
}

/// The manifests in datasets/, compiled in.
const BUILTIN: [&str; 8] = [
    include_str!("../../datasets/ml-100k.toml"),
    include_str!("../../datasets/ml-1m.toml"),
    include_str!("../../datasets/ml-10m.toml"),
    include_str!("../../datasets/ml-20m.toml"),
    include_str!("../../datasets/ml-25m.toml"),
    include_str!("../../datasets/ml-32m.toml"),
    include_str!("../../datasets/ml-latest-small.toml"),
    include_str!("../../datasets/ml-latest.toml"),
];

impl Manifest {
    /// Every compiled-in manifest, in datasets/ order.
    pub fn builtin() -> Vec<Manifest> {
        BUILTIN
            .iter()
            .map(|text| Manifest::parse(text, Path::new("datasets/")).expect("datasets/*.toml are checked by a unit test"))
            .collect()
    }

    /// The compiled-in manifest called `name`.
    pub fn named(name: &str) -> Result<Manifest> {
        let all = Manifest::builtin();
        let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        let known = names.join(", ");
        all.iter().find(|m| m.name == name).cloned().ok_or_else(|| {
            Error::config(format!("unknown dataset '{name}' (known: {known}; or give --manifest FILE)"))
        })
    }

    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Manifest::parse(&text, path)
    }

    /// Parses and checks a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest> {
        let bad = |msg: String| Error::parse(origin, 0, msg);
        let m: Manifest = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        if m.name.is_empty() || !m.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || m.name.starts_with('.') {
            return Err(bad(format!("name {:?} must be letters, digits, '-', '_' or '.'", m.name)));
        }
        if !(m.url.starts_with("https://") || m.url.starts_with("http://")) {
            return Err(bad(format!("url {:?} must start with https:// or http://", m.url)));
        }
        if let Some(md5) = &m.md5 {
            if md5.len() != 32 || !md5.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!("md5 {md5:?} must be 32 hex digits")));
            }
        }
        if safe_relative(Path::new(&m.folder)).is_none() {
            return Err(bad(format!("folder {:?} must be a relative path inside the archive", m.folder)));
        }
        Ok(Manifest { md5: m.md5.map(|s| s.to_ascii_lowercase()), ..m })
    }
}

/// `path` if it is relative and never leaves its root (no `..`, no root or prefix).
fn safe_relative(path: &Path) -> Option<&Path> {
    let ok = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (ok && path.components().next().is_some()).then_some(path)
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The dataset folder, ready for `--data`.
    pub dir: PathBuf,
    /// Whether the archive was downloaded now (false: the folder or a verified archive was there).
    pub downloaded: bool,
    /// The archive's MD5 when the manifest has none to check against (print it so it can be pinned).
    pub unchecked_md5: Option<String>,
}

/// Fetches `m` into `into/NAME/` (see the module docs). `url` overrides the manifest's URL (a
/// mirror); `progress(done, total)` is called as bytes arrive.
pub fn fetch(m: &Manifest, into: &Path, url: Option<&str>, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<Fetched> {
    let dest = into.join(&m.name);
    if dest.exists() {
        return match Format::detect(&dest) {
            Ok(f) if f == m.format => Ok(Fetched { dir: dest, downloaded: false, unchecked_md5: None }),
            _ => Err(Error::dataset(&dest, format!("exists but holds no {} dataset; remove it or choose another --dir", m.name))),
        };
    }
    std::fs::create_dir_all(into).map_err(|e| Error::io(into, e))?;
    let zip_path = into.join(format!("{}.zip", m.name));
    let (downloaded, digest) = match existing_archive(m, &zip_path)? {
        Some(digest) => (false, digest),
        None => (true, download(m, url.unwrap_or(&m.url), &zip_path, progress)?),
    };
    let tmp = partial_path(&dest);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let unpacked = unpack(&zip_path, Path::new(&m.folder), &tmp).and_then(|()| match Format::detect(&tmp) {
        Ok(f) if f == m.format => Ok(()),
        Ok(f) => Err(Error::dataset(&zip_path, format!("unpacks to the {} layout, the manifest says {}", f.name(), m.format.name()))),
        Err(e) => Err(Error::dataset(&zip_path, format!("unpacked, but: {e}"))),
    });
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
    let unchecked_md5 = m.md5.is_none().then_some(digest);
    Ok(Fetched { dir: dest, downloaded, unchecked_md5 })
}

/// The MD5 of an archive already at `zip_path` if it may be reused: it matches the manifest (or
/// the manifest has none). A mismatching one is removed and `None` returned, so it is fetched again.
fn existing_archive(m: &Manifest, zip_path: &Path) -> Result<Option<String>> {
    if !zip_path.is_file() {
        return Ok(None);
    }
    let mut file = std::fs::File::open(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let mut hasher = Md5::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(zip_path, e))?;
    let digest = crate::util::hex(&hasher.finalize());
    if m.md5.as_ref().is_none_or(|want| *want == digest) {
        return Ok(Some(digest));
    }
    std::fs::remove_file(zip_path).map_err(|e| Error::io(zip_path, e))?;
    Ok(None)
}

/// Streams `url` into `zip_path` through its `.partial` sibling, checking the MD5; returns it.
fn download(m: &Manifest, url: &str, zip_path: &Path, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<String> {
    let tmp = partial_path(zip_path);
    let result = download_to(url, &tmp, progress).and_then(|digest| match &m.md5 {
        Some(want) if *want != digest => {
            Err(Error::fetch(url, format!("MD5 mismatch: expected {want}, got {digest}; the download was removed")))
        }
        _ => std::fs::rename(&tmp, zip_path).map(|()| digest).map_err(|e| Error::io(zip_path, e)),
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn download_to(url: &str, tmp: &Path, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| Error::fetch(url, e.to_string()))?;
    let total = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut body = response.into_body().into_reader();
    let mut file = std::io::BufWriter::new(std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?);
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    progress(0, total);
    loop {
        let n = body.read(&mut buf).map_err(|e| Error::fetch(url, format!("download interrupted: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| Error::io(tmp, e))?;
        done += n as u64;
        progress(done, total);
    }
    file.flush().map_err(|e| Error::io(tmp, e))?;
    if let Some(t) = total.filter(|&t| t != done) {
        return Err(Error::fetch(url, format!("download ended after {done} of {t} bytes")));
    }
    Ok(crate::util::hex(&hasher.finalize()))
}

/// Unpacks the entries under `folder/` of the archive into `out` (created), refusing any entry
/// whose path would leave `out`. Other entries (`__MACOSX/`, ...) are skipped.
fn unpack(zip_path: &Path, folder: &Path, out: &Path) -> Result<()> {
    let bad = |msg: String| Error::dataset(zip_path, msg);
    let file = std::fs::File::open(zip_path).map_err(|e| Error::io(zip_path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut found = 0usize;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry.name().to_string();
        let path = entry.enclosed_name().ok_or_else(|| bad(format!("entry {name:?} would unpack outside the folder")))?;
        let Ok(rel) = path.strip_prefix(folder) else { continue };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = out.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::io(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut w = std::fs::File::create(&target).map_err(|e| Error::io(&target, e))?;
        std::io::copy(&mut entry, &mut w).map_err(|e| bad(format!("entry {name:?}: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(bad(format!("has no files under {}/", folder.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse_and_match_their_file_names() {
        let all = Manifest::builtin();
        assert_eq!(all.len(), BUILTIN.len());
        for m in &all {
            assert!(m.url.ends_with(&format!("/{}.zip", m.name)), "{}", m.name);
        }
        let m = Manifest::named("ml-1m").unwrap();
        assert_eq!((m.format, m.md5.as_deref(), m.folder.as_str()), (Format::Ml1m, Some("c4d9eecfca2ab87c1945afe126590906"), "ml-1m"));
        assert_eq!(Manifest::named("ml-10m").unwrap().folder, "ml-10M100K");
        assert!(Manifest::named("ml-latest").unwrap().md5.is_none());
        let e = Manifest::named("ml-2m").unwrap_err().to_string();
        assert!(e.starts_with("config: unknown dataset 'ml-2m' (known: ml-100k, ml-1m,"), "{e}");
    }

    #[test]
    fn manifests_are_checked() {
        let text = |md5: &str, folder: &str| {
            format!("name = \"x\"\nformat = \"ml1m\"\nurl = \"https://h/x.zip\"\nmd5 = \"{md5}\"\nfolder = \"{folder}\"\nlicence = \"l\"\n")
        };
        let p = Path::new("m.toml");
        assert!(Manifest::parse(&text("0e33842e24a9c977be4e0107933c0723", "x"), p).is_ok());
        let e = Manifest::parse(&text("abc", "x"), p).unwrap_err().to_string();
        assert_eq!(e, "m.toml: md5 \"abc\" must be 32 hex digits");
        let e = Manifest::parse(&text("0e33842e24a9c977be4e0107933c0723", "../x"), p).unwrap_err().to_string();
        assert_eq!(e, "m.toml: folder \"../x\" must be a relative path inside the archive");
        assert!(Manifest::parse("name = \"x\"\n", p).unwrap_err().to_string().starts_with("m.toml: missing field"));
    }
}
