//! A deterministic synthetic dataset in the ml-1m layout, with planted structure that rewards
//! attention over the behavior sequence.
//!
//! Items belong to clusters (think "90s space operas"), each cluster has a primary genre. Every user
//! holds 2–3 cluster interests that drift: at each event, with probability `drift`, one interest is
//! replaced by a new one. Users mostly pick items from their current interests, sometimes explore.
//! Whether the user likes (rates ≥ 4) the item depends on how many of their **recent** events fall
//! in the target's cluster (and, more weakly, its genre), plus item quality and a user bias; not on
//! the user's long-run average taste. A model that attends to the history items relevant to the
//! target (DIN) can read this off directly; mean pooling dilutes it across all interests.
use crate::error::{Error, Result};
use crate::util::write_atomic;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const GENRES: [&str; 18] = [
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// ~4k ratings, for tests.
    Tiny,
    /// ~100k ratings, the demo default.
    Small,
    /// ~1M ratings, ml-1m sized.
    Ml1m,
    /// ~25M ratings, for scale benchmarks.
    Ml25m,
}

impl crate::util::Choice for Preset {
    const ALL: &'static [Self] = &[Preset::Tiny, Preset::Small, Preset::Ml1m, Preset::Ml25m];
    fn help(self) -> &'static str {
        match self {
            Preset::Tiny => "~4k ratings, for tests",
            Preset::Small => "~100k ratings, the demo default",
            Preset::Ml1m => "~1M ratings, ml-1m sized",
            Preset::Ml25m => "~25M ratings, for scale benchmarks",
        }
    }
}

/// Sizes and strengths of the planted structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSpec {
    pub users: usize,
    pub items: usize,
    pub clusters: usize,
    pub min_events: usize,
    pub mean_events: usize,
    pub max_events: usize,
    /// Probability per event that one interest is replaced by a new cluster.
    pub drift: f64,
    /// Probability of picking from a current interest (otherwise a random item).
    pub focus: f64,
    /// How many recent events the like-probability looks at.
    pub recent_window: usize,
}

impl Preset {
    pub fn spec(self) -> SynthSpec {
        let base = SynthSpec {
            users: 0,
            items: 0,
            clusters: 0,
            min_events: 20,
            mean_events: 0,
            max_events: 0,
            drift: 1.0 / 30.0,
            focus: 0.7,
            recent_window: 20,
        };
        match self {
            // Few clusters (one genre each) and many users, so that 4k ratings carry a learnable signal.
            Preset::Tiny => {
                SynthSpec { users: 150, items: 90, clusters: 6, mean_events: 28, max_events: 40, focus: 0.6, ..base }
            }
            Preset::Small => SynthSpec { users: 1000, items: 2000, clusters: 40, mean_events: 100, max_events: 400, ..base },
            Preset::Ml1m => SynthSpec { users: 6040, items: 3700, clusters: 60, mean_events: 165, max_events: 2000, ..base },
            Preset::Ml25m => {
                SynthSpec { users: 162_000, items: 60_000, clusters: 300, mean_events: 155, max_events: 5000, ..base }
            }
        }
    }
}

/// Summary of what was written.
#[derive(Debug, Clone, Serialize)]
pub struct SynthSummary {
    pub ratings: usize,
    pub users: usize,
    pub items: usize,
    pub positive_rate: f64,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; two uniforms in (0, 1].
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

struct Item {
    cluster: usize,
    genres: Vec<usize>,
    quality: f64,
    year: u32,
}

/// Writes `ratings.dat`, `movies.dat` and `users.dat` into `out` (created if missing).
/// The same `spec` and `seed` always produce byte-identical files.
pub fn generate(spec: &SynthSpec, seed: u64, out: &Path) -> Result<SynthSummary> {
    if spec.users == 0
        || spec.clusters == 0
        || spec.items < spec.clusters
        || spec.min_events > spec.max_events
        || spec.min_events > spec.items * 3 / 4
    {
        return Err(Error::config(
            "synthetic spec needs users > 0, clusters > 0, items >= clusters, min_events <= max_events and <= 3/4 of items",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    // Items: cluster c holds items c, c + C, c + 2C, ... (ids are 1-based in the files).
    let items: Vec<Item> = (0..spec.items)
        .map(|i| {
            let cluster = i % spec.clusters;
            let primary = cluster % GENRES.len();
            let mut genres = vec![primary];
            if rng.random::<f64>() < 0.5 {
                let g = rng.random_range(0..GENRES.len());
                if g != primary {
                    genres.push(g);
                }
            }
            Item { cluster, genres, quality: 0.6 * normal(&mut rng), year: rng.random_range(1930..=2000) }
        })
        .collect();
    let members: Vec<Vec<usize>> =
        (0..spec.clusters).map(|c| (0..spec.items).filter(|&i| items[i].cluster == c).collect()).collect();

    let mut ratings = std::io::BufWriter::new(Vec::<u8>::with_capacity(spec.users * spec.mean_events * 24));
    let mut users_txt = String::new();
    let (mut n_ratings, mut n_pos) = (0usize, 0usize);
    let mut rated = vec![u32::MAX; spec.items]; // rated[i] == user: already rated by this user
    let extra_mean = spec.mean_events.saturating_sub(spec.min_events).max(1) as f64;
    for u in 0..spec.users {
        let n_events = (spec.min_events as f64 + extra_mean * -(1.0 - rng.random::<f64>()).ln()).round() as usize;
        let n_events = n_events.clamp(spec.min_events, spec.max_events.min(spec.items * 3 / 4));
        let k = rng.random_range(2..=3);
        let mut interests: Vec<usize> = (0..k).map(|_| rng.random_range(0..spec.clusters)).collect();
        let mut weights: Vec<f64> = (0..k).map(|_| 0.5 + rng.random::<f64>()).collect();
        let bias = 0.3 * normal(&mut rng);
        let mut ts: i64 = 956_703_932 + rng.random_range(0..63_072_000);
        let mut recent: Vec<usize> = Vec::with_capacity(n_events);
        for _ in 0..n_events {
            if rng.random::<f64>() < spec.drift {
                let slot = rng.random_range(0..k);
                interests[slot] = rng.random_range(0..spec.clusters);
                weights[slot] = 0.5 + rng.random::<f64>();
            }
            let mut item = usize::MAX;
            for _attempt in 0..20 {
                let cand = if rng.random::<f64>() < spec.focus {
                    let total: f64 = weights.iter().sum();
                    let mut x = rng.random::<f64>() * total;
                    let mut slot = 0;
                    while slot + 1 < k && x >= weights[slot] {
                        x -= weights[slot];
                        slot += 1;
                    }
                    let pool = &members[interests[slot]];
                    // Popularity within a cluster: lower ranks are picked more often.
                    let r = rng.random::<f64>();
                    pool[((r * r) * pool.len() as f64) as usize % pool.len()]
                } else {
                    rng.random_range(0..spec.items)
                };
                if rated[cand] != u as u32 {
                    item = cand;
                    break;
                }
            }
            if item == usize::MAX {
                continue; // this user has seen nearly everything nearby; skip the slot
            }
            rated[item] = u as u32;
            let it = &items[item];
            let window = &recent[recent.len().saturating_sub(spec.recent_window)..];
            let same_cluster = window.iter().filter(|&&j| items[j].cluster == it.cluster).count();
            let same_genre = window
                .iter()
                .filter(|&&j| items[j].cluster != it.cluster && items[j].genres[0] == it.genres[0])
                .count();
            let logit =
                -1.3 + 0.9 * (same_cluster.min(5) as f64) + 0.35 * (same_genre.min(3) as f64) + it.quality + bias;
            let like = rng.random::<f64>() < sigmoid(logit);
            let rating = if like {
                if rng.random::<f64>() < 0.45 { 5 } else { 4 }
            } else {
                [1, 2, 2, 3, 3, 3][rng.random_range(0..6)]
            };
            // About one event in five shares its timestamp with the previous one (ties are common
            // in MovieLens); the file keeps generation order, which the protocol must preserve.
            if rng.random::<f64>() >= 0.2 {
                ts += 1 + (-(1.0 - rng.random::<f64>()).ln() * 86_400.0) as i64;
            }
            writeln!(ratings, "{}::{}::{}::{}", u + 1, item + 1, rating, ts).map_err(|e| Error::io(out, e))?;
            recent.push(item);
            n_ratings += 1;
            n_pos += like as usize;
        }
        let gender = if rng.random::<bool>() { "M" } else { "F" };
        let age = [1, 18, 25, 35, 45, 50, 56][rng.random_range(0..7)];
        let occupation = rng.random_range(0..21);
        let zip = rng.random_range(10_000..99_999);
        users_txt.push_str(&format!("{}::{gender}::{age}::{occupation}::{zip}\n", u + 1));
    }
    let mut movies_txt = String::new();
    for (i, it) in items.iter().enumerate() {
        let genres: Vec<&str> = it.genres.iter().map(|&g| GENRES[g]).collect();
        movies_txt.push_str(&format!(
            "{}::Synthetic {} {} ({})::{}\n",
            i + 1,
            GENRES[it.genres[0]],
            i + 1,
            it.year,
            genres.join("|")
        ));
    }
    let ratings = ratings.into_inner().map_err(|e| Error::io(out, e.into_error()))?;
    write_atomic(&out.join("ratings.dat"), &ratings)?;
    write_atomic(&out.join("movies.dat"), movies_txt.as_bytes())?;
    write_atomic(&out.join("users.dat"), users_txt.as_bytes())?;
    Ok(SynthSummary {
        ratings: n_ratings,
        users: spec.users,
        items: spec.items,
        positive_rate: n_pos as f64 / n_ratings.max(1) as f64,
    })
}
