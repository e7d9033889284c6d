//! The layer API with arbitrary configurations, shapes, lengths, resets and buffer lengths.
//!
//! Valid calls must match the f64 reference (outputs, final state, every gradient); invalid
//! ones (a zero size, a length past the end, a buffer one element off, a reserve filled for
//! another shape) must return an error and leave everything the caller holds untouched.
//! Nothing may panic.

#![no_main]

#[path = "../../tests/integration/common.rs"]
mod common;

use arbitrary::Arbitrary;
use common::{Case, compare, run_ours, run_reference};
use fused_rnn::{
    Backward, CellKind, Config, Input, Recurrent, Reserve, SeqLayout, SeqShape, State, Workspace,
};
use libfuzzer_sys::fuzz_target;

/// The buffers a call takes, one of which a draw may make the wrong length.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Buffer {
    X,
    StateH,
    StateC,
    Y,
    Resets,
    Dy,
    DStateH,
    DStateC,
    Dx,
    /// Backward on a reserve filled for one more step.
    Reserve,
}

#[derive(Arbitrary, Debug)]
struct Draw {
    cell: u8,
    input: u8,
    hidden: u8,
    layers: u8,
    bidirectional: bool,
    bias: bool,
    batch_major: bool,
    proj: u8,
    steps: u8,
    batch: u8,
    lengths: Option<Vec<u8>>,
    resets: bool,
    seed: u64,
    /// A buffer made `delta` elements longer or shorter.
    bad: Option<(Buffer, i8)>,
}

impl Draw {
    fn config(&self) -> Config {
        let layout = if self.batch_major {
            SeqLayout::BatchMajor
        } else {
            SeqLayout::TimeMajor
        };
        Config::lstm(usize::from(self.input % 10), usize::from(self.hidden % 21))
            .with_cell(CellKind::ALL[usize::from(self.cell) % CellKind::ALL.len()])
            .with_layers(usize::from(self.layers % 4))
            .with_bidirectional(self.bidirectional)
            .with_bias(self.bias)
            .with_proj_size(usize::from(self.proj % 6))
            .with_layout(layout)
    }

    fn shape(&self) -> SeqShape {
        SeqShape::new(usize::from(self.steps % 7), usize::from(self.batch % 10))
    }

    /// The drawn lengths, each at most `steps + 1` (one past the end is invalid).
    fn lengths(&self) -> Option<Vec<usize>> {
        let steps = self.shape().steps;
        let lengths = self.lengths.as_ref()?;
        Some(
            lengths
                .iter()
                .map(|&l| usize::from(l) % (steps + 2))
                .collect(),
        )
    }
}

fn resized(v: &[f64], delta: i8) -> Vec<f64> {
    let len = v.len().saturating_add_signed(isize::from(delta));
    let mut out = v.to_vec();
    out.resize(len, 0.25);
    out
}

fuzz_target!(|draw: Draw| {
    let config = draw.config();
    let module = match Recurrent::<f64>::with_seed(config.clone(), draw.seed) {
        Ok(module) => module,
        Err(_) => {
            assert!(
                config.validate().is_err(),
                "with_seed refused a valid {config:?}"
            );
            return;
        }
    };
    assert!(config.validate().is_ok());
    let shape = draw.shape();
    let mut case = Case::random(config.clone(), shape, draw.seed, false, draw.resets);
    case.lengths = draw.lengths();
    let lengths_ok = case
        .lengths
        .as_ref()
        .is_none_or(|l| l.len() == shape.batch && l.iter().all(|&l| l <= shape.steps));
    // A perturbation that leaves the length as it was (0, or shrinking an empty buffer)
    // leaves the call valid.
    let bad = draw.bad.filter(|&(buffer, delta)| {
        let len = |v: &[f64]| v.len();
        let before = match buffer {
            Buffer::X | Buffer::Dx => len(&case.x),
            Buffer::StateH => len(&case.h0),
            Buffer::StateC => len(&case.c0),
            Buffer::Y | Buffer::Dy => len(&case.dy),
            Buffer::Resets => match &case.resets {
                Some(r) => r.len(),
                None => return false,
            },
            Buffer::DStateH => len(&case.dh_n),
            Buffer::DStateC => len(&case.dc_n),
            Buffer::Reserve => return true,
        };
        before.saturating_add_signed(isize::from(delta)) != before
    });
    match bad {
        None if lengths_ok => {
            // A valid call: held to the reference.
            let got = run_ours::<f64>(&case);
            let want = run_reference(&case);
            if let Err(e) = compare(&got, &want, (1e-12, 1e-10)) {
                panic!("{config:?} {shape:?}: {e}");
            }
        }
        _ => expect_refused(&module, &case, lengths_ok, bad),
    }
});

/// Runs the case with invalid lengths or one buffer the wrong length, and asserts that the
/// call given the bad argument fails and that it wrote nothing.
fn expect_refused(
    module: &Recurrent<f64>,
    case: &Case,
    lengths_ok: bool,
    bad: Option<(Buffer, i8)>,
) {
    let config = &case.config;
    let size = |which: Buffer, v: &[f64]| match bad {
        Some((b, delta)) if b == which => resized(v, delta),
        _ => v.to_vec(),
    };
    let shape = case.shape;
    let (t, b) = (shape.steps, shape.batch);
    let x = size(Buffer::X, &case.x);
    let resets: Option<Vec<bool>> = case.resets.as_ref().map(|r| {
        let len = size(Buffer::Resets, &vec![0.0; r.len()]).len();
        (0..len)
            .map(|i| r.get(i).copied().unwrap_or(true))
            .collect()
    });
    let mut input = Input::new(&x, shape);
    if let Some(l) = &case.lengths {
        input = input.with_lengths(l);
    }
    if let Some(r) = &resets {
        input = input.with_resets(r);
    }
    let mut state = State {
        h: size(Buffer::StateH, &case.h0),
        c: size(Buffer::StateC, &case.c0),
    };
    let out_len = t * b * config.output_size();
    let mut y = size(Buffer::Y, &vec![7.0; out_len]);
    let (state_before, y_before) = (state.clone(), y.clone());
    let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
    let forward_bad = matches!(
        bad,
        Some((
            Buffer::X | Buffer::StateH | Buffer::StateC | Buffer::Y | Buffer::Resets,
            _
        ))
    ) || !lengths_ok;
    let fwd = module.forward_train(input, &mut state, &mut y, &mut reserve, &mut ws);
    if forward_bad {
        assert!(
            fwd.is_err(),
            "forward_train accepted {bad:?} lengths {:?}",
            case.lengths
        );
        assert_eq!(
            state.h, state_before.h,
            "a failed forward_train wrote the state"
        );
        assert_eq!(
            state.c, state_before.c,
            "a failed forward_train wrote the state"
        );
        assert_eq!(y, y_before, "a failed forward_train wrote y");
        let mut y = y.clone();
        let fwd = module.forward(input, &mut state, &mut y, &mut ws);
        assert!(fwd.is_err(), "forward accepted {bad:?}");
        return;
    }
    fwd.expect("a valid forward_train");
    if let Some((Buffer::Reserve, _)) = bad {
        // Refill the reserve for one more step than backward is asked about.
        let longer = SeqShape::new(t + 1, b);
        let x1 = vec![0.5; (t + 1) * b * config.input_size];
        let mut y1 = vec![0.0; (t + 1) * b * config.output_size()];
        let mut s1 = module.zero_state(b);
        module
            .forward_train(
                Input::new(&x1, longer),
                &mut s1,
                &mut y1,
                &mut reserve,
                &mut ws,
            )
            .expect("a valid forward_train");
    }
    let dy = size(Buffer::Dy, &case.dy);
    let mut d_state = State {
        h: size(Buffer::DStateH, &case.dh_n),
        c: size(Buffer::DStateC, &case.dc_n),
    };
    let mut dx = size(Buffer::Dx, &vec![3.0; x.len()]);
    let mut grads = module.zero_grads();
    let (d_state_before, dx_before) = (d_state.clone(), dx.clone());
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    let bwd = module.backward(input, &dy, &mut reserve, out, &mut ws);
    assert!(bwd.is_err(), "backward accepted {bad:?}");
    assert_eq!(
        d_state.h, d_state_before.h,
        "a failed backward wrote d_state"
    );
    assert_eq!(
        d_state.c, d_state_before.c,
        "a failed backward wrote d_state"
    );
    assert_eq!(dx, dx_before, "a failed backward wrote dx");
    assert!(
        grads.iter().all(|t| t.data().iter().all(|&g| g == 0.0)),
        "a failed backward wrote grads"
    );
}
