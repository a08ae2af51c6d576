//! Side features on the hand-written ml-1m fixture, worked out by hand: value vocabularies fitted
//! on the train split's users and items only, per-id tables, multi-valued genres, and a user first
//! seen in test keeping its side features although its id is out of vocabulary.
use attnrec::data::protocol::{build_samples, ItemFeature, ProtocolConfig, SplitRule, UserFeature};
use attnrec::data::Dataset;
use attnrec::features::{fit_encode, OOV};
use std::path::Path;

fn fixture(name: &str) -> Dataset {
    Dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(name), None).unwrap()
}

#[test]
fn side_tables_by_hand() {
    let ds = fixture("ml-1m");
    // Global time split, half for train: train holds users 1 and 2 and items 1, 2, 3, 5, 6, 7.
    let protocol = ProtocolConfig {
        split: SplitRule::GlobalTime,
        train_ratio: 0.5,
        valid_ratio: 0.1,
        user_features: vec![UserFeature::Age, UserFeature::Gender, UserFeature::Occupation],
        item_features: vec![ItemFeature::Year, ItemFeature::Genres],
        ..Default::default()
    };
    let ev = build_samples(&ds, &protocol).unwrap();
    let (fm, enc) = fit_encode(&ds, &ev, &protocol, None).unwrap();

    let users = fm.user_side.as_ref().unwrap();
    let names: Vec<&str> = users.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["user_age", "user_gender", "user_occupation"]);
    assert_eq!(users.fields[0].vocab.keys(), &["1", "56"]);
    assert_eq!(users.fields[1].vocab.keys(), &["F", "M"]);
    assert_eq!(users.fields[2].vocab.keys(), &["10", "16"]);
    #[rustfmt::skip]
    assert_eq!(users.values, vec![
        0, 0, 0, // padding
        1, 1, 1, // a user the table lacks
        2, 2, 2, // 1: F, age 1, occupation 10
        3, 3, 3, // 2: M, 56, 16
        1, 3, 1, // 3: M, but 25 and 15 are not train values
        1, 3, 1, // 4: M, 45, 7
    ]);

    let items = fm.item_side.as_ref().unwrap();
    assert_eq!(items.fields[0].vocab.keys(), &["1922", "1977", "1995"]);
    let genres = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Drama", "Fantasy", "Horror", "Romance", "Sci-Fi", "Thriller", "War"];
    assert_eq!(items.fields[1].vocab.keys(), &genres);
    assert_eq!(items.fields[1].width, 5, "Star Wars has 5 genres");
    #[rustfmt::skip]
    assert_eq!(items.values, vec![
        0, 0, 0, 0, 0, 0,
        1, 1, 0, 0, 0, 0,
        4, 4, 5, 6, 0, 0,     // 1 Toy Story (1995): Animation, Children's, Comedy
        4, 3, 5, 9, 0, 0,     // 2 Jumanji: Adventure, Children's, Fantasy
        4, 6, 8, 11, 0, 0,    // 3: Comedy, Drama, Romance
        4, 8, 1, 0, 0, 0,     // 4 (not in train; latin-1 title): Drama, Musical (not a train genre)
        4, 2, 7, 13, 0, 0,    // 5 Heat: Action, Crime, Thriller
        3, 2, 3, 11, 12, 14,  // 6 Star Wars (1977)
        2, 10, 0, 0, 0, 0,    // 7 Nosferatu (1922): Horror
        1, 1, 0, 0, 0, 0,     // 8 (2019, no genres)
    ]);

    // Every event points at its ids' rows; user 3 is out of the id vocabulary (first seen in
    // test) but keeps its side features.
    for k in 0..enc.len() {
        assert_eq!(enc.user_side[k], users.row(ev.user[k]));
        assert_eq!(enc.item_side[k], items.row(ev.item[k]));
        if ev.user[k] == 3 {
            assert_eq!((enc.user[k], enc.user_side[k]), (OOV, 4));
        }
    }
    // The feature map lists them, and reads back identical.
    assert!(fm.features.iter().any(|f| f.name == "item_genres"));
    let back: attnrec::features::FeatureMap = serde_json::from_str(&serde_json::to_string(&fm).unwrap()).unwrap();
    assert_eq!(back.item_side.unwrap().values, items.values);
}

#[test]
fn user_features_need_a_user_table() {
    let ds = fixture("ml-25m");
    let protocol = ProtocolConfig { user_features: vec![UserFeature::Gender], ..Default::default() };
    let ev = build_samples(&ds, &protocol).unwrap();
    let err = fit_encode(&ds, &ev, &protocol, None).err().unwrap().to_string();
    assert!(err.contains("ml-25m") && err.contains("needs a user table"), "{err}");
    assert!(!err.contains('\n'));
}

/// `user_id = false`: no user vocabulary, every event's user is the out-of-vocabulary user, the
/// rest of the features unchanged; with ids (the default) the fixture's three users are apart.
#[test]
fn without_user_ids_every_user_is_out_of_vocabulary() {
    let ds = fixture("ml-1m");
    let with = ProtocolConfig { split: SplitRule::GlobalTime, train_ratio: 0.5, valid_ratio: 0.1, ..Default::default() };
    let without = ProtocolConfig { user_id: false, ..with.clone() };
    let ev = build_samples(&ds, &with).unwrap();
    let (fm_with, enc_with) = fit_encode(&ds, &ev, &with, None).unwrap();
    let (fm, enc) = fit_encode(&ds, &ev, &without, None).unwrap();
    assert!(fm_with.user.size() > 2 && enc_with.user.iter().any(|&u| u != OOV));
    assert_eq!(fm.user.size(), 2, "padding and OOV only");
    assert!(enc.user.iter().all(|&u| u == OOV), "{:?}", enc.user);
    assert_eq!((enc.item.clone(), enc.raw_user.clone()), (enc_with.item.clone(), enc_with.raw_user.clone()), "items and GAUC's groups unchanged");
}
