//! The building blocks of a language model composed as the char-rnn composes them:
//! embedding -> stacked LSTM (or GRU) -> linear -> softmax cross-entropy, checked end to end
//! against finite differences in f64 with the public gradient checker: every element of
//! every parameter.

use fused_rnn::gradcheck::{GradCheck, Variable, gradcheck};
use fused_rnn::nn::{Embedding, Linear, softmax_cross_entropy};
use fused_rnn::{
    Backward, CellKind, Config, Input, Params, Recurrent, Reserve, SeqShape, State, Workspace,
};

/// A small model in f64.
#[derive(Clone)]
struct Model {
    embed: Embedding<f64>,
    rnn: Recurrent<f64>,
    head: Linear<f64>,
}

const VOCAB: usize = 7;

impl Model {
    fn new(cell: CellKind) -> Self {
        let config = Config::lstm(4, 5).with_cell(cell).with_layers(2);
        Model {
            embed: Embedding::new(VOCAB, 4, 1).unwrap(),
            rnn: Recurrent::with_seed(config, 2).unwrap(),
            head: Linear::new(5, VOCAB, 3).unwrap(),
        }
    }

    /// The mean cross-entropy of predicting `targets` from `ids` (time-major `[T][B]`) from
    /// the state `h0`, and, with `grads`, the gradients of every parameter.
    fn loss(
        &self,
        ids: &[usize],
        targets: &[usize],
        shape: SeqShape,
        h0: &State<f64>,
        grads: Option<&mut Grads>,
    ) -> f64 {
        let rows = ids.len();
        let mut x = vec![0.0; rows * 4];
        self.embed.forward(ids, &mut x).unwrap();
        let mut y = vec![0.0; rows * 5];
        let (mut state, mut reserve, mut ws) = (h0.clone(), Reserve::new(), Workspace::new());
        let input = Input::new(&x, shape);
        self.rnn
            .forward_train(input, &mut state, &mut y, &mut reserve, &mut ws)
            .unwrap();
        let mut logits = vec![0.0; rows * VOCAB];
        self.head.forward(&y, &mut logits).unwrap();
        let mut d_logits = vec![0.0; logits.len()];
        let loss = softmax_cross_entropy(&logits, VOCAB, targets, &mut d_logits).unwrap();
        if let Some(g) = grads {
            let mut dy = vec![0.0; y.len()];
            self.head
                .backward(&y, &d_logits, Some(&mut dy), &mut g.head)
                .unwrap();
            let mut dx = vec![0.0; x.len()];
            let mut d_state = self.rnn.zero_state(shape.batch);
            let out = Backward {
                d_state: &mut d_state,
                dx: Some(&mut dx),
                grads: &mut g.rnn,
            };
            self.rnn
                .backward(input, &dy, &mut reserve, out, &mut ws)
                .unwrap();
            self.embed.backward(ids, &dx, &mut g.embed).unwrap();
        }
        loss
    }
}

struct Grads {
    embed: Embedding<f64>,
    rnn: Params<f64>,
    head: Linear<f64>,
}

fn check(cell: CellKind) {
    let model = Model::new(cell);
    let shape = SeqShape::new(5, 3);
    let ids: Vec<usize> = (0..15).map(|i| (i * 3 + 1) % VOCAB).collect();
    let targets: Vec<usize> = (0..15).map(|i| (i * 5 + 2) % VOCAB).collect();
    let mut h0 = model.rnn.zero_state(3);
    h0.h.iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = (i as f64 * 0.3).sin() * 0.5);
    let mut g = Grads {
        embed: Embedding::zeros(VOCAB, 4).unwrap(),
        rnn: model.rnn.zero_grads(),
        head: Linear::zeros(5, VOCAB).unwrap(),
    };
    model.loss(&ids, &targets, shape, &h0, Some(&mut g));
    let mut vars = vec![
        Variable::new(
            "embed.weight",
            model.embed.weight.clone(),
            g.embed.weight.clone(),
        ),
        Variable::new(
            "head.weight",
            model.head.weight.clone(),
            g.head.weight.clone(),
        ),
        Variable::new("head.bias", model.head.bias.clone(), g.head.bias.clone()),
    ];
    for (p, gp) in model.rnn.params().iter().zip(g.rnn.iter()) {
        vars.push(Variable::new(
            p.name(),
            p.data().to_vec(),
            gp.data().to_vec(),
        ));
    }
    let total: usize = vars.iter().map(|v| v.value.len()).sum();
    let report = gradcheck(
        &mut vars,
        |v| {
            let mut m = model.clone();
            m.embed.weight.copy_from_slice(&v[0].value);
            m.head.weight.copy_from_slice(&v[1].value);
            m.head.bias.copy_from_slice(&v[2].value);
            for (t, var) in m.rnn.tensors_mut().zip(&v[3..]) {
                t.data_mut().copy_from_slice(&var.value);
            }
            m.loss(&ids, &targets, shape, &h0, None)
        },
        &GradCheck::default(),
    );
    // A smooth loss: every element is checked, none is left out as a kink.
    assert_eq!(report.checked, total, "{report}");
    assert!(report.max_rel_error <= 1e-6, "{cell:?}: {report}");
}

#[test]
fn lstm_language_model_gradients_match_finite_differences() {
    check(CellKind::Lstm);
}

#[test]
fn gru_language_model_gradients_match_finite_differences() {
    check(CellKind::Gru { reset_after: true });
}
