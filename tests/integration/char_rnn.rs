//! The char-rnn job (examples/char_rnn): its modules are compiled into this test binary as
//! they are (see `main.rs`), and its binary (built by `cargo test` with the other examples)
//! is run for what only a process can show: exit codes, error messages, and checkpoints that
//! survive SIGKILL.

use crate::{checkpoint, corpus, model, sample, train};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use corpus::Text;
use model::{CharModel, ModelConfig};
use train::{TrainOptions, Trainer};

/// A text a tiny model learns in a few dozen steps.
fn small_text() -> String {
    "the quick brown fox jumps over the lazy dog. ".repeat(60)
}

/// A tiny model and recipe over `text`.
fn tiny(text: &str, optimizer: &str) -> Trainer {
    let text = Text::new(text).unwrap();
    let config = ModelConfig {
        cell: "lstm".into(),
        layers: 2,
        hidden: 24,
        embed: 8,
        vocab: text.vocab.len(),
    };
    let opts = TrainOptions {
        batch: 4,
        seq: 12,
        lr: if optimizer == "adam" { 1e-2 } else { 0.1 },
        clip: 5.0,
        optimizer: optimizer.into(),
        seed: 3,
    };
    Trainer::new(CharModel::new(config, 3).unwrap(), text, opts).unwrap()
}

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("fused-rnn-char-rnn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_short_training_run_learns() {
    for optimizer in ["adam", "adagrad"] {
        let mut t = tiny(&small_text(), optimizer);
        let before = t.evaluate().unwrap();
        let first: Vec<f64> = (0..5).map(|_| t.train_step().unwrap()).collect();
        for _ in 0..80 {
            t.train_step().unwrap();
        }
        let last: Vec<f64> = (0..5).map(|_| t.train_step().unwrap()).collect();
        let after = t.evaluate().unwrap();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            mean(&last) < 0.6 * mean(&first),
            "{optimizer}: train {first:?} -> {last:?}"
        );
        assert!(
            after < 0.6 * before,
            "{optimizer}: validation {before} -> {after}"
        );
    }
}

#[test]
fn a_resumed_run_gives_bitwise_the_same_losses() {
    let dir = temp_dir("resume");
    let path = dir.join("ck.safetensors");
    // Enough steps to wrap around the streams (a new epoch resets the carried state).
    let (first, second) = (13, 17);
    let mut whole = tiny(&small_text(), "adam");
    let want: Vec<u64> = (0..first + second)
        .map(|_| whole.train_step().unwrap().to_bits())
        .collect();
    let mut part = tiny(&small_text(), "adam");
    let mut got: Vec<u64> = (0..first)
        .map(|_| part.train_step().unwrap().to_bits())
        .collect();
    checkpoint::save(&part, &path).unwrap();
    drop(part);
    let mut resumed = checkpoint::load(&path)
        .unwrap()
        .resume(&small_text())
        .unwrap();
    assert_eq!(resumed.step, first as u64);
    got.extend((0..second).map(|_| resumed.train_step().unwrap().to_bits()));
    assert_eq!(got, want);
    assert_eq!(
        resumed.evaluate().unwrap().to_bits(),
        whole.evaluate().unwrap().to_bits()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoints_round_trip_every_part_of_the_run() {
    let dir = temp_dir("round-trip");
    for optimizer in ["adam", "adagrad"] {
        let path = dir.join(format!("{optimizer}.safetensors"));
        let mut t = tiny(&small_text(), optimizer);
        for _ in 0..3 {
            t.train_step().unwrap();
        }
        checkpoint::save(&t, &path).unwrap();
        let back = checkpoint::load(&path)
            .unwrap()
            .resume(&small_text())
            .unwrap();
        assert_eq!(back.model.config, t.model.config);
        assert_eq!(back.model.embed, t.model.embed);
        assert_eq!(back.model.rnn.params(), t.model.rnn.params());
        assert_eq!(back.model.head, t.model.head);
        assert_eq!(back.optim, t.optim);
        assert_eq!(back.opts, t.opts);
        assert_eq!((back.step, back.pos), (t.step, t.pos));
        assert_eq!(back.carried(), t.carried());
        assert_eq!(back.text, t.text);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_on_a_text_with_new_characters_is_an_error() {
    let dir = temp_dir("vocab");
    let path = dir.join("ck.safetensors");
    let t = tiny(&small_text(), "adam");
    checkpoint::save(&t, &path).unwrap();
    let err = checkpoint::load(&path)
        .unwrap()
        .resume("ZZZ the lazy dog")
        .err()
        .unwrap();
    assert!(err.contains("'Z'") && err.contains("vocabulary"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_and_foreign_checkpoints_are_errors() {
    let dir = temp_dir("corrupt");
    let path = dir.join("ck.safetensors");
    let t = tiny(&small_text(), "adam");
    checkpoint::save(&t, &path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.join("bad.safetensors");
    for cut in [0, 7, 8, 100, good.len() / 2, good.len() - 1] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        assert!(
            checkpoint::load(&bad).is_err(),
            "a checkpoint cut at {cut} bytes loaded"
        );
    }
    // A valid safetensors file that is not a char-rnn checkpoint: parameters only.
    let config = fused_rnn::Config::lstm(2, 2);
    let p = fused_rnn::Params::<f32>::init(&config, 0).unwrap();
    fused_rnn::io::save_params_file(&bad, &p, &config).unwrap();
    let err = checkpoint::load(&bad).err().unwrap();
    assert!(err.contains("not a usable char-rnn checkpoint"), "{err}");
    assert!(checkpoint::load(&dir.join("missing.safetensors")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Found while writing the `load_files` fuzz target: a checkpoint whose metadata claims a
/// huge model made the loader allocate it (an abort) before the tensors were compared.
#[test]
fn a_checkpoint_claiming_a_larger_model_than_it_holds_is_refused_before_allocating() {
    use fused_rnn::checkpoint::Checkpoint;
    let dir = temp_dir("oversized");
    let path = dir.join("ck.safetensors");
    checkpoint::save(&tiny(&small_text(), "adam"), &path).unwrap();
    for hidden in ["1000000000", "4000000000000000000"] {
        let mut ck = Checkpoint::<f32>::load(&path).unwrap();
        let model = ck.metadata["model"].replace("\"hidden\":24", &format!("\"hidden\":{hidden}"));
        assert_ne!(model, ck.metadata["model"]);
        ck.metadata.insert("model".into(), model);
        let err = checkpoint::from_checkpoint(ck).err().unwrap();
        assert!(
            err.contains("larger than the tensors") || err.contains("overflow"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn texts_that_cannot_train_are_errors() {
    assert!(Text::new("").is_err());
    let dir = temp_dir("texts");
    let (empty, binary) = (dir.join("empty.txt"), dir.join("binary.txt"));
    std::fs::write(&empty, b"").unwrap();
    std::fs::write(&binary, [0x66, 0x6e, 0xff, 0xfe, 0x20]).unwrap();
    assert!(Text::read(&empty).unwrap_err().contains("empty"));
    assert!(Text::read(&binary).unwrap_err().contains("UTF-8"));
    // Too short for the streams.
    let text = Text::new("abc").unwrap();
    let config = ModelConfig {
        cell: "lstm".into(),
        layers: 1,
        hidden: 4,
        embed: 2,
        vocab: 3,
    };
    let opts = TrainOptions {
        batch: 4,
        seq: 8,
        lr: 0.01,
        clip: 5.0,
        optimizer: "adam".into(),
        seed: 0,
    };
    assert!(Trainer::new(CharModel::new(config, 0).unwrap(), text, opts).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn samples_follow_the_prime_and_the_vocabulary() {
    let mut t = tiny(&small_text(), "adam");
    for _ in 0..60 {
        t.train_step().unwrap();
    }
    let opts = sample::SampleOptions {
        prime: "the ".into(),
        length: 40,
        temperature: 0.5,
        top_k: 3,
        seed: 1,
    };
    let s = sample::sample(&t.model, &t.text.vocab, &opts).unwrap();
    assert_eq!(s.chars().count(), 40);
    assert!(s.chars().all(|c| t.text.vocab.contains(&c)));
    // Seeded: the same sample again.
    assert_eq!(sample::sample(&t.model, &t.text.vocab, &opts).unwrap(), s);
    let bad = sample::SampleOptions {
        prime: "Q".into(),
        ..opts.clone()
    };
    assert!(sample::sample(&t.model, &t.text.vocab, &bad).is_err());
    let bad = sample::SampleOptions {
        temperature: 0.0,
        ..opts
    };
    assert!(sample::sample(&t.model, &t.text.vocab, &bad).is_err());
}

#[test]
fn the_embedded_corpus_is_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut stack = vec![root.join("src"), root.join("kernels/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files.sort();
    let listed: Vec<String> = corpus::SOURCES.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(
        listed, files,
        "examples/char_rnn/corpus.rs must list every source file"
    );
}

/// The example's binary, built by `cargo test` beside this test's.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("char_rnn{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: `cargo test --workspace` builds the examples (or run `cargo build --example char_rnn` first)",
        bin.display()
    );
    bin
}

/// Runs the binary with a tiny model on `data` (plus `args`).
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

const TINY: &[&str] = &[
    "--layers",
    "1",
    "--hidden",
    "12",
    "--embed",
    "4",
    "--batch",
    "2",
    "--seq",
    "8",
    "--eval-every",
    "1000",
    "--sample-every",
    "0",
];

/// An error exit: code 1, a message, no panic.
fn assert_error(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(
        stderr.contains("error:") && !stderr.contains("panicked"),
        "{what}: {stderr}"
    );
}

#[test]
fn the_binary_reports_bad_input_and_never_damages_a_checkpoint() {
    let dir = temp_dir("cli");
    std::fs::write(dir.join("data.txt"), small_text()).unwrap();
    std::fs::write(dir.join("empty.txt"), "").unwrap();
    std::fs::write(dir.join("binary.txt"), [0xff, 0xfe, 0x00]).unwrap();
    std::fs::write(dir.join("a-file"), "").unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train"];
        args.extend_from_slice(TINY);
        args.extend_from_slice(extra);
        run(&dir, &args)
    };
    let ok = train(&["--data", "data.txt", "--steps", "3"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let good = std::fs::read(dir.join("char-rnn.safetensors")).unwrap();
    assert_error(&train(&["--data", "empty.txt"]), "empty data");
    assert_error(&train(&["--data", "binary.txt"]), "non-UTF-8 data");
    assert_error(&train(&["--data", "missing.txt"]), "missing data");
    assert_error(
        &train(&[
            "--data",
            "data.txt",
            "--checkpoint",
            "a-file/ck.safetensors",
        ]),
        "unwritable folder",
    );
    let mismatch = [
        "train", "--data", "data.txt", "--resume", "--hidden", "13", "--steps", "6",
    ];
    assert_error(&run(&dir, &mismatch), "configuration mismatch");
    assert_error(
        &train(&["--data", "binary.txt", "--resume", "--steps", "6"]),
        "resume on bad data",
    );
    std::fs::write(dir.join("other.txt"), "QQQQ".repeat(100)).unwrap();
    assert_error(
        &train(&["--data", "other.txt", "--resume", "--steps", "6"]),
        "vocabulary mismatch",
    );
    assert_error(
        &run(&dir, &["sample", "--checkpoint", "missing.safetensors"]),
        "missing checkpoint",
    );
    std::fs::write(dir.join("junk.safetensors"), b"junk").unwrap();
    assert_error(
        &run(&dir, &["sample", "--checkpoint", "junk.safetensors"]),
        "corrupt checkpoint",
    );
    assert_eq!(
        std::fs::read(dir.join("char-rnn.safetensors")).unwrap(),
        good,
        "a failed run changed the checkpoint"
    );
    // And the good checkpoint still samples and resumes.
    let s = run(&dir, &["sample", "--length", "20", "--prime", "the "]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    assert!(String::from_utf8_lossy(&s.stdout).starts_with("the "));
    assert!(
        train(&["--data", "data.txt", "--resume", "--steps", "5"])
            .status
            .success()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Kills the trainer with SIGKILL at random moments while it saves a checkpoint every step;
/// whatever moment it dies, the checkpoint on disk is a whole one and resumes.
#[test]
fn checkpoints_survive_sigkill_at_any_moment() {
    use rand::{Rng, SeedableRng};
    let dir = temp_dir("sigkill");
    std::fs::write(dir.join("data.txt"), small_text()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut loaded = 0;
    for round in 0..16 {
        let mut args = vec!["train"];
        args.extend_from_slice(TINY);
        args.extend_from_slice(&[
            "--data",
            "data.txt",
            "--steps",
            "100000000",
            "--checkpoint-every",
            "1",
        ]);
        let path = dir.join("char-rnn.safetensors");
        if path.exists() {
            args.push("--resume");
        }
        let mut child = Command::new(binary())
            .args(&args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(150..600)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if path.exists() {
            let saved = checkpoint::load(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
            saved.resume(&small_text()).unwrap();
            loaded += 1;
        } else {
            assert_eq!(loaded, 0, "round {round}: the checkpoint vanished");
        }
    }
    assert!(
        loaded >= 14,
        "only {loaded} rounds got as far as a checkpoint"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
