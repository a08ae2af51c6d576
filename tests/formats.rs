//! Every supported source format, in its exact published layout (hand-written fixtures in
//! tests/fixtures/formats/), loads to the same canonical rating log and item genres, and so to the
//! same protocol samples. Titles agree across the MovieLens layouts (latin-1 and UTF-8 decoded
//! alike); users are checked per format.
use attnrec::data::protocol::{build_events, ProtocolConfig};
use attnrec::data::{Dataset, Format};
use attnrec::features::item_first_genres;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// (user, item, rating, timestamp), in file order: the log every fixture writes.
const LOG: [(i64, i64, f64, i64); 20] = [
    (1, 1, 5., 978300760),
    (1, 3, 4., 978300760),
    (2, 2, 3., 978301000),
    (1, 5, 2., 978300100),
    (3, 4, 5., 978400000),
    (1, 6, 5., 978302000),
    (2, 6, 4., 978301100),
    (1, 7, 1., 978303000),
    (4, 1, 4., 978500000),
    (3, 8, 2., 978400100),
    (1, 2, 3., 978304000),
    (2, 5, 5., 978300900),
    (4, 6, 5., 978500200),
    (1, 4, 4., 978305000),
    (3, 1, 3., 978400050),
    (2, 7, 2., 978302500),
    (1, 8, 4., 978306000),
    (4, 3, 1., 978500100),
    (3, 5, 4., 978401000),
    (2, 1, 4., 978303500),
];

const GENRES: [&str; 8] = [
    "Animation|Children's|Comedy",
    "Adventure|Children's|Fantasy",
    "Comedy|Drama|Romance",
    "Drama|Musical",
    "Action|Crime|Thriller",
    "Action|Adventure|Romance|Sci-Fi|War",
    "Horror",
    "", // ml-100k: no flag set; ml-10m / ml-25m: "(no genres listed)"; RecBole: empty field
];

const TITLES: [&str; 8] = [
    "Toy Story (1995)",
    "Jumanji (1995)",
    "American President, The (1995)", // quoted in movies.csv
    "Misérables, Les (1995)",         // latin-1 in u.item and ml-1m's movies.dat, UTF-8 elsewhere
    "Heat (1995)",
    "Star Wars: Episode IV - A New Hope (1977)", // a ':' inside a '::'-separated line
    "Nosferatu (Nosferatu, eine Symphonie des Grauens) (1922)",
    "Untitled Short (2019)",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(name)
}

const ALL: [(&str, Format); 5] = [
    ("ml-100k", Format::Ml100k),
    ("ml-1m", Format::Ml1m),
    ("ml-10m", Format::Ml1m),
    ("ml-25m", Format::MlCsv),
    ("recbole-ml-1m", Format::Atomic),
];

fn strs(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name).unwrap().str().unwrap().iter().map(|s| s.unwrap_or("<null>").to_string()).collect()
}

fn ints(df: &DataFrame, name: &str) -> Vec<i64> {
    df.column(name).unwrap().i64().unwrap().into_no_null_iter().collect()
}

#[test]
fn every_format_loads_the_same_canonical_log() {
    for (name, format) in ALL {
        let ds = Dataset::load(&fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ds.format, format, "{name}: detected format");
        let r = &ds.ratings;
        assert_eq!(ints(r, "user_id"), LOG.map(|e| e.0), "{name}: users");
        assert_eq!(ints(r, "item_id"), LOG.map(|e| e.1), "{name}: items");
        let ratings: Vec<f64> = r.column("rating").unwrap().f64().unwrap().into_no_null_iter().collect();
        assert_eq!(ratings, LOG.map(|e| e.2), "{name}: ratings");
        assert_eq!(ints(r, "timestamp"), LOG.map(|e| e.3), "{name}: timestamps");
        assert_eq!(ints(&ds.items, "item_id"), (1..=8).collect::<Vec<_>>(), "{name}: item ids");
        assert_eq!(strs(&ds.items, "genres"), GENRES, "{name}: genres");
        if name != "recbole-ml-1m" {
            // RecBole's conversion moves the year into its own column: titles differ by design.
            assert_eq!(strs(&ds.items, "title"), TITLES, "{name}: titles");
        }
    }
}

#[test]
fn every_format_gives_the_same_samples() {
    let cfg = ProtocolConfig { history_len: 3, ..Default::default() };
    let reference = build_events(&Dataset::load(&fixture("ml-1m"), None).unwrap(), &cfg).unwrap();
    for (name, _) in ALL {
        let ev = build_events(&Dataset::load(&fixture(name), None).unwrap(), &cfg).unwrap();
        assert_eq!(
            (&ev.user, &ev.item, &ev.label, &ev.split, &ev.user_start, &ev.row),
            (&reference.user, &reference.item, &reference.label, &reference.split, &reference.user_start, &reference.row),
            "{name}"
        );
    }
}

#[test]
fn users_are_read_where_the_format_has_them() {
    let users = |name: &str| Dataset::load(&fixture(name), None).unwrap().users;
    for name in ["ml-10m", "ml-25m"] {
        assert!(users(name).is_none(), "{name} has no users file");
    }
    let u = users("ml-100k").unwrap();
    assert_eq!(ints(&u, "age"), [24, 53, 23, 24]);
    assert_eq!(strs(&u, "gender"), ["M", "F", "M", "M"]);
    assert_eq!(strs(&u, "occupation"), ["technician", "other", "writer", "technician"]);
    assert_eq!(strs(&u, "zip"), ["85711", "94043", "32067", "43537"]);
    for name in ["ml-1m", "recbole-ml-1m"] {
        let u = users(name).unwrap();
        assert_eq!(ints(&u, "user_id"), [1, 2, 3, 4], "{name}");
        assert_eq!(ints(&u, "age"), [1, 56, 25, 45], "{name}");
        assert_eq!(strs(&u, "gender"), ["F", "M", "M", "M"], "{name}");
        assert_eq!(strs(&u, "occupation"), ["10", "16", "15", "7"], "{name}");
        assert_eq!(strs(&u, "zip"), ["48067", "70072", "55117", "02460"], "{name}"); // leading zero kept
    }
}

#[test]
fn an_explicit_format_overrides_detection() {
    let ds = Dataset::load(&fixture("ml-25m"), Some(Format::MlCsv)).unwrap();
    assert_eq!(ds.ratings.height(), LOG.len());
    let err = Dataset::load(&fixture("ml-25m"), Some(Format::Ml100k)).unwrap_err().to_string();
    assert!(err.ends_with("u.data is missing (the ml-100k layout needs it, as a file or a folder of parts)"), "{err}");
}

/// Copies fixture `name` into a temp folder, replaces `file` with `text`, and returns the load
/// error's message.
fn load_error(name: &str, file: &str, text: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join(file), text).unwrap();
    let err = Dataset::load(dir.path(), None).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    let prefix = dir.path().join(file).display().to_string();
    assert!(err.starts_with(&prefix), "names the file: {err}");
    err[prefix.len()..].to_string()
}

#[test]
fn malformed_files_name_file_line_and_field() {
    let cases: [(&str, &str, &[u8], &str); 16] = [
        ("ml-25m", "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4.0,10\n1,2,x,11\n", ":3: rating is not a number: \"x\""),
        ("ml-25m", "ratings.csv", b"userId,movieId,stars,timestamp\n1,1,4.0,10\n", ":1: missing column 'rating' (header has: userId, movieId, stars, timestamp)"),
        ("ml-25m", "ratings.csv", b"userId;movieId;rating;timestamp\n1;1;4.0;10\n", ":1: missing column 'userId' (header has: userId;movieId;rating;timestamp)"),
        ("ml-25m", "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,4.0\n", ":2: expected 4 fields, found 3"),
        ("ml-25m", "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,NaN,5\n", ":2: rating must be a finite number >= 0, got \"NaN\""),
        ("ml-25m", "ratings.csv", b"userId,movieId,rating,timestamp\n1,1,-1,5\n", ":2: rating must be a finite number >= 0, got \"-1\""),
        ("ml-25m", "ratings.csv", b"userId,movieId,rating,timestamp\n", ": no ratings in file"),
        ("ml-25m", "ratings.csv", b"", ":1: empty file: expected a header line"),
        ("ml-25m", "movies.csv", b"movieId,title,genres\n1,A (1995),Drama\n1,B (1996),Comedy\n", ":3: item id 1 appears twice"),
        ("ml-100k", "u.data", b"1\t1\t5\t10\n1 2 5 11\n", ":2: expected 4 fields separated by '\\t', found 1"),
        ("ml-100k", "u.data", b"1\t1\t5\t1e400\n", ":1: timestamp must be whole seconds, got \"1e400\""),
        ("ml-100k", "u.item", b"1|Toy Story (1995)|01-Jan-1995||url|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|2\n", ":1: genre flag 'Western' must be 0 or 1, got \"2\""),
        ("ml-1m", "ratings.dat", b"1::1::5::10\n\n2::x::5::10\n", ":3: item id is not a number: \"x\""),
        ("recbole-ml-1m", "ml-1m.inter", b"user_id\titem_id:token\trating:float\ttimestamp:float\n", ":1: header field \"user_id\" is not written name:type"),
        ("recbole-ml-1m", "ml-1m.inter", b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n \t1\t5\t10\n", ":2: user_id is empty"),
        ("recbole-ml-1m", "ml-1m.inter", b"user_id:token\titem_id:token\ttimestamp:float\n1\t1\t10\n", ":1: missing column 'rating' (header has: user_id, item_id, timestamp)"),
    ];
    for (name, file, text, expected) in cases {
        assert_eq!(load_error(name, file, text), expected, "{name}/{file}: {:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn windows_line_endings_and_a_byte_order_mark_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ratings.csv"), b"\xEF\xBB\xBFuserId,movieId,rating,timestamp\r\n1,1,3.5,10\r\n").unwrap();
    std::fs::write(dir.path().join("movies.csv"), b"movieId,title,genres\r\n1,\"A, B (1995)\",Drama\r\n").unwrap();
    let ds = Dataset::load(dir.path(), None).unwrap();
    assert_eq!(ds.ratings.column("rating").unwrap().f64().unwrap().get(0), Some(3.5));
    assert_eq!(strs(&ds.items, "title"), ["A, B (1995)"]);
    assert_eq!(strs(&ds.items, "genres"), ["Drama"]);
    std::fs::write(dir.path().join("ratings.dat"), b"\xEF\xBB\xBF1::1::5::10\r\n").unwrap();
    let err = Dataset::load(dir.path(), None).unwrap_err().to_string();
    assert!(err.ends_with("holds more than one dataset layout; name one with --format"), "{err}");
    std::fs::write(dir.path().join("movies.dat"), b"1::A (1995)::Drama\r\n").unwrap();
    let ds = Dataset::load(dir.path(), Some(Format::Ml1m)).unwrap();
    assert_eq!(ints(&ds.ratings, "timestamp"), [10]);
    assert_eq!(strs(&ds.items, "genres"), ["Drama"]);
}

fn log_spec(file: &str) -> attnrec::data::log::LogSpec {
    attnrec::data::log::LogSpec {
        file: file.into(),
        user: "uid".into(),
        item: "iid".into(),
        timestamp: "ts".into(),
        rating: None,
        label: Some("clicked".into()),
        category: Some("cat".into()),
        separator: None,
    }
}

#[test]
fn generic_csv_and_parquet_logs_give_the_same_samples() {
    use attnrec::data::DataConfig;
    let cfg = ProtocolConfig { history_len: 3, ..Default::default() };
    let reference = build_events(&Dataset::load(&fixture("ml-1m"), None).unwrap(), &cfg).unwrap();
    let csv = DataConfig { log: Some(log_spec("clicks.csv")), ..DataConfig::new(fixture("log-csv")) };
    // The same log as Parquet, written here from the CSV fixture's rows.
    let dir = tempfile::tempdir().unwrap();
    let ds = Dataset::open(&csv).unwrap();
    assert_eq!(ds.format, Format::Log);
    let cats: Vec<&str> = LOG.iter().map(|e| GENRES[e.1 as usize - 1].split('|').next().unwrap()).collect();
    let mut df = df!(
        "uid" => LOG.map(|e| e.0), "iid" => LOG.map(|e| e.1), "ts" => LOG.map(|e| e.3 as f64),
        "clicked" => LOG.map(|e| (e.2 >= 4.0) as i32), "cat" => cats,
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("clicks.parquet")).unwrap()).finish(&mut df).unwrap();
    let parquet = DataConfig { log: Some(log_spec("clicks.parquet")), ..DataConfig::new(dir.path().to_path_buf()) };
    for data in [csv, parquet] {
        let ds = Dataset::open(&data).unwrap();
        // Items in order of first appearance in the log, each with its category.
        assert_eq!(ints(&ds.items, "item_id")[..3], [1, 3, 2]);
        assert_eq!(strs(&ds.items, "genres")[..3], ["Animation", "Comedy", "Adventure"]);
        let ev = build_events(&ds, &cfg).unwrap();
        assert_eq!(
            (&ev.user, &ev.item, &ev.label, &ev.split, &ev.user_start, &ev.row),
            (&reference.user, &reference.item, &reference.label, &reference.split, &reference.user_start, &reference.row),
        );
        // Items come from the log's category column: the same first genres as movies.dat.
        let first = |ds: &Dataset| attnrec::features::item_first_genres(ds).unwrap();
        let ml = first(&Dataset::load(&fixture("ml-1m"), None).unwrap());
        assert_eq!(first(&ds), ml);
    }
}

#[test]
fn generic_logs_are_checked() {
    use attnrec::data::DataConfig;
    let dir = tempfile::tempdir().unwrap();
    let open = |text: &str, spec: attnrec::data::log::LogSpec| {
        std::fs::write(dir.path().join("clicks.csv"), text).unwrap();
        let data = DataConfig { log: Some(spec), ..DataConfig::new(dir.path().to_path_buf()) };
        Dataset::open(&data).unwrap_err().to_string()
    };
    let e = open("ts,uid,iid,clicked,cat\n1,1,1,2,A\n", log_spec("clicks.csv"));
    assert!(e.ends_with("clicks.csv:2: label must be 0 or 1, got 2"), "{e}");
    let e = open("ts,user,iid,clicked,cat\n1,1,1,1,A\n", log_spec("clicks.csv"));
    assert!(e.ends_with("clicks.csv:1: missing column 'uid' (header has: ts, user, iid, clicked, cat)"), "{e}");
    let e = open("ts,uid,iid,clicked,cat\n1.5,1,1,1,A\n", log_spec("clicks.csv"));
    assert!(e.ends_with("clicks.csv:2: timestamp must be whole seconds, got \"1.5\""), "{e}");
    let both = attnrec::data::log::LogSpec { rating: Some("r".into()), ..log_spec("clicks.csv") };
    let e = open("x\n", both);
    assert!(e.contains("needs exactly one of `rating`"), "{e}");
    let e = open("x\n", log_spec("missing.parquet"));
    assert!(e.ends_with("missing.parquet is missing (named by [data.log] file)"), "{e}");
    // Parquet: a fractional timestamp and a null id are refused with the column's name.
    let mut df = df!("uid" => [Some(1i64), None], "iid" => [1i64, 2], "ts" => [1.0f64, 2.5], "clicked" => [1i32, 0], "cat" => ["A", "B"]).unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("bad.parquet")).unwrap()).finish(&mut df).unwrap();
    let e = open("x\n", log_spec("bad.parquet"));
    assert!(e.ends_with("bad.parquet: column 'uid' is null in row 2"), "{e}");
    // A string id column with an empty (or blank) token, which CSV refuses too.
    let mut df = df!("uid" => ["u1", " "], "iid" => [1i64, 2], "ts" => [1i64, 2], "clicked" => [1i32, 0], "cat" => ["A", "B"]).unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("blank.parquet")).unwrap()).finish(&mut df).unwrap();
    let e = open("x\n", log_spec("blank.parquet"));
    assert!(e.ends_with("blank.parquet: row 2: uid is empty"), "{e}");
}

#[test]
fn string_tokens_map_to_stable_ids() {
    use attnrec::data::token_id;
    // Integers in canonical form are themselves; anything else is hashed (values from an
    // independent FNV-1a in Python) into [-2^63, -2^62).
    assert_eq!((token_id("42"), token_id(" 42 "), token_id("-7")), (42, 42, -7));
    assert_eq!(token_id("a"), -6063825236715865309);
    assert_eq!(token_id("007"), -7809316769636008821, "007 is not the integer 7");
    assert_eq!(token_id("B000FA64PK"), -5458825380269313809);
    assert!(token_id("+7") < -(1i64 << 62));

    // A RecBole dataset with Amazon-style string tokens: the .item rows join the .inter rows.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("amz.inter"),
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
         A2X\tB000FA64PK\t5\t10\nA2X\t007\t2\t20\nA2X\t7\t4\t30\nQ9\tB000FA64PK\t1\t15\nQ9\t7\t5\t25\n",
    )
    .unwrap();
    std::fs::write(d.join("amz.item"), "item_id:token\tcategories:token_seq\nB000FA64PK\tBooks Fiction\n007\tFilms\n7\tMusic\n").unwrap();
    let ds = Dataset::load(d, None).unwrap();
    let ev = build_events(&ds, &ProtocolConfig { history_len: 3, ..Default::default() }).unwrap();
    let users: std::collections::BTreeSet<i64> = ev.user.iter().copied().collect();
    assert_eq!(users, [token_id("A2X"), token_id("Q9")].into_iter().collect());
    let genres = item_first_genres(&ds).unwrap();
    assert_eq!(genres[&token_id("B000FA64PK")], "Books");
    assert_eq!((genres[&token_id("007")].as_str(), genres[&7].as_str()), ("Films", "Music"));
}

/// `dir/name` rewritten as a folder of parts: the file's lines dealt into parts of `sizes` lines
/// (each part repeating the header when `header`), beside a `_SUCCESS` marker and a hidden
/// checksum file that must be skipped. Parts are named so that name order is not creation order.
fn into_parts(dir: &Path, name: &str, header: bool, sizes: &[usize]) {
    let path = dir.join(name);
    let text = std::fs::read(&path).unwrap();
    let mut lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let head = if header { Some(lines.remove(0)) } else { None };
    assert_eq!(sizes.iter().sum::<usize>(), lines.len(), "{name}: sizes cover every line");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let mut at = 0;
    for (k, &n) in sizes.iter().enumerate().rev() {
        let start: usize = sizes[..k].iter().sum();
        let mut part = head.map(<[u8]>::to_vec).unwrap_or_default();
        for l in &lines[start..start + n] {
            part.extend_from_slice(l);
        }
        std::fs::write(path.join(format!("part-{k:05}-c000.csv")), part).unwrap();
        at += n;
    }
    assert_eq!(at, lines.len());
    std::fs::write(path.join("_SUCCESS"), "").unwrap();
    std::fs::write(path.join(".part-00000-c000.csv.crc"), "not data").unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_ratings_file_may_be_a_folder_of_parts() {
    use attnrec::data::{DataConfig, PartSelect};
    let tmp = tempfile::tempdir().unwrap();
    // (fixture, ratings file, has a header); 20 rating lines dealt 7 / 0 / 13: an empty part too.
    for (name, file, header) in [("ml-100k", "u.data", false), ("ml-1m", "ratings.dat", false), ("ml-25m", "ratings.csv", true), ("log-csv", "clicks.csv", true)] {
        let dir = tmp.path().join(name);
        copy_dir(&fixture(name), &dir);
        into_parts(&dir, file, header, &[7, 0, 13]);
        let data = if name == "log-csv" { DataConfig { log: Some(log_spec(file)), ..DataConfig::new(dir.clone()) } } else { DataConfig::new(dir.clone()) };
        let ds = Dataset::open(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ints(&ds.ratings, "user_id"), LOG.map(|e| e.0), "{name}: users in file order, parts in name order");
        assert_eq!(ints(&ds.ratings, "item_id"), LOG.map(|e| e.1), "{name}: items");
        assert_eq!(ints(&ds.ratings, "timestamp"), LOG.map(|e| e.3), "{name}: timestamps");
        let whole = item_first_genres(&Dataset::open(&DataConfig { path: fixture(name), ..data.clone() }).unwrap()).unwrap();
        assert_eq!(item_first_genres(&ds).unwrap(), whole, "{name}: item table");
        // One part by its position: the third holds the last 13 lines; the second none.
        let third = Dataset::open_parts(&data, PartSelect::One { index: 2, count: 3 }).unwrap();
        assert_eq!(ints(&third.ratings, "user_id"), LOG[7..].iter().map(|e| e.0).collect::<Vec<_>>(), "{name}: part 2");
        let second = Dataset::open_parts(&data, PartSelect::One { index: 1, count: 3 }).unwrap();
        assert_eq!(second.ratings.height(), 0, "{name}: an empty part is no error when one part is asked for");
        let e = Dataset::open_parts(&data, PartSelect::One { index: 0, count: 4 }).unwrap_err().to_string();
        assert!(e.contains("holds 3 parts, but the candidates hold 4"), "{name}: {e}");
        // A damaged line is named by its part and its line there.
        let part = dir.join(file).join("part-00002-c000.csv");
        let mut text = std::fs::read_to_string(&part).unwrap();
        text.push_str(if name == "ml-1m" { "9::x::4::978300760\n" } else if name == "ml-100k" { "9\tx\t4\t978300760\n" } else if name == "ml-25m" { "9,x,4,978300760\n" } else { "yesterday,9,9,1,Drama\n" });
        std::fs::write(&part, text).unwrap();
        let e = Dataset::open(&data).unwrap_err().to_string();
        let line = if header { 15 } else { 14 };
        assert!(e.starts_with(&format!("{}:{line}:", part.display())), "{name}: {e}");
    }
}

#[test]
fn a_generic_log_may_be_a_folder_of_parquet_parts() {
    use attnrec::data::DataConfig;
    let cfg = ProtocolConfig { history_len: 3, ..Default::default() };
    let reference = build_events(&Dataset::load(&fixture("ml-1m"), None).unwrap(), &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("clicks.parquet");
    std::fs::create_dir(&folder).unwrap();
    let cats: Vec<&str> = LOG.iter().map(|e| GENRES[e.1 as usize - 1].split('|').next().unwrap()).collect();
    for (k, range) in [0..5, 5..20].into_iter().enumerate() {
        let mut df = df!(
            "uid" => LOG[range.clone()].iter().map(|e| e.0).collect::<Vec<_>>(),
            "iid" => LOG[range.clone()].iter().map(|e| e.1).collect::<Vec<_>>(),
            "ts" => LOG[range.clone()].iter().map(|e| e.3).collect::<Vec<_>>(),
            "clicked" => LOG[range.clone()].iter().map(|e| (e.2 >= 4.0) as i32).collect::<Vec<_>>(),
            "cat" => cats[range].to_vec(),
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(folder.join(format!("part-{k:05}-x.snappy.parquet"))).unwrap()).finish(&mut df).unwrap();
    }
    let data = DataConfig { log: Some(log_spec("clicks.parquet")), ..DataConfig::new(dir.path().to_path_buf()) };
    let ev = build_events(&Dataset::open(&data).unwrap(), &cfg).unwrap();
    assert_eq!(
        (&ev.user, &ev.item, &ev.label, &ev.split, &ev.user_start, &ev.row),
        (&reference.user, &reference.item, &reference.label, &reference.split, &reference.user_start, &reference.row),
    );
}
