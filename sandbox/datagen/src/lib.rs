//! Synthetic public data for a real city (包头市): residents, legal entities, social insurance
//! contributions and household utility use, as Parquet files with their catalog entries, plus the
//! synthetic twin of each dataset that operators develop against.
//!
//! Deterministic: the same scale and seed give the same bytes, however many threads run. Every
//! random value comes from a stream named by (seed, dataset, chunk), and chunks are written in
//! order.
//!
//! Nothing here reads real data; everything it writes is invented.

mod city;
mod firms;
mod homes;
pub mod ids;
mod people;
mod spec;

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use spec::DatasetSpec;

/// The largest scale accepted: the people table is held in memory (about 40 bytes a person).
pub const MAX_SCALE: u64 = 200_000_000;
/// Twins are this size unless asked otherwise: large enough to be realistic, small enough for
/// quick development runs.
pub const DEFAULT_TWIN_SCALE: u64 = 100_000;

#[derive(Debug, Clone)]
pub struct Config {
    /// The catalog folder to write: entries at its top, data in `data/`, twins in `twin/`.
    pub out: PathBuf,
    /// Residents; the other datasets scale with it.
    pub scale: u64,
    pub seed: u64,
    /// Residents in the synthetic twin; by default the smaller of `scale` and 100 000.
    pub twin_scale: Option<u64>,
    /// Draw progress bars on standard error (only when it is a terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DatagenError {
    #[error("scale must be between 1 and {MAX_SCALE}, got {0}")]
    Scale(u64),
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write Parquet file {}: {source}", path.display())]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Summary {
    pub datasets: Vec<DatasetSummary>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone)]
pub struct DatasetSummary {
    pub id: &'static str,
    pub rows: u64,
    pub twin_rows: u64,
    pub bytes: u64,
}

/// Writes the four datasets, their twins and their catalog entries into `config.out`.
pub fn generate(config: &Config) -> Result<Summary, DatagenError> {
    let twin_scale = config.twin_scale.unwrap_or(config.scale.min(DEFAULT_TWIN_SCALE));
    for scale in [config.scale, twin_scale] {
        if !(1..=MAX_SCALE).contains(&scale) {
            return Err(DatagenError::Scale(scale));
        }
    }
    let started = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DatagenError::Io { path, source }
    };
    for sub in ["data", "twin"] {
        let dir = config.out.join(sub);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
    }

    let progress = if config.progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bars = MultiProgress::with_draw_target(progress);
    let seed = Seed::new(config.seed);
    let real = write_set(&seed, config.scale, &config.out.join("data"), &bars, "")?;
    let twin = write_set(&seed.twin(), twin_scale, &config.out.join("twin"), &bars, " (twin)")?;

    let mut datasets = Vec::new();
    for ((spec, real), twin) in SPECS.iter().zip(real).zip(twin) {
        let file = format!("data/{}.parquet", spec.id);
        let twin_file = format!("twin/{}.parquet", spec.id);
        let entry = config.out.join(format!("{}.toml", spec.id));
        let text = spec.entry(config.scale, config.seed, &file, &twin_file);
        write_atomically(&entry, text.as_bytes()).map_err(io(&entry))?;
        datasets.push(DatasetSummary { id: spec.id, rows: real.rows, twin_rows: twin.rows, bytes: real.bytes });
    }
    Ok(Summary { datasets, elapsed: started.elapsed() })
}

const SPECS: [&DatasetSpec; 4] = [&spec::PERSONS, &spec::ENTERPRISES, &spec::SOCIAL_INSURANCE, &spec::UTILITY_USAGE];

struct Written {
    rows: u64,
    bytes: u64,
}

/// Rows per chunk: one random stream and one Parquet row group's worth of work at a time.
const PEOPLE_PER_CHUNK: usize = 65_536;
const HOUSEHOLDS_PER_CHUNK: u64 = 16_384;

/// Writes one complete set (real or twin) into `dir`, the four files side by side on the thread
/// pool. Returns them in the order of [`SPECS`].
fn write_set(
    seed: &Seed,
    scale: u64,
    dir: &Path,
    bars: &MultiProgress,
    label: &str,
) -> Result<Vec<Written>, DatagenError> {
    let bar = |spec: &DatasetSpec, len: u64, unit: &str| {
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:>28}} {{bar:30}} {{human_pos:>11}}/{{human_len:11}} {unit} {{per_sec:>14}} {{eta:>4}}"
        ))
        .expect("valid template");
        let bar = bars.add(ProgressBar::new(len).with_style(style));
        bar.set_prefix(format!("{}{label}", spec.id));
        bar
    };

    let people = people::draw_people(seed, scale);
    let firms = firms::draw_firms(seed, firms::firm_count(scale));
    let employers = firms::employer_weights(&firms);
    let households = homes::household_count(scale);
    let path = |spec: &DatasetSpec| dir.join(format!("{}.parquet", spec.id));

    let persons_bar = bar(&spec::PERSONS, scale, "persons");
    let firms_bar = bar(&spec::ENTERPRISES, firms.len() as u64, "firms");
    let insurance_bar = bar(&spec::SOCIAL_INSURANCE, scale, "persons");
    let homes_bar = bar(&spec::UTILITY_USAGE, households, "homes");

    let persons = || {
        let batches = people.chunks(PEOPLE_PER_CHUNK).enumerate().map(|(i, chunk)| {
            persons_bar.inc(chunk.len() as u64);
            people::persons_batch(seed, i as u64, chunk)
        });
        write_parquet(&path(&spec::PERSONS), &spec::PERSONS, batches)
    };
    let enterprises = || {
        let batches = firms.chunks(PEOPLE_PER_CHUNK).map(|chunk| {
            firms_bar.inc(chunk.len() as u64);
            firms::enterprises_batch(chunk)
        });
        write_parquet(&path(&spec::ENTERPRISES), &spec::ENTERPRISES, batches)
    };
    let insurance = || {
        let batches = people.chunks(PEOPLE_PER_CHUNK / 4).enumerate().map(|(i, chunk)| {
            insurance_bar.inc(chunk.len() as u64);
            people::social_insurance_batch(seed, i as u64, chunk, &firms, &employers)
        });
        write_parquet(&path(&spec::SOCIAL_INSURANCE), &spec::SOCIAL_INSURANCE, batches)
    };
    let utility = || {
        let batches = (0..households.div_ceil(HOUSEHOLDS_PER_CHUNK)).map(|i| {
            let first = i * HOUSEHOLDS_PER_CHUNK;
            let count = HOUSEHOLDS_PER_CHUNK.min(households - first);
            homes_bar.inc(count);
            homes::utility_batch(seed, i, first, count)
        });
        write_parquet(&path(&spec::UTILITY_USAGE), &spec::UTILITY_USAGE, batches)
    };

    // The two large files on one side, the two smaller on the other: about even on two cores.
    let ((a, b), (c, d)) = rayon::join(|| (insurance(), enterprises()), || (utility(), persons()));
    for bar in [&persons_bar, &firms_bar, &insurance_bar, &homes_bar] {
        bar.finish();
    }
    Ok(vec![d?, b?, a?, c?])
}

/// Writes `batches` to `path` through a temporary file, so that a crash never leaves a file that
/// looks complete.
fn write_parquet(
    path: &Path,
    spec: &DatasetSpec,
    batches: impl Iterator<Item = RecordBatch>,
) -> Result<Written, DatagenError> {
    let parquet = |source| DatagenError::Parquet { path: path.to_path_buf(), source };
    let io = |source| DatagenError::Io { path: path.to_path_buf(), source };
    let partial = path.with_extension("parquet.partial");
    let file = File::create(&partial).map_err(io)?;
    // A fixed `created_by` keeps the bytes independent of the parquet crate's version.
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("sandbox datagen".to_owned())
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut writer = ArrowWriter::try_new(BufWriter::with_capacity(1 << 20, file), spec.schema(), Some(properties))
        .map_err(parquet)?;
    let mut rows = 0;
    for batch in batches {
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(parquet)?;
    }
    let file = writer.into_inner().map_err(parquet)?.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    fs::rename(&partial, path).map_err(io)?;
    Ok(Written { rows, bytes })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("toml.partial");
    fs::write(&partial, bytes)?;
    File::open(&partial)?.sync_all()?;
    fs::rename(&partial, path)
}

/// The root of every random stream of one generated set.
#[derive(Debug, Clone)]
pub(crate) struct Seed(u64);

impl Seed {
    fn new(seed: u64) -> Seed {
        Seed(seed)
    }

    /// The seed of the synthetic twin: derived, so one `--seed` fixes both sets.
    fn twin(&self) -> Seed {
        let digest = Sha256::digest(format!("sandbox twin of {}", self.0));
        Seed(u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")))
    }

    /// The random stream `stream` number `index`: independent of every other stream.
    pub(crate) fn rng(&self, stream: &str, index: u64) -> ChaCha8Rng {
        let mut hasher = Sha256::new();
        hasher.update(self.0.to_le_bytes());
        hasher.update(stream.as_bytes());
        hasher.update(index.to_le_bytes());
        ChaCha8Rng::from_seed(hasher.finalize().into())
    }
}

/// A standard normal variate (Box–Muller), so that no distribution crate is needed for one curve.
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Year, month and day of a day number (days since 1970-01-01).
pub(crate) fn date_parts(days: i32) -> (i32, u32, u32) {
    use chrono::Datelike;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let date = epoch + chrono::TimeDelta::days(i64::from(days));
    (date.year(), date.month(), date.day())
}
