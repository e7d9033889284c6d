//! A training call's parts, each timed alone (`--budget`): its products (the input
//! projection, the steps' recurrent products forward and back, dL/dx and the weight
//! gradients), each run by itself on warm data with the kernels' own GEMMs and summed by
//! how often one call runs it; and the work every training step does besides: packing the
//! four weight layouts the products read (once per update), and the pointwise passes of
//! every step forward and back (see [`super::passes`]; timed on one thread, and counted as
//! split perfectly over the pool's threads). Each part counts at its fastest sample alone
//! and warm, so their sum is a floor under the call's time; the call's time beyond it is
//! what running them together costs (colder caches, copies, the threads' waits). A row whose
//! products alone already miss the target's speed misses for the products' speed at its
//! shapes; one whose floor misses it, for the work every step needs; one whose floor would
//! meet it, for the rest.

use std::hint::black_box;

use fused_rnn_kernels::aligned::AlignedBuf;
use fused_rnn_kernels::gemm::beside::{Beside, gemm_beside};
use fused_rnn_kernels::gemm::packed::{PackedRef, pack, packed_len};
use fused_rnn_kernels::{MatMut, MatRef, arch, gemm_prepacked};

use super::cases::Case;
use super::passes::Passes;
use super::timing;

/// How a product's B is held: packed once (a weight), or two activations beside each other
/// sharing A (the weight gradients, `dG^T X` and `dG^T H_prev`, as the call runs them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Form {
    /// B is a weight, packed once before the timing.
    Packed,
    /// The second B's columns (the first's are `n - second`).
    Beside { second: usize },
}

/// One product of a training call, `[m, k] x [k, n]`, run `count` times a call.
#[derive(Clone, Debug)]
pub struct Product {
    pub name: &'static str,
    pub count: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub form: Form,
    /// Seconds of one run alone, the fastest sample's (0 until measured).
    pub best_s: f64,
}

impl Product {
    /// `2 m k n` per run, times the runs of a call.
    pub fn flops(&self) -> f64 {
        2.0 * (self.count * self.m * self.k * self.n) as f64
    }
    /// Seconds per call: one run's best times the runs.
    pub fn call_s(&self) -> f64 {
        self.best_s * self.count as f64
    }
}

/// The products of one training call of `case` (one layer, one direction), in the order
/// the call runs them. Their flops sum to the case's.
pub fn products_of(case: &Case) -> Vec<Product> {
    let (t, b, i, h) = (case.steps, case.batch, case.input, case.hidden);
    let gh = case.cell.gates() * h;
    let product = |name, count, (m, k, n), form| Product {
        name,
        count,
        m,
        k,
        n,
        form,
        best_s: 0.0,
    };
    vec![
        product("projection", 1, (t * b, i, gh), Form::Packed),
        product("step", t, (b, h, gh), Form::Packed),
        product("step back", t, (b, gh, h), Form::Packed),
        product("dx", 1, (t * b, gh, i), Form::Packed),
        product("dW", 1, (gh, t * b, i + h), Form::Beside { second: h }),
    ]
}

/// The fastest sample: a floor is made of each part at its best (a neighbour's load on a
/// shared machine only ever slows a sample down).
fn best(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Deterministic values in [-0.5, 0.5).
pub(super) fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// A training call's parts, each timed alone.
#[derive(Clone, Debug)]
pub struct Budget {
    pub products: Vec<Product>,
    pub besides: Besides,
    /// The pool's threads, over which the work besides the products counts as split.
    pub threads: usize,
}

impl Budget {
    /// The floor: the products, and the work besides them split perfectly over the
    /// threads, each at its best alone.
    pub fn floor_s(&self) -> f64 {
        total_s(&self.products) + self.besides.total_s() / self.threads.max(1) as f64
    }
}

/// Times every part of `case`'s training call alone on the current rayon pool,
/// `min_time` seconds and `min_samples` samples each.
pub fn measure(case: &Case, min_time: f64, min_samples: usize) -> Budget {
    Budget {
        products: measure_products(case, min_time, min_samples),
        besides: measure_besides(case, min_time, min_samples),
        threads: rayon::current_num_threads(),
    }
}

/// Times each product of `case` alone on the current rayon pool (the kernels split a
/// product over all of its threads), `min_time` seconds and `min_samples` samples each.
pub fn measure_products(case: &Case, min_time: f64, min_samples: usize) -> Vec<Product> {
    let arch = arch();
    let mut products = products_of(case);
    for p in &mut products {
        let (m, k, n) = (p.m, p.k, p.n);
        let a = data(m * k);
        let mut c = vec![0.0f32; m * n];
        let mut call: Box<dyn FnMut()> = match p.form {
            Form::Packed => {
                // Cache-line aligned, as the crate keeps its packed weights.
                let mut packed = AlignedBuf::new();
                packed.resize(packed_len::<f32>(k, n));
                pack(
                    MatRef::row_major(&data(k * n), k, n, n),
                    packed.as_mut_slice(),
                );
                Box::new(move || {
                    let w = PackedRef::from_packed(packed.as_slice(), k, n);
                    let a = MatRef::row_major(black_box(&a), m, k, k);
                    gemm_prepacked(arch, 0, a, w, 0.0, MatMut::row_major(&mut c, m, n, n));
                })
            }
            Form::Beside { second } => {
                // A is dG^T: dG is row-major [k][m] (rows = T*B), read transposed.
                let first = n - second;
                let (x, h_prev) = (data(k * first), data(k * second));
                Box::new(move || {
                    let dg_t = MatRef::row_major(black_box(&a), k, m, m).t();
                    let (c1, c2) = c.split_at_mut(m * first);
                    let x_blocks = [MatRef::row_major(&x, k, first, first)];
                    let h_blocks = [MatRef::row_major(&h_prev, k, second, second)];
                    let mut outs = [
                        Beside {
                            b: &x_blocks,
                            c: MatMut::row_major(c1, m, first, first),
                        },
                        Beside {
                            b: &h_blocks,
                            c: MatMut::row_major(c2, m, second, second),
                        },
                    ];
                    gemm_beside(arch, 0, dg_t, &mut outs, 0.0);
                })
            }
        };
        let (samples, _) = timing::sample(&mut call, min_time, min_samples);
        p.best_s = best(&samples);
    }
    products
}

/// Seconds of one call's products, each at its best alone.
pub fn total_s(products: &[Product]) -> f64 {
    products.iter().map(Product::call_s).sum()
}

/// The work of a training step besides its products, each timed alone (the fastest
/// sample's seconds per call).
#[derive(Clone, Debug)]
pub struct Besides {
    /// Packing `W_ih^T`, `W_ih`, `W_hh^T` and `W_hh` (the layouts the projection, dL/dx and
    /// the steps forward and back read), once per update.
    pub packing_s: f64,
    /// The pointwise passes of every step, forward and back (`None` for a GRU with the reset
    /// before its product, which no runner case has).
    pub passes_s: Option<f64>,
}

impl Besides {
    /// Seconds of the work measured (passes counted only where measured).
    pub fn total_s(&self) -> f64 {
        self.packing_s + self.passes_s.unwrap_or(0.0)
    }
}

/// Times what [`Besides`] names for `case`, on this thread alone.
pub fn measure_besides(case: &Case, min_time: f64, min_samples: usize) -> Besides {
    let (i, h, gh) = (case.input, case.hidden, case.cell.gates() * case.hidden);
    let (w_ih, w_hh) = (data(gh * i), data(gh * h));
    let mut outs =
        [(i, gh), (gh, i), (h, gh), (gh, h)].map(|(k, n)| vec![0.0f32; packed_len::<f32>(k, n)]);
    let mut packing = || {
        // Each W is [G*H][in] row-major: packed as it is (the backward products read W) and
        // transposed (the forward ones read W^T).
        let (w_ih, w_hh) = (
            MatRef::row_major(&w_ih, gh, i, i),
            MatRef::row_major(&w_hh, gh, h, h),
        );
        for (w, out) in [w_ih.t(), w_ih, w_hh.t(), w_hh].into_iter().zip(&mut outs) {
            pack(w, out);
        }
    };
    let (samples, _) = timing::sample(&mut packing, min_time, min_samples);
    let passes_s = Passes::new(case.cell, case.batch, h).map(|mut passes| {
        let mut run = || {
            for _ in 0..case.steps {
                passes.step();
            }
        };
        let (samples, _) = timing::sample(&mut run, min_time, min_samples);
        best(&samples)
    });
    Besides {
        packing_s: best(&samples),
        passes_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fused_rnn::{CellKind, Nonlinearity};

    fn case(cell: CellKind, (input, hidden, batch, steps): (usize, usize, usize, usize)) -> Case {
        Case {
            name: "case".into(),
            cell_name: "cell".into(),
            cell,
            hidden,
            input,
            batch,
            steps,
            train: true,
        }
    }

    /// The products' flops are the case's, for every cell, with the input wider or narrower
    /// than the hidden size (a wrong shape would count some product's flops wrongly).
    #[test]
    fn the_products_add_up_to_the_call() {
        let cells = [
            CellKind::Lstm,
            CellKind::Gru { reset_after: true },
            CellKind::Rnn(Nonlinearity::Tanh),
        ];
        for cell in cells {
            for dims in [(64, 64, 8, 10), (17, 40, 3, 7), (100, 33, 1, 5)] {
                let c = case(cell, dims);
                let sum: f64 = products_of(&c).iter().map(Product::flops).sum();
                assert_eq!(sum, c.flops(), "{cell:?} {dims:?}");
            }
        }
    }

    /// Measured, every product has a positive time, and a call's total counts each product
    /// as often as the call runs it (the steps T times).
    #[test]
    fn measured_times_are_counted_per_call() {
        let c = case(CellKind::Lstm, (9, 12, 3, 4));
        let products = measure_products(&c, 0.0, 3);
        assert!(products.iter().all(|p| p.best_s > 0.0));
        let step = products.iter().find(|p| p.name == "step").unwrap();
        assert_eq!(step.count, 4);
        assert_eq!(step.call_s(), 4.0 * step.best_s);
        let sum: f64 = products.iter().map(|p| p.best_s * p.count as f64).sum();
        assert_eq!(total_s(&products), sum);
    }

    /// The passes are timed for every runner cell, and the floor adds what was measured,
    /// split over the threads; a reset-before GRU (no runner case) has no passes timed.
    #[test]
    fn the_floor_adds_the_work_besides_the_products() {
        for cell in crate::passes::RUNNER_CELLS {
            let mut b = measure(&case(cell, (9, 12, 3, 4)), 0.0, 3);
            let passes = b.besides.passes_s.expect("the passes are timed");
            assert!(passes > 0.0 && b.besides.packing_s > 0.0, "{cell:?}");
            let products = total_s(&b.products);
            for threads in [1, 2] {
                b.threads = threads;
                // Grouped as `floor_s` adds them: float addition is not associative.
                let besides = (b.besides.packing_s + passes) / threads as f64;
                assert_eq!(b.floor_s(), products + besides, "{cell:?}");
            }
        }
        let mut gru = measure(
            &case(CellKind::Gru { reset_after: false }, (9, 12, 3, 4)),
            0.0,
            3,
        );
        assert_eq!(gru.besides.passes_s, None);
        gru.threads = 1;
        assert_eq!(
            gru.floor_s(),
            total_s(&gru.products) + gru.besides.packing_s
        );
    }
}
