//! Bad input gives a typed error naming the argument and both sizes, and a failed call
//! changes nothing the caller holds.

use fused_rnn::{
    Backward, CellKind, Config, Error, Input, Params, Recurrent, Reserve, SeqShape, State,
    Workspace,
};

fn lstm() -> Recurrent<f32> {
    Recurrent::with_seed(
        Config::lstm(3, 4).with_layers(2).with_bidirectional(true),
        1,
    )
    .expect("valid")
}

fn shape_err(arg: &str, expected: usize, actual: usize) -> Error {
    Error::ShapeMismatch {
        arg: arg.to_string().into(),
        expected,
        actual,
    }
}

#[test]
fn config_errors() {
    assert_eq!(
        Config::lstm(0, 4).validate(),
        Err(Error::ZeroDim { arg: "input_size" })
    );
    assert_eq!(
        Config::lstm(3, 0).validate(),
        Err(Error::ZeroDim { arg: "hidden_size" })
    );
    assert_eq!(
        Config::lstm(3, 4).with_layers(0).validate(),
        Err(Error::ZeroDim { arg: "num_layers" })
    );
    assert!(
        matches!(Config::gru(3, 4).with_proj_size(2).validate(), Err(Error::InvalidArgument { arg, .. }) if arg == "proj_size")
    );
    assert!(
        matches!(Config::lstm(3, 4).with_proj_size(4).validate(), Err(Error::InvalidArgument { arg, .. }) if arg == "proj_size")
    );
    for p in [1.0, -0.1, f64::NAN] {
        assert!(
            matches!(Config::lstm(3, 4).with_dropout(p).validate(), Err(Error::InvalidArgument { arg, .. }) if arg == "dropout")
        );
    }
    assert!(Recurrent::<f32>::with_seed(Config::lstm(0, 1), 0).is_err());
}

#[test]
fn params_errors_name_the_tensor() {
    let config = Config::lstm(3, 4);
    let good: Vec<(String, Vec<usize>, Vec<f32>)> = Params::<f32>::zeros(&config)
        .unwrap()
        .iter()
        .map(|t| (t.name().into(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let missing = good[1..].to_vec();
    let err = Params::from_named(&config, missing).unwrap_err();
    assert!(
        err.to_string().contains("weight_ih_l0") && err.to_string().contains("missing"),
        "{err}"
    );
    let mut extra = good.clone();
    extra.push(("weight_hr_l0".into(), vec![2, 4], vec![0.0; 8]));
    let err = Params::from_named(&config, extra).unwrap_err();
    assert!(err.to_string().contains("weight_hr_l0"), "{err}");
    let mut wrong = good.clone();
    wrong[1].1 = vec![16, 5];
    wrong[1].2 = vec![0.0; 80];
    let err = Params::from_named(&config, wrong).unwrap_err();
    assert!(
        err.to_string().contains("weight_hh_l0") && err.to_string().contains("[16, 5]"),
        "{err}"
    );
    let other = Params::<f32>::zeros(&Config::gru(3, 4)).unwrap();
    assert!(Recurrent::new(config.clone(), other.clone()).is_err());
    let mut module = Recurrent::<f32>::with_seed(config, 0).unwrap();
    let before = module.params().clone();
    assert!(module.set_params(other).is_err());
    assert_eq!(
        module.params(),
        &before,
        "a refused set_params changes nothing"
    );
}

/// The inputs of one good call on `lstm()`.
struct Call {
    x: Vec<f32>,
    y: Vec<f32>,
    state: State<f32>,
    shape: SeqShape,
}

fn good() -> Call {
    let m = lstm();
    let shape = SeqShape::new(5, 2);
    Call {
        x: vec![0.3; 5 * 2 * 3],
        y: vec![7.0; 5 * 2 * 8],
        state: m.zero_state(2),
        shape,
    }
}

#[test]
fn forward_errors_name_the_argument_and_change_nothing() {
    let m = lstm();
    let mut ws = Workspace::new();
    type Breaker = Box<dyn Fn(&mut Call)>;
    let cases: Vec<(Breaker, Error)> = vec![
        (
            Box::new(|c| c.x.pop().map(|_| ()).unwrap()),
            shape_err("x", 30, 29),
        ),
        (Box::new(|c| c.y.push(0.0)), shape_err("y", 80, 81)),
        (
            Box::new(|c| c.state.h.push(0.0)),
            shape_err("state.h", 32, 33),
        ),
        (Box::new(|c| c.state.c.clear()), shape_err("state.c", 32, 0)),
        (Box::new(|c| c.shape.steps = 6), shape_err("x", 36, 30)),
    ];
    for (break_it, want) in cases {
        let mut c = good();
        break_it(&mut c);
        let (y0, s0) = (c.y.clone(), c.state.clone());
        let err = m
            .forward(Input::new(&c.x, c.shape), &mut c.state, &mut c.y, &mut ws)
            .unwrap_err();
        assert_eq!(err, want);
        assert_eq!((c.y, c.state), (y0, s0), "a failed forward wrote something");
        let mut reserve = Reserve::new();
        let mut c = good();
        break_it(&mut c);
        let err = m
            .forward_train(
                Input::new(&c.x, c.shape),
                &mut c.state,
                &mut c.y,
                &mut reserve,
                &mut ws,
            )
            .unwrap_err();
        assert_eq!(err, want);
        assert!(
            reserve.shape().is_none() && reserve.is_empty(),
            "a failed forward_train filled the reserve"
        );
    }
}

#[test]
fn lengths_and_resets_are_checked() {
    let m = lstm();
    let mut c = good();
    let mut ws = Workspace::new();
    let bad_len = [5, 6];
    let err = m
        .forward(
            Input::new(&c.x, c.shape).with_lengths(&bad_len),
            &mut c.state,
            &mut c.y,
            &mut ws,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { arg, reason } if arg == "lengths" && reason.contains("6 > steps 5")),
        "{err}"
    );
    let short = [5];
    let err = m
        .forward(
            Input::new(&c.x, c.shape).with_lengths(&short),
            &mut c.state,
            &mut c.y,
            &mut ws,
        )
        .unwrap_err();
    assert_eq!(err, shape_err("lengths", 2, 1));
    let resets = [false; 9];
    let err = m
        .forward(
            Input::new(&c.x, c.shape).with_resets(&resets),
            &mut c.state,
            &mut c.y,
            &mut ws,
        )
        .unwrap_err();
    assert_eq!(err, shape_err("resets", 10, 9));
    assert_eq!(c.y, vec![7.0; 80]);
}

#[test]
fn backward_errors_change_nothing() {
    let m = lstm();
    let mut c = good();
    let mut ws = Workspace::new();
    let input = Input::new(&c.x, c.shape);
    let dy = vec![1.0f32; c.y.len()];
    let mut grads = m.zero_grads();
    let mut d_state = m.zero_state(2);
    let mut dx = vec![5.0f32; c.x.len()];

    let mut empty = Reserve::new();
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    assert_eq!(
        m.backward(input, &dy, &mut empty, out, &mut ws)
            .unwrap_err(),
        Error::ReserveEmpty
    );

    let mut reserve = Reserve::new();
    m.forward_train(input, &mut c.state, &mut c.y, &mut reserve, &mut ws)
        .unwrap();
    let short_x = vec![0.3f32; 4 * 2 * 3];
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    let err = m
        .backward(
            Input::new(&short_x, SeqShape::new(4, 2)),
            &dy[..64],
            &mut reserve,
            out,
            &mut ws,
        )
        .unwrap_err();
    assert!(matches!(err, Error::ReserveMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("4 steps x 2 sequences")
            && err.to_string().contains("5 steps x 2 sequences"),
        "{err}"
    );

    let other = Recurrent::<f32>::with_seed(
        Config::lstm(3, 4)
            .with_layers(2)
            .with_bidirectional(true)
            .with_bias(false),
        1,
    )
    .unwrap();
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    let err = other
        .backward(input, &dy, &mut reserve, out, &mut ws)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { arg, .. } if arg == "reserve"),
        "{err}"
    );

    let lens = [5, 5];
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    let err = m
        .backward(input.with_lengths(&lens), &dy, &mut reserve, out, &mut ws)
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument { arg, .. } if arg == "lengths"),
        "{err}"
    );

    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    assert_eq!(
        m.backward(input, &dy[1..], &mut reserve, out, &mut ws)
            .unwrap_err(),
        shape_err("dy", 80, 79)
    );

    let mut bad_state = m.zero_state(3);
    let out = Backward {
        d_state: &mut bad_state,
        dx: Some(&mut dx),
        grads: &mut grads,
    };
    assert_eq!(
        m.backward(input, &dy, &mut reserve, out, &mut ws)
            .unwrap_err(),
        shape_err("d_state.h", 32, 48)
    );

    let mut short_dx = vec![0.0f32; 29];
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut short_dx),
        grads: &mut grads,
    };
    assert_eq!(
        m.backward(input, &dy, &mut reserve, out, &mut ws)
            .unwrap_err(),
        shape_err("dx", 30, 29)
    );

    let mut wrong_grads = Recurrent::<f32>::with_seed(Config::gru(3, 4), 0)
        .unwrap()
        .zero_grads();
    let out = Backward {
        d_state: &mut d_state,
        dx: Some(&mut dx),
        grads: &mut wrong_grads,
    };
    assert!(m.backward(input, &dy, &mut reserve, out, &mut ws).is_err());

    assert!(
        grads.iter().all(|t| t.data().iter().all(|&g| g == 0.0)),
        "a failed backward touched grads"
    );
    assert_eq!(dx, vec![5.0; 30], "a failed backward touched dx");
    assert_eq!(d_state, m.zero_state(2));
}

/// Backward uses its reserve up (an LSTM's gate gradients go over the saved gates): a second
/// backward is an error, a failed one keeps the reserve whole, and each new forward_train
/// makes it usable again, with the same gradients every time.
#[test]
fn backward_uses_the_reserve_up() {
    let configs = [
        Config::lstm(3, 4).with_layers(2).with_bidirectional(true),
        Config::gru(3, 4).with_layers(2),
        Config::rnn(3, 4),
    ];
    for config in configs {
        let m = Recurrent::<f32>::with_seed(config.clone(), 3).unwrap();
        let shape = SeqShape::new(5, 2);
        let x: Vec<f32> = (0..5 * 2 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
        let input = Input::new(&x, shape);
        let mut y = vec![0.0f32; 5 * 2 * config.output_size()];
        let dy: Vec<f32> = (0..y.len()).map(|i| (i as f32 * 0.11).cos()).collect();
        let (mut reserve, mut ws) = (Reserve::new(), Workspace::new());
        let mut grads_of_a_run = |reserve: &mut Reserve<f32>, bad_dy_first: bool| {
            m.forward_train(input, &mut m.zero_state(2), &mut y, reserve, &mut ws)
                .unwrap();
            let (mut grads, mut d_state) = (m.zero_grads(), m.zero_state(2));
            if bad_dy_first {
                let out = Backward {
                    d_state: &mut d_state,
                    dx: None,
                    grads: &mut grads,
                };
                let err = m.backward(input, &dy[1..], reserve, out, &mut ws);
                assert!(err.is_err());
            }
            let out = Backward {
                d_state: &mut d_state,
                dx: None,
                grads: &mut grads,
            };
            m.backward(input, &dy, reserve, out, &mut ws).unwrap();
            let out = Backward {
                d_state: &mut m.zero_state(2),
                dx: None,
                grads: &mut m.zero_grads(),
            };
            let again = m.backward(input, &dy, reserve, out, &mut ws);
            assert_eq!(again.unwrap_err(), Error::ReserveEmpty, "{config:?}");
            grads
        };
        let first = grads_of_a_run(&mut reserve, false);
        assert!(first.iter().any(|t| t.data().iter().any(|&g| g != 0.0)));
        assert_eq!(grads_of_a_run(&mut reserve, true), first, "{config:?}");
        assert_eq!(grads_of_a_run(&mut reserve, false), first, "{config:?}");
    }
}

#[test]
fn sizes_that_overflow_are_errors() {
    let m = lstm();
    let huge = SeqShape::new(usize::MAX / 4, 3);
    assert_eq!(m.reserve_len(huge), Err(Error::SizeOverflow));
    assert_eq!(m.workspace_len(huge), Err(Error::SizeOverflow));
    let x = vec![0.0f32; 3];
    let mut y = vec![0.0f32; 3];
    let mut state = m.zero_state(3);
    let err = m
        .forward(
            Input::new(&x, huge),
            &mut state,
            &mut y,
            &mut Workspace::new(),
        )
        .unwrap_err();
    assert_eq!(err, Error::SizeOverflow);
}

#[test]
fn cells_are_all_constructible() {
    for cell in CellKind::ALL {
        let m = Recurrent::<f64>::with_seed(Config::lstm(2, 3).with_cell(cell), 0).unwrap();
        assert_eq!(m.config().cell, cell);
    }
}
