//! clap types only; behavior lives in `commands/`.
use attnrec::data::protocol::{HistoryRule, ItemFeature, ProtocolConfig, Split, SplitRule, UserFeature};
use attnrec::data::synth::Preset;
use attnrec::data::Format;
use attnrec::table::Format as TableFormat;
use attnrec::train::Monitor;
use attnrec::util::Choice;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "attnrec", version, about = "Attention-based CTR models (DIN, ...) on libtorch: data → features → model → AUC")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a deterministic synthetic MovieLens-format dataset (ml-1m layout).
    Synth(SynthArgs),
    /// Train one model on a dataset folder and write a run folder.
    Train(TrainArgs),
    /// Evaluate a saved run on a split (AUC, GAUC, LogLoss).
    Eval(EvalArgs),
    /// Generate the synthetic dataset if needed, train models (base and DIN by default), print a comparison table.
    Demo(DemoArgs),
    /// Score (user, item[, timestamp]) candidates from a CSV or Parquet file with a trained run.
    Score(ScoreArgs),
    /// Explain one score: the user's history with the attention weight of each event, as a table
    /// and a heat map (PNG and SVG).
    Explain(ExplainArgs),
    /// Export a run as a TorchScript module (model.pt) with a JSON sidecar describing its inputs,
    /// its vocabularies and two example batches with attnrec's probabilities.
    Export(ExportArgs),
    /// Measure training throughput (samples/s) over presets, models, batch sizes, threads and prefetch depths.
    Bench(BenchArgs),
    /// Run an experiment file (experiments/*.toml): every variant × seed, skipping complete runs,
    /// then results.csv and results.md in runs/NAME/.
    Run(RunArgs),
    /// Datasets: list the known MovieLens archives, fetch one.
    #[command(subcommand)]
    Data(DataCommand),
}

/// How a command prints its results table.
#[derive(Debug, Clone, Copy, Args)]
pub struct TableFlag {
    /// How to print the results table; with csv or json, stdout is the table alone (full
    /// precision, a mean ± std as two columns) and every other line goes to stderr.
    #[arg(long, value_name = "FORMAT", value_parser = choice::<TableFormat>(), default_value = "text")]
    pub table: TableFormat,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Folder that holds the experiment's folder.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Print the expanded runs (variant, seed, folder, state) without training.
    #[arg(long)]
    pub dry_run: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub print: TableFlag,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// List the dataset manifests built in (datasets/*.toml): name, layout, checksum, archive URL.
    List,
    /// Download a dataset's official archive, verify its MD5, unpack it into DIR/NAME.
    Fetch(FetchArgs),
    /// Apply the protocol once and cache the encoded samples (Parquet) and feature map; `train`
    /// then reads them instead of the raw files, and says so.
    Prepare(PrepareArgs),
    /// Summarize what the protocol makes of a dataset folder: splits, positive rates, users, items,
    /// history lengths, out-of-vocabulary rates, and the inputs handled by documented rules.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// A run config: its [data] and [protocol] sections are used (flags below override them).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset folder (layout detected from its files).
    #[arg(long, required_unless_present = "config")]
    pub data: Option<PathBuf>,
    /// Layout, when detection is not wanted.
    #[arg(long, value_parser = choice::<Format>())]
    pub format: Option<Format>,
    #[command(flatten)]
    pub protocol: ProtocolFlags,
    /// Cache root [default: $ATTNREC_CACHE_DIR, else ~/.cache/attnrec/prepared, where `train` looks].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Rebuild even if a complete cache of the same files and protocol exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Dataset folder (layout detected from its files).
    #[arg(required_unless_present = "config")]
    pub dir: Option<PathBuf>,
    /// A run config: its [data] (e.g. a generic log's [data.log]) and [protocol] sections are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Layout, when detection is not wanted.
    #[arg(long, value_parser = choice::<Format>())]
    pub format: Option<Format>,
    #[command(flatten)]
    pub protocol: ProtocolFlags,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub print: TableFlag,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A built-in dataset name (see `attnrec data list`).
    #[arg(required_unless_present = "manifest", conflicts_with = "manifest")]
    pub name: Option<String>,
    /// A manifest file instead of a built-in name (same keys as datasets/*.toml).
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Folder to put NAME.zip and NAME/ into.
    #[arg(long, default_value = "data")]
    pub dir: PathBuf,
    /// Download from this URL instead of the manifest's (a mirror); the MD5 is still checked.
    #[arg(long)]
    pub url: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (created; ratings.dat, movies.dat, users.dat are written into it).
    #[arg(long)]
    pub out: PathBuf,
    /// Size preset.
    #[arg(long, value_parser = choice::<Preset>(), default_value = "small")]
    pub preset: Preset,
    /// Seed of the generator: the same preset and seed give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Flags shared by commands that train.
#[derive(Debug, Args, Clone)]
pub struct TrainFlags {
    /// Maximum number of epochs [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: 256].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Early-stopping patience: evaluations without a better monitored metric [default: 2].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Valid metric that picks the best weights and drives early stopping [default: auc].
    #[arg(long, value_parser = choice::<Monitor>())]
    pub monitor: Option<Monitor>,
    /// Evaluate every N steps instead of at the end of every epoch [default: 0 = per epoch].
    #[arg(long)]
    pub eval_every_steps: Option<usize>,
    /// DIN's mini-batch-aware L2 regularization strength on embedding rows [default: 0 = off].
    #[arg(long)]
    pub mba_lambda: Option<f64>,
    /// Batches built ahead on a second thread, 0 = inline [default: 2].
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Batches of similar history length, sorted within windows of N batches of the shuffle
    /// (narrower tensors for short histories; changes which samples share a batch) [default: 0 = off].
    #[arg(long)]
    pub length_buckets: Option<usize>,
    /// Also write a resumable checkpoint every N steps [default: 0 = at evaluations and every 10 min].
    #[arg(long)]
    pub checkpoint_every_steps: Option<usize>,
    /// libtorch intra-op threads, 0 = all cores [default: 0].
    #[arg(long)]
    pub threads: Option<usize>,
    /// libtorch's operators instead of attnrec's fused CPU kernels for DIN's activation unit, the
    /// embeddings' backward and the optimizer's update (`train.fused = false`; same function,
    /// float rounding apart).
    #[arg(long)]
    pub no_fused: bool,
    /// Device: cpu, cuda or cuda:N [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// Embedding width per feature [default: 16].
    #[arg(long)]
    pub embed_dim: Option<i64>,
    #[command(flatten)]
    pub protocol: ProtocolFlags,
    /// No progress bars or per-evaluation lines.
    #[arg(long, short, conflicts_with = "json_lines")]
    pub quiet: bool,
    /// Progress as JSON lines on stdout (events: epoch, progress, eval, checkpoint, done) instead
    /// of bars and tables.
    #[arg(long)]
    pub json_lines: bool,
}

/// The protocol's options (shared/PROTOCOL.md), shared by `train`, `demo` and `data inspect`.
#[derive(Debug, Args, Clone)]
pub struct ProtocolFlags {
    /// History length L: the last L events before each sample [default: 50].
    #[arg(long)]
    pub history_len: Option<usize>,
    /// `rating >= T` is a click [default: 4].
    #[arg(long, allow_negative_numbers = true)]
    pub label_threshold: Option<f64>,
    /// Split rule: ratio (per user, 80/10/10), leave_last_out, global_time [default: ratio].
    #[arg(long, value_parser = choice::<SplitRule>())]
    pub split: Option<SplitRule>,
    /// k-core filter before splitting: drop users with fewer events, repeatedly [default: 0 = off].
    #[arg(long)]
    pub min_user_events: Option<usize>,
    /// k-core filter before splitting: drop items with fewer events, repeatedly [default: 0 = off].
    #[arg(long)]
    pub min_item_events: Option<usize>,
    /// Sampled negatives per positive, for implicit-feedback logs [default: 0 = off].
    #[arg(long)]
    pub negatives: Option<usize>,
    /// Seed of the negative sampler [default: 1].
    #[arg(long)]
    pub negative_seed: Option<u64>,
    /// Which earlier events make up a history: all, or positives (clicks only) [default: all].
    #[arg(long, value_parser = choice::<HistoryRule>())]
    pub history: Option<HistoryRule>,
    /// Add the log2-bucketed time from each history event to its sample as a model input.
    #[arg(long)]
    pub time_gap: bool,
    /// Give each history event its own label (click or not) as a model input; `false` turns it
    /// off [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub history_feedback: Option<bool>,
    /// Embed each user's id; `false` makes every user the one out-of-vocabulary user, so models
    /// know users only by their history and side features [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub user_id: Option<bool>,
    /// User side features, comma-separated: age, gender, occupation (needs a user table).
    #[arg(long, value_parser = choice::<UserFeature>(), value_delimiter = ',')]
    pub user_features: Option<Vec<UserFeature>>,
    /// Item side features, comma-separated: year (from the title), genres (all of them).
    #[arg(long, value_parser = choice::<ItemFeature>(), value_delimiter = ',')]
    pub item_features: Option<Vec<ItemFeature>>,
}

impl ProtocolFlags {
    /// Applies the flags that were given.
    pub fn apply(&self, p: &mut ProtocolConfig) {
        if let Some(v) = self.history_len {
            p.history_len = v;
        }
        if let Some(v) = self.label_threshold {
            p.label_threshold = v;
        }
        if let Some(v) = self.split {
            p.split = v;
        }
        if let Some(v) = self.min_user_events {
            p.min_user_events = v;
        }
        if let Some(v) = self.min_item_events {
            p.min_item_events = v;
        }
        if let Some(v) = self.negatives {
            p.negatives = v;
        }
        if let Some(v) = self.negative_seed {
            p.negative_seed = v;
        }
        if let Some(v) = self.history {
            p.history = v;
        }
        if self.time_gap {
            p.time_gap = true;
        }
        if let Some(v) = self.history_feedback {
            p.history_feedback = v;
        }
        if let Some(v) = self.user_id {
            p.user_id = v;
        }
        if let Some(v) = &self.user_features {
            p.user_features = v.clone();
        }
        if let Some(v) = &self.item_features {
            p.item_features = v.clone();
        }
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder (format detected from its files). Overrides [data].path of --config.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset layout, when detection is not wanted.
    #[arg(long, value_parser = choice::<Format>())]
    pub format: Option<Format>,
    /// Model: base, din, bst, din_sa, dien, attn_pool or attn_pool:PRESET (din, luong_dot, luong_general,
    /// luong_concat, bahdanau, local_m, local_p, hard, transformer). Overrides [model] of --config
    /// with that model's defaults.
    #[arg(long, value_parser = model_name)]
    pub model: Option<String>,
    /// Run folder to write (config.toml, feature_map.json, model.safetensors, metrics).
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the interrupted run RUN (its RUN.partial folder) from its latest checkpoint, with
    /// the config it started with.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["out", "data", "format", "model", "config", "seed", "force"])]
    pub resume: Option<PathBuf>,
    /// TOML config with [data], [protocol], [model], [train] sections; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Random seed for weights, shuffling and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub flags: TrainFlags,
    #[command(flatten)]
    pub print: TableFlag,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run folder written by `attnrec train`.
    pub run: PathBuf,
    /// Split to evaluate.
    #[arg(long, value_parser = choice::<Split>(), default_value = "test")]
    pub split: Split,
    /// Evaluate on another dataset folder (same layout) instead of the run's own.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Compare with this run on the same samples: RelaImpr and DeLong's test of the AUC difference.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Device for the model: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also write every sample's prediction to this CSV (`user_id,label,prob`, in protocol order,
    /// probabilities at full precision), written whole or not at all.
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    #[command(flatten)]
    pub print: TableFlag,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Synthetic preset to generate when --data has no dataset yet.
    #[arg(long, value_parser = choice::<Preset>(), default_value = "small")]
    pub preset: Preset,
    /// Dataset folder; generated from --preset if it holds no ratings.dat [default: data/synth-PRESET].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Folder for the run folders (replaced runs: <out>/<model>-seed<N>).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Models to compare, comma-separated (names as for `train --model`).
    #[arg(long, value_delimiter = ',', default_value = "base,din", value_parser = model_name)]
    pub models: Vec<String>,
    /// Number of seeds per model (42, 43, ...); the table shows mean ± std.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Print the table as JSON lines (one object per run) instead.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub flags: TrainFlags,
    #[command(flatten)]
    pub print: TableFlag,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Synthetic presets to measure on (generated under data/synth-PRESET when missing).
    #[arg(long, value_parser = choice::<Preset>(), value_delimiter = ',', default_value = "small,ml1m")]
    pub presets: Vec<Preset>,
    /// Your own dataset folders (any layout `data inspect` detects), comma-separated, measured
    /// instead of the presets; each is named by its last path component in the tables.
    #[arg(long, value_delimiter = ',', conflicts_with = "presets")]
    pub data: Vec<PathBuf>,
    /// Models, comma-separated (names as for `train --model`).
    #[arg(long, value_delimiter = ',', default_value = "din,bst", value_parser = model_name)]
    pub models: Vec<String>,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub batch_sizes: Vec<usize>,
    /// libtorch intra-op thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Prefetch depths, comma-separated (0 = batches built inline).
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    pub prefetch: Vec<usize>,
    /// `train.length_buckets` values, comma-separated: batches of similar history length, sorted
    /// within windows of this many batches (0 = off, training's default).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub length_buckets: Vec<usize>,
    /// `train.fused` values, comma-separated: DIN's activation unit, the embeddings' backward and
    /// the optimizer's update through attnrec's fused CPU kernels (true, training's default) or
    /// libtorch's operators (false).
    #[arg(long, value_delimiter = ',', default_value = "true")]
    pub fused: Vec<bool>,
    /// Timed training steps per configuration.
    #[arg(long, default_value_t = 200)]
    pub steps: usize,
    /// Untimed steps before the timed ones.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print JSON lines (one object per configuration) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Measure data preparation instead of training: each preset goes through a child
    /// `attnrec data prepare` into a temporary cache; wall time, rows/s, peak RSS and stage times.
    #[arg(long)]
    pub prepare: bool,
    /// Measure scoring instead of training: a child `attnrec score` of every (user, item) pair of
    /// the preset's log (no timestamps: full histories) with an untrained run of each model,
    /// reading the CSV and writing the output included; wall time, rows/s and peak RSS.
    #[arg(long)]
    pub score: bool,
    /// With --score: candidate rows (the log's pairs repeated as needed) [default: one pass].
    #[arg(long)]
    pub score_rows: Option<usize>,
    /// With --score: also cut the candidates and the log into N parts by user (each list entry
    /// one measurement) and score them as co-partitioned parts, one child `score --parts k/N` per
    /// part; peak RSS is the largest task's.
    #[arg(long, value_delimiter = ',', requires = "score")]
    pub score_parts: Vec<usize>,
    /// With --score-parts: tasks run at once (as a Spark executor's cores would).
    #[arg(long, default_value_t = 1, requires = "score_parts")]
    pub score_tasks: usize,
    /// Also time the PyTorch reference (benchmarks/reference/attnrec_ref.py: base, din, bst, din_sa) right
    /// after each attnrec measurement, on the same prepared samples, and print the ratio.
    #[arg(long)]
    pub reference: bool,
    /// The reference script.
    #[arg(long, default_value = "benchmarks/reference/attnrec_ref.py")]
    pub reference_script: PathBuf,
    /// Run the preparation, training and scoring benches in turn and end with one summary table
    /// (with --reference: attnrec against the PyTorch reference, and the ratio).
    #[arg(long, conflicts_with_all = ["prepare", "score"])]
    pub all: bool,
    #[command(flatten)]
    pub print: TableFlag,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Run folder written by `attnrec train` (a model with target attention).
    #[arg(long)]
    pub run: PathBuf,
    /// The user id, as written in the dataset.
    #[arg(long)]
    pub user: String,
    /// The candidate item id, as written in the dataset.
    #[arg(long)]
    pub item: String,
    /// Request time: the history is the user's events strictly before it [default: all of them].
    #[arg(long, allow_negative_numbers = true)]
    pub at: Option<i64>,
    /// Dataset folder whose log gives the history [default: the run's own dataset].
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Folder for the heat map [default: RUN/explain].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the explanation as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder written by `attnrec train`.
    #[arg(long)]
    pub run: PathBuf,
    /// The module file to write; STEM.json, STEM.feature_map.json and STEM.example.npz go beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Rows per call of the module (tracing fixes the shapes; pad a short last batch).
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Dataset folder whose test split gives the traced and example batches [default: the run's].
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Run folder written by `attnrec train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Candidates: CSV with a header, or Parquet, holding at least the user and item columns; or a
    /// folder of such parts (Spark's part-*.parquet / part-*.csv; names starting with . or _ are
    /// skipped), scored part by part.
    #[arg(long)]
    pub candidates: PathBuf,
    /// Output (written whole or not at all): Parquet if it ends in .parquet or .pq, else CSV; `-`
    /// for CSV on standard output. For a folder of candidates, a folder: one output part per
    /// input part, same name and format; a rerun skips the parts already written.
    #[arg(long)]
    pub output: PathBuf,
    /// Dataset folder whose log gives the histories [default: the run's own dataset]. Its ratings
    /// file may be a folder of parts (u.data/, ratings.csv/, or the [data.log] file's name).
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// With a folder of candidates: score every N-th part from the I-th (0-based), so that tasks
    /// of a Spark, Kubernetes or SLURM job can share the parts out.
    #[arg(long, value_name = "I/N", requires = "output")]
    pub parts: Option<attnrec::score::PartSlice>,
    /// With a folder of candidates: the history's ratings folder holds as many parts as the
    /// candidates, part k holding the users of candidates part k (both partitioned by the same
    /// user key); each part is scored with its own history part only.
    #[arg(long, requires = "history")]
    pub co_partitioned: bool,
    /// Keep each user's best K candidates, grouped by user, with a `rank` column.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Also write the logit.
    #[arg(long)]
    pub logit: bool,
    /// Add `top_attended`: each row's 3 history items with the largest target-attention weight
    /// (mean over heads), as `item:weight;…`.
    #[arg(long)]
    pub explain: bool,
    /// Fail on the first unknown user or item instead of scoring it as out-of-vocabulary.
    #[arg(long)]
    pub strict: bool,
    /// Name of the user id column.
    #[arg(long, default_value = "user_id")]
    pub user_col: String,
    /// Name of the item id column.
    #[arg(long, default_value = "item_id")]
    pub item_col: String,
    /// Name of the optional request-time column: histories are the events strictly before it.
    #[arg(long, default_value = "timestamp")]
    pub time_col: String,
    /// Rows per forward pass [default: 2048 for a one-block bst, whose encoder scores through a
    /// fused kernel; 512 for din_sa, which encodes each distinct history of a batch once; 128
    /// otherwise, which keeps libtorch's intermediates in cache].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Rows read, scored and written per chunk (bounds memory).
    #[arg(long, default_value_t = 65536)]
    pub chunk_rows: usize,
    /// Scoring threads, each scoring whole batches with its own copy of the model; 0 = all cores.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar or closing summary.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Parses a flag's value into a library [`Choice`] by its name (or an alias), and lists the names
/// with their help in `--help`: the library's types know no command line.
pub struct ChoiceParser<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Clone for ChoiceParser<T> {
    fn clone(&self) -> Self {
        ChoiceParser(std::marker::PhantomData)
    }
}

/// A model name as `ModelConfig::by_name` reads it (a `ModelKind`, or `attn_pool:PRESET`),
/// checked while the command line is parsed, so that a typo stops before any data is touched.
fn model_name(s: &str) -> Result<String, String> {
    attnrec::models::ModelConfig::by_name(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

pub fn choice<T: Choice>() -> ChoiceParser<T> {
    ChoiceParser(std::marker::PhantomData)
}

impl<T: Choice> ChoiceParser<T> {
    fn values() -> impl Iterator<Item = PossibleValue> {
        T::ALL.iter().map(|v| {
            let help = v.help();
            let value = PossibleValue::new(v.name_of());
            if help.is_empty() {
                value
            } else {
                value.help(help)
            }
        })
    }
}

impl<T: Choice> TypedValueParser for ChoiceParser<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<T, clap::Error> {
        if let Some(v) = value.to_str().and_then(T::parse_name) {
            return Ok(v);
        }
        // Not a name: clap's own message, which lists the possible values.
        PossibleValuesParser::new(Self::values()).parse_ref(cmd, arg, value)?;
        Err(clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Self::values()))
    }
}
