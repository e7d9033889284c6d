//! char-rnn: train a character-level language model and sample from it (Karpathy's
//! char-rnn, on fused-rnn's kernels).
//!
//! ```text
//! cargo run --release --example char_rnn                      # train on the embedded corpus
//! cargo run --release --example char_rnn -- sample --prime "fn main"
//! cargo run --release --example char_rnn -- train --data input.txt --steps 3000
//! cargo run --release --example char_rnn -- train --resume     # continue where it stopped
//! cargo run --release --example char_rnn -- corpus > corpus.txt  # the embedded text
//! ```
//!
//! With no arguments it trains a 2 x 256 LSTM (embedding 64, 32 streams, windows of 64
//! characters, Adam 2e-3, clipping at 5: the recipe of `../shared/bench/char_rnn_torch.py`)
//! on this crate's own Rust source, compiled in, shows its progress, prints samples as it
//! learns, and saves `char-rnn.safetensors`, which `sample` then reads.

mod checkpoint;
mod corpus;
mod model;
mod sample;
mod speed;
mod train;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use corpus::Text;
use model::{CharModel, ModelConfig};
use sample::SampleOptions;
use speed::Speed;
use train::{TrainOptions, Trainer};

#[derive(Parser, Debug)]
#[command(about = "Train a character-level language model with fused-rnn, and sample from it.")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train (the default).
    Train(TrainArgs),
    /// Generate text from a checkpoint.
    Sample(SampleArgs),
    /// Print the embedded corpus (to run ../shared/bench/char_rnn_torch.py on the same text).
    Corpus,
}

/// Options of `train`. Model and recipe options left out take the defaults, or on
/// `--resume` the checkpoint's (given ones must agree with it).
#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// A UTF-8 text file to train on (default: the embedded corpus, this crate's source).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where the checkpoint is written (and read by --resume and `sample`).
    #[arg(long, default_value = "char-rnn.safetensors")]
    checkpoint: PathBuf,
    /// Continue the run saved in --checkpoint.
    #[arg(long)]
    resume: bool,
    /// Train until this many updates in total.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// lstm, gru or rnn [default: lstm].
    #[arg(long)]
    cell: Option<String>,
    /// Stacked layers [default: 2].
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden units per layer [default: 256].
    #[arg(long)]
    hidden: Option<usize>,
    /// Embedding size [default: 64].
    #[arg(long)]
    embed: Option<usize>,
    /// Parallel streams [default: 32].
    #[arg(long)]
    batch: Option<usize>,
    /// Characters per window [default: 64].
    #[arg(long)]
    seq: Option<usize>,
    /// Learning rate [default: 2e-3 for adam, 0.1 for adagrad].
    #[arg(long)]
    lr: Option<f64>,
    /// Clip gradients to this global norm [default: 5].
    #[arg(long)]
    clip: Option<f64>,
    /// adam or adagrad [default: adam].
    #[arg(long)]
    optimizer: Option<String>,
    /// Seeds the initialization (and the samples).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Measure the validation loss every this many steps.
    #[arg(long, default_value_t = 200)]
    eval_every: u64,
    /// Print a sample every this many steps (0: never).
    #[arg(long, default_value_t = 400)]
    sample_every: u64,
    /// Save a checkpoint every this many steps (and at the end, and on Ctrl-C).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
}

#[derive(Args, Debug)]
struct SampleArgs {
    /// The checkpoint to sample from.
    #[arg(long, default_value = "char-rnn.safetensors")]
    checkpoint: PathBuf,
    /// Text the model reads before generating.
    #[arg(long, default_value = "fn ")]
    prime: String,
    /// Characters to generate.
    #[arg(long, default_value_t = 600)]
    length: usize,
    /// Below 1: safer, more repetitive; above 1: wilder.
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Sample among the k most likely characters only (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Sample(args)) => run_sample(&args),
        Some(Command::Train(args)) => run_train(&args),
        Some(Command::Corpus) => {
            print!("{}", corpus::embedded());
            Ok(())
        }
        None => run_train(&cli.train),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn bits(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}

/// The training text: the file given, or the embedded corpus.
fn text_of(args: &TrainArgs) -> Result<String, String> {
    match &args.data {
        Some(path) => Text::read(path),
        None => Ok(corpus::embedded()),
    }
}

/// Fails early, before any training, if the checkpoint's folder cannot be written.
fn check_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".char-rnn-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| format!("cannot write checkpoints into {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    if path.is_dir() {
        return Err(format!(
            "{} is a folder, not a checkpoint file",
            path.display()
        ));
    }
    Ok(())
}

/// A fresh run from the arguments, or the checkpoint's run continued.
fn trainer(args: &TrainArgs, text: &str) -> Result<Trainer, String> {
    if args.resume {
        let saved =
            checkpoint::load(&args.checkpoint).map_err(|e| format!("cannot resume: {e}"))?;
        let c = &saved.model.config;
        let o = &saved.opts;
        let given = [
            ("cell", args.cell.clone().map(|v| v != c.cell)),
            ("layers", args.layers.map(|v| v != c.layers)),
            ("hidden", args.hidden.map(|v| v != c.hidden)),
            ("embed", args.embed.map(|v| v != c.embed)),
            ("batch", args.batch.map(|v| v != o.batch)),
            ("seq", args.seq.map(|v| v != o.seq)),
            ("lr", args.lr.map(|v| v != o.lr)),
            ("clip", args.clip.map(|v| v != o.clip)),
            (
                "optimizer",
                args.optimizer.clone().map(|v| v != o.optimizer),
            ),
        ];
        if let Some((name, _)) = given.iter().find(|(_, differs)| *differs == Some(true)) {
            return Err(format!(
                "cannot resume: --{name} differs from the checkpoint's (leave it out to keep the checkpoint's)"
            ));
        }
        return saved.resume(text);
    }
    let text = Text::new(text)?;
    let optimizer = args.optimizer.clone().unwrap_or_else(|| "adam".into());
    let lr = args
        .lr
        .unwrap_or(if optimizer == "adagrad" { 0.1 } else { 2e-3 });
    let config = ModelConfig {
        cell: args.cell.clone().unwrap_or_else(|| "lstm".into()),
        layers: args.layers.unwrap_or(2),
        hidden: args.hidden.unwrap_or(256),
        embed: args.embed.unwrap_or(64),
        vocab: text.vocab.len(),
    };
    let opts = TrainOptions {
        batch: args.batch.unwrap_or(32),
        seq: args.seq.unwrap_or(64),
        lr,
        clip: args.clip.unwrap_or(5.0),
        optimizer,
        seed: args.seed,
    };
    Trainer::new(CharModel::new(config, args.seed)?, text, opts)
}

fn run_train(args: &TrainArgs) -> Result<(), String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .map_err(|e| e.to_string())?;
    pool.install(|| train_loop(args))
}

fn train_loop(args: &TrainArgs) -> Result<(), String> {
    check_writable(&args.checkpoint)?;
    let text = text_of(args)?;
    let mut t = trainer(args, &text)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second Ctrl-C while saving falls back to the default (the checkpoint is atomic).
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let c = &t.model.config;
    println!(
        "char-rnn: {} x {} {} (embedding {}), vocabulary {}, {} training / {} validation characters, {} streams x {} steps, {} threads",
        c.layers,
        c.hidden,
        c.cell,
        c.embed,
        c.vocab,
        t.text.split().0.len(),
        t.text.split().1.len(),
        t.opts.batch,
        t.opts.seq,
        rayon::current_num_threads()
    );
    let bar = ProgressBar::new(args.steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:28} {pos}/{len} | {msg} | {elapsed_precise} ETA {eta_precise}",
        )
        .expect("a valid template"),
    );
    bar.set_position(t.step);
    let (mut speed, mut trained) = (Speed::new(t.opts.batch * t.opts.seq), 0u64);
    let (mut last_train, mut last_valid) = (f64::NAN, f64::NAN);
    let started = Instant::now();
    // The samples start from "fn " (or what of it the vocabulary has).
    let prime: String = "fn "
        .chars()
        .filter(|ch| t.text.vocab.contains(ch))
        .collect();
    let sample_opts = |step: u64, length: usize| SampleOptions {
        prime: prime.clone(),
        length,
        temperature: 0.8,
        top_k: 0,
        seed: args.seed ^ step,
    };
    while t.step < args.steps {
        let at = Instant::now();
        last_train = bits(t.train_step()?);
        speed.add(at.elapsed());
        trained += 1;
        let step = t.step;
        let evaluated = step % args.eval_every.max(1) == 0 || step == args.steps;
        if evaluated {
            last_valid = bits(t.evaluate()?);
        }
        let status = format!(
            "train {last_train:.3} bpc | valid {last_valid:.3} bpc | {:.1}K chars/s",
            speed.chars_per_s() / 1e3
        );
        bar.set_message(status.clone());
        bar.set_position(step);
        // Without a terminal the bar is hidden: log a line at each evaluation instead.
        if bar.is_hidden() && evaluated {
            println!("step {step}/{}: {status}", args.steps);
        }
        if args.sample_every > 0 && step % args.sample_every == 0 && step < args.steps {
            let s = sample::sample(&t.model, &t.text.vocab, &sample_opts(step, 200))?;
            bar.suspend(|| println!("---- sample at step {step} ----\n{prime}{s}\n"));
        }
        let interrupted = stop.load(Ordering::SeqCst);
        if step % args.checkpoint_every.max(1) == 0 || step == args.steps || interrupted {
            checkpoint::save(&t, &args.checkpoint)?;
        }
        if interrupted {
            bar.abandon();
            println!(
                "interrupted at step {step}: checkpoint saved to {} (continue with --resume)",
                args.checkpoint.display()
            );
            std::process::exit(130);
        }
    }
    if trained == 0 {
        checkpoint::save(&t, &args.checkpoint)?;
        last_valid = bits(t.evaluate()?);
    }
    bar.finish();
    let s = sample::sample(&t.model, &t.text.vocab, &sample_opts(t.step, 600))?;
    println!("---- final sample ----\n{prime}{s}\n");
    println!(
        "done: {} steps ({trained} in this run) in {:.1} s, {:.0} chars/s; train {last_train:.3} bpc, validation {last_valid:.3} bpc; checkpoint {}",
        t.step,
        started.elapsed().as_secs_f64(),
        speed.chars_per_s(),
        args.checkpoint.display()
    );
    Ok(())
}

fn run_sample(args: &SampleArgs) -> Result<(), String> {
    let saved = checkpoint::load(&args.checkpoint)?;
    let opts = SampleOptions {
        prime: args.prime.clone(),
        length: args.length,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let text = sample::sample(&saved.model, &saved.vocab, &opts)?;
    println!("{}{text}", args.prime);
    Ok(())
}
